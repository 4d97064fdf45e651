"""The training loop every stage runs: ``fit`` calls ``train_epoch`` once an epoch, then validates.

Stage 1, stage 2 and fine-tuning differ only in what they hand this loop: which parameters the
optimizer holds and what ``loss_fn(x, y)`` computes (``training.py``).
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import torch
from tqdm.auto import tqdm

from .batches import Batches
from .checks import number, whole
from .evaluation import loss_and_accuracy
from .guard import DivergenceGuard
from .runtime import precision_for, release_memory
from .step import reads_every_step, training_step
from .tensors import as_tensors


@dataclass
class History:
    """What happened, epoch by epoch: ``history["val_loss"]`` is a list with one value per epoch."""

    stage: str
    epochs: list = field(default_factory=list)
    interrupted: bool = False
    stopped_early: bool = False
    best_epoch: int | None = None
    seconds: float = 0.0
    objective: object = None  # stage 1's objective module (decoder / projection head)
    precision: str = "fp32"  # what the forward pass ran in: "fp32" or "bf16" (autocast)
    stopped_at: dict | None = None  # where an interruption stopped training: {"epoch", "step"}
    settings: dict = field(default_factory=dict)  # what stage 1 was asked to train with (course.save_stage1)
    graphed: bool = False  # steps were replayed from CUDA graphs (step.py)

    def __getitem__(self, key):
        return [e.get(key) for e in self.epochs]

    def __len__(self):
        return len(self.epochs)

    @property
    def last(self) -> dict:
        return self.epochs[-1] if self.epochs else {}

    def __repr__(self):
        flags = "".join(
            [
                ", bf16" * (self.precision == "bf16"),
                ", interrupted" * self.interrupted,
                ", stopped early" * self.stopped_early,
            ]
        )
        last = ", ".join(f"{k}={v:.4g}" for k, v in self.last.items() if isinstance(v, float))
        return f"History({self.stage}: {len(self)} epochs{flags}; last: {last})"


class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs
    (notebook 05), and keep a copy of the best weights so they can be put back."""

    def __init__(self, patience=5, min_delta=0.0, restore_best=True):
        self.patience = whole("patience", patience, low=1)
        self.min_delta = number("min_delta", min_delta, low=0.0)
        self.restore_best = restore_best
        self.reset()

    def reset(self) -> None:
        """Forget every epoch seen: each training run starts here (``fit`` calls it), so one object
        used for two runs never carries the first run's best loss or weights into the second."""
        self.counter = 0
        self.best_loss = float("inf")
        self.best_epoch = None
        self.best_state = None

    def __call__(self, val_loss, model=None, epoch=None) -> bool:
        """Record one epoch's validation loss; True means stop."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss = val_loss
            self.counter = 0
            self.best_epoch = epoch
            if model is not None and self.restore_best:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.counter += 1
        return self.counter >= self.patience

    def restore(self, model) -> bool:
        if self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True


@dataclass
class LoopSettings:
    """How the training loop runs, whatever the stage: held once, and given to any stage as
    ``settings=LoopSettings(...)``, or field by field as keywords (``epochs=3, progress=False``)."""

    epochs: int | None = None  # passes over the data; None: the stage's default (recipe.py)
    batch_size: int | None = None  # None: the stage's default (recipe.py)
    device: object = "auto"  # "auto" (CUDA, then MPS, then the CPU), "cpu", "cuda", "cuda:1", "mps"
    precision: str = "auto"  # "auto", "fp32" or "bf16" (autocast of the forward pass): runtime.precision_for
    progress: bool = True  # a progress bar per stage
    scheduler: object = None  # "step" (StepLR, each epoch), "cosine" (each step), an LR scheduler, or None
    clip_grad_norm: float | None = None  # clip the gradient's total norm to this (the norm before is recorded)
    early_stopping: EarlyStopping | None = None  # needs val=; puts the best epoch's weights back
    writer: object = None  # a TensorBoard SummaryWriter or a log folder
    callback: Callable | None = None  # callback(record) after every epoch; returning True stops training
    stop: threading.Event | None = None  # once set (a signal handler, another thread): stop after this step
    read_every_step: bool | None = None  # the loss read on the host each step; None: on a CPU (free), not on a GPU
    cuda_graph: bool = True  # on a CUDA GPU, replay each step from a CUDA graph where it can (step.py)


LOOP_FIELDS = tuple(f.name for f in fields(LoopSettings))


def loop_settings(stage, settings, options, epochs, batch_size) -> LoopSettings:
    """The settings a stage runs with: ``settings`` (or the defaults) with the keywords ``options``
    given to the stage on top, and the stage's own ``epochs`` and ``batch_size`` where still None."""
    if settings is not None and not isinstance(settings, LoopSettings):
        raise TypeError(f"{stage}(settings=...) takes a LoopSettings, not {type(settings).__name__}")
    unknown = sorted(set(options) - set(LOOP_FIELDS))
    if unknown:
        raise TypeError(
            f"{stage}() got an unexpected keyword argument {unknown[0]!r}; besides its own, a stage takes "
            f"the loop's settings: {', '.join(LOOP_FIELDS)}"
        )
    s = replace(settings or LoopSettings(), **options)
    return replace(
        s,
        epochs=epochs if s.epochs is None else s.epochs,
        batch_size=batch_size if s.batch_size is None else s.batch_size,
    )


