"""How good are stage 1's features? Two probes that train nothing in stage 1 (notebook 09).

- ``linear_probe``: a linear classifier on the frozen features, standardized with the training
  images' mean and spread, trained to convergence: what a straight line can read from them.
- ``knn_probe``: each test image takes the labels of its ``k`` nearest training images (cosine
  similarity), weighted by closeness (Wu et al. 2018): what the features' neighbourhoods hold, with
  no training at all.

Both read the labels of ``train`` only; ``test``'s labels only score the answers.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import number, whole
from .clusters import most_similar
from .evaluation import evaluating, stage1_features
from .runtime import select_device
from .tensors import as_tensors


def frozen_features(model, data, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1's features (float32) and the labels of ``data``, on ``device``; stage 1 is left as it was."""
    device = select_device(device)
    model.to(device)
    x, y = as_tensors(data, device)
    with evaluating(model), torch.no_grad():
        return stage1_features(model, x).float(), y


def linear_probe(model, train, test, *, epochs=60, lr=1e-2, batch_size=512, seed=0, device=None) -> float:
    """Test accuracy of a linear classifier trained on ``model``'s frozen stage-1 features of
    ``train``: features standardized by the training mean and standard deviation, Adam with a
    cosine schedule over ``epochs`` passes. The model is not changed."""
    epochs, batch_size = whole("epochs", epochs), whole("batch_size", batch_size)
    number("lr", lr, above=0.0)
    f_train, y_train = frozen_features(model, train, device)
    f_test, y_test = frozen_features(model, test, device)
    mean, std = f_train.mean(0), f_train.std(0).clamp(min=1e-6)
    f_train.sub_(mean).div_(std), f_test.sub_(mean).div_(std)  # in place: no second copy of 55,000 rows
    classes = int(y_train.max()) + 1  # from the training labels: the test's only score
    generator = torch.Generator(device=f_train.device).manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = nn.Linear(f_train.shape[1], classes).to(f_train.device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
    steps = epochs * math.ceil(len(f_train) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        order = torch.randperm(len(f_train), device=f_train.device, generator=generator)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            loss = F.cross_entropy(probe(f_train[rows]), y_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        return (probe(f_test).argmax(1) == y_test).float().mean().item()


def knn_probe(model, train, test, *, k=20, temperature=0.07, chunk=100, device=None) -> float:
    """Test accuracy of a weighted ``k``-nearest-neighbour vote on ``model``'s frozen stage-1
    features: each of the ``k`` training images most similar (cosine) to a test image votes for its
    label with weight ``exp(similarity / temperature)``. ``chunk`` test images at a time (100 against
    55,000 training images: a 22 MB similarity block)."""
    k, chunk = whole("k", k), whole("chunk", chunk)
    number("temperature", temperature, above=0.0)
    f_train, y_train = frozen_features(model, train, device)
    f_test, y_test = frozen_features(model, test, device)
    if k > len(f_train):
        raise ValueError(
            f"a {k}-nearest-neighbour vote needs at least {k} training images, got {len(f_train)}: lower k"
        )
    z_train = f_train.div_(f_train.norm(dim=1, keepdim=True).clamp(min=1e-12))  # unit rows, in place
    z_test = F.normalize(f_test, dim=1)
    classes = int(y_train.max()) + 1
    similar, nearest = most_similar(z_test, z_train, k, chunk)
    votes = torch.zeros(len(z_test), classes, device=similar.device)
    votes.scatter_add_(1, y_train[nearest], (similar / temperature).exp())
    return int((votes.argmax(1) == y_test).sum()) / len(z_test)
