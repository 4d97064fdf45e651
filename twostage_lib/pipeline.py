"""The whole two-stage pipeline in one call: stage 1, stage 2, fine-tuning, evaluated after each."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import torch

from .evaluation import evaluate_model
from .loop import EarlyStopping, LoopSettings
from .mnist import load_mnist
from .models import TwoStageNetwork
from .recipe import RUN, scaled_lr
from .runtime import seed_everything, select_device
from .subsets import check_budget, holdout_size, labels_per_class, validation_split
from .training import finetune, train_stage1, train_stage2


@dataclass
class PipelineConfig:
    """Every knob of ``python -m twostage_lib run``; the defaults are ``recipe.RUN``."""

    data: str = "auto"  # auto, bundled or full
    data_dir: str | None = None
    dataset: str = "mnist"
    objective: str = RUN.objective
    epochs_stage1: int = RUN.epochs_stage1
    epochs_stage2: int = RUN.epochs_stage2
    epochs_finetune: int = RUN.epochs_finetune
    batch_size: int = RUN.batch_size  # stage 1 and fine-tuning
    lr: float = RUN.lr
    batch_size_stage2: int = RUN.batch_size_stage2  # the head on cached features: larger batches, fewer steps
    lr_stage2: float | None = None  # None: lr scaled to stage 2's batch (recipe.scaled_lr)
    stage1_lr_scale: float = RUN.stage1_lr_scale  # fine-tuning: stage 1's learning rate is lr * this
    augment: bool = RUN.augment  # digit-safe augmentation while fine-tuning
    labels_per_class: int | None = None  # None: every label
    val_size: float = 5000  # images (or a fraction) held out of the training data (data.holdout_size)
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 autocast where fast and a step is big enough), fp32 or bf16
    seed: int = 0
    progress: bool = True


def run_pipeline(config: PipelineConfig, splits=None, model=None, on_epoch=None, log=print, stop=None) -> dict:
    """Train and evaluate the three stages; returns the report (what ``--json`` writes).

    ``on_epoch(stage, record)`` is called after every epoch of every stage. An interrupted stage
    (Ctrl-C) ends the run there: the report keeps the stages so far, with ``"interrupted": true``,
    where it stopped (``"interrupted_at"``), and the interrupted model's test accuracy. ``log`` prints
    the line that says which data was loaded. ``stop`` (a ``threading.Event``), once set, stops the
    run after the current step, as Ctrl-C does.
    """
    started = time.perf_counter()
    seed_everything(config.seed)
    device = select_device(config.device)
    if splits is None:
        splits = load_mnist(config.data_dir, source=config.data, dataset=config.dataset, verbose=False)
        log(f"Data: {splits.describe()}")
    train, val = validation_split(splits.train, holdout_size(len(splits.train), config.val_size), seed=config.seed)
    labelled = train
    if config.labels_per_class is not None:
        check_budget(config.labels_per_class, train, splits.train)
        labelled = labels_per_class(train, config.labels_per_class, seed=config.seed)
    model = model or TwoStageNetwork(in_features=splits.train.num_features, num_classes=splits.train.num_classes)
    report = {
        "data_source": splits.source,
        "data_location": splits.location,
        "dataset": splits.name,
        "n_train": len(train),
        "n_labelled": len(labelled),
        "n_val": len(val),
        "n_test": len(splits.test),
        "device": str(device),
        "config": {**asdict(config), "lr_stage2": stage2_lr(config)},
        "stages": {},
    }
    loop = LoopSettings(device=device, progress=config.progress, precision=config.precision, stop=stop)
    for name, train_stage in stages(config, model, (train, labelled, val), loop, on_epoch).items():
        t0 = time.perf_counter()
        history = train_stage()
        report["stages"][name] = _stage_report(model, None if name == "stage1" else splits.test, history, t0)
        if history.interrupted:  # Ctrl-C stops the whole run: the stages after this one never start
            report["interrupted_at"] = {"stage": name, **history.stopped_at}
            break
    report["interrupted"] = "interrupted_at" in report
    report["final_test_accuracy"] = list(report["stages"].values())[-1]["test_accuracy"]
    report["total_seconds"] = time.perf_counter() - started
    report["torch_threads"] = torch.get_num_threads()
    return report


def stage2_lr(config) -> float:
    """Stage 2's learning rate: as given, or ``lr`` scaled to stage 2's batch (1.2e-2 for 3e-3)."""
    if config.lr_stage2 is not None:
        return config.lr_stage2
    return scaled_lr(config.lr, config.batch_size_stage2, config.batch_size)


def stages(config, model, data, loop, on_epoch) -> dict:
    """The three stages in order, each a function that trains it and returns its History. ``data``:
    (the training part, its labelled images, the validation images)."""
    train, labelled, val = data

    def settings(stage, epochs, batch_size, **more):
        hook = None if on_epoch is None else (lambda record: on_epoch(stage, record))
        return replace(loop, epochs=epochs, batch_size=batch_size, callback=hook, **more)

    def stage1():  # on every training image, labels unused
        s = settings("stage1", config.epochs_stage1, config.batch_size)
        return train_stage1(model, train, objective=config.objective, lr=config.lr, seed=config.seed, settings=s)

    def stage2():  # the head on frozen, cached features
        s = settings("stage2", config.epochs_stage2, config.batch_size_stage2)
        return train_stage2(model, labelled, lr=stage2_lr(config), val=val, seed=config.seed, settings=s)

    def tune():  # end to end, early stopping on the validation loss
        stopping = EarlyStopping(patience=max(3, config.epochs_finetune // 3))
        s = settings(
            "finetune", config.epochs_finetune, config.batch_size, scheduler=RUN.scheduler, early_stopping=stopping
        )
        return finetune(
            model,
            labelled,
            lr=config.lr,
            stage1_lr_scale=config.stage1_lr_scale,
            val=val,
            augment=config.augment,
            seed=config.seed,
            settings=s,
        )

    return {"stage1": stage1, "stage2": stage2, "finetune": tune}


def _stage_report(model, test, history, t0) -> dict:
    """What the report keeps of one stage; a stage without a test set (stage 1) has no accuracy."""
    report = {"test_accuracy": None, "train_loss": history.last.get("train_loss")}
    if test is not None:
        ev = evaluate_model(model, test)
        report.update(test_accuracy=ev.accuracy, test_loss=ev.loss, balanced_accuracy=ev.balanced_accuracy)
    report.update(
        epochs_run=len(history),
        stopped_early=history.stopped_early,
        precision=history.precision,
        seconds=time.perf_counter() - t0,
        history=history.epochs,
    )
    return report


def format_table(report: dict) -> str:
    percent = lambda a: "-" if a is None else f"{100 * a:.2f}%"  # noqa: E731
    stopped = report.get("interrupted_at") or {}
    lines = [f"{'stage':<10} {'test accuracy':>14} {'seconds':>9}  precision on {report['device']}"]
    for name, s in report["stages"].items():
        mark = (
            f"  interrupted in epoch {stopped['epoch']}, step {stopped['step']}" if name == stopped.get("stage") else ""
        )
        lines.append(
            f"{name:<10} {percent(s['test_accuracy']):>14} {s['seconds']:>9.1f}  {s.get('precision', '')}{mark}"
        )
    lines.append(f"{'total':<10} {percent(report['final_test_accuracy']):>14} {report['total_seconds']:>9.1f}")
    return "\n".join(lines)
