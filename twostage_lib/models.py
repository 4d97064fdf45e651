"""Models: the original slides' two-stage MLP (notebook 01), a decoder for stage 1, and the ResNet-18
variant (notebook 06)."""

from __future__ import annotations

import math
import urllib.parse
from pathlib import Path

import torch
import torch.nn as nn

from .checks import whole
from .runtime import online


def _check_weights_reachable(weights, timeout=2.0) -> None:
    """Raise OSError when torchvision could not get ``weights`` (a torchvision Weights member, or
    None): not in torch.hub's cache and their host does not answer. Asked before the network is
    built, so that offline no ResNet-18 is made to be thrown away, and no download is tried."""
    if weights is None:
        return
    url = urllib.parse.urlparse(weights.url)
    if (Path(torch.hub.get_dir()) / "checkpoints" / Path(url.path).name).is_file():
        return
    if not online(url.hostname, timeout):
        raise OSError(f"they are not cached and {url.hostname} cannot be reached")


def mlp(sizes, final_activation=False) -> nn.Sequential:
    """Linear layers with ReLU between them: ``mlp([784, 256, 128])``."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TwoStageNetwork(nn.Module):
    """stage1 (feature extractor) then stage2 (classifier); defaults are the original slides' 784-256-128 / 128-64-10.

    Inputs of any shape (N, ...) are flattened, since ``nn.Linear`` sees each image as one vector.
    """

    def __init__(self, in_features=784, stage1_sizes=(256, 128), stage2_sizes=(64,), num_classes=10):
        super().__init__()
        in_features = whole("in_features", in_features)
        num_classes = whole("num_classes", num_classes)
        stage1_sizes = [whole(f"stage1_sizes[{i}]", n) for i, n in enumerate(stage1_sizes)]
        stage2_sizes = [whole(f"stage2_sizes[{i}]", n) for i, n in enumerate(stage2_sizes)]
        if not stage1_sizes:
            raise ValueError("stage1_sizes needs at least one layer size (the features' size is the last)")
        self.config = dict(
            in_features=in_features,
            stage1_sizes=tuple(stage1_sizes),
            stage2_sizes=tuple(stage2_sizes),
            num_classes=num_classes,
        )
        self.stage1 = mlp([in_features, *stage1_sizes])
        self.stage2 = mlp([stage1_sizes[-1], *stage2_sizes, num_classes])

    @property
    def in_features(self) -> int:
        return self.config["in_features"]

    @property
    def feature_dim(self) -> int:
        return self.config["stage1_sizes"][-1]

    def flatten(self, x):
        if x.dim() != 2:
            x = x.reshape(len(x), -1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"expected inputs with {self.in_features} features per sample, got shape "
                f"{tuple(x.shape)}; build TwoStageNetwork(in_features={x.shape[1]}) for this data"
            )
        return x

    def features(self, x):
        return self.stage1(self.flatten(x))

    def forward(self, x):
        return self.stage2(self.features(x))


def decoder_for(model) -> nn.Sequential:
    """The mirror image of stage 1 (128-256-784 for the defaults), used by the autoencoder objective.
    A stage 1 that is not an MLP (the transfer network's ResNet-18) gets features-256-pixels."""
    if isinstance(model, TwoStageNetwork):
        return mlp([model.in_features, *model.config["stage1_sizes"]][::-1])
    return mlp([model.feature_dim, 256, model.in_features])


def count_parameters(module: nn.Module, trainable_only=False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be loaded (offline, no cached copy)."""


class TransferTwoStageNetwork(nn.Module):
    """Notebook 06: torchvision's ResNet-18 without its last layer as stage 1, a linear stage 2.

    MNIST inputs (N, 784) or (N, 1, 28, 28) are adapted to what ResNet-18 expects: three channels,
    ``image_size`` pixels square, ImageNet's normalization. ``weights`` goes to
    ``torchvision.models.resnet18`` as is (``"DEFAULT"``, a ``ResNet18_Weights`` member, or None).
    """

    IMAGENET_MEAN = (0.485, 0.456, 0.406)
    IMAGENET_STD = (0.229, 0.224, 0.225)
    # images a pass without autograd takes at a time (evaluation, validation, the feature cache): small,
    # because ResNet-18's activations at 64 px are large (docs/decisions.md, "Measured, not in docstrings")
    eval_chunk = 32

    def __init__(
        self, num_classes=10, weights=None, image_size=64, in_shape=(1, 28, 28), pixel_mean=0.0, pixel_std=1.0
    ):
        super().__init__()
        from torchvision import models

        try:
            _check_weights_reachable(models.ResNet18_Weights.verify(weights))
            resnet = models.resnet18(weights=weights)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise WeightsUnavailableError(
                f"could not load ResNet-18 weights {weights!r}: {exc}. They download from the "
                f"internet once and are cached in {torch.hub.get_dir()}/checkpoints; copy the file "
                "there to use them offline, or pass weights=None to train from random weights"
            ) from exc
        self.stage1 = nn.Sequential(*list(resnet.children())[:-1], nn.Flatten())
        self.stage2 = nn.Linear(resnet.fc.in_features, num_classes)
        self.in_shape = tuple(in_shape)
        self.image_size = image_size
        # inputs arrive normalized with (pixel_mean, pixel_std); undo that, then apply ImageNet's
        self.register_buffer("pixel_stats", torch.tensor([pixel_mean, pixel_std]))
        self.register_buffer("mean", torch.tensor(self.IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def in_features(self) -> int:
        """Pixels per input image (784 for MNIST), as the inputs arrive: flat rows."""
        return math.prod(self.in_shape)

    @property
    def feature_dim(self) -> int:
        return self.stage2.in_features

    def adapt(self, x):
        x = x.reshape(len(x), *self.in_shape) if x.dim() == 2 else x
        x = x * self.pixel_stats[1] + self.pixel_stats[0]  # back to [0, 1] pixels
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = nn.functional.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def features(self, x):
        return self.stage1(self.adapt(x))

    def forward(self, x):
        return self.stage2(self.features(x))
