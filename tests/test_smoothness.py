"""Virtual adversarial training (``smoothness.py``, ``selftrain(vat=...)``): the perturbation it
finds is one the model is sensitive to, training with it makes the model smoother there, it reads
no label, it is reproducible, and bad radii are refused."""

import copy

import pytest
import torch
import torch.nn.functional as F

import twostage_lib as ts
from twostage_lib.smoothness import RAMP_EPOCHS, Smoothing, unit, virtual_adversarial_loss


@pytest.fixture(scope="module")
def start(contrastive_pool, bundled):
    """The shared contrastive stage 1 (conftest.py) with a head trained on 5 labels per digit."""
    net, pool = contrastive_pool
    net = copy.deepcopy(net)
    ts.seed_everything(0)
    labelled = ts.labels_per_class(pool, 5, seed=0)
    ts.train_stage2(net, labelled, epochs=200, lr=3e-3, batch_size=50, progress=False)
    return net.eval(), labelled, pool, bundled.test.subset(torch.arange(2000))


def images(start, n=500):
    x, _ = start[3].on("cpu")
    return x[:n]


def divergence(net, x, r):
    """KL(p(x) || p(x + r)) averaged over the images."""
    with torch.no_grad():
        p, q = net(x).log_softmax(1), net(x + r).log_softmax(1)
    return F.kl_div(q, p, log_target=True, reduction="batchmean").item()


def test_the_direction_found_changes_the_answer_more_than_a_random_one(start):
    """One step of power iteration points where the model is sensitive: at the same length, the
    found perturbation moves the answer several times more than random ones do."""
    net, x = start[0], images(start)
    g = torch.Generator().manual_seed(0)
    found = virtual_adversarial_loss(net, x, net(x), 2.0, generator=g).item()
    random = [divergence(net, x, 2.0 * unit(torch.randn(x.shape, generator=g))) for _ in range(5)]
    assert found > 3 * max(random), (found, random)


def test_the_loss_has_gradients_for_the_weights_and_none_through_the_target(start):
    net = copy.deepcopy(start[0])
    ts.unfreeze_stage1(net)  # stage 2's training left it frozen
    x = images(start, 64)
    answer = net(x)
    loss = virtual_adversarial_loss(net, x, answer, 2.0, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_training_with_it_makes_the_model_smoother(start):
    """What VAT asks for, measured on test images the training never saw: after self-training with
    ``vat``, the worst-direction change of the answer is clearly smaller than after the same
    self-training without it."""
    net, labelled, pool, _ = start
    x = images(start)
    settings = dict(epochs=2, lr=1e-3, batch_size=32, unlabelled_ratio=4, progress=False, seed=0)
    plain, smooth = copy.deepcopy(net), copy.deepcopy(net)
    ts.selftrain(plain, labelled, pool, **settings)
    ts.selftrain(smooth, labelled, pool, vat=2.0, **settings)

    def sensitivity(model):
        g = torch.Generator().manual_seed(1)
        return virtual_adversarial_loss(model, x, model(x), 2.0, generator=g).item()

    assert sensitivity(smooth) < 0.7 * sensitivity(plain), (sensitivity(smooth), sensitivity(plain))
    assert ts.evaluate_model(smooth, start[3]).accuracy > ts.evaluate_model(net, start[3]).accuracy


def test_with_vat_the_unlabelled_labels_are_never_read_and_a_seed_repeats(start):
    net, labelled, pool, _ = start
    scrambled = pool.subset(torch.arange(len(pool)))
    scrambled.labels = torch.randint(0, 10, (len(pool),), generator=torch.Generator().manual_seed(1))
    settings = dict(epochs=1, lr=1e-3, batch_size=32, unlabelled_ratio=4, progress=False, vat=2.0, seed=3)
    a, b, c = copy.deepcopy(net), copy.deepcopy(net), copy.deepcopy(net)
    ts.selftrain(a, labelled, pool, **settings)
    ts.selftrain(b, labelled, scrambled, **settings)
    ts.selftrain(c, labelled, pool, **settings | {"seed": 4})
    assert ts.unchanged(b, ts.snapshot(a))
    assert not ts.unchanged(c, ts.snapshot(a))


@pytest.mark.parametrize("vat", [0.0, -1.0, float("nan"), "big"])
def test_a_bad_radius_is_refused(start, vat):
    net, labelled, pool, _ = start
    with pytest.raises(ValueError, match="vat must be a finite number > 0.0"):
        ts.selftrain(copy.deepcopy(net), labelled, pool, vat=vat, epochs=1, progress=False)
    with pytest.raises(ValueError, match="radius must be a finite number > 0.0"):
        virtual_adversarial_loss(net, images(start, 8), net(images(start, 8)), vat)


def test_the_weight_ramps_up_over_the_first_epochs(start, monkeypatch):
    """Step by step the term is the loss times a weight that grows linearly to 1 over RAMP_EPOCHS
    epochs and stays there (at full weight from the first step it merged a digit into another)."""
    import twostage_lib.smoothness as S

    net, x = start[0], images(start, 32)
    monkeypatch.setattr(S, "virtual_adversarial_loss", lambda *a, **k: torch.tensor(2.0))
    term = Smoothing(2.0, steps_per_epoch=4)
    weights = [term(net, x, net(x), next(term.weights)).item() / 2.0 for _ in range(4 * RAMP_EPOCHS + 3)]
    assert weights[0] == pytest.approx(1 / (4 * RAMP_EPOCHS))
    assert all(a < b for a, b in zip(weights[: 4 * RAMP_EPOCHS], weights[1 : 4 * RAMP_EPOCHS]))
    assert weights[4 * RAMP_EPOCHS - 1 :] == [1.0] * 4
