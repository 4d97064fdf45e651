"""The training step and its CUDA graph (twostage_lib/step.py, issue 33).

On the CPU no graph can be recorded, so ``EagerReplay`` stands in for the recording: it keeps the
step it was handed and runs it on the same buffers at each "replay", as a graph replays its kernels.
Everything around the recording (the warm-up steps, the buffers each batch is copied into, a graph
for each batch shape, the learning rates swapped for tensors and back, the fallback when
recording fails) then runs as on a GPU, and must train the same weights, bit for bit, as the plain
step. The tests marked for CUDA record real graphs.
"""

import warnings

import pytest
import torch

import twostage_lib as ts
from twostage_lib import step as S

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
QUICK = dict(progress=False, batch_size=256, read_every_step=False)  # 2,000 images: 7 full batches and one of 208


class EagerReplay(S.StepGraph):
    """A StepGraph whose "graph" is its step run again on the recorded buffers (the CPU has no graphs)."""

    recorded = 0

    def capture(self, run):
        EagerReplay.recorded += 1
        outputs = [None, None]

        def replay():  # a graph writes its outputs into the same tensors at each replay
            outputs[:] = run()

        return replay, outputs


class FailingRecord(S.StepGraph):
    def capture(self, run):
        raise RuntimeError("operation not permitted when stream is capturing")


@pytest.fixture
def graphs_on_cpu(monkeypatch):
    """Let the loop build a StepGraph on the CPU, of the class the test sets."""
    monkeypatch.setattr(S, "can_record", lambda optimizer, device: True)
    EagerReplay.recorded = 0

    def use(cls):
        monkeypatch.setattr(S, "StepGraph", cls)

    return use


def train(stage, small, **extra):
    """One short run of a stage from the same start; returns the weights and the history."""
    torch.manual_seed(0)
    net = ts.TwoStageNetwork()
    if stage == "contrastive":
        h = ts.train_stage1(net, small[0], objective="contrastive", epochs=2, **QUICK, **extra)
    elif stage == "denoising":
        h = ts.train_stage1(net, small[0], objective="denoising", epochs=2, **QUICK, **extra)
    elif stage == "stage2":
        h = ts.train_stage2(net, small[0], **{**QUICK, "batch_size": 512, "epochs": 3, **extra})
    elif stage == "selftrain":  # the propagate row's: the overrule and VAT's weight ramp every step
        labelled = ts.labels_per_class(small[0], 10, seed=0)
        ramps = dict(overrule=0.3, vat=2.0)
        h = ts.selftrain(net, labelled, small[0], epochs=2, **ramps, **dict(QUICK, batch_size=64), **extra)
    else:  # what RUN fine-tunes with: augmentation, a cosine schedule stepped each step; and clipping
        h = ts.finetune(net, small[0], epochs=2, augment=True, scheduler="cosine", clip_grad_norm=5.0, **QUICK, **extra)
    return ts.snapshot(net), h