def make_optimizer(param_groups, lr, weight_decay=0.0):
    """Adam with a fused update (one kernel for all parameters) on CPU and CUDA, else foreach."""
    groups = [dict(g, params=list(g["params"])) if isinstance(g, dict) else g for g in param_groups]
    check_learning_rates([{"lr": lr}, *[g for g in groups if isinstance(g, dict)]])
    device = (groups[0]["params"][0] if isinstance(groups[0], dict) else groups[0]).device
    fast = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, **fast)


def make_scheduler(name, optimizer, epochs, steps_per_epoch, step_size=None, gamma=0.1):
    """``"step"``: StepLR stepped each epoch (notebook 05). ``"cosine"``: cosine decay to 0 over every
    step of the run. A ready LR scheduler is stepped each epoch. Returns (scheduler, per_step)."""
    if name is None or name == "none":
        return None, False
    if name == "step":
        step_size = step_size or max(1, epochs // 3)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma), False
    if name == "cosine":
        total = max(1, epochs * steps_per_epoch)
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), True
    if isinstance(name, torch.optim.lr_scheduler.LRScheduler):
        return name, False
    raise ValueError(f"unknown scheduler {name!r}; choose 'step', 'cosine', None or pass an LR scheduler")


def train_epoch(step, batches, guard, settings, optimizer, *, step_scheduler=None, feed=None):
    """One pass over ``batches`` with ``step(x, y)`` (``make_step``, or its CUDA graph); returns the
    epoch's record (mean training loss, learning rates, gradient norms). Where the loss is not read
    every step (``reads_every_step``), the guard sees every step's loss after the epoch. ``feed``: an
    iterator of each step's further inputs, a tuple handed to the step beside ``y``, as ``(y, *more)``."""
    device = guard.params[0].device
    clip = settings.clip_grad_norm
    losses = torch.empty(len(batches), device=device)  # each step's, kept where they are made
    norms = torch.empty(len(batches), device=device) if clip is not None else None
    sizes = []
    for i, (x, y) in enumerate(batches):
        guard.step = i
        loss, norm = step(x, y if feed is None else (y, *next(feed)))
        losses[i] = loss
        if clip is not None:
            norms[i] = norm
        if step_scheduler is not None:
            step_scheduler.step()
        sizes.append(len(x))
        if settings.stop is not None and settings.stop.is_set():  # e.g. the command line's first Ctrl-C
            raise KeyboardInterrupt
    # the epoch's losses and gradient norms, read once
    values = losses[: len(sizes)].tolist()
    grad_norms = norms[: len(sizes)].tolist() if clip is not None else None
    if not reads_every_step(settings, device):
        guard.check_steps(values, grad_norms)
    lrs = [g["lr"] for g in optimizer.param_groups]  # used this epoch
    record = {"train_loss": sum(v * n for v, n in zip(values, sizes)) / max(sum(sizes), 1), "lr": lrs[-1], "lrs": lrs}
    if grad_norms:
        record["grad_norm_mean"] = sum(grad_norms) / len(grad_norms)
        record["grad_norm_max"] = max(grad_norms)
    return record


def fit(
    stage,
    model,
    optimizer,
    batches,
    loss_fn,
    settings,
    *,
    validate=None,
    train_modules=None,
    objective=None,
    augment=None,
    replayable=None,
    feed=None,
) -> History:
    """Train for ``settings.epochs`` passes over ``batches`` with ``loss_fn(x, y) -> loss``.

    Stops with ``TrainingDiverged`` (history kept, weights put back) when a loss, gradient or weight
    stops being finite; on Ctrl-C (or ``settings.stop`` set) it finishes cleanly and returns the
    history with ``interrupted``. ``validate()`` returns the epoch's validation metrics;
    ``train_modules`` are put in train mode each epoch (default: the model); ``augment(x)`` changes
    each batch before the forward pass. ``replayable``: None when a step may keep state in
    Python from one step to the next; else the step keeps none, so on a GPU it may be replayed from a
    CUDA graph (step.py), and ``replayable`` lists the CUDA generators it draws from besides the
    default one (the graph registers them).
    ``feed``: an iterator whose next item (a tuple) each step gets beside its labels: ``loss_fn(x, (y,
    *item))``; what a step needs from the host (another batch, a weight that ramps) comes this way.
    """
    s = settings
    epochs = check_settings(s, validate, optimizer)
    history = History(stage, objective=objective)
    # set up: schedule, precision (decided once, here), logging, progress bar, the divergence guard
    scheduler, per_step = make_scheduler(s.scheduler, optimizer, epochs, len(batches))
    precision = step_precision(optimizer, batches, s.precision)
    history.precision = precision
    guard = DivergenceGuard(stage, history, trained_modules(model, train_modules), trained_params(optimizer))
    writer = open_writer(s.writer)
    bar = tqdm(range(epochs), desc=stage, disable=not s.progress, leave=True)
    step = training_step(optimizer, loss_fn, guard, s, augment, precision, replayable)
    run = dict(step_scheduler=scheduler if per_step else None, feed=feed)
    start = time.perf_counter()
    try:
        for epoch in bar:
            record = run_epoch(epoch, guard, optimizer, batches, step, s, run, train_modules or [model])
            history.graphed = getattr(step, "replaying", False)
            if scheduler is not None and not per_step:
                scheduler.step()
            # validate, log, decide whether to stop
            if validate is not None:
                record.update(validate())
            record["seconds"] = time.perf_counter() - record.pop("started")
            history.epochs.append(record)
            log(writer, stage, record)
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k in ("train_loss", "val_loss", "val_acc")})
            if should_stop(s, record, model):
                history.stopped_early = True
                break
    except KeyboardInterrupt:
        interrupted(history, guard)
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
        if writer is not None:
            writer.flush()
        release_memory()
    if s.early_stopping is not None and s.early_stopping.restore_best and s.early_stopping.restore(model):
        history.best_epoch = s.early_stopping.best_epoch
    return history


