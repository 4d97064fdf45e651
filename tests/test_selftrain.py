"""Self-training (FixMatch-style) on top of a stage 1: it learns, it never reads the unlabelled
images' labels, it is reproducible, and its settings are checked."""

import copy

import pytest
import torch

import twostage_lib as ts


@pytest.fixture(scope="module")
def start(contrastive_pool, bundled):
    """The shared contrastive stage 1 (conftest.py) with a head trained on 5 labels per digit."""
    net, pool = contrastive_pool
    net = copy.deepcopy(net)
    ts.seed_everything(0)  # the head's draws do not depend on which tests ran before
    labelled = ts.labels_per_class(pool, 5, seed=0)
    ts.train_stage2(net, labelled, epochs=200, lr=3e-3, batch_size=50, progress=False)
    return net, labelled, pool, bundled.test.subset(torch.arange(2000))


def run(start, **settings):
    net, labelled, pool, _ = start
    net = copy.deepcopy(net)
    options = dict(epochs=4, lr=1e-3, batch_size=32, unlabelled_ratio=4, progress=False) | settings
    history = ts.selftrain(net, labelled, pool, **options)
    return net, history


def test_selftraining_uses_the_unlabelled_images_to_learn(start):
    before = ts.evaluate_model(start[0], start[3]).accuracy
    net, history = run(start)
    after = ts.evaluate_model(net, start[3]).accuracy
    assert after > before + 0.01, (before, after)
    assert 0 < history["pseudo_rate"][-1] <= 1 and history.stage == "selftrain"


def test_the_unlabelled_labels_are_never_read(start):
    """Scrambling every unlabelled label changes nothing, bit for bit: only `labelled` is read."""
    net, labelled, pool, test = start
    scrambled = pool.subset(torch.arange(len(pool)))
    scrambled.labels = torch.randint(0, 10, (len(pool),), generator=torch.Generator().manual_seed(1))
    a, _ = run(start)
    b, _ = run((net, labelled, scrambled, test))
    assert ts.unchanged(b, ts.snapshot(a))


def test_the_labelled_subset_is_never_exceeded(start, monkeypatch):
    """Every labelled image and label the loop draws is one of the labelled pairs; nothing else is labelled."""
    import twostage_lib.training as T

    drawn, real = [], T.Batches
    xl, yl = start[1].on("cpu")

    class Recording(real):
        def __iter__(self):
            for x, y in super().__iter__():
                if len(self.x) == len(xl):  # the labelled batches (the unlabelled pool is 100 times larger)
                    drawn.append((x.cpu(), y.cpu()))  # the loop may run on a GPU; compared on the CPU
                yield x, y

    monkeypatch.setattr(T, "Batches", Recording)
    run(start, epochs=1)
    assert sum(len(y) for _, y in drawn) > len(xl), "the labelled images are drawn again and again"
    for x, y in drawn:
        match = (x[:, None, :] == xl[None]).all(-1)  # batch rows x labelled rows
        assert match.any(1).all() and torch.equal(yl[match.float().argmax(1)], y)


@pytest.mark.parametrize("n_labelled, expected_batch", [(50, 32), (5000, 125)])
def test_an_epoch_passes_over_every_label_once_at_least(start, monkeypatch, n_labelled, expected_batch):
    """Few labels: FixMatch's 32 labelled to 4 x 32 unlabelled a step. As many labels as images: the
    labelled batch grows so that the 40 steps of an epoch (5,000 / 128) also cover all 5,000 labels,
    instead of 40 x 32 = 1,280 of them."""
    import twostage_lib.training as T

    net, labelled, pool, _ = start
    labelled = labelled if n_labelled == len(labelled) else pool
    sizes, real = {}, T.Batches

    class Recording(real):
        def __iter__(self):
            for x, y in super().__iter__():
                if self.batch_size != 128:  # the unlabelled batches are 4 x 32
                    sizes.setdefault("labelled", []).append(len(y))
                yield x, y

    monkeypatch.setattr(T, "Batches", Recording)
    ts.selftrain(copy.deepcopy(net), labelled, pool, epochs=1, lr=1e-3, batch_size=32, unlabelled_ratio=4,
                 progress=False)  # fmt: skip
    drawn = sizes["labelled"][:40]
    assert drawn[0] == expected_batch and sum(drawn) >= len(labelled)


def test_reproducible_with_a_seed(start):
    a, ha = run(start, seed=3)
    b, hb = run(start, seed=3)
    c, _ = run(start, seed=4)
    assert ts.unchanged(b, ts.snapshot(a)) and ha["train_loss"] == hb["train_loss"]
    assert not ts.unchanged(c, ts.snapshot(a))


