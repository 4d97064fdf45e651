"""Evaluation (notebook 08) and class weights (notebook 07)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from .checks import scalar_loss, whole
from .recipe import DEFAULT
from .runtime import release_memory, select_device
from .tensors import as_tensors, class_indices

EVAL_BATCH_SIZE = 4096  # rows a chunk when validating: no autograd, so large chunks are cheap
TEST_CHUNK = 512  # rows a chunk in evaluate_model: as fast as 4,096, less memory (docs/decisions.md, "Memory")


@contextmanager
def evaluating(model):
    """Eval mode for a while, then every submodule back to its own mode. ``model.train(was_training)``
    would put a frozen stage 1 back in train mode too, and its BatchNorm layers (ResNet-18) would
    then update their running statistics on every later forward pass."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def criterion_on(criterion, device):
    """The loss to train with: cross-entropy by default. A loss module moves to the device with the
    model, so a class-weighted ``nn.CrossEntropyLoss(weight=...)`` built on the CPU works on a GPU."""
    if criterion is None:
        return nn.CrossEntropyLoss()
    return criterion.to(device) if isinstance(criterion, nn.Module) else criterion


def graph_safe_criterion(criterion) -> bool:
    """Cross-entropy (class weights or not) can be replayed from a CUDA graph; a given callable may not."""
    return type(criterion) is nn.CrossEntropyLoss


def eval_chunk(model, default=EVAL_BATCH_SIZE) -> int:
    """Rows a pass without autograd takes at a time for ``model``: its ``eval_chunk`` when it sets
    one (the ResNet-18 transfer network does: its activations are large), else ``default``."""
    return getattr(model, "eval_chunk", default)


@torch.no_grad()
def over_chunks(fn, x, y, batch_size=EVAL_BATCH_SIZE):
    """The one evaluation loop: ``fn(xb, yb) -> (mean loss, per-row outputs or None)`` on chunks of
    (x, y) without autograd. Returns the sample-weighted mean loss (every sample counts once, not
    every batch) and the outputs joined, or None."""
    loss_sum = torch.zeros((), device=x.device)
    kept = []
    for i in range(0, len(x), batch_size):
        loss, out = fn(x[i : i + batch_size], y[i : i + batch_size])
        if i == 0:
            scalar_loss(loss, "the criterion's loss")
        loss_sum += loss * min(batch_size, len(x) - i)
        if out is not None:
            kept.append(out)
    return loss_sum.item() / len(x), (torch.cat(kept) if kept else None)


def check_targets(y, outputs, owner):
    """Labels a classifier with ``outputs`` outputs can be trained and scored on: each one a class
    index it has an output for. Refused here, named with the fix, not deep inside the loss."""
    if int(y.min()) < 0:
        raise ValueError(
            f"labels must be class indices from 0, got {int(y.min())}: {owner} needs labelled "
            "images (-1 often marks unlabelled ones; leave those to stage 1)"
        )
    if int(y.max()) >= outputs:
        raise ValueError(
            f"labels go up to {int(y.max())} but {owner} has {outputs} outputs (classes "
            f"0-{outputs - 1}); build the model with num_classes={int(y.max()) + 1} or relabel "
            "the data from 0"
        )


def loss_and_accuracy(model, x, y) -> dict:
    """Mean cross-entropy and accuracy of ``model`` over (x, y), in eval mode: what validation reports."""

    def chunk(xb, yb):
        out = model(xb)
        return nn.functional.cross_entropy(out, yb), out.argmax(1)

    with evaluating(model):
        loss, pred = over_chunks(chunk, x, y, eval_chunk(model))
    return {"val_loss": loss, "val_acc": (pred == y).sum().item() / len(x)}


@dataclass
class Evaluation:
    """Metrics on one dataset. Accuracies are fractions in [0, 1]."""

    accuracy: float
    loss: float  # mean over samples, not over batches
    balanced_accuracy: float
    precision: torch.Tensor  # per class; 0 for a class never predicted
    recall: torch.Tensor  # per class; NaN for a class absent from the labels
    confusion: torch.Tensor  # confusion[true, predicted]
    n: int

    def __repr__(self):
        return (
            f"Evaluation(accuracy={self.accuracy:.4f}, loss={self.loss:.4f}, "
            f"balanced_accuracy={self.balanced_accuracy:.4f}, n={self.n})"
        )


def _inputs_for(model, data, device=None):
    """``data`` as (rows, labels) on ``device`` (by default the model's), with the model moved there;
    empty data is refused here, before any pass."""
    device = select_device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    x, y = as_tensors(data, device)
    if len(x) == 0:
        raise ValueError("nothing to evaluate: the data holds no images")
    return x, y