def same(a, b) -> bool:
    """Two snapshots (``ts.snapshot``) equal bit for bit."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("stage", ["contrastive", "denoising", "stage2", "finetune"])
def test_the_replayed_step_trains_the_same_weights_bit_for_bit(graphs_on_cpu, small, stage):
    plain, h_plain = train(stage, small, cuda_graph=False)
    graphs_on_cpu(EagerReplay)
    replayed, h = train(stage, small)
    assert EagerReplay.recorded == 1  # recorded once, in the first epoch, and replayed from then on
    assert h.graphed and not h_plain.graphed
    assert same(replayed, plain)
    assert h["train_loss"] == h_plain["train_loss"] and h["lrs"] == h_plain["lrs"]
    assert all(type(lr) is float for lrs in h["lrs"] for lr in lrs)  # the rates are numbers again after recording
    if stage == "finetune":
        assert h["grad_norm_max"] == h_plain["grad_norm_max"]


@pytest.mark.parametrize("extras", [{}, dict(overrule=0.3, vat=2.0)], ids=["fixmatch", "overrule+vat"])
def test_self_training_replayed_trains_the_same_weights_bit_for_bit(graphs_on_cpu, bundled, small, extras):
    """Self-training's step takes its labelled batch and its ramped overrule and VAT weight from the
    loop's feed (numbers held in tensors when replayed), and sums its tallies in place: replayed, the
    same weights, losses, pseudo-label and overruled shares."""
    labelled = ts.labels_per_class(bundled.train, 10, seed=0)
    unlabelled = small[0]  # 2,000 images: 4 full unlabelled batches of 448 an epoch and one of 208

    def run(**loop):
        torch.manual_seed(0)
        net = ts.TwoStageNetwork()
        h = ts.selftrain(net, labelled, unlabelled, epochs=3, progress=False, read_every_step=False, **extras, **loop)
        return ts.snapshot(net), h

    plain, h_plain = run(cuda_graph=False)
    graphs_on_cpu(EagerReplay)
    replayed, h = run()
    assert EagerReplay.recorded == 2 and h.graphed  # 100 labels at 64 a step: labelled batches of 64 and 36
    assert same(replayed, plain)
    for key in ("train_loss", "pseudo_rate", "overruled"):
        assert h[key] == h_plain[key], key
    assert max(h["pseudo_rate"]) > 0 and (not extras or max(h["overruled"]) > 0)  # the tallies counted


def test_the_last_smaller_batch_gets_a_graph_of_its_own(graphs_on_cpu, small):
    """Stage 2 at 512: 3 full batches and one of 464 an epoch. The full batches warm up in epoch 1 and
    are recorded in epoch 2; the last batch warms up in epochs 1-3 and is recorded in epoch 4."""
    plain, h_plain = train("stage2", small, cuda_graph=False, epochs=6)
    graphs_on_cpu(EagerReplay)
    replayed, h = train("stage2", small, epochs=6)
    assert EagerReplay.recorded == 2
    assert same(replayed, plain) and h["train_loss"] == h_plain["train_loss"]


def test_a_step_that_cannot_be_recorded_warns_once_and_trains_step_by_step(graphs_on_cpu, small):
    plain, h_plain = train("finetune", small, cuda_graph=False)
    graphs_on_cpu(FailingRecord)
    with pytest.warns(UserWarning, match=r"could not be recorded as a CUDA graph \(RuntimeError: operation not "
                      r"permitted when stream is capturing\); every step now runs one by one") as caught:  # fmt: skip
        fallback, h = train("finetune", small)
    assert len([w for w in caught if "CUDA graph" in str(w.message)]) == 1
    assert not h.graphed and same(fallback, plain) and h["train_loss"] == h_plain["train_loss"]


def test_a_diverging_replayed_step_is_rolled_back_with_its_epoch(graphs_on_cpu, small):
    """The replayed step's losses are read after the epoch: a NaN there undoes the epoch, as without a graph."""
    graphs_on_cpu(EagerReplay)
    torch.manual_seed(0)
    net = ts.TwoStageNetwork()
    before = ts.snapshot(net)
    with pytest.raises(ts.TrainingDiverged, match=r"in epoch 1 at step \d+ \(read after the epoch's last step\); "
                       r"the weights were put back"):  # fmt: skip
        ts.finetune(net, small[0], epochs=1, lr=1e12, **QUICK)
    assert EagerReplay.recorded == 1 and ts.unchanged(net, before)


def test_only_the_library_s_own_steps_are_offered_to_a_graph(graphs_on_cpu, small, monkeypatch):
    """What a step does in Python runs once, when recorded: a given objective, augmentation or loss
    might keep state between steps (a counter, a schedule), so it always runs step by step. (The
    library's self-training is offered: test_self_training_replayed_trains_the_same_weights_bit_for_bit.)"""
    graphs_on_cpu(EagerReplay)
    net = ts.TwoStageNetwork()
    data = small[0]
    steps = {"count": 0}

    def counting_loss(logits, y):  # state in Python: a graph would freeze it at its first value
        steps["count"] += 1
        return torch.nn.functional.cross_entropy(logits, y)

    runs = [
        ts.train_stage1(net, data, objective=lambda m, x: m.features(x).pow(2).mean(), epochs=1, **QUICK),
        ts.finetune(net, data, augment=lambda x: x * 1.0, epochs=1, **QUICK),
        ts.finetune(net, data, criterion=counting_loss, epochs=1, **QUICK),
        ts.train_stage2(net, data, cache_features=False, epochs=1, **QUICK),
        ts.train_stage1(net, data, objective="contrastive", epochs=1, **dict(QUICK, read_every_step=True)),
        ts.train_stage1(net, data, objective="autoencoder", epochs=1, **dict(QUICK, cuda_graph=False)),
    ]
    assert [h.graphed for h in runs] == [False] * 6 and EagerReplay.recorded == 0
    assert steps["count"] == 8  # every step ran the given loss
    weighted = torch.nn.CrossEntropyLoss(weight=torch.linspace(0.5, 2.0, 10))  # notebook 07's: replayed
    assert ts.finetune(net, data, criterion=weighted, epochs=1, **QUICK).graphed


