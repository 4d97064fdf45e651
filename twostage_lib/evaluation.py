"""Evaluation (slide 14) and class weights (slide 13)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .training import as_tensors, criterion_on, evaluating, select_device


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
        return (f"Evaluation(accuracy={self.accuracy:.4f}, loss={self.loss:.4f}, "
                f"balanced_accuracy={self.balanced_accuracy:.4f}, n={self.n})")


@torch.no_grad()
def evaluate_model(model, data, criterion=None, batch_size=4096, device=None, num_classes=None) -> Evaluation:
    """Accuracy, sample-weighted loss, per-class precision and recall, balanced accuracy, confusion.

    The seeds divide the summed batch losses by the number of batches, which over-weights a small
    last batch; here every sample counts once.
    """
    device = select_device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    x, y = as_tensors(data, device)
    if len(x) == 0:
        raise ValueError("nothing to evaluate: the data holds no images")
    criterion = criterion_on(criterion, device)
    loss_sum = torch.zeros((), device=device)
    preds = []
    with evaluating(model):  # each submodule keeps its own mode afterwards (a frozen stage 1 stays in eval)
        for i in range(0, len(x), batch_size):
            out = model(x[i:i + batch_size])
            yb = y[i:i + batch_size]
            loss_sum += criterion(out, yb) * len(yb)
            preds.append(out.argmax(1))
    pred = torch.cat(preds)
    k = num_classes or int(max(int(y.max()), int(pred.max()))) + 1
    confusion = torch.bincount(y * k + pred, minlength=k * k).reshape(k, k).cpu()
    true_pos = confusion.diag().double()
    support, predicted = confusion.sum(1).double(), confusion.sum(0).double()
    recall = true_pos / support  # NaN where a class has no samples
    precision = torch.where(predicted > 0, true_pos / predicted.clamp(min=1), torch.zeros_like(true_pos))
    return Evaluation(
        accuracy=float(true_pos.sum() / len(y)),
        loss=float(loss_sum) / len(y),
        balanced_accuracy=float(recall[support > 0].mean()),
        precision=precision, recall=recall, confusion=confusion, n=len(y))


def class_weights(labels, num_classes=None, normalize=True) -> torch.Tensor:
    """1 / count per class, from the labels in one ``bincount`` (slide 13 loops over the dataset).

    With ``normalize`` the weights average to 1 over the samples, so the loss keeps its scale.
    """
    labels = torch.as_tensor(labels).long()
    k = num_classes or int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=k).double()
    if (counts == 0).any():
        missing = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"class(es) {missing} have no samples, so 1/count is infinite; drop those "
                         f"classes or pass the num_classes that the labels really use")
    weights = 1.0 / counts
    if normalize:
        weights = weights * len(labels) / (weights * counts).sum()
    return weights.float()