@pytest.mark.parametrize(
    "settings, message",
    [({"threshold": 1.5}, "threshold must be a finite number >= 0.0 and <= 1.0"),
     ({"unlabelled_weight": -1}, "unlabelled_weight"),
     ({"unlabelled_ratio": 0}, "unlabelled_ratio"), ({"lr": float("nan")}, "learning rate")],
)  # fmt: skip
def test_bad_settings_are_refused(start, settings, message):
    with pytest.raises(ValueError, match=message):
        run(start, **settings)


def test_a_threshold_of_one_ignores_every_pseudo_label(start):
    """With threshold 1.0 almost nothing is confident enough: the unlabelled term stays near zero."""
    _, history = run(start, threshold=1.0, epochs=1)
    assert history["pseudo_rate"][-1] < 0.05


@pytest.fixture(scope="module")
def noisy(contrastive_pool):
    """2,000 pool images labelled, a fifth of them with a wrong digit (the true one plus 1 to 9, mod
    10): guessed labels, like propagation's but with more mistakes; and the shared stage 1 with a head
    trained on them, as the study's propagation row trains one before self-training."""
    net, pool = contrastive_pool
    g = torch.Generator().manual_seed(0)
    guessed = pool.subset(torch.randperm(len(pool), generator=g)[:2000])
    truth = guessed.labels.clone()
    wrong = torch.rand(len(truth), generator=g) < 0.2
    guessed.labels = torch.where(wrong, (truth + torch.randint(1, 10, truth.shape, generator=g)) % 10, truth)
    net = copy.deepcopy(net)
    ts.seed_everything(0)
    ts.train_stage2(net, guessed, epochs=20, lr=3e-3, batch_size=100, progress=False)
    return net, guessed, truth, wrong


def test_overrule_sets_aside_wrong_labels_more_than_right_ones(start, noisy, monkeypatch):
    """With a fifth of the labels wrong the model sets aside about a fifth of those it draws once
    ``overrule`` has eased in (here over the first of two epochs); with the same images truly
    labelled, clearly fewer (the head learnt some of the wrong labels, so it contradicts a few true
    ones). Without ``overrule`` every label is trusted and none is counted."""
    import twostage_lib.training as T

    monkeypatch.setattr(T, "RAMP_EPOCHS", 1)
    pool = start[2]
    net, guessed, truth, _ = noisy
    right = guessed.subset(torch.arange(len(guessed)))
    right.labels = truth
    settings = dict(epochs=2, lr=1e-3, batch_size=32, unlabelled_ratio=4, progress=False)
    on_guesses = ts.selftrain(copy.deepcopy(net), guessed, pool, overrule=0.6, **settings)["overruled"]
    on_truth = ts.selftrain(copy.deepcopy(net), right, pool, overrule=0.6, **settings)["overruled"]
    assert 0.12 < on_guesses[-1] < 0.3, on_guesses
    assert on_guesses[-1] > on_truth[-1] + 0.05, (on_guesses, on_truth)
    assert "overruled" not in ts.selftrain(copy.deepcopy(net), guessed, pool, **settings).last


def test_overrule_eases_in_from_one_over_the_ramp_then_holds(start, monkeypatch):
    """Each step's labelled loss gets an ``overrule`` that falls in a straight line from 1.0 (only a
    certain contradiction sets a label aside) to the value asked for over ``RAMP_EPOCHS`` epochs, as
    VAT's weight rises, then stays there; without ``overrule``, none."""
    import twostage_lib.training as T

    given, real = [], T._labelled_loss

    def spy(logits, labels, overrule, tally):
        given.append(overrule)
        return real(logits, labels, overrule, tally)

    monkeypatch.setattr(T, "_labelled_loss", spy)
    monkeypatch.setattr(T, "RAMP_EPOCHS", 2)
    run(start, overrule=0.4, epochs=3)
    ramp = 2 * len(given) // 3  # steps in 2 of the 3 epochs
    assert given[0] == pytest.approx(1 - 0.6 / ramp) and given[ramp // 2 - 1] == pytest.approx(0.7)
    assert all(a > b for a, b in zip(given[:ramp], given[1:ramp]))
    assert given[ramp - 1 :] == pytest.approx([0.4] * (len(given) - ramp + 1))
    given.clear()
    run(start, epochs=1)
    assert given and set(given) == {None}


@pytest.mark.parametrize("overrule", [0.0, 1.5, float("nan"), "high"])
def test_a_bad_overrule_is_refused(start, overrule):
    with pytest.raises(ValueError, match="overrule must be a finite number <= 1.0 and > 0.0"):
        run(start, overrule=overrule, epochs=1)
