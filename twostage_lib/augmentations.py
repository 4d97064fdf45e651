"""Batch augmentations for digits (notebook 05), run on whole batches on the data's own device.

``augment`` is the gentle, label-safe set used while fine-tuning. ``strong_augment`` adds elastic
distortion and cutout for contrastive stage 1, which needs views that differ a lot yet show the
same digit. No horizontal flips anywhere: a flipped 2, 3, 4, 5, 7 or 9 is not that digit any more.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .checks import number, whole

STRONG = dict(rotation=20.0, shift=0.15, scale=(0.75, 1.15), elastic=0.08)


def _as_images(x, image_shape):
    imgs = x.reshape(len(x), *image_shape) if x.dim() == 2 else x
    return imgs.unsqueeze(1) if imgs.dim() == 3 else imgs


def _rand(shape, x, generator, normal=False):
    """Random numbers drawn on the generator's device (a CUDA generator: no host copy)."""
    device = generator.device if generator is not None else x.device
    draw = torch.randn if normal else torch.rand
    return draw(shape, generator=generator, device=device).to(x.device, x.dtype)


@functools.lru_cache(maxsize=8)
def _pixel_centres(height, width, device, dtype):
    """x (1, 1, W) and y (1, H, 1) of pixel centres in grid coordinates, -1 to 1 (align_corners=False)."""
    x = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    y = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    return x.view(1, 1, width), y.view(1, height, 1)


@functools.lru_cache(maxsize=8)
def _upsampler(points, height, width, device, dtype):
    """(points**2, height*width) matrix: bicubic upsampling of a points x points lattice as one matmul
    (the same numbers as F.interpolate, and faster: docs/decisions.md, "Measured, not in docstrings")."""
    eye = torch.eye(points * points, device=device, dtype=dtype).view(-1, 1, points, points)
    return F.interpolate(eye, size=(height, width), mode="bicubic", align_corners=True).view(points * points, -1)


def _sampling_grid(cos, sin, tx, ty, field, height, width):
    """Where each output pixel samples from, (n, H, W, 2) as grid_sample reads it: F.affine_grid's
    grid written out (its batched matmul with an inner size of 3 is several times slower on a CPU),
    plus the elastic ``field`` (n, 2, H, W), if any. Built as two planes, x then y, and handed over
    as a view: interleaving x and y while building them (torch.stack) made augmentation about twice
    as slow on a CPU, for the same numbers (docs/decisions.md, "Time on one core")."""
    cols, rows = _pixel_centres(height, width, cos.device, cos.dtype)
    planes = torch.empty((len(cos), 2, height, width), device=cos.device, dtype=cos.dtype)
    torch.sub(cos * cols, sin * rows, out=planes[:, 0]).add_(tx)  # cos x - sin y + tx
    torch.add(sin * cols, cos * rows, out=planes[:, 1]).add_(ty)  # sin x + cos y + ty
    if field is not None:
        planes += field
    return planes.permute(0, 2, 3, 1)


def full_precision(fn):
    """Run ``fn`` outside any autocast region: resampling pixels in bfloat16 would blur them."""

    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        with torch.autocast(x.device.type, enabled=False):
            return fn(x, *args, **kwargs)

    return wrapper


@full_precision
def augment(
    x, image_shape=(1, 28, 28), rotation=10.0, shift=0.1, scale=(0.9, 1.1), elastic=0.0, grid_points=4, generator=None
):
    """Random affine transforms, optionally with elastic distortion, in one resampling.

    Rotations in degrees, shifts as a fraction of the image, zoom range. ``elastic`` is the spread
    of a smooth random displacement (Simard et al. 2003): Gaussian noise on a ``grid_points`` x
    ``grid_points`` lattice, upsampled bicubically, in units of half the image width (0.08 is about
    one pixel on 28 x 28). ``x`` may be flat (N, D) or images; the result has its shape.
    """
    _check_moves(rotation, shift, scale, elastic, grid_points)
    imgs = _as_images(x, image_shape)
    n = len(imgs)

    def uniform(lo, hi):
        return _rand(n, x, generator) * (hi - lo) + lo

    angle = uniform(-rotation, rotation) * math.pi / 180
    zoom = uniform(*scale)
    tx = uniform(-shift, shift) * 2
    ty = uniform(-shift, shift) * 2  # grid coords span 2
    cos = (torch.cos(angle) / zoom).view(n, 1, 1)
    sin = (torch.sin(angle) / zoom).view(n, 1, 1)
    height, width = imgs.shape[-2:]
    field = None
    if elastic > 0:
        coarse = _rand((n * 2, grid_points * grid_points), x, generator, normal=True) * elastic
        field = (coarse @ _upsampler(grid_points, height, width, x.device, x.dtype)).view(n, 2, height, width)
    grid = _sampling_grid(cos, sin, tx.view(n, 1, 1), ty.view(n, 1, 1), field, height, width)
    # pad with the image's own background value (normalized zero pixels are not 0.0)
    background = imgs.amin(dim=(1, 2, 3), keepdim=True)
    out = F.grid_sample(imgs - background, grid, align_corners=False, padding_mode="zeros") + background
    return out.reshape(x.shape)


def _check_moves(rotation, shift, scale, elastic, grid_points):
    """The augmentation's settings, refused with their name when they cannot mean a transform."""
    number("rotation (degrees)", rotation, 0.0, 180.0)
    number("shift (a share of the image)", shift, 0.0, 1.0)
    if len(scale) != 2 or not 0 < number("scale[0]", scale[0], above=0.0) <= number("scale[1]", scale[1]):
        raise ValueError(f"scale must be a (smallest, largest) zoom pair with 0 < smallest <= largest, got {scale}")
    number("elastic", elastic, low=0.0)
    whole("grid_points", grid_points, low=2)


@full_precision
def erase(x, image_shape=(1, 28, 28), size=0.4, generator=None):
    """Cutout (DeVries & Taylor 2017): paint a random square, ``size`` of the image side, with the
    image's background. Its centre is anywhere in the image, so it may hang over an edge."""
    number("size (a share of the image side)", size, 0.0, 1.0)
    imgs = _as_images(x, image_shape)
    n, _, h, w = imgs.shape
    half_h = size * h / 2
    half_w = size * w / 2
    cy = _rand((n, 1, 1, 1), x, generator) * h
    cx = _rand((n, 1, 1, 1), x, generator) * w
    rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, 1, h, 1) + 0.5
    cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, 1, w) + 0.5
    inside = ((rows - cy).abs() < half_h) & ((cols - cx).abs() < half_w)
    out = torch.where(inside, imgs.amin(dim=(1, 2, 3), keepdim=True), imgs)
    return out.reshape(x.shape)


def strong_augment(
    x,
    image_shape=(1, 28, 28),
    erase_size=0.33,
    generator=None,
    rotation=STRONG["rotation"],
    shift=STRONG["shift"],
    scale=STRONG["scale"],
    elastic=STRONG["elastic"],
):
    """Contrastive views: bigger affine moves and elastic distortion (``STRONG``), then cutout."""
    moved = augment(x, image_shape, rotation, shift, scale, elastic, generator=generator)
    return erase(moved, image_shape, erase_size, generator) if erase_size > 0 else moved
