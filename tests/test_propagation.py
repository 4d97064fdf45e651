"""Label propagation and spectral clustering (twostage_lib/propagation.py, clusters.py): a few
labels spread over stage 1's neighbour graph. They learn on a small case, read no label they are
not given, repeat by seed, and refuse bad settings."""

import copy
import itertools

import pytest
import torch

import twostage_lib as ts
from twostage_lib.clusters import best_assignment, kmeans, spectral_embedding
from twostage_lib.propagation import balanced, knn_graph, propagate


def blobs(per=60, classes=4, dims=8, seed=0):
    """``classes`` tight, well-separated groups of points, in order, with their group numbers."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dims, generator=g) * 4
    points = torch.cat([c + 0.3 * torch.randn(per, dims, generator=g) for c in centres])
    return points, torch.arange(classes).repeat_interleave(per)


def same_grouping(a, b) -> bool:
    """Whether two labellings split the points the same way, whatever the group numbers."""
    return len({(int(x), int(y)) for x, y in zip(a, b)}) == len(set(a.tolist())) == len(set(b.tolist()))


def test_the_graph_is_symmetric_normalized_and_has_no_self_loops():
    points, _ = blobs()
    graph = knn_graph(points, k=5).to_dense()
    assert torch.allclose(graph, graph.T)
    assert graph.diagonal().abs().max() == 0
    assert (graph >= 0).all() and torch.linalg.eigvalsh(graph).max() <= 1 + 1e-5  # D^-1/2 W D^-1/2
    with pytest.raises(ValueError, match="needs more than 5 images"):
        knn_graph(points[:5], k=5)


def test_one_label_a_group_reaches_every_point():
    points, truth = blobs()
    graph = knn_graph(points, k=5)
    seeds = torch.tensor([0, 60, 120, 180])  # one labelled point a group
    scores = propagate(graph, seeds, truth[seeds], 4)
    assert torch.equal(scores.argmax(1), truth)
    with pytest.raises(ValueError, match="alpha must be"):
        propagate(graph, seeds, truth[seeds], 4, alpha=1.5)
    with pytest.raises(ValueError, match="iterations must be"):
        propagate(graph, seeds, truth[seeds], 4, iterations=0)


def test_balancing_gives_each_class_its_share():
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])  # class 0 would take all four
    p = balanced(scores, torch.tensor([0.5, 0.5]))
    assert torch.allclose(p.sum(0), torch.tensor([2.0, 2.0]), atol=1e-4)
    assert p.argmax(1).tolist() == [0, 0, 1, 1]  # the least sure two move


def test_best_assignment_is_the_best_of_every_permutation():
    score = torch.rand(6, 6, generator=torch.Generator().manual_seed(0))
    best = max(itertools.permutations(range(6)), key=lambda p: sum(score[i, j] for i, j in enumerate(p)))
    assert best_assignment(score) == list(best)
    with pytest.raises(ValueError, match="square score"):
        best_assignment(torch.rand(3, 4))


def test_spectral_clustering_finds_the_groups_without_labels_and_repeats_by_seed():
    points, truth = blobs()
    graph = knn_graph(points, k=5)
    found = kmeans(spectral_embedding(graph, dims=4), 4)
    assert same_grouping(found, truth)
    assert torch.equal(found, kmeans(spectral_embedding(graph, dims=4), 4))
    assert same_grouping(kmeans(points, 4, seed=3), truth)
    with pytest.raises(ValueError, match="dims must be"):
        spectral_embedding(graph, dims=0)
    with pytest.raises(ValueError, match="at least 4 points"):
        kmeans(points[:3], 4)


@pytest.fixture(scope="module")
def start(contrastive_pool):
    """The shared contrastive stage 1 (conftest.py) and one labelled image a digit."""
    net, pool = contrastive_pool
    return copy.deepcopy(net), ts.labels_per_class(pool, 1, seed=0), pool


def test_one_label_a_digit_labels_far_more_images_than_a_head_on_it(start):
    """Measured on this weak 5-epoch stage 1 of 5,000 images: 61% of the pool chosen, 76% of it
    right, where a head trained on the 10 labelled images alone gets 38% of the pool right."""
    net, labelled, pool = start
    index, labels = ts.spread_labels(net, labelled, pool)
    assert len(index) >= 0.5 * len(pool)
    correct = (labels == pool.labels[index]).float().mean().item()
    head = copy.deepcopy(net)
    ts.train_stage2(head, labelled, epochs=200, lr=3e-3, batch_size=10, progress=False)
    alone = ts.evaluate_model(head, pool).accuracy
    assert correct >= 0.65 and correct >= alone + 0.2, (correct, alone)
    assert set(labels.tolist()) == set(range(10))  # every digit keeps a share


def test_the_unlabelled_labels_are_never_read_and_the_seed_repeats(start):
    net, labelled, pool = start
    scrambled = pool.subset(torch.arange(len(pool)))
    scrambled.labels = torch.randint(0, 10, (len(pool),), generator=torch.Generator().manual_seed(1))
    a = ts.spread_labels(net, labelled, pool, seed=0)
    b = ts.spread_labels(net, labelled, scrambled, seed=0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_the_propagated_set_trains_a_network(start, bundled):
    net, labelled, pool = start
    spread = ts.propagated_labels(net, labelled, pool)
    assert len(spread) > len(labelled) and spread.image_shape == (1, 28, 28)
    head = ts.TwoStageNetwork()
    head.load_state_dict(net.state_dict())
    ts.train_stage2(head, spread, epochs=5, lr=8e-3, batch_size=2048, progress=False)
    test = bundled.test.subset(torch.arange(2000))
    accuracy = ts.evaluate_model(head, test).accuracy
    alone = copy.deepcopy(net)
    ts.train_stage2(alone, labelled, epochs=200, lr=3e-3, batch_size=10, progress=False)
    baseline = ts.evaluate_model(alone, test).accuracy
    assert accuracy >= 0.5 and accuracy >= baseline + 0.1, (accuracy, baseline)  # measured: 57% against 38%


@pytest.mark.parametrize(
    "settings, error, message",
    [({"k": 0}, ValueError, "k must be"), ({"alpha": 2.0}, ValueError, "alpha must be"),
     ({"dims": 0}, ValueError, "dims must be"), ({"neighbours": 5}, TypeError, "unexpected keyword")],
)  # fmt: skip
def test_bad_settings_are_refused(start, settings, error, message):
    net, labelled, pool = start
    with pytest.raises(error, match=message):
        ts.spread_labels(net, labelled, pool, **settings)


def test_empty_data_is_refused(start):
    net, labelled, pool = start
    with pytest.raises(ValueError, match="one of the two is empty"):
        ts.spread_labels(net, labelled, pool.subset(torch.arange(0)))
