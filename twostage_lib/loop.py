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
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .checks import number, scalar_loss, whole
from .data import Batches
from .evaluation import loss_and_accuracy
from .runtime import as_tensors, precision_for, release_memory

# Set by the command line's Ctrl-C handler: the loop stops at the end of the current step, as if
# interrupted there (an API caller's Ctrl-C raises KeyboardInterrupt directly).
stop_requested = threading.Event()


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
        self.patience = whole("patience", patience, low=1)
        self.min_delta = number("min_delta", min_delta, low=0.0)
        self.restore_best = restore_best
        self.reset()

    def reset(self) -> None:
        """Forget every epoch seen: each training run starts here (``fit`` calls it), so one object
        used for two runs never carries the first run's best loss or weights into the second."""
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
    check_learning_rates([{"lr": lr}, *[g for g in groups if isinstance(g, dict)]])
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


GRADIENT_CAUSE = ("The loss was finite but its gradient was not: look for an operation whose gradient is "
                  "undefined at some input (sqrt or log of 0, a division by 0) in the loss or the model.")  # fmt: skip


class DivergenceGuard:
    """Keeps NaN and infinity out of the weights. Each step: a loss that is not finite (and, when
    clipping computes it anyway, a gradient norm) stops training before the update. A non-finite
    gradient shows in the next step's loss, or in the check after the epoch's last step: weights no
    longer finite, or grown a million-fold. In every case the weights are put back to the epoch's
    start and the error says where and why (docs/decisions.md, "Divergence"). Also warns once when
    a finite loss grows to 10x the first step's (at least 10: a memorized head starts near 0)."""

    MAX_GROWTH = 1e6  # weights a million times larger after one epoch: no learning rate meant that

    def __init__(self, stage, history, modules, params):
        self.stage, self.history, self.modules, self.params = stage, history, modules, params
        self.first, self.warned = None, False
        self.epoch = self.step = 0  # where training is: for the messages
        self.saved, self.start_norm = None, 1.0

    def start_epoch(self, epoch):
        """Remember the epoch's starting weights (a copy on their own device) and their size."""
        self.epoch, self.step = epoch, 0
        self.saved = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.modules]
        self.start_norm = float(torch.nn.utils.get_total_norm(self.params))

    def check_loss(self, value, step, x):
        self.step = step
        if not math.isfinite(value):
            detail, cause = self.after_update() if step > 0 else ("", None)
            self.diverged(f"the loss became {value}", x, detail, cause)
        if self.first is None:
            self.first = value

    def check_gradient(self, norm, x):
        if not math.isfinite(norm):
            self.diverged(f"the gradient became {norm}", x, "", GRADIENT_CAUSE)

    def check_weights(self):
        """After an epoch's last step: the weights are finite and not a million times larger."""
        norm = float(torch.nn.utils.get_total_norm(self.params))
        if not math.isfinite(norm):
            self.diverged(f"the weights became {norm}", None, *self.gradient_was_bad())
        growth = norm / max(self.start_norm, 1.0)
        if growth > self.MAX_GROWTH:
            self.diverged(f"the weights grew {growth:.2g}-fold (norm {self.start_norm:.3g} to {norm:.3g})")

    def after_update(self):
        """When a loss is not finite: did the previous update already break the weights, and why?"""
        if math.isfinite(float(torch.nn.utils.get_total_norm(self.params))):
            return "", None
        detail, cause = self.gradient_was_bad()
        return f" (the update of step {self.step - 1} had made the weights non-finite{detail})", cause

    def gradient_was_bad(self):
        """(detail, cause) from the last step's gradient, still in .grad: was it not finite?"""
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads and not math.isfinite(float(torch.nn.utils.get_total_norm(grads))):
            return ": its gradient was not finite", GRADIENT_CAUSE
        return "", None

    def diverged(self, what, x=None, detail="", cause=None):
        """Put the epoch's starting weights back, then raise TrainingDiverged naming where and why."""
        with torch.no_grad():
            for module, state in zip(self.modules, self.saved):
                module.load_state_dict(state)
        if x is not None and not bool(torch.isfinite(x).all()):
            row = int((~torch.isfinite(x)).reshape(len(x), -1).any(1).nonzero()[0])
            cause = (f"The cause is in the data: the inputs of this batch are not finite (row {row}); check the "
                     "data, or the augmentation that made them.")  # fmt: skip
        cause = cause or "The learning rate is probably too high: try one 3-10x lower (or gradient clipping)."
        raise TrainingDiverged(
            f"{self.stage}: {what} in epoch {self.epoch + 1} at step {self.step}{detail}; the weights were put "
            f"back to the start of epoch {self.epoch + 1}. {cause} The {len(self.history)} completed epochs are "
            "in this error's .history",
            self.history,
        )

    def check_loss_growth(self, train_loss):
        if self.warned or train_loss <= 10 * max(abs(self.first), 1.0):
            return
        self.warned = True
        warnings.warn(
            f"{self.stage}: the training loss rose from {self.first:.4g} (first step) to {train_loss:.4g} "
            f"(epoch {self.epoch + 1}): training is diverging. The learning rate is probably too high: try one "
            "3-10x lower (or gradient clipping)",
            stacklevel=2,
        )


