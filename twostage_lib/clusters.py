"""Clustering without labels on a neighbour graph, and naming the clusters with a few labels;
``most_similar``, the nearest-neighbour search the graph and the kNN probe share.

Spectral clustering (Shi and Malik 2000; Ng, Jordan and Weiss 2002): the graph's leading
eigenvectors give every image a few coordinates in which the graph's well-connected groups are far
apart; k-means there finds the groups. No label is read. The labels only *name* the clusters, by
the propagated scores their images carry (``best_naming``): a name comes from thousands of images'
scores, not from the one labelled image nearest it (notebook 10).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .checks import whole
from .recipe import PROPAGATE


def spectral_embedding(graph, dims=PROPAGATE.dims, seed=0) -> torch.Tensor:
    """The ``dims`` leading eigenvectors of the symmetric, normalized ``graph`` (n, n), rows of unit length."""
    dims = whole("dims", dims)
    n = graph.shape[0]
    if n < 3 * dims:
        raise ValueError(f"a {dims}-dimensional spectral embedding needs at least {3 * dims} images, got {n}")
    start = torch.randn(n, dims, generator=torch.Generator().manual_seed(seed)).to(graph.device)
    _, vectors = torch.lobpcg(row_major(graph), k=dims, X=start, largest=True, niter=200, tol=1e-6)
    return F.normalize(vectors, dim=1)


def row_major(graph) -> torch.Tensor:
    """``graph`` in compressed sparse rows (CSR), the layout for repeated products with dense
    matrices: several times faster than the coordinate list (COO) that ``knn_graph`` builds, for the
    same sums to float rounding (docs/decisions.md, "Measured, not in docstrings")."""
    if graph.layout != torch.sparse_coo:
        return graph
    with warnings.catch_warnings():  # PyTorch's note that CSR is in beta, once a process: not the learner's concern
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return graph.to_sparse_csr()


def kmeans(points, k, restarts=PROPAGATE.restarts, iterations=100, seed=0) -> torch.Tensor:
    """Cluster indices (n,) of ``points`` (n, d) into ``k`` clusters: k-means++ starts, ``restarts``
    times, keeping the tightest (least summed squared distance)."""
    k = whole("k", k)
    if len(points) < k:
        raise ValueError(f"k-means into {k} clusters needs at least {k} points, got {len(points)}")
    generator = torch.Generator().manual_seed(seed)
    best, best_inertia = None, float("inf")
    for _ in range(whole("restarts", restarts)):
        centres = _kmeans_plus_plus(points, k, generator)
        for _ in range(iterations):
            assigned = torch.cdist(points, centres).argmin(1)
            sums = torch.zeros_like(centres).index_add_(0, assigned, points)
            counts = torch.bincount(assigned, minlength=k).unsqueeze(1)
            moved = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
            if torch.equal(moved, centres):
                break
            centres = moved
        distance = torch.cdist(points, centres).min(1).values
        inertia = float((distance**2).sum())
        if inertia < best_inertia:
            best, best_inertia = torch.cdist(points, centres).argmin(1), inertia
    return best


def _kmeans_plus_plus(points, k, generator):
    """k-means++ (Arthur and Vassilvitskii 2007): each new centre drawn with probability growing
    with the squared distance to the nearest centre so far."""
    first = torch.randint(len(points), (1,), generator=generator)
    centres = points[first.to(points.device)]
    for _ in range(k - 1):
        d2 = torch.cdist(points, centres).min(1).values.pow(2).cpu()
        pick = torch.multinomial(d2 / d2.sum() if d2.sum() > 0 else torch.ones_like(d2), 1, generator=generator)
        centres = torch.cat([centres, points[pick.to(points.device)]])
    return centres


def best_naming(mass) -> list:
    """Names for clusters: ``mass`` (clusters, classes) holds each cluster's summed score for each
    class; ``result[cluster]`` is its class. Of the namings in which every class names at least one
    cluster, the one whose names carry the most score: exact, by dynamic programming over the sets
    of classes named so far (clusters * classes * 2^classes steps: instant for 10); refused above 16
    classes or with fewer clusters than classes."""
    clusters, classes = mass.shape
    if classes > 16 or clusters < classes:
        raise ValueError(
            f"best_naming needs at least as many clusters as classes, at most 16 classes; got {tuple(mass.shape)}"
        )
    best = {0: (0.0, ())}  # the classes named so far (a bit mask) -> the best total and its names
    for row in mass.tolist():
        reached = {}
        for named, (total, names) in best.items():
            for c in range(classes):
                key = named | 1 << c
                if key not in reached or total + row[c] > reached[key][0]:
                    reached[key] = (total + row[c], (*names, c))
        best = reached
    return list(best[(1 << classes) - 1][1])


def most_similar(queries, keys, k, chunk=4096, skip_self=False) -> tuple:
    """``(similarity, index)``, each (len(queries), k): for each row of ``queries``, the ``k`` rows
    of ``keys`` with the largest dot product, best first. ``chunk`` queries at a time, every chunk
    written into one block made once: a fresh block each time (900 MB for 4,096 of the study's
    55,000 images) left the heap holding a varying share of them (docs/decisions.md, "Memory").
    ``skip_self``: the queries are the keys, and no row is its own neighbour."""
    n = len(queries)
    # written in place: small results kept between the large blocks would pin the freed blocks (RSS grows)
    similar = queries.new_empty(n, k)
    nearest = torch.empty(n, k, dtype=torch.long, device=queries.device)
    block = queries.new_empty(min(chunk, n), len(keys))
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), device=queries.device)
        similarity = torch.mm(queries[start : start + chunk], keys.T, out=block[: len(rows)])
        if skip_self:
            similarity[rows - start, rows] = -float("inf")
        similar[start : start + chunk], nearest[start : start + chunk] = similarity.topk(k, dim=1)
    return similar, nearest
