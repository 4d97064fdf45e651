"""The probes of stage 1's features (twostage_lib/probes.py): a line reads what is linear, the
neighbours what is local, the test's labels only score, the model is left as it was, the seed
repeats, and bad settings are refused."""

import copy
import json

import pytest
import torch
import torch.nn as nn

import twostage_lib as ts
from twostage_lib.probes import knn_probe, linear_probe


@pytest.fixture(scope="module")
def setup(contrastive_pool, bundled):
    """The shared 5-epoch contrastive stage 1 and its 5,000 images (conftest.py), 1,000 test images."""
    net, pool = contrastive_pool
    return copy.deepcopy(net), pool, bundled.test.subset(torch.arange(1000))


class Given(nn.Module):
    """A stage 1 that hands its inputs on: the probes see the points as they are."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Identity()

    def features(self, x):
        return self.stage1(x)


def xor(n=400, seed=0):
    """Points in four corners; the label is 1 where exactly one coordinate is positive: no straight
    line separates the two, but every point's neighbours share its label."""
    g = torch.Generator().manual_seed(seed)
    corners = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    which = torch.randint(0, 4, (n,), generator=g)
    return corners[which] + 0.2 * torch.randn(n, 2, generator=g), (which >= 2).long()


def test_a_line_cannot_read_xor_but_neighbours_can():
    train, test = xor(seed=0), xor(seed=1)
    assert knn_probe(Given(), train, test, k=10) >= 0.95
    assert linear_probe(Given(), train, test, epochs=20) <= 0.8  # a line gets at most 3 corners of 4


def test_the_vote_is_the_same_in_any_chunk():
    """The test images are compared with the training ones a chunk at a time, into one block
    reused: chunks of 7 (a partial one last) vote as one chunk of every test image does, on labels
    drawn at random, where any stale row in the block would change the count."""
    (x, _), (xt, _) = xor(seed=0), xor(seed=1)
    g = torch.Generator().manual_seed(2)
    train, test = (x, torch.randint(0, 3, (len(x),), generator=g)), (xt, torch.randint(0, 3, (len(xt),), generator=g))
    one = knn_probe(Given(), train, test, k=5, chunk=len(xt))
    assert 0.0 < one < 1.0
    assert knn_probe(Given(), train, test, k=5, chunk=7) == one


def test_the_nearest_vote_weighs_most_when_cold():
    """One training point of class 1 almost on the test point, two of class 0 further off: with a
    low temperature the close one outweighs the two, with a high one the two outvote it."""
    train = (torch.tensor([[1.0, 0.05], [0.6, 0.8], [0.6, -0.8]]), torch.tensor([1, 0, 0]))
    test = (torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert knn_probe(Given(), train, test, k=3, temperature=0.07) == 1.0
    assert knn_probe(Given(), train, test, k=3, temperature=100.0) == 0.0


def test_real_features_read_well(setup):
    """On the shared 5-epoch contrastive stage 1 of 5,000 images, measured: linear 86%, kNN 83%."""
    net, pool, test = setup
    assert linear_probe(net, pool, test, epochs=20) >= 0.8
    assert knn_probe(net, pool, test) >= 0.75


def test_the_test_labels_only_score_and_the_model_is_untouched(setup):
    net, pool, test = setup
    before = ts.snapshot(net)
    scrambled = test.subset(torch.arange(len(test)))
    scrambled.labels = test.labels[torch.randperm(len(test), generator=torch.Generator().manual_seed(1))]
    assert linear_probe(net, pool, scrambled, epochs=5) < 0.2  # fitted to the test, it would score high
    assert knn_probe(net, pool, scrambled) < 0.2
    assert ts.unchanged(net, before)


def test_the_seed_repeats(setup):
    net, pool, test = setup
    assert linear_probe(net, pool, test, epochs=3, seed=1) == linear_probe(net, pool, test, epochs=3, seed=1)


@pytest.mark.parametrize(
    "probe, settings, message",
    [(linear_probe, {"epochs": 0}, "epochs must be"), (linear_probe, {"lr": 0.0}, "lr must be"),
     (knn_probe, {"k": 0}, "k must be"), (knn_probe, {"k": 6000}, "needs at least 6000 training images"),
     (knn_probe, {"temperature": -1.0}, "temperature must be")],
)  # fmt: skip
def test_bad_settings_are_refused(setup, probe, settings, message):
    net, pool, test = setup
    with pytest.raises(ValueError, match=message):
        probe(net, pool, test, **settings)


def test_the_probe_tool_writes_both_probes_for_each_length_and_seed(tmp_path):
    """tools/probe_stage1.py, on one epoch (the data $TWOSTAGE_DATA names, else the bundled subset)."""
    from tools import probe_stage1

    out = tmp_path / "probes.json"
    probe_stage1.main(["--epochs", "1", "--seeds", "0", "--out", str(out)])
    saved = json.loads(out.read_text())
    run = saved["runs"]["1"]["0"]
    assert 0.6 <= run["linear"] <= 1 and 0.6 <= run["knn"] <= 1 and run["stage1_seconds"] > 0, run
    assert saved["machine"]["cpu"] and saved["data_source"]
