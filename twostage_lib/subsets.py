"""Subsets of a training set: a validation holdout, a label budget, an imbalanced set."""

from __future__ import annotations

import torch

from .checks import number
from .tensors import TensorData


def holdout_size(n_train, preferred=5000):
    """How many training images to hold out for validation: ``preferred`` when the data has more
    than 4x that, else a tenth of it. The pipeline and the label study share this rule."""
    return preferred if n_train > 4 * preferred else 0.1


def validation_split(data: TensorData, n_val=5000, seed=0) -> tuple[TensorData, TensorData]:
    """Carve a validation set out of the *training* data (never the test set).

    ``n_val`` is a count or, below 1, a fraction. Stratified so every class keeps its share.
    """
    if len(data) < 2:
        raise ValueError(f"validation_split needs at least 2 training images to hold some out, got {len(data)}")
    n_val = int(round(n_val * len(data))) if 0 < n_val < 1 else int(n_val)
    if not 0 < n_val < len(data):
        raise ValueError(f"n_val must be between 1 and {len(data) - 1} (or a fraction), got {n_val}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=g)
    # sort the shuffled order by label (stable), then deal every k-th image to validation
    by_class = order[torch.argsort(data.labels[order], stable=True)]
    step = len(data) / n_val
    pick = torch.zeros(len(data), dtype=torch.bool)
    pick[(torch.arange(n_val) * step).long()] = True
    val_idx = by_class[pick]
    train_idx = by_class[~pick]
    return data.subset(train_idx.sort().values), data.subset(val_idx.sort().values)


def labels_per_class(data: TensorData, n: int, seed=0) -> TensorData:
    """A subset with exactly ``n`` labelled images of every class."""
    if isinstance(n, bool) or not float(n).is_integer() or n < 1:
        raise ValueError(
            f"labels_per_class needs n >= 1 whole labels per class, got {n}; for every label use the data as it is"
        )
    n = int(n)
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(data.num_classes):
        idx = (data.labels == c).nonzero().squeeze(1)
        if len(idx) < n:
            raise ValueError(
                f"class {c} has only {len(idx)} images, fewer than the {n} asked for; ask for at "
                f"most {most_labels_per_class(data)} per class here"
            )
        picks.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return data.subset(torch.cat(picks).sort().values)


def most_labels_per_class(data: TensorData) -> int:
    """The largest ``n`` that ``labels_per_class(data, n)`` can give: the smallest class's count."""
    if not len(data):
        return 0
    return int(torch.bincount(data.labels.clamp(min=0), minlength=data.num_classes).min())


def check_budget(n, train: TensorData, parent: TensorData, flag="--labels-per-class") -> None:
    """A labels-per-class budget the training part can meet, or an error that says why not: the
    validation holdout took the rest of ``parent``, and the largest value allowed."""
    most = most_labels_per_class(train)
    if n is None or n <= most:
        return
    per_class = most_labels_per_class(parent)
    held = len(parent) - len(train)
    raise ValueError(
        f"{flag} {n} is more than this data can give: it has {per_class:,} images per class (at "
        f"least), and {held:,} of its {len(parent):,} training images are held out for validation, "
        f"which leaves at most {most:,} per class; use {flag} {most} or less"
    )


def imbalanced(data: TensorData, ratio=100.0, kind="longtail", seed=0) -> TensorData:
    """An imbalanced subset: the largest class keeps all its images, the smallest 1/``ratio``.

    ``longtail``: counts fall geometrically from class 0 to the last class.
    ``step``: the first half of the classes keep everything, the second half 1/``ratio``.
    """
    if kind not in ("longtail", "step"):
        raise ValueError(f"unknown kind {kind!r}; choose 'longtail' or 'step'")
    ratio = number("ratio (largest / smallest class size)", ratio, low=1.0)
    k = data.num_classes
    n_max = int(torch.bincount(data.labels, minlength=k).min())
    if kind == "longtail":
        counts = [n_max * ratio ** (-c / (k - 1)) for c in range(k)]
    else:
        counts = [n_max if c < k // 2 else n_max / ratio for c in range(k)]
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c, n in enumerate(counts):
        idx = (data.labels == c).nonzero().squeeze(1)
        picks.append(idx[torch.randperm(len(idx), generator=g)[: max(1, int(round(n)))]])
    return data.subset(torch.cat(picks).sort().values)
