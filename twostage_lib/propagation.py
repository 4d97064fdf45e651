"""Label propagation on stage 1's features: a few labels spread to every image (notebook 10).

Stage 1 puts images of one digit close together. Link each image to its ``k`` nearest neighbours
(cosine similarity of the frozen features) and let the given labels flow along the links (Zhou,
Bousquet, Lal, Weston and Schölkopf 2004): each step, every image takes a weighted average of its
neighbours' scores and keeps a little of its own label, if it has one. After enough steps the
labels have reached every image the graph connects, following the shape of the data rather than
the distance to one labelled example. The clusters of the same graph (``clusters.py``) check the
spread labels: an image is kept only where both agree. A digit written two ways may split into
two clusters, and two digits that touch may then share one: a class is then named for a cluster it
hardly holds, and a digit is lost. That shows without a label, and more clusters mend it
(``named_clusters``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import number, whole
from .clusters import best_naming, kmeans, most_similar, row_major, spectral_embedding
from .evaluation import evaluating, stage1_features
from .recipe import PROPAGATE
from .runtime import select_device
from .tensors import TensorData, as_tensors, image_shape_of


def knn_graph(features, k=PROPAGATE.k, power=PROPAGATE.power, chunk=4096) -> torch.Tensor:
    """The symmetric, normalized ``k``-nearest-neighbour graph of ``features`` (n, d), sparse (n, n):
    an edge weighs the cosine similarity (0 if negative) to the ``power``, then ``D^-1/2 W D^-1/2``."""
    k = whole("k", k)
    number("power", power, above=0.0)
    n = len(features)
    if n <= k:
        raise ValueError(f"a {k}-nearest-neighbour graph needs more than {k} images, got {n}; lower k")
    z = F.normalize(features.detach().float(), dim=1)  # a graph of indices: nothing to differentiate
    similar, neighbours = most_similar(z, z, k, chunk, skip_self=True)
    rows = torch.arange(n, device=z.device).repeat_interleave(k)
    edges = torch.stack([rows, neighbours.reshape(-1)])
    weights = similar.clamp(min=0) ** power
    w = torch.sparse_coo_tensor(edges, weights.reshape(-1), (n, n), check_invariants=False)
    w = (w + w.t()).coalesce()  # a neighbour's neighbour link counts both ways
    degree = torch.sparse.sum(w, 1).to_dense().clamp(min=1e-12)
    scale = degree.rsqrt()
    i = w.indices()
    return torch.sparse_coo_tensor(i, w.values() * scale[i[0]] * scale[i[1]], (n, n), check_invariants=False).coalesce()


def propagate(graph, index, labels, num_classes, alpha=PROPAGATE.alpha, iterations=PROPAGATE.iterations):
    """Scores (n, num_classes): ``F <- alpha * graph @ F + (1 - alpha) * Y`` from ``Y``, one-hot
    ``labels`` at rows ``index`` and zero elsewhere. Each step moves the labels one link further;
    ``alpha`` near 1 lets them travel far, ``1 - alpha`` keeps the given labels in place."""
    alpha = number("alpha", alpha, 0.0, 1.0)
    iterations = whole("iterations", iterations)
    y = torch.zeros(graph.shape[0], num_classes, device=graph.device)
    y[index, labels] = 1.0
    scores = y.clone()
    graph = row_major(graph)
    for _ in range(iterations):
        scores = alpha * torch.sparse.mm(graph, scores) + (1 - alpha) * y
    return scores


def balanced(scores, prior, steps=50) -> torch.Tensor:
    """Scores as class probabilities whose column sums follow ``prior`` (Sinkhorn's scaling): the
    classes share the images as they share the labelled ones, so no class can swallow another's."""
    p = (scores / scores.sum(1, keepdim=True).clamp(min=1e-12)).clamp(min=1e-12)
    for _ in range(steps):
        p = p * (prior * len(p) / p.sum(0)).unsqueeze(0)
        p = p / p.sum(1, keepdim=True)
    return p


def spread_labels(
    model,
    labelled,
    unlabelled,
    *,
    k=PROPAGATE.k,
    power=PROPAGATE.power,
    alpha=PROPAGATE.alpha,
    iterations=PROPAGATE.iterations,
    dims=PROPAGATE.dims,
    restarts=PROPAGATE.restarts,
    most_clusters_per_class=PROPAGATE.most_clusters_per_class,
    seed=0,
    device=None,
) -> tuple:
    """``(index, labels)``: the images of ``unlabelled`` (positions in it) on which two guesses made
    from ``model.stage1``'s features agree, and their labels. The guesses: the labels propagated to
    the image, and the name of its cluster (spectral clustering, clusters named by the propagated
    labels: ``named_clusters``). ``unlabelled``'s own labels, if it has any, are never read. The
    settings' defaults and why: ``PROPAGATE`` (recipe.py)."""
    device = select_device(device)
    model.to(device)
    xl, yl = as_tensors(labelled, device)
    xu, _ = as_tensors(unlabelled, device)
    if len(xl) == 0 or len(xu) == 0:
        raise ValueError("label propagation needs labelled and unlabelled images; one of the two is empty")
    num_classes = int(yl.max()) + 1
    most = whole("most_clusters_per_class", most_clusters_per_class)
    with evaluating(model), torch.no_grad():
        features = torch.cat([stage1_features(model, xl), stage1_features(model, xu)]).float()
    graph = row_major(knn_graph(features, k, power))  # once here: propagate and the clusters take it as it is
    scores = propagate(graph, torch.arange(len(xl), device=device), yl, num_classes, alpha, iterations)
    scores = balanced(scores, torch.bincount(yl, minlength=num_classes).float() / len(yl))
    named = named_clusters(spectral_embedding(graph, dims, seed), scores, most, restarts, seed)
    guess = scores.argmax(1)
    index = (named == guess)[len(xl) :].nonzero().squeeze(1)
    return index, guess[len(xl) :][index]


def named_clusters(
    points, scores, most_per_class=PROPAGATE.most_clusters_per_class, restarts=PROPAGATE.restarts, seed=0
):
    """Each image's cluster's name (n,): k-means of ``points`` (n, d) into one cluster a class,
    named by ``best_naming`` from the propagated ``scores`` (n, classes). Where that names a cluster
    for a class that holds under ``1 / classes`` of its score, no more than chance (a digit split in
    two took that class's cluster, two others merged), cluster again with one more cluster a class,
    up to ``most_per_class``; several clusters may then share a name. A name forced against weaker
    odds stays: there the clusters overrule a propagation that leaked. No label is read but
    through ``scores``."""
    classes = scores.shape[1]
    for per_class in range(1, most_per_class + 1):
        cluster = kmeans(points, per_class * classes, restarts, seed=seed)
        mass = torch.zeros(per_class * classes, classes, device=scores.device).index_add_(0, cluster, scores)
        names = torch.tensor(best_naming(mass), device=scores.device)
        share = mass.gather(1, names.unsqueeze(1)).squeeze(1) / mass.sum(1).clamp(min=1e-12)
        if bool((share >= 1 / classes).all()):  # every cluster holds its name better than chance
            break
    return names[cluster]


def propagated_labels(
    model, labelled, unlabelled, *, seed=0, device=None, settings=None, repeats=PROPAGATE.repeats
) -> TensorData:
    """``labelled`` with its labels, ``repeats`` times over (``kept_images``), plus the images of
    ``unlabelled`` that ``spread_labels`` labels, with those labels: normalized images (mean 0,
    std 1) as a TensorData, ready for ``train_stage2`` or as ``selftrain``'s labelled set (notebook
    10). ``settings``: a dict of ``spread_labels``'s settings (``k``, ``alpha``, ...), the recipe's where left out."""
    index, labels = spread_labels(model, labelled, unlabelled, seed=seed, device=device, **(settings or {}))
    return kept_images(labelled, unlabelled, index, labels, repeats=repeats)


def kept_images(
    labelled, unlabelled, index, labels, source="labelled images and propagated labels", *, repeats=1
) -> TensorData:
    """``labelled`` with its labels, ``repeats`` times over (the only labels sure to be right, so
    they weigh more among thousands of guesses), then the images of ``unlabelled`` at ``index``
    with ``labels``: normalized images (mean 0, std 1) as a TensorData on the CPU."""
    repeats = whole("repeats", repeats)
    device = labels.device
    xl, yl = as_tensors(labelled, device)
    xu, _ = as_tensors(unlabelled, device)
    given = xl[0 : len(xl)]  # as_tensors gives Rows: a slice is what reads them normalized, as a tensor
    images = torch.cat([given] * repeats + [xu.index_select(0, index)])
    images = images.reshape(-1, *image_shape_of(labelled, xl))
    return TensorData(images.cpu(), torch.cat([yl] * repeats + [labels]).cpu(), source=source)
