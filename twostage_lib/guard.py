"""The divergence guard: keeps NaN and infinity out of the weights, and says where and why."""

from __future__ import annotations

import math
import warnings

import torch


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. ``.history`` holds the epochs completed before it."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


GRADIENT_CAUSE = (
    "The loss was finite but its gradient was not: look for an operation whose gradient is "
    "undefined at some input (sqrt or log of 0, a division by 0) in the loss or the model."
)

LOSS_OR_GRADIENT_CAUSE = (
    "Read after the epoch, the step before it may be the cause: the learning rate is probably too high "
    "(try one 3-10x lower, or gradient clipping), or that step's gradient was not finite (sqrt or log of 0, "
    "a division by 0, in the loss or the model)."
)


class DivergenceGuard:
    """Keeps NaN and infinity out of the weights. Each step: a loss that is not finite (and, when
    clipping computes it anyway, a gradient norm) stops training before the update. A non-finite
    gradient shows in the next step's loss, or in the check after the epoch's last step: weights no
    longer finite, or grown a million-fold. In every case the weights are put back to the epoch's
    start and the error says where and why (docs/decisions.md, "Divergence"). Also warns once when
    a finite loss grows to 10x the first step's (at least 10: a memorized head starts near 0)."""

    MAX_GROWTH = 1e6  # weights a million times larger after one epoch: no learning rate meant that

    def __init__(self, stage, history, modules, params):
        self.stage = stage
        self.history = history
        self.modules = modules
        self.params = params
        self.first = None
        self.warned = False
        self.epoch = 0
        self.step = 0  # where training is: for the messages
        self.saved = None
        self.start_norm = 1.0

    def start_epoch(self, epoch):
        """Remember the epoch's starting weights (a copy on their own device) and their size."""
        self.epoch = epoch
        self.step = 0
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

    def check_steps(self, losses, norms=None):
        """After an epoch whose losses (and gradient norms, with clipping) were read once, at its end:
        the first step where one was not finite stops training, the epoch rolled back."""
        if self.first is None and losses:
            self.first = losses[0]
        for step, value in enumerate(losses):
            norm = norms[step] if norms is not None else 0.0
            if math.isfinite(value) and math.isfinite(norm):
                continue
            self.step = step
            late = " (read after the epoch's last step)"
            if not math.isfinite(value):
                self.diverged(f"the loss became {value}", None, late, LOSS_OR_GRADIENT_CAUSE if step else None)
            self.diverged(f"the gradient became {norm}", None, late, GRADIENT_CAUSE)

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
            cause = (
                f"The cause is in the data: the inputs of this batch are not finite (row {row}); check the "
                "data, or the augmentation that made them."
            )
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
