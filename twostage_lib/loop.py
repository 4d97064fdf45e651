"""The training loop every stage runs: ``fit`` calls ``train_epoch`` once an epoch, then validates.

Stage 1, stage 2 and fine-tuning differ only in what they hand this loop: which parameters the
optimizer holds and what ``loss_fn(x, y)`` computes (``training.py``).
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .data import Batches
from .evaluation import loss_and_accuracy
from .runtime import as_tensors, precision_for


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
    (slide 9), and keep a copy of the best weights so they can be put back."""

    def __init__(self, patience=5, min_delta=0.0, restore_best=True):
        self.patience, self.min_delta, self.restore_best = patience, min_delta, restore_best
        self.counter, self.best_loss, self.best_epoch, self.best_state = 0, float("inf"), None, None

    def __call__(self, val_loss, model=None, epoch=None) -> bool:
        """Record one epoch's validation loss; True means stop."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.counter, self.best_epoch = val_loss, 0, epoch
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


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. ``.history`` holds the epochs completed before it."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


@dataclass
class LoopSettings:
    """How the loop trains, whatever the stage. Every stage function takes these as keywords."""

    scheduler: object = None  # "step" (StepLR, each epoch), "cosine" (each step), an LR scheduler, or None
    clip_grad_norm: float | None = None  # clip the gradient's total norm to this (the norm before is recorded)
    early_stopping: EarlyStopping | None = None  # needs val=; puts the best epoch's weights back
    writer: object = None  # a TensorBoard SummaryWriter or a log folder
    progress: bool = True  # a progress bar per stage
    callback: Callable | None = None  # callback(record) after every epoch; returning True stops training
    precision: str = "auto"  # "auto", "fp32" or "bf16" (autocast of the forward pass): runtime.precision_for


def make_optimizer(param_groups, lr, weight_decay=0.0):
    """Adam with a fused update (one kernel for all parameters) on CPU and CUDA, else foreach."""
    groups = [dict(g, params=list(g["params"])) if isinstance(g, dict) else g for g in param_groups]
    device = (groups[0]["params"][0] if isinstance(groups[0], dict) else groups[0]).device
    fast = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, **fast)


def make_scheduler(name, optimizer, epochs, steps_per_epoch, step_size=None, gamma=0.1):
    """``"step"``: StepLR stepped each epoch (slide 6). ``"cosine"``: cosine decay to 0 over every
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


class DivergenceGuard:
    """Stops on a NaN or infinite loss before it reaches the weights; warns once when a finite
    loss grows to 10x the first step's (at least 10: a memorized head starts near 0)."""

    def __init__(self, stage, history):
        self.stage, self.history = stage, history
        self.first, self.warned = None, False
        self.epoch = self.step = 0  # where training is: for the messages

    def check_step(self, value, step):
        self.step = step
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"{self.stage}: the loss became {value} in epoch {self.epoch + 1} at step {step}. The learning "
                "rate is probably too high: try one 3-10x lower (or gradient clipping). The "
                f"{len(self.history)} completed epochs are in this error's .history",
                self.history,
            )
        if self.first is None:
            self.first = value

    def check_epoch(self, train_loss):
        if self.warned or train_loss <= 10 * max(abs(self.first), 1.0):
            return
        self.warned = True
        warnings.warn(
            f"{self.stage}: the training loss rose from {self.first:.4g} (first step) to {train_loss:.4g} "
            f"(epoch {self.epoch + 1}): training is diverging. The learning rate is probably too high: try one "
            "3-10x lower (or gradient clipping)",
            stacklevel=2,
        )