def test_each_batch_shape_warms_up_then_replays_and_every_batch_trains_once(graphs_on_cpu, small, monkeypatch):
    """8 batches an epoch, the last smaller: 3 warm-up steps, then 4 replays, and the last batch warms up
    its own graph; then 7 replays and the last batch's second warm-up."""
    calls = []

    class Counting(EagerReplay):
        def on_side_stream(self, x, y):
            calls.append("warm-up")
            return super().on_side_stream(x, y)

        def capture(self, run):
            replay, outputs = super().capture(run)

            def counted():
                calls.append("replay")
                replay()

            return counted, outputs

    graphs_on_cpu(Counting)
    net = ts.TwoStageNetwork()
    original = S.make_step

    def spy(*args, **kwargs):
        step = original(*args, **kwargs)

        def counted(x, y):
            calls.append(len(x))
            return step(x, y)

        return counted

    monkeypatch.setattr(S, "make_step", spy)
    ts.finetune(net, small[0], epochs=2, **QUICK)
    sizes = [c for c in calls if isinstance(c, int)]
    assert calls.count("warm-up") == 3 + 2 and calls.count("replay") == 4 + 7
    assert sizes == ([256] * 7 + [2000 - 7 * 256]) * 2  # every batch trained once, the smaller last one too


# ------------------------------------------------------------ CUDA: real graphs


def fresh_net():
    torch.manual_seed(0)
    return ts.TwoStageNetwork()


@CUDA
@pytest.mark.parametrize("stage", ["contrastive", "stage2", "finetune", "selftrain"])
def test_on_cuda_the_recorded_step_trains_as_the_plain_one(small, stage):
    """Same start, same seed: the graph's replays draw the same random numbers (its generators are
    registered) and follow the cosine schedule (its rates are tensors), so the weights agree, to a
    tolerance: a recorded graph may pick other kernels. A constant rate instead of the schedule
    moves 93-100% of the fine-tuned weights by more than that tolerance over these 16 steps (on a
    CPU, by up to 0.016)."""
    plain, h_plain = train(stage, small, device="cuda", cuda_graph=False)
    replayed, h = train(stage, small, device="cuda")
    assert h.graphed and not h_plain.graphed
    for name, value in replayed.items():
        assert torch.allclose(value.float(), plain[name].float(), rtol=1e-3, atol=1e-4), name
    assert h["train_loss"] == pytest.approx(h_plain["train_loss"], rel=1e-3)


@CUDA
def test_on_cuda_a_step_that_reads_the_host_falls_back_and_still_trains(small):
    def reads_the_host(logits, y):
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss if loss.item() > -1 else loss  # a host read: a graph cannot record it

    net = fresh_net()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = ts.loop.fit(
            "finetune",
            net.cuda(),
            ts.loop.make_optimizer(net.parameters(), 1e-3),
            ts.Batches(*ts.as_tensors(small[0], "cuda"), batch_size=256),
            lambda xb, yb: reads_the_host(net(xb), yb),
            ts.LoopSettings(epochs=2, progress=False),
            replayable=(),
        )
    assert any("could not be recorded as a CUDA graph" in str(w.message) for w in caught)
    assert not h.graphed and h["train_loss"][1] < h["train_loss"][0]


@CUDA
def test_on_cuda_a_diverging_replayed_step_is_rolled_back(small):
    net = fresh_net()
    before = ts.snapshot(net)
    with pytest.raises(ts.TrainingDiverged, match=r"\(read after the epoch's last step\); the weights were put back"):
        ts.finetune(net, small[0], epochs=1, lr=1e12, device="cuda", progress=False, batch_size=256)
    assert ts.unchanged(net.cpu(), before)


@CUDA
def test_on_cuda_the_host_waits_for_the_gpu_a_few_times_an_epoch_not_every_step(small):
    """The synchronising calls PyTorch can flag (``set_sync_debug_mode``): those of 3 epochs less those
    of 1, per extra epoch, stay a handful (the guard's weight norms, the losses read once) while an
    epoch has 32 steps."""

    def syncs(epochs):
        net = fresh_net()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                h = ts.finetune(net, small[0], epochs=epochs, augment=True, scheduler="cosine", device="cuda",
                                progress=False, batch_size=64)  # fmt: skip
            finally:
                torch.cuda.set_sync_debug_mode("default")
        assert h.graphed
        return sum("synchronizing" in str(w.message) for w in caught)

    assert (syncs(3) - syncs(1)) / 2 <= 6