def run_epoch(epoch, guard, optimizer, batches, step, settings, run, modules) -> dict:
    """One epoch's training and its checks; the record so far (its start time in ``started``)."""
    started = time.perf_counter()
    guard.start_epoch(epoch)
    for m in modules:
        m.train()
    record = {"epoch": epoch + 1}
    record.update(train_epoch(step, batches, guard, settings, optimizer, **run))
    guard.check_weights()
    guard.check_loss_growth(record["train_loss"])
    record["started"] = started
    return record


def interrupted(history, guard) -> None:
    """Mark the history interrupted where the guard last saw training, and say what was kept."""
    history.interrupted = True
    history.stopped_at = {"epoch": guard.epoch + 1, "step": guard.step}
    warnings.warn(
        f"{history.stage}: interrupted in epoch {guard.epoch + 1}, step {guard.step}; the model keeps its "
        f"latest weights and the history its {len(history)} completed epochs",
        stacklevel=3,
    )


def check_settings(s, validate, optimizer) -> int:
    """The loop's settings, checked before any step; returns ``epochs`` as an int. An early stopping
    object is reset: each run is its own, even when the object served an earlier one."""
    epochs = whole("epochs", s.epochs, low=0)
    if s.clip_grad_norm is not None:
        number("clip_grad_norm", s.clip_grad_norm, above=0.0)
    if s.early_stopping is not None and validate is None:
        raise ValueError(
            "early_stopping watches the validation loss: pass val= (a validation set, e.g. from "
            "ts.validation_split) or drop early_stopping"
        )
    check_learning_rates(optimizer.param_groups)
    if s.early_stopping is not None:
        s.early_stopping.reset()
    return epochs


def trained_modules(model, train_modules):
    """What an epoch can change, so what divergence puts back: the modules in training (stage 2
    alone, stage 1 with its decoder or projection head), or the whole model. A frozen stage 1 (the
    transfer network's 11 million weights) is not copied every epoch."""
    return list(train_modules or [model])


def check_learning_rates(groups):
    """Every group's learning rate is a finite number >= 0 (refused before any step, not after a NaN)."""
    for group in groups:
        lr = group.get("lr")
        if lr is not None and not (math.isfinite(lr) and lr >= 0):
            raise ValueError(
                f"the learning rate {lr} must be a finite number >= 0 (typical: 1e-4 to 1e-2); "
                "check lr and stage1_lr_scale"
            )


def trained_params(optimizer) -> list:
    """The weights this optimizer moves (frozen ones it may hold are left out)."""
    return [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]


def step_precision(optimizer, batches, precision) -> str:
    """What the forward pass runs in: ``runtime.precision_for`` the weights the optimizer trains, at
    the batch size (a batch larger than the data counts as the data's size)."""
    params = trained_params(optimizer)
    batch = min(batches.batch_size, len(batches.x)) if isinstance(batches, Batches) else None
    return precision_for(params, batch, params[0].device, precision)


def should_stop(settings, record, model) -> bool:
    """The callback asked to stop (returned True), or early stopping ran out of patience."""
    if settings.callback is not None and settings.callback(record) is True:
        return True
    if settings.early_stopping is not None and "val_loss" in record:
        return settings.early_stopping(record["val_loss"], model, record["epoch"])
    return False


def validator(model, val, device):
    """``validate()`` for a classifier: mean cross-entropy and accuracy on ``val``; None without one."""
    if val is None:
        return None
    xv, yv = as_tensors(val, device)
    return lambda: loss_and_accuracy(model, xv, yv)


def open_writer(writer):
    """A TensorBoard SummaryWriter from a log folder; a ready writer (or None) as it is."""
    if writer is None or hasattr(writer, "add_scalar"):
        return writer
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(os.fspath(writer))


def log(writer, stage, record):
    if writer is None:
        return
    for key, value in record.items():
        if key != "epoch" and isinstance(value, (int, float)):
            writer.add_scalar(f"{stage}/{key}", value, record["epoch"])
