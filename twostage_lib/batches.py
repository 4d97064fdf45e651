"""Seeded mini-batches over tensors in memory: a shuffled index, then slices."""

from __future__ import annotations

import math

import torch

from .checks import whole


class Batches:
    """Seeded mini-batches over in-memory tensors: a shuffled index, then slices.

    Each pass draws a new permutation from its own generator, so the same seed gives the same
    batches on every run. ``x`` and ``y`` stay on their device; only indices are created.
    With ``sample_weights`` each pass instead draws ``len(x)`` indices with replacement, in
    proportion to the weights (what ``WeightedRandomSampler`` does, for rebalancing classes).
    """

    def __init__(self, x, y, batch_size=256, shuffle=True, seed=0, drop_last=False, sample_weights=None):
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)})")
        batch_size = whole("batch_size", batch_size)
        seed = whole("seed", seed, low=0)
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.sample_weights = None
        if sample_weights is not None:
            self.sample_weights = check_sample_weights(sample_weights, len(x))

    def __len__(self):
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.x)
        order = None
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights, n, replacement=True, generator=self.generator)
        elif self.shuffle:
            order = torch.randperm(n, generator=self.generator)
        if order is not None:
            order = order.to(self.x.device)  # one copy per epoch, none per step
        for i in range(len(self)):
            lo = i * self.batch_size
            hi = min((i + 1) * self.batch_size, n)
            if order is None:
                yield self.x[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]  # index_select: the rows of x[idx], faster (docs/decisions.md)
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)


def check_sample_weights(weights, n) -> torch.Tensor:
    """One finite, non-negative weight per sample, not all zero (batches are drawn in proportion)."""
    w = torch.as_tensor(weights, dtype=torch.double).cpu().flatten()
    problem = None
    if len(w) != n:
        problem = f"has {len(w)} weights for {n} samples"
    elif not bool(torch.isfinite(w).all()):
        problem = f"holds NaN or infinity (index {int((~torch.isfinite(w)).nonzero()[0])})"
    elif bool((w < 0).any()):
        problem = f"holds negative weights (index {int((w < 0).nonzero()[0])})"
    elif not bool((w > 0).any()):
        problem = "is all zero, so no sample could be drawn"
    if problem:
        raise ValueError(
            f"sample_weights {problem}; pass one finite weight >= 0 per sample, e.g. ts.class_weights(labels)[labels]"
        )
    return w


def forever(batches):
    """Pass after pass over ``batches``, without end (self-training's labelled batches)."""
    while True:
        yield from batches