def train_epoch(optimizer, batches, loss_fn, guard, *, augment=None, clip_grad_norm=None, step_scheduler=None,
                mixed=False):  # fmt: skip
    """One pass over ``batches``; returns its record (mean training loss, learning rates, gradient norms).
    ``guard`` (a DivergenceGuard) sees each step's loss and gradient before the weights move."""
    params = guard.params
    device = params[0].device
    total, seen = 0.0, 0
    norm_sum, norm_max = torch.zeros((), device=device), torch.zeros((), device=device)
    for step, (x, y) in enumerate(batches):
        # forward, in bfloat16 where the precision policy chose it
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
            x = augment(x) if augment is not None else x
            loss = loss_fn(x, y)
        if step == 0:
            scalar_loss(loss, f"{guard.stage}'s loss")
        # read the loss on the host every step: a NaN never moves a weight (docs/decisions.md)
        value = loss.item()
        guard.check_loss(value, step, x)
        # backward, clip (a non-finite gradient norm then stops training before the update)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)  # the norm before clipping
            guard.check_gradient(norm.item(), x)
            norm_sum += norm
            norm_max = torch.maximum(norm_max, norm)
        # update
        optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        total += value * len(x)
        seen += len(x)
        if stop_requested.is_set():  # the command line's first Ctrl-C: stop after this step
            raise KeyboardInterrupt
    lrs = [g["lr"] for g in optimizer.param_groups]  # used this epoch
    record = {"train_loss": total / max(seen, 1), "lr": lrs[-1], "lrs": lrs}
    if clip_grad_norm is not None:
        record["grad_norm_mean"] = norm_sum.item() / max(len(batches), 1)
        record["grad_norm_max"] = norm_max.item()
    return record


def fit(stage, model, optimizer, batches, loss_fn, epochs, settings=None, *, validate=None, train_modules=None,
        objective=None, augment=None) -> History:  # fmt: skip
    """Train for ``epochs`` passes over ``batches`` with ``loss_fn(x, y) -> loss``.

    Stops with ``TrainingDiverged`` (history kept, weights put back) when a loss, gradient or weight
    stops being finite; on Ctrl-C it finishes cleanly and returns the history with ``interrupted``.
    ``validate()`` returns the epoch's validation metrics; ``train_modules`` are put in train mode
    each epoch (default: the model); ``augment(x)`` changes each batch before the forward pass.
    """
    s = settings or LoopSettings()
    epochs = check_settings(s, epochs, validate, optimizer)
    history = History(stage, objective=objective)
    # set up: schedule, precision, logging, progress bar, the copy of the weights divergence puts back
    scheduler, per_step = make_scheduler(s.scheduler, optimizer, epochs, len(batches))
    history.precision = step_precision(optimizer, batches, s.precision)
    guard = DivergenceGuard(stage, history, trained_modules(model, train_modules), trained_params(optimizer))
    writer, bar = open_writer(s.writer), tqdm(range(epochs), desc=stage, disable=not s.progress, leave=True)
    start = time.perf_counter()
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            guard.start_epoch(epoch)
            for m in train_modules or [model]:
                m.train()
            record = {"epoch": epoch + 1}
            record.update(train_epoch(optimizer, batches, loss_fn, guard, augment=augment,
                                      clip_grad_norm=s.clip_grad_norm, mixed=history.precision == "bf16",
                                      step_scheduler=scheduler if per_step else None))  # fmt: skip
            guard.check_weights()
            guard.check_loss_growth(record["train_loss"])
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
        history.interrupted, history.stopped_at = True, {"epoch": guard.epoch + 1, "step": guard.step}
        warnings.warn(f"{stage}: interrupted in epoch {guard.epoch + 1}, step {guard.step}; the model keeps its "
                      f"latest weights and the history its {len(history)} completed epochs", stacklevel=2)  # fmt: skip
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
        if writer is not None:
            writer.flush()
        release_memory()
    if s.early_stopping is not None and s.early_stopping.restore_best and s.early_stopping.restore(model):
        history.best_epoch = s.early_stopping.best_epoch
    return history


def check_settings(s, epochs, validate, optimizer) -> int:
    """The loop's settings, checked before any step; returns ``epochs`` as an int. An early stopping
    object is reset: each run is its own, even when the object served an earlier one."""
    epochs = whole("epochs", epochs, low=0)
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
            raise ValueError(f"the learning rate {lr} must be a finite number >= 0 (typical: 1e-4 to 1e-2); "
                             "check lr and stage1_lr_scale")  # fmt: skip


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
