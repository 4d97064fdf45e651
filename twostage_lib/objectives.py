"""Stage-1 objectives: what the feature extractor learns from images alone (notebooks 02 and 02b).

Each objective is a module holding its own head (a decoder, a projection head) with a
``loss(model, x)`` method. Stage 2 never sees the head.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .augmentations import strong_augment
from .checks import number, scalar_loss, whole
from .models import decoder_for, mlp


def original_loss(model, x):
    """The stage-1 loss of the original slides and blog post, ``MSELoss()(features, features.detach())``.
    Kept to show it is broken: it compares the features with a copy of themselves, so it is 0 for
    every input and its gradient is 0 for every weight. ``train_stage1`` refuses it."""
    features = model.features(x)
    return F.mse_loss(features, features.detach())


class Autoencoder(nn.Module):
    """Reconstruct the input from the features through a decoder (mirror of stage 1)."""

    name = "autoencoder"

    def __init__(self, model):
        super().__init__()
        self.decoder = decoder_for(model)

    def reconstruct(self, model, x):
        return self.decoder(model.features(x))

    def corrupt(self, x):
        return x

    def loss(self, model, x):
        return F.mse_loss(self.decoder(model.features(self.corrupt(x))), x.reshape(len(x), -1))


class Denoising(Autoencoder):
    """Reconstruct the clean input from a corrupted one: a random ``mask`` share of pixels set to
    the background value (Vincent et al. 2010's masking noise)."""

    name = "denoising"

    def __init__(self, model, mask=0.3):
        super().__init__(model)
        self.mask = number("mask (the share of pixels hidden)", mask, 0.0, 1.0)

    def corrupt(self, x):
        keep = torch.rand_like(x) >= self.mask
        return torch.where(keep, x, x.min())


class Contrastive(nn.Module):
    """SimCLR-style (Chen et al. 2020): two strongly augmented views of each image should map close
    together and far from the other images of the batch (NT-Xent loss on a projection head).

    The views decide what the features ignore: the default ``strong_augment`` (rotation, shift,
    zoom, elastic distortion, cutout) gives a much better linear probe than the gentle fine-tuning
    augmentation (notebook 02b shows both; docs/decisions.md, "Measured, not in docstrings").
    """

    name = "contrastive"

    def __init__(self, model, projection_dim=64, temperature=0.2, image_shape=(1, 28, 28), augment=strong_augment):
        super().__init__()
        projection_dim = whole("projection_dim", projection_dim)
        self.projection = mlp([model.feature_dim, model.feature_dim, projection_dim])
        self.temperature = number("temperature", temperature, above=0.0)
        self.image_shape = image_shape
        self.augment = augment

    def views(self, x):
        return self.augment(x, self.image_shape), self.augment(x, self.image_shape)

    def loss(self, model, x):
        a, b = self.views(x)
        z = F.normalize(self.projection(model.features(torch.cat([a, b]))), dim=1)
        return nt_xent(z, self.temperature)


def nt_xent(z, temperature):
    """NT-Xent over 2N unit vectors where rows i and i+N are two views of the same image."""
    n = len(z) // 2
    # scaling z, not the 2N x 2N matrix: less work; the softmax over it in float32 even under autocast
    sim = ((z / temperature) @ z.t()).float()
    sim.fill_diagonal_(float("-inf"))  # an image is not its own positive
    target = torch.arange(2 * n, device=z.device).roll(n)  # i's positive is i+N, and i+N's is i
    return F.cross_entropy(sim, target)


OBJECTIVES = {cls.name: cls for cls in (Autoencoder, Denoising, Contrastive)}


def make_objective(objective, model, image_shape=(1, 28, 28)):
    """An objective module from a name, or the given module / callable unchanged. ``image_shape`` may
    be a function that returns it: only the contrastive objective, whose views are 2-D, asks."""
    if isinstance(objective, str):
        if objective not in OBJECTIVES:
            raise ValueError(
                f"unknown stage-1 objective {objective!r}; choose one of "
                f"{', '.join(OBJECTIVES)} or pass a callable loss(model, x)"
            )
        if objective == "contrastive":
            return Contrastive(model, image_shape=image_shape() if callable(image_shape) else image_shape)
        return OBJECTIVES[objective](model)
    if callable(objective) or hasattr(objective, "loss"):
        return objective
    raise TypeError(f"objective must be a name or a callable loss(model, x), got {type(objective).__name__}")


def graph_safe_objective(obj) -> bool:
    """The library's own objectives, with their own views, keep nothing in Python between steps, so a
    GPU may replay their step from a CUDA graph (step.py); a given callable may not."""
    if type(obj) not in OBJECTIVES.values():
        return False
    return not isinstance(obj, Contrastive) or obj.augment is strong_augment


def check_stage1_gradient(model, loss_of, x, objective):
    """Refuse an objective whose loss gives stage 1 a zero gradient (the blog's MSE(f, f.detach()))."""
    model.zero_grad(set_to_none=True)
    loss = scalar_loss(loss_of(model, x), "the stage-1 objective's loss")
    grads = torch.autograd.grad(loss, list(model.stage1.parameters()), allow_unused=True)
    norm = sum(float(g.abs().sum()) for g in grads if g is not None)
    if norm == 0.0:
        name = getattr(objective, "__name__", objective)
        raise ValueError(
            f"stage-1 objective {name!r} gives the encoder a zero gradient on the first batch "
            f"(loss {loss.item():.3g}), so stage 1 would learn nothing. A loss that compares the "
            "features with themselves, like criterion(features, features.detach()), is always 0; "
            "compare a reconstruction with the input instead (objective='autoencoder')."
        )