def train_epoch(optimizer, batches, loss_fn, check, *, clip_grad_norm=None, step_scheduler=None, mixed=False):
    """One pass over ``batches``; returns its record (mean training loss, learning rates, gradient norms).
    ``check(loss, step)`` sees each step's loss before the weights move."""
    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    device = params[0].device
    total, seen = 0.0, 0
    norm_sum, norm_max = torch.zeros((), device=device), torch.zeros((), device=device)
    for step, (x, y) in enumerate(batches):
        # forward, in bfloat16 where the precision policy chose it
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
            loss = loss_fn(x, y)
        # read the loss on the host every step: a NaN never moves a weight (docs/decisions.md)
        value = loss.item()
        check(value, step)
        # backward, clip, update
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)  # the norm before clipping
            norm_sum += norm
            norm_max = torch.maximum(norm_max, norm)
        optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        total += value * len(x)
        seen += len(x)
    lrs = [g["lr"] for g in optimizer.param_groups]  # used this epoch
    record = {"train_loss": total / max(seen, 1), "lr": lrs[-1], "lrs": lrs}
    if clip_grad_norm is not None:
        record["grad_norm_mean"] = norm_sum.item() / max(len(batches), 1)
        record["grad_norm_max"] = norm_max.item()
    return record


def fit(
    stage,
    model,
    optimizer,
    batches,
    loss_fn,
    epochs,
    settings=None,
    *,
    validate=None,
    train_modules=None,
    objective=None,
) -> History:
    """Train for ``epochs`` passes over ``batches`` with ``loss_fn(x, y) -> loss``.

    Stops with ``TrainingDiverged`` (history kept) on a NaN or infinite loss; on Ctrl-C it finishes
    cleanly and returns the history with ``interrupted=True``. ``validate()`` returns the epoch's
    validation metrics; ``train_modules`` are put in train mode each epoch (default: the model).
    """
    s = settings or LoopSettings()
    if s.early_stopping is not None and validate is None:
        raise ValueError(
            "early_stopping watches the validation loss: pass val= (a validation set, e.g. from "
            "ts.validation_split) or drop early_stopping"
        )
    history = History(stage, objective=objective)
    # set up: schedule, precision, logging, progress bar
    scheduler, per_step = make_scheduler(s.scheduler, optimizer, epochs, len(batches))
    history.precision = step_precision(optimizer, batches, s.precision)
    writer, guard = open_writer(s.writer), DivergenceGuard(stage, history)
    bar = tqdm(range(epochs), desc=stage, disable=not s.progress, leave=True)
    start = time.perf_counter()
    try:
        for epoch in bar:
            t0, guard.epoch = time.perf_counter(), epoch
            for m in train_modules or [model]:
                m.train()
            record = {"epoch": epoch + 1}
            record.update(train_epoch(optimizer, batches, loss_fn, guard.check_step, clip_grad_norm=s.clip_grad_norm,
                                      step_scheduler=scheduler if per_step else None,
                                      mixed=history.precision == "bf16"))  # fmt: skip
            guard.check_epoch(record["train_loss"])
            if scheduler is not None and not per_step:
                scheduler.step()
            # validate, log, decide whether to stop
            if validate is not None:
                record.update(validate())
            record["seconds"] = time.perf_counter() - t0
            history.epochs.append(record)
            log(writer, stage, record)
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k in ("train_loss", "val_loss", "val_acc")})
            if should_stop(s, record, model):
                history.stopped_early = True
                break
    except KeyboardInterrupt:
        history.interrupted = True
        warnings.warn(
            f"{stage}: interrupted in epoch {guard.epoch + 1}, step {guard.step}; the model keeps its latest "
            f"weights and the history its {len(history)} completed epochs",
            stacklevel=2,
        )
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
        if writer is not None:
            writer.flush()
    if s.early_stopping is not None and s.early_stopping.restore_best and s.early_stopping.restore(model):
        history.best_epoch = s.early_stopping.best_epoch
    return history


def step_precision(optimizer, batches, precision) -> str:
    """What the forward pass runs in: ``runtime.precision_for`` the weights the optimizer trains, at
    the batch size (a batch larger than the data counts as the data's size)."""
    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
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