def evaluate_model(model, data, criterion=None, batch_size=None, device=None, num_classes=None) -> Evaluation:
    """Accuracy, sample-weighted loss, per-class precision and recall, balanced accuracy, confusion.
    ``batch_size``: rows a chunk, by default ``TEST_CHUNK`` or the model's ``eval_chunk``.

    The original blog post divides the summed batch losses by the number of batches, which
    over-weights a small last batch; here every sample counts once.
    """
    if batch_size is not None:
        whole("batch_size", batch_size)
    x, y = _inputs_for(model, data, device)
    criterion = criterion_on(criterion, x.device)

    def chunk(xb, yb):
        out = model(xb)
        return criterion(out, yb), out.argmax(1)

    with evaluating(model):  # each submodule keeps its own mode afterwards (a frozen stage 1 stays in eval)
        with torch.no_grad():
            check_targets(y, model(x[:1]).shape[1], "the model")
        loss, pred = over_chunks(chunk, x, y, batch_size or eval_chunk(model, TEST_CHUNK))
    release_memory()
    return summarize(y, pred, loss, num_classes)


def confident_mistakes(model, data, k=12, batch_size=None, device=None):
    """The ``k`` images of ``data`` that ``model`` gets wrong with the highest confidence (its largest
    softmax probability), surest first: ``(index, predicted, confidence)``, three tensors of length at
    most ``k``; ``index`` gives positions in ``data``. Computed chunk by chunk, in eval mode, without
    autograd and without a float copy of the whole set."""
    k = whole("k", k, low=0)
    if batch_size is not None:
        whole("batch_size", batch_size)
    x, y = _inputs_for(model, data, device)

    def chunk(xb, yb):
        return torch.zeros((), device=xb.device), torch.softmax(model(xb).float(), dim=1)

    with evaluating(model):
        _, probabilities = over_chunks(chunk, x, y, batch_size or eval_chunk(model, TEST_CHUNK))
    confidence, predicted = probabilities.max(1)
    wrong = (predicted != y).nonzero().squeeze(1)
    index = wrong[confidence[wrong].argsort(descending=True, stable=True)][:k]
    return index.cpu(), predicted[index].cpu(), confidence[index].cpu()


def summarize(y, pred, loss, num_classes=None) -> Evaluation:
    """Every metric from the true labels and the predictions."""
    top = int(max(int(y.max()), int(pred.max())))
    if num_classes is not None and top >= num_classes:
        raise ValueError(
            f"num_classes={num_classes} but the labels go up to {int(y.max())} and the "
            f"predictions to {int(pred.max())}; pass num_classes={top + 1} or leave it out"
        )
    k = num_classes or top + 1
    confusion = torch.bincount(y * k + pred, minlength=k * k).reshape(k, k).cpu()
    true_pos = confusion.diag().double()
    support = confusion.sum(1).double()
    predicted = confusion.sum(0).double()
    recall = true_pos / support  # NaN where a class has no samples
    precision = torch.where(predicted > 0, true_pos / predicted.clamp(min=1), torch.zeros_like(true_pos))
    return Evaluation(
        accuracy=float(true_pos.sum() / len(y)),
        loss=loss,
        balanced_accuracy=float(recall[support > 0].mean()),
        precision=precision,
        recall=recall,
        confusion=confusion,
        n=len(y),
    )


def class_weights(labels, num_classes=None, normalize=True) -> torch.Tensor:
    """1 / count per class, from the labels in one ``bincount`` (the original blog post loops over the dataset).

    With ``normalize`` the weights average to 1 over the samples, so the loss keeps its scale.
    """
    labels = class_indices(labels)
    if len(labels) == 0 or int(labels.min()) < 0:
        raise ValueError("class_weights needs labelled samples (class indices from 0); drop unlabelled (-1) ones")
    if num_classes is not None and int(labels.max()) >= num_classes:
        raise ValueError(
            f"labels go up to {int(labels.max())} but num_classes={num_classes}; pass "
            f"num_classes={int(labels.max()) + 1} or leave it out"
        )
    k = num_classes or int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=k).double()
    if (counts == 0).any():
        missing = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(
            f"class(es) {missing} have no samples, so 1/count is infinite; drop those "
            f"classes or pass the num_classes that the labels really use"
        )
    weights = 1.0 / counts
    if normalize:
        weights = weights * len(labels) / (weights * counts).sum()
    return weights.float()


@torch.no_grad()
def stage1_features(model, x, batch_size=None):
    """Stage 1's features (``model.features``: for the transfer network, after adapting the
    images) for every row of ``x``, ``batch_size`` rows at a time (by default the model's
    ``eval_chunk`` if it sets one, else the recipe's batch; docs/decisions.md, "Caching stage 1's
    features").
    Stage 1 is put in eval mode and left there, as a frozen stage 1 should be."""
    batch_size = whole("batch_size", batch_size) if batch_size is not None else eval_chunk(model, DEFAULT.batch_size)
    model.stage1.eval()
    first = model.features(x[:batch_size])  # x may be Rows (normalized as read): slices are tensors
    if len(first) == len(x):
        return first
    features = first.new_empty((len(x), *first.shape[1:]))  # filled in place: no second copy from a cat
    features[: len(first)] = first
    for i in range(batch_size, len(x), batch_size):
        features[i : i + batch_size] = model.features(x[i : i + batch_size])
    return features
