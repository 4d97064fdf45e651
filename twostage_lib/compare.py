"""The label-efficiency study: when does two-stage training beat training from scratch?

For each labels-per-class budget and seed, on the full test set: supervised from scratch (same
network), plain (as in the papers' baselines) and with the fine-tuning augmentation; and for each
stage-1 objective a linear probe, the 128-64-10 head, the head then fine-tuning (LP-FT), and the
head then self-training on the unlabelled images too (``selftrain``, FixMatch-style; by default for
the contrastive objective only: it is the slowest row). Stage 1 is trained once per objective and
seed on every training image, without labels, and reused across budgets.
"""

from __future__ import annotations

import copy
import math
import statistics
import time

import torch.nn as nn

from .data import check_budget, holdout_size, labels_per_class, most_labels_per_class, validation_split
from .evaluation import evaluate_model
from .models import TwoStageNetwork
from .runtime import seed_everything
from .training import DEFAULT_BATCH_SIZE, finetune, selftrain, train_stage1, train_stage2, train_supervised

BUDGETS = (1, 10, 100, 1000, None)  # None: every label
HEAD_STEPS, TUNE_STEPS, MIN_EPOCHS = 300, 600, 10
# contrastive learning needs many passes over strongly augmented views; reconstruction settles fast
STAGE1_EPOCHS = {"autoencoder": 3, "denoising": 3, "contrastive": 30}
STAGE1_LR_SCALE = 1.0  # fine-tuning as `run` does it: stage 1 at the full learning rate
SELFTRAIN = {"epochs": 30, "threshold": 0.9, "unlabelled_weight": 1.0}  # docs/decisions.md
SUPERVISED = ("supervised", "supervised+augment")
TWO_STAGE = ("probe", "head", "finetune", "selftrain")


def all_methods(objectives) -> list:
    """Every method the study can run for these objectives, in table order."""
    return [*SUPERVISED, *(f"{o}+{kind}" for o in objectives for kind in TWO_STAGE)]


def default_methods(objectives) -> list:
    """What the study runs when no ``methods`` are named: all but self-training for the
    reconstruction objectives (their features are weaker and the row is the slowest)."""
    return [m for m in all_methods(objectives) if not m.endswith("+selftrain") or m == "contrastive+selftrain"]


def budget_name(n) -> str:
    return "all" if n is None else str(n)


def epochs_for(n_samples, steps, batch_size):
    """Enough epochs for about ``steps`` updates, at least MIN_EPOCHS passes over the data."""
    per_epoch = math.ceil(n_samples / batch_size)
    return max(MIN_EPOCHS, math.ceil(steps / per_epoch))


def run_study(
    splits,
    budgets=None,
    seeds=(0, 1, 2),
    objectives=("autoencoder", "denoising", "contrastive"),
    epochs_stage1=None,
    lr=3e-3,
    device="cpu",
    precision="auto",
    log=print,
    methods=None,
) -> dict:
    """Returns {"methods": {method: {budget: {"mean", "std", "runs", "seconds"}}}, "budgets", ...}.
    Ctrl-C stops it after the current step; the runs completed so far are returned, marked
    ``"interrupted": true``. ``budgets`` None: ``BUDGETS``, less those the data cannot give (said in
    the log); a budget named by the caller that the data cannot give is an error."""
    repeated = [s for i, s in enumerate(seeds) if s in seeds[:i]]
    if repeated:
        raise ValueError(f"seed {repeated[0]} is given twice: each seed is one independent run, and a repeat would "
                         "count one run twice in the mean and standard deviation; use e.g. --seeds 0 1 2")  # fmt: skip
    methods = default_methods(objectives) if methods is None else list(methods)
    known = all_methods(objectives)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r} for objectives {list(objectives)}; choose from "
                         f"{', '.join(known)}")  # fmt: skip
    objectives = [o for o in objectives if any(m.startswith(f"{o}+") for m in methods)]  # a stage 1 only if used
    epochs_stage1 = {**STAGE1_EPOCHS, **(epochs_stage1 or {})}
    holdout = holdout_size(len(splits.train))
    trains = [validation_split(splits.train, holdout, seed=seed)[0] for seed in seeds]  # as `run` does
    budgets = usable_budgets(splits.train, trains, budgets, log)
    study = Study(splits.test, lr, dict(device=device, progress=False, precision=precision), log, methods)
    started = time.perf_counter()
    try:
        for i, (seed, train) in enumerate(zip(seeds, trains)):
            labelled = {n: train if n is None else labels_per_class(train, n, seed=seed) for n in budgets}
            log(progress_line(i, seeds, time.perf_counter() - started))
            for n, data in labelled.items():
                study.supervised(n, data, train.num_features, seed)
            for objective in objectives:
                pretrained, seconds = study.stage1(train, objective, epochs_stage1.get(objective, 3), seed)
                for n, data in labelled.items():
                    study.two_stage(pretrained, objective, n, data, seconds, seed, unlabelled=train)
    except KeyboardInterrupt:
        study.interrupted = True
    config = {"stage1_epochs": {o: epochs_stage1.get(o, 3) for o in objectives}, "head_steps": HEAD_STEPS,
              "tune_steps": TUNE_STEPS, "min_epochs": MIN_EPOCHS, "lr": lr, "stage1_lr_scale": STAGE1_LR_SCALE,
              "selftrain": SELFTRAIN, "precision": precision, "precisions_used": study.used}  # fmt: skip
    return {"methods": study.summary(), "budgets": [budget_name(n) for n in budgets], "seeds": list(seeds),
            "objectives": list(objectives), "data_source": splits.source, "n_test": len(splits.test),
            "config": config, "interrupted": study.interrupted}  # fmt: skip


