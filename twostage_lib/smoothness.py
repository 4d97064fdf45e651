"""Virtual adversarial training: an answer that does not change when the image moves a little in
the direction that changes it most. VAT, from Miyato and others (2018); notebook 10.

No label is read: the target is the model's own answer, so every unlabelled image teaches. Where
augmentation asks for the same answer under shifts and turns, VAT asks for it under the one small
change of pixels the model is most sensitive to, which pushes its boundaries away from the images.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from .checks import number

# VAT's weight grows from 0 to 1 over this many epochs: at full weight from the first step, its
# pull on a network trained only as far as its head merged a whole digit into another (docs/decisions.md)
RAMP_EPOCHS = 5

# The first, probing step, in normalized pixels: small against the radii used (2), large enough
# that bfloat16 (8 bits of mantissa, pixels of size about 3) does not round it away.
PROBE = 1.0


def unit(d: torch.Tensor) -> torch.Tensor:
    """Each row (image) of ``d`` scaled to length 1."""
    return d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (d.dim() - 1)))


def virtual_adversarial_loss(model, x, answer, radius, *, generator=None) -> torch.Tensor:
    """KL(p(x) || p(x + r)), with ``p(x)`` the model's ``answer`` (logits, held fixed) and ``r`` of
    length ``radius`` pointing where the answer changes most: found by one step of power iteration
    from a random direction (the gradient of the divergence at a probe ``PROBE`` long)."""
    number("radius", radius, above=0.0)
    target = answer.detach().float().log_softmax(1)
    d = unit(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)).requires_grad_(True)
    probed = model(x.detach() + PROBE * d).float().log_softmax(1)
    (grad,) = torch.autograd.grad(F.kl_div(probed, target, log_target=True, reduction="batchmean"), d)
    moved = model(x.detach() + radius * unit(grad)).float().log_softmax(1)
    return F.kl_div(moved, target, log_target=True, reduction="batchmean")


def ramp(steps):
    """0 to 1 in a straight line, one value a step (``step / steps``), then 1 for good: how VAT's
    weight, and self-training's ``overrule``, ease in over the first ``RAMP_EPOCHS`` epochs."""
    for step in itertools.count(1):
        yield min(1.0, step / steps)


def eased(overrule, steps):
    """Self-training's ``overrule`` at each step: ``None`` throughout without one, else from 1.0 (nothing
    set aside but on certainty) down to it in a straight line over ``steps`` steps, as VAT's weight
    rises (``ramp``)."""
    if overrule is None:
        return itertools.repeat(None)
    return (overrule + (1.0 - overrule) * (1 - w) for w in ramp(steps))


class Smoothing:
    """VAT's term for each step of a loop of ``steps_per_epoch`` steps; ``weights``, each step's
    weight, ramped up linearly over the first ``RAMP_EPOCHS`` epochs."""

    def __init__(self, radius, steps_per_epoch):
        self.radius = number("vat", radius, above=0.0)
        self.weights = ramp(RAMP_EPOCHS * steps_per_epoch)

    def __call__(self, model, x, answer, weight, *, generator=None) -> torch.Tensor:
        """The term at this step's ``weight``, the next of ``weights``: the caller draws it (self-training
        hands it to its step from the host, so that a GPU may replay the step)."""
        return weight * virtual_adversarial_loss(model, x, answer, self.radius, generator=generator)
