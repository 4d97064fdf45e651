"""Clustering without labels on a neighbour graph, and naming the clusters with a few labels.

Spectral clustering (Shi and Malik 2000; Ng, Jordan and Weiss 2002): the graph's leading
eigenvectors give every image a few coordinates in which the graph's well-connected groups are far
apart; k-means there finds the groups. No label is read. The labels only *name* the clusters, each
class one cluster, chosen so that the names carry as much of the labels' propagated score as
possible (``best_assignment``), which is why one unlucky labelled image cannot misname a cluster
that another class's label claims more strongly (notebook 10).
"""

from __future__ import annotations

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
    _, vectors = torch.lobpcg(graph, k=dims, X=start, largest=True, niter=200, tol=1e-6)
    return F.normalize(vectors, dim=1)


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


def best_assignment(score) -> list:
    """The one-to-one assignment of rows to columns of the square ``score`` (k, k) with the largest
    total: ``result[row]`` is its column. Exact, by dynamic programming over the sets of columns
    taken (k * 2^k steps: instant for 10 classes); refused above 16."""
    k = whole("k", len(score))
    if tuple(score.shape) != (k, k) or k > 16:
        raise ValueError(f"best_assignment needs a square score of at most 16 x 16, got {tuple(score.shape)}")
    rows = score.tolist()
    best = {0: (0.0, ())}  # the columns taken (a bit mask) -> the best total and its columns
    for row in rows:
        reached = {}
        for taken, (total, columns) in best.items():
            for column in range(k):
                if taken >> column & 1:
                    continue
                key = taken | 1 << column
                candidate = (total + row[column], (*columns, column))
                if key not in reached or candidate[0] > reached[key][0]:
                    reached[key] = candidate
        best = reached
    return list(best[(1 << k) - 1][1])