def usable_budgets(images, trains, budgets, log) -> list:
    """The budgets to run: as given, each checked against what every seed's training part
    (``trains``, carved out of ``images``) can give (``check_budget`` names the flag and the largest
    value allowed); None: ``BUDGETS`` less those the data cannot give, each left out with a line in
    the log."""
    if budgets is not None:
        for n in budgets:
            for train in trains:
                check_budget(n, train, images)
        return list(budgets)
    most = min(most_labels_per_class(train) for train in trains)
    kept = [n for n in BUDGETS if n is None or n <= most]
    for n in BUDGETS:
        if n not in kept:
            log(
                f"labels per class {n} left out: after the validation holdout this data has at most {most} per "
                "class (choose budgets with --labels-per-class)"
            )
    return kept


def progress_line(i, seeds, seconds) -> str:
    """Where a long study is and how long it has to go: seed 1 (2 of 3; 1 done in 7.7 min, about 15 min left)."""
    line = f"seed {seeds[i]} ({i + 1} of {len(seeds)}"
    if i:
        left = seconds / i * (len(seeds) - i)
        line += f"; {i} done in {seconds / 60:.1f} min, about {left / 60:.0f} min left"
    return line + ")"


class Study:
    """The study's runs: each trains one method at one label budget and records its test accuracy."""

    def __init__(self, test, lr, common, log, methods):
        self.test, self.lr, self.common, self.log, self.methods = test, lr, common, log, set(methods)
        self.runs = {}  # (method, budget) -> list of (accuracy, seconds)
        self.used = {}  # what each kind of training ran in, per label budget, from the histories
        self.interrupted = False

    @staticmethod
    def done(history):
        """Every run's History passes here: an interrupted one is no result, so the study stops."""
        if history.interrupted:
            raise KeyboardInterrupt
        return history

    def record(self, method, n, model, seconds):
        accuracy = evaluate_model(model, self.test).accuracy
        self.runs.setdefault((method, budget_name(n)), []).append((accuracy, seconds))
        self.log(f"  {method:<24} labels/class {budget_name(n):>4}: {accuracy:.2%} ({seconds:.1f} s)")

    def supervised(self, n, data, num_features, seed):
        """Supervised from scratch, plain and with the fine-tuning augmentation."""
        bs = min(DEFAULT_BATCH_SIZE, len(data))
        for method, augment in (("supervised", False), ("supervised+augment", True)):
            if method not in self.methods:
                continue
            start = time.perf_counter()
            seed_everything(seed)
            net = TwoStageNetwork(in_features=num_features)
            epochs = epochs_for(len(data), TUNE_STEPS, bs)
            h = self.done(train_supervised(net, data, epochs=epochs, lr=self.lr, batch_size=bs, scheduler="cosine",
                                           augment=augment, seed=seed, **self.common))  # fmt: skip
            self.used.setdefault("supervised", {})[budget_name(n)] = h.precision
            self.record(method, n, net, time.perf_counter() - start)

    def stage1(self, train, objective, epochs, seed):
        """Stage 1 on every training image, without labels; returns it and the seconds it took."""
        start = time.perf_counter()
        seed_everything(seed)
        pretrained = TwoStageNetwork(in_features=train.num_features)
        h = self.done(train_stage1(pretrained, train, objective=objective, epochs=epochs, lr=self.lr,
                                   scheduler="cosine", seed=seed, **self.common))  # fmt: skip
        self.used["stage1"] = h.precision
        return pretrained, time.perf_counter() - start

    def two_stage(self, pretrained, objective, n, data, stage1_seconds, seed, unlabelled):
        """On copies of the pretrained stage 1: a linear probe; the head; from the head, fine-tuning and
        self-training (each only when asked for)."""
        wanted = {kind for kind in TWO_STAGE if f"{objective}+{kind}" in self.methods}
        bs = min(DEFAULT_BATCH_SIZE, len(data))
        head = dict(epochs=epochs_for(len(data), HEAD_STEPS, bs), lr=self.lr, batch_size=bs, seed=seed, **self.common)
        if "probe" in wanted:
            start = time.perf_counter()
            probe = copy.deepcopy(pretrained)
            probe.stage2 = nn.Linear(probe.feature_dim, probe.config["num_classes"])
            self.done(train_stage2(probe, data, **head))
            self.record(f"{objective}+probe", n, probe, stage1_seconds + time.perf_counter() - start)
        if not wanted - {"probe"}:
            return
        start = time.perf_counter()
        model = copy.deepcopy(pretrained)
        h = self.done(train_stage2(model, data, **head))
        self.used.setdefault("head", {})[budget_name(n)] = h.precision
        head_seconds = stage1_seconds + time.perf_counter() - start
        if "head" in wanted:
            self.record(f"{objective}+head", n, model, head_seconds)
        if "finetune" in wanted:
            self.finetune(copy.deepcopy(model), objective, n, data, head_seconds, seed)
        if "selftrain" in wanted:
            self.selftrain(copy.deepcopy(model), objective, n, data, unlabelled, head_seconds, seed)

    def finetune(self, model, objective, n, data, head_seconds, seed):
        """The head then the whole network, on the labelled images, with augmentation (LP-FT)."""
        start, bs = time.perf_counter(), min(DEFAULT_BATCH_SIZE, len(data))
        h = self.done(finetune(model, data, epochs=epochs_for(len(data), TUNE_STEPS, bs), lr=self.lr, batch_size=bs,
                               stage1_lr_scale=STAGE1_LR_SCALE, scheduler="cosine", augment=True, seed=seed,
                               **self.common))  # fmt: skip
        self.used.setdefault("finetune", {})[budget_name(n)] = h.precision
        self.record(f"{objective}+finetune", n, model, head_seconds + time.perf_counter() - start)

    def selftrain(self, model, objective, n, data, unlabelled, head_seconds, seed):
        """The head then the whole network on the labelled images and, by pseudo-labels, the unlabelled."""
        start = time.perf_counter()
        h = self.done(selftrain(model, data, unlabelled, lr=self.lr, stage1_lr_scale=STAGE1_LR_SCALE, seed=seed,
                                scheduler="cosine", **SELFTRAIN, **self.common))  # fmt: skip
        self.used.setdefault("selftrain", {})[budget_name(n)] = h.precision
        self.record(f"{objective}+selftrain", n, model, head_seconds + time.perf_counter() - start)

    def summary(self) -> dict:
        """{method: {budget: mean, std, runs, seconds}} over the seeds."""
        methods = {}
        for (method, budget), values in self.runs.items():
            accs = [a for a, _ in values]
            methods.setdefault(method, {})[budget] = {
                "mean": statistics.fmean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "runs": accs,
                "seconds": statistics.fmean(s for _, s in values),
            }
        return methods


def format_study(study) -> str:
    budgets = study["budgets"]
    lines = [f"{'method':<24}" + "".join(f"{b + '/class':>16}" for b in budgets)]
    for method, row in study["methods"].items():
        cells = [f"{100 * row[b]['mean']:6.2f} ± {100 * row[b]['std']:4.2f}" if b in row else "-" for b in budgets]
        lines.append(f"{method:<24}" + "".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)
