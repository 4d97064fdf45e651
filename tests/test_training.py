import copy
import math
import warnings

import pytest
import torch
import torch.nn as nn

import twostage_lib as ts
from twostage_lib.loop import make_optimizer
from twostage_lib.recipe import DEFAULT

FAST = dict(device="cpu", progress=False, batch_size=256)
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))


# ------------------------------------------------------------ stage 1


def test_original_stage1_loss_is_identically_zero_with_zero_gradient(model):
    x = torch.randn(64, 784)
    loss = ts.original_loss(model, x)
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.stage1.parameters())


def test_train_stage1_refuses_an_objective_without_encoder_gradient(model, small):
    before = ts.snapshot(model)
    with pytest.raises(ValueError, match=r"zero gradient.*features\.detach\(\).*autoencoder"):
        ts.train_stage1(model, small[0], objective=ts.original_loss, epochs=1, **FAST)
    assert ts.unchanged(model, before)


@pytest.mark.parametrize("objective", ["autoencoder", "denoising", "contrastive"])
def test_stage1_objectives_learn(model, small, objective):
    h = ts.train_stage1(model, small[0], objective=objective, epochs=4, val=small[1], **FAST)
    # NT-Xent on strong views falls slowly from chance, log(2 * 256 - 1) = 6.24 (6.0 -> 5.65 here);
    # a stage 1 that learns nothing stays within noise (about 0.02) of where it starts
    factor = 0.95 if objective == "contrastive" else 0.8
    assert h["train_loss"][-1] < factor * h["train_loss"][0]
    assert h["val_loss"][-1] < h["val_loss"][0]
    assert h.objective.name == objective and ts.freezing.is_frozen(model.stage1) is False


def test_autoencoder_reconstructs_better_than_the_mean(model, small):
    h = ts.train_stage1(model, small[0], objective="autoencoder", epochs=5, **FAST)
    x, _ = small[1].on("cpu")
    with torch.no_grad():
        err = ((h.objective.reconstruct(model, x) - x) ** 2).mean()
    assert err < 0.5 * x.var()  # predicting the mean image would score about x.var()


def test_nt_xent_pairs_each_view_with_its_twin():
    from twostage_lib.objectives import nt_xent

    n, t = 4, 0.5
    basis = torch.eye(n, 8)  # N images, orthogonal unit vectors; two identical views of each
    aligned = nt_xent(torch.cat([basis, basis]), t)
    # each row sees its twin at similarity 1/t and the 2N-2 other rows at 0 (its own is excluded)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * n - 2))
    assert aligned.item() == pytest.approx(expected, rel=1e-6)
    swapped = nt_xent(torch.cat([basis, basis.roll(1, dims=0)]), t)  # twins now point apart
    assert swapped.item() > aligned.item() + 1


def test_unknown_objective_is_named(model, small):
    with pytest.raises(ValueError, match="unknown stage-1 objective 'vae'.*autoencoder, denoising, contrastive"):
        ts.train_stage1(model, small[0], objective="vae", **FAST)


# ------------------------------------------------------------ freezing and stage 2


def test_a_snapshot_is_a_cpu_copy_that_sees_a_one_bit_change(model):
    before = ts.snapshot(model)
    assert all(v.device.type == "cpu" for v in before.values())  # comparable wherever training moves the model
    with torch.no_grad():
        w = model.stage1[0].weight
        w[0, 0] = torch.nextafter(w[0, 0], torch.tensor(1.0))  # the next float up: one bit
    assert not ts.unchanged(model, before)


def test_train_stage2_leaves_stage1_bit_for_bit_unchanged(model, small):
    ts.train_stage1(model, small[0], epochs=1, **FAST)
    before1, before2 = ts.snapshot(model.stage1), ts.snapshot(model.stage2)
    h = ts.train_stage2(model, small[0], epochs=3, **FAST)
    assert ts.unchanged(model.stage1, before1)
    assert not ts.unchanged(model.stage2, before2)
    assert h["train_loss"][-1] < h["train_loss"][0]


def test_stage2_defaults_scale_the_learning_rate_with_the_batch(bundled):
    """Stage 2's defaults, batch 2048 at lr 8e-3, take a quarter of batch 512's steps an epoch. In half
    the steps of 5 epochs at batch 512 and lr 2e-3 they reach at least its accuracy (measured: 89.7% vs
    88.3%); at the unscaled 2e-3 they fall behind (86.8%)."""
    torch.manual_seed(0)
    pretrained = ts.TwoStageNetwork()
    ts.train_stage1(pretrained, bundled.train, epochs=3, device="cpu", progress=False)

    def head_accuracy(**settings):
        net = copy.deepcopy(pretrained)
        ts.train_stage2(net, bundled.train, device="cpu", progress=False, **settings)
        return ts.evaluate_model(net, bundled.test).accuracy

    assert (DEFAULT.batch_size_stage2, DEFAULT.lr_stage2) == (2048, 8e-3)
    batch_512 = head_accuracy(epochs=5, batch_size=512, lr=2e-3)  # 100 steps
    defaults = head_accuracy(epochs=10)  # 50 steps
    unscaled = head_accuracy(epochs=10, lr=2e-3)
    assert defaults >= batch_512 - 0.005
    assert defaults > unscaled + 0.015


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("cache", [True, False])
def test_frozen_even_when_the_optimizer_has_adam_state_for_stage1(model, small, cache, device):
    """The original blog post's situation: an optimizer over every weight has stepped (on the CPU) before stage 2."""
    x, y = small[0].on("cpu")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):  # Adam now holds momentum for every stage-1 weight
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:256]), y[:256]).backward()
        opt.step()
    assert all(len(opt.state[p]) > 0 for p in model.stage1.parameters())
    before = ts.snapshot(model.stage1)
    head = ts.snapshot(model.stage2)
    ts.train_stage2(model, small[0], epochs=2, optimizer=opt, cache_features=cache, **dict(FAST, device=device))
    assert ts.unchanged(model.stage1, before) and not ts.unchanged(model.stage2, head)


def test_the_freezing_trap_that_freeze_stage1_avoids(model, small):
    """requires_grad=False alone: stale gradients + Adam momentum keep moving 'frozen' weights."""
    x, y = small[0].on("cpu")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    nn.functional.cross_entropy(model(x[:256]), y[:256]).backward()
    opt.step()
    for p in model.stage1.parameters():
        p.requires_grad_(False)  # naive freeze, .grad left in place
    before = ts.snapshot(model.stage1)
    opt.zero_grad(set_to_none=False)
    nn.functional.cross_entropy(model(x[:256]), y[:256]).backward()
    opt.step()
    assert not ts.unchanged(model.stage1, before)  # it moved
    ts.freeze_stage1(model)
    before = ts.snapshot(model.stage1)
    opt.zero_grad(set_to_none=False)
    nn.functional.cross_entropy(model(x[:256]), y[:256]).backward()
    opt.step()
    assert ts.unchanged(model.stage1, before)  # it did not


def test_freeze_and_unfreeze(model):
    ts.freeze_stage1(model)
    assert ts.freezing.is_frozen(model.stage1) and not model.stage1.training and not ts.freezing.is_frozen(model.stage2)
    ts.unfreeze_stage1(model)
    assert not ts.freezing.is_frozen(model.stage1) and model.stage1.training


def test_feature_cache_gives_the_same_training_as_recomputing(small):
    results = []
    for cache in (True, False):
        torch.manual_seed(0)
        net = ts.TwoStageNetwork()
        ts.train_stage2(net, small[0], epochs=2, cache_features=cache, **FAST)
        results.append(ts.snapshot(net.stage2))
    assert all(torch.allclose(results[0][k], results[1][k], atol=1e-5) for k in results[0])


@pytest.mark.parametrize("cache", [True, False])
def test_train_stage2_on_the_transfer_network(small, cache):
    """Slide 12's ResNet-18 stage 1 takes images, not rows of 784 pixels: stage 2 must reach it
    through model.features (which adapts them), cached or recomputed, and leave it unchanged,
    BatchNorm statistics included, also when validation runs between epochs."""
    torch.manual_seed(0)
    net = ts.TransferTwoStageNetwork(num_classes=10, weights=None, image_size=32)
    x, _ = small[0].on("cpu")
    assert torch.equal(ts.stage1_features(net, x[:40], batch_size=16), net.features(x[:40]))
    before1, before2 = ts.snapshot(net.stage1), ts.snapshot(net.stage2)
    h = ts.train_stage2(
        net,
        small[0].subset(torch.arange(256)),
        epochs=3,
        lr=3e-3,
        batch_size=64,
        cache_features=cache,
        device="cpu",
        progress=False,
        val=small[1].subset(torch.arange(64)),
    )
    assert ts.unchanged(net.stage1, before1) and not ts.unchanged(net.stage2, before2)
    assert h["train_loss"][-1] < h["train_loss"][0]


@pytest.mark.parametrize("objective", ["autoencoder", "denoising", "contrastive"])
def test_train_stage1_on_the_transfer_network(small, objective):
    """Every stage-1 objective trains a ResNet-18 stage 1 too (the autoencoder through a
    512-256-784 decoder, contrastive through a 512-512-64 projection), and leaves stage 2 alone."""
    torch.manual_seed(0)
    net = ts.TransferTwoStageNetwork(num_classes=10, weights=None, image_size=32)
    before1, before2 = ts.snapshot(net.stage1), ts.snapshot(net.stage2)
    h = ts.train_stage1(
        net,
        small[0].subset(torch.arange(128)),
        objective=objective,
        epochs=4,
        lr=1e-3,
        batch_size=64,
        device="cpu",
        progress=False,
    )
    assert not ts.unchanged(net.stage1, before1) and ts.unchanged(net.stage2, before2)
    assert h["train_loss"][-1] < h["train_loss"][0]


# ------------------------------------------------------------ fine-tuning


def test_finetune_uses_a_lower_learning_rate_for_stage1(model, small):
    ts.freeze_stage1(model)
    h = ts.finetune(model, small[0], epochs=2, lr=1e-3, stage1_lr_scale=0.1, **FAST)
    assert not ts.freezing.is_frozen(model.stage1)
    assert h["lrs"][0] == [1e-4, 1e-3]


def test_finetune_improves_on_stage2_and_beats_a_floor(model, small):
    train, test = small
    ts.train_stage1(model, train, epochs=3, lr=3e-3, **FAST)
    ts.train_stage2(model, train, epochs=3, lr=3e-3, **FAST)
    after2 = ts.evaluate_model(model, test).accuracy
    ts.finetune(model, train, epochs=8, lr=3e-3, scheduler="cosine", **FAST)
    after3 = ts.evaluate_model(model, test).accuracy
    assert after3 > after2 and after3 > 0.80  # measured 0.844 with seed 0


# ------------------------------------------------------------ the shared loop


def test_step_and_cosine_schedules(model, small):
    h = ts.finetune(model, small[0], epochs=4, lr=1e-3, scheduler="step", **FAST)
    assert h["lr"] == pytest.approx([1e-3, 1e-4, 1e-5, 1e-6])  # StepLR(step_size=max(1, epochs // 3))
    h = ts.finetune(model, small[0], epochs=3, lr=1e-3, scheduler="cosine", **FAST)
    assert h["lr"][0] < 1e-3 and h["lr"][-1] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="unknown scheduler 'linear'"):
        ts.finetune(model, small[0], epochs=1, scheduler="linear", **FAST)


def test_gradient_clipping_records_the_norm_before_clipping(model, small):
    h = ts.finetune(model, small[0], epochs=2, clip_grad_norm=1e-3, **FAST)
    assert h["grad_norm_max"][0] > 1e-3 and h["grad_norm_mean"][0] > 0
    # clipped to 1e-3 the updates are tiny, so the loss barely moves compared with no clipping
    assert h["train_loss"][-1] > 0.5


def test_early_stopping_counts_like_the_seeds_and_restores_the_best(model):
    stop = ts.EarlyStopping(patience=2, min_delta=0.01)
    assert stop(1.0, model, 1) is False
    best = ts.snapshot(model)
    with torch.no_grad():
        model.stage2[0].weight.add_(1.0)
    assert stop(0.995, model, 2) is False  # not better by min_delta
    assert stop(1.2, model, 3) is True
    assert stop.restore(model) and ts.unchanged(model, best) and stop.best_epoch == 1


def test_early_stopping_inside_training(model, small):
    train, val = ts.validation_split(small[0], 200)
    stop = ts.EarlyStopping(patience=1, min_delta=10.0)  # impossible to improve by 10: stops at epoch 2
    h = ts.finetune(model, train, epochs=10, val=val, early_stopping=stop, **FAST)
    assert h.stopped_early and len(h) == 2 and h.best_epoch == 1


def nan_after(calls):
    count = {"n": 0}

    def criterion(out, y):
        count["n"] += 1
        loss = nn.functional.cross_entropy(out, y)
        return loss * float("nan") if count["n"] > calls else loss

    return criterion


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_nan_loss_stops_with_a_clear_error_and_keeps_history(model, small, device):
    steps = math.ceil(len(small[0]) / 256)
    with pytest.raises(ts.TrainingDiverged, match=r"stage2: the loss became nan in epoch 2 at step 3.*lower") as err:
        ts.train_stage2(model, small[0], epochs=5, criterion=nan_after(steps + 3), **dict(FAST, device=device))
    assert len(err.value.history) == 1 and err.value.history["train_loss"][0] > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was never applied


def test_huge_learning_rate_diverges_with_advice(model, small):
    """At lr=1e12 the first update sends the loss to NaN; that loss is caught before its own update.
    (At lr=1e8 the loss reaches 1e36 and stays finite: that is the warning below, not this error.)"""
    with pytest.raises(ts.TrainingDiverged, match="nan in epoch 1 at step 1.*learning rate is probably too high"):
        ts.finetune(model, small[0], epochs=3, lr=1e12, **FAST)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_ctrl_c_leaves_model_and_history_usable(model, small):
    steps = math.ceil(len(small[0]) / 256)

    def criterion(out, y, count={"n": 0}):  # noqa: B006 - the shared dict is the counter
        count["n"] += 1
        if count["n"] == 2 * steps + 2:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(out, y)

    with pytest.warns(UserWarning, match="interrupted in epoch 3"):
        h = ts.finetune(model, small[0], epochs=5, criterion=criterion, **FAST)
    assert h.interrupted and len(h) == 2
    assert ts.evaluate_model(model, small[1]).accuracy > 0.5


def test_same_seed_same_numbers(small):
    states = []
    for _ in range(2):
        ts.seed_everything(5)
        net = ts.TwoStageNetwork()
        ts.train_stage1(net, small[0], epochs=1, seed=5, **FAST)
        ts.finetune(net, small[0], epochs=1, seed=5, augment=True, **FAST)
        states.append(ts.snapshot(net))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_tensorboard_logging(model, small, tmp_path):
    ts.train_stage2(model, small[0], epochs=2, writer=tmp_path / "runs", val=small[1], **FAST)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "runs")).Reload()
    assert {"stage2/train_loss", "stage2/val_loss", "stage2/val_acc"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("stage2/train_loss")) == 2


def test_accepts_a_torch_dataset_and_dataloader(model):
    x, y = torch.randn(300, 784), torch.randint(0, 10, (300,))
    ds = torch.utils.data.TensorDataset(x.reshape(300, 1, 28, 28), y)
    assert len(ts.train_stage2(model, ds, epochs=1, **FAST)) == 1
    loader = torch.utils.data.DataLoader(ds, batch_size=64)
    assert len(ts.finetune(model, loader, epochs=1, **FAST)) == 1
    with pytest.raises(TypeError, match="cannot train on str"):
        ts.finetune(model, "mnist", epochs=1, **FAST)


def test_device_selection():
    assert ts.select_device("cpu").type == "cpu"
    assert ts.select_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            ts.select_device("cuda")


def test_fused_adam_with_parameter_groups():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = make_optimizer([{"params": [a], "lr": 1e-4}, {"params": iter([b])}], lr=1e-3)
    assert opt.defaults["fused"] is True and [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3]


# ------------------------------------------------------------ precision


def test_unknown_precision_is_refused_with_the_choices(model, small):
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'.*'auto'.*'fp32'.*'bf16'"):
        ts.train_stage2(model, small[0], epochs=1, precision="fp16", **FAST)


@pytest.mark.parametrize("fast", [True, False])
def test_auto_precision_uses_bf16_only_where_the_hardware_is_fast(model, small, monkeypatch, fast):
    import twostage_lib.runtime as runtime

    monkeypatch.setattr(runtime, "has_fast_bf16", lambda device: fast)
    h = ts.finetune(model, small[0], epochs=1, **FAST)  # precision="auto" is the default
    assert h.precision == ("bf16" if fast else "fp32")


def test_auto_precision_needs_enough_work_per_step(model, small, monkeypatch):
    """bfloat16 pays only when a step is mostly matrix products: trained weights x batch >= BF16_MIN_WORK."""
    import twostage_lib.runtime as runtime

    monkeypatch.setattr(runtime, "has_fast_bf16", lambda device: True)
    cpu = torch.device("cpu")
    assert runtime.resolve_precision("auto", cpu, runtime.BF16_MIN_WORK - 1) == "fp32"
    assert runtime.resolve_precision("auto", cpu, runtime.BF16_MIN_WORK) == "bf16"
    data, quick = small[0], dict(device="cpu", progress=False)
    assert ts.train_stage2(model, data, epochs=1, **FAST).precision == "fp32"  # 8,906 weights x 256
    assert ts.finetune(model, data, epochs=1, batch_size=32, **quick).precision == "fp32"  # 242,762 x 32
    assert ts.finetune(model, data, epochs=1, **FAST).precision == "bf16"  # 242,762 x 256
    few = data.subset(torch.arange(40))  # a batch larger than the data counts as the data's size
    assert ts.finetune(model, few, epochs=1, batch_size=512, **quick).precision == "fp32"  # 242,762 x 40
    assert ts.train_stage2(model, data, epochs=1, precision="bf16", **FAST).precision == "bf16"  # asked for


# on a machine without fast bfloat16, precision="bf16" still runs, with a warning that it is slow
quiet_bf16 = pytest.mark.filterwarnings("ignore:precision='bf16'")


@quiet_bf16
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bf16_autocasts_the_forward_and_keeps_float32_weights_and_gradients(model, small, precision):
    seen = []

    def criterion(out, y):
        seen.append(out.dtype)
        return nn.functional.cross_entropy(out, y)

    h = ts.finetune(model, small[0], epochs=1, criterion=criterion, precision=precision, **FAST)
    assert h.precision == precision
    assert set(seen) == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())


@quiet_bf16
def test_bf16_learns_as_well_as_fp32(small):
    results = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        net = ts.TwoStageNetwork()
        h1 = ts.train_stage1(net, small[0], epochs=3, lr=3e-3, precision=precision, **FAST)
        ts.train_stage2(net, small[0], epochs=3, lr=3e-3, precision=precision, **FAST)
        ts.finetune(net, small[0], epochs=5, lr=3e-3, precision=precision, **FAST)
        results[precision] = (h1["train_loss"][-1], ts.evaluate_model(net, small[1]).accuracy)
    (loss32, acc32), (loss16, acc16) = results["fp32"], results["bf16"]
    assert loss16 < 1.05 * loss32  # reconstruction error within 5%
    assert acc16 > acc32 - 0.02 and acc16 > 0.83  # measured 86.6% (fp32 86.3%)


def test_augmentation_runs_in_float32_inside_autocast():
    x = torch.rand(64, 784)
    plain = ts.strong_augment(x, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ts.strong_augment(x, generator=torch.Generator().manual_seed(0))
    assert mixed.dtype == torch.float32 and torch.equal(plain, mixed)


def test_explicit_bf16_without_fast_hardware_warns(model, small, monkeypatch):
    import twostage_lib.runtime as runtime

    monkeypatch.setattr(runtime, "has_fast_bf16", lambda device: False)
    with pytest.warns(UserWarning, match="no fast bfloat16.*precision='fp32'"):
        ts.train_stage2(model, small[0], epochs=1, precision="bf16", **FAST)


def test_fast_bf16_is_only_claimed_for_cpus_and_gpus_that_have_it():
    assert ts.has_fast_bf16(torch.device("meta")) is False  # neither a CPU nor a GPU
    cpu_has_it = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert ts.has_fast_bf16(torch.device("cpu")) == cpu_has_it


# ------------------------------------------------------------ CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("stage", ["contrastive", "stage2", "finetune"])
def test_on_cuda_no_step_copies_from_the_host(small, stage):
    """The data is copied to the GPU once; then each epoch copies only its shuffled order (one
    index tensor), whatever the number of steps. Counted from the profiler's host-to-device copies."""
    from torch.profiler import ProfilerActivity, profile

    def copies(epochs):
        torch.manual_seed(0)
        net = ts.TwoStageNetwork()
        fast = dict(device="cuda", progress=False, batch_size=256)  # 8 steps an epoch
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            if stage == "contrastive":
                ts.train_stage1(net, small[0], objective="contrastive", epochs=epochs, **fast)
            elif stage == "stage2":
                ts.train_stage2(net, small[0], epochs=epochs, **fast)
            else:
                ts.finetune(net, small[0], epochs=epochs, augment=True, **fast)
            torch.cuda.synchronize()
        return sum(e.count for e in prof.key_averages() if "HtoD" in e.key)

    small[0].rows("cuda")  # the one copy of the images (TensorData keeps it), before counting
    assert copies(5) - copies(1) <= 4  # 4 more epochs, 32 more steps: at most one copy an epoch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_a_snapshot_taken_on_the_cpu_still_compares(model, small):
    """Training moves the model to the GPU; a snapshot taken before must still say what moved."""
    before1, before2 = ts.snapshot(model.stage1), ts.snapshot(model.stage2)
    ts.train_stage2(model, small[0], epochs=1, device="cuda", progress=False)
    assert next(model.parameters()).is_cuda
    assert ts.unchanged(model.stage1, before1) and not ts.unchanged(model.stage2, before2)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("train", [ts.train_stage2, ts.finetune])
def test_a_class_weighted_loss_built_on_the_cpu_works_on_each_device(model, small, train, device):
    """As notebook 07 builds it: class weights on the CPU, a model that training puts on the GPU."""
    weights = torch.linspace(0.5, 2.0, 10)
    extra = dict(sample_weights=weights[small[0].labels]) if train is ts.finetune else {}
    h = train(
        model,
        small[0],
        epochs=3,
        lr=1e-2,
        criterion=nn.CrossEntropyLoss(weight=weights),
        **dict(FAST, device=device),
        **extra,
    )
    assert h["train_loss"][-1] < h["train_loss"][0]
    result = ts.evaluate_model(model, small[1], criterion=nn.CrossEntropyLoss(weight=weights))
    assert result.accuracy > 0.5 and math.isfinite(result.loss)


# ------------------------------------------------------------ labels that do not fit


@pytest.mark.parametrize("train", [ts.train_stage2, ts.finetune])
def test_labels_beyond_the_classifier_are_named_with_the_fix(small, train):
    five = ts.TwoStageNetwork(num_classes=5)  # the data has digits 0-9
    with pytest.raises(ValueError, match=r"labels go up to 9 but stage 2 has 5 outputs.*num_classes=10"):
        train(five, small[0], epochs=1, **FAST)
    unlabelled = (torch.randn(8, 784), torch.full((8,), -1))
    with pytest.raises(ValueError, match=r"class indices from 0, got -1.*unlabelled"):
        train(ts.TwoStageNetwork(), unlabelled, epochs=1, **FAST)


def test_stage1_takes_unlabelled_images(model):
    h = ts.train_stage1(model, (torch.rand(64, 784), torch.full((64,), -1)), epochs=1, **FAST)
    assert len(h) == 1


def test_labels_must_be_one_whole_class_index_per_image():
    x = torch.rand(4, 784)
    with pytest.raises(ValueError, match=r"whole class indices, got 0\.3.*0, 1, 2"):
        ts.TensorData(x, torch.tensor([0.0, 1.0, 0.3, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(N,\)\), got shape \(4, 3\).*argmax\(1\)"):
        ts.TensorData(x, torch.eye(3)[[0, 1, 2, 0]])
    assert ts.TensorData(x, torch.tensor([0.0, 1.0, 2.0, 1.0])).labels.dtype == torch.int64  # whole floats are fine


def test_early_stopping_without_a_validation_set_is_refused(model, small):
    with pytest.raises(ValueError, match=r"early_stopping watches the validation loss: pass val="):
        ts.finetune(model, small[0], epochs=2, early_stopping=ts.EarlyStopping(), **FAST)


def test_empty_data_and_one_image_contrastive_batches_are_named(model, small):
    empty = small[0].subset(torch.arange(0))
    with pytest.raises(ValueError, match="training data holds no images"):
        ts.train_stage2(model, empty, epochs=1, **FAST)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        ts.evaluate_model(model, empty)
    with pytest.raises(ValueError, match=r"contrastive.*at least 2 a batch \(got 1\)"):
        ts.train_stage1(model, small[0], objective="contrastive", epochs=1, device="cpu", progress=False, batch_size=1)


def test_a_finite_but_exploding_loss_warns_with_the_fix(model, small):
    with pytest.warns(UserWarning, match=r"stage2: the training loss rose from .* training is diverging.*3-10x lower"):
        h = ts.train_stage2(model, small[0], epochs=2, lr=1000.0, **FAST)
    assert len(h) == 2  # a warning, not an error: the run and its history are kept


def test_a_near_zero_first_loss_is_not_a_yardstick(model, small):
    """After stage 2 memorized a few labels the first step's loss can be ~0.002; a later 0.5 is not divergence."""
    calls = []

    def criterion(out, y):
        calls.append(1)
        loss = nn.functional.cross_entropy(out, y)
        return loss * 1e-3 if len(calls) == 1 else loss  # first step near zero, then the usual ~2

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ts.train_stage2(model, small[0], epochs=2, criterion=criterion, **FAST)


def test_a_stage1_without_weights_is_not_cached_and_trains_the_same(small, monkeypatch):
    """nn.Identity as stage 1 (the head sees the pixels): no feature cache is built (it would be
    a float32 copy of every image), and the head trains bit for bit as it would on the cache."""
    from twostage_lib import training

    calls, real = [], training.stage1_features
    monkeypatch.setattr(training, "stage1_features", lambda model, x, **k: calls.append(len(x)) or real(model, x, **k))

    def head(force_cache):
        with monkeypatch.context() as m:
            if force_cache:  # the cache, as a stage 1 with weights gets it
                m.setattr(training, "_has_state", lambda module: True)
            torch.manual_seed(0)
            net = ts.TwoStageNetwork()
            net.stage1, net.stage2 = nn.Identity(), nn.Linear(784, 10)
            ts.train_stage2(net, small[0], epochs=2, **FAST)
        return ts.snapshot(net.stage2)

    plain = head(force_cache=False)
    assert max(calls) <= FAST["batch_size"], "features a batch at a time, never a cache of the whole set"
    calls.clear()
    cached = head(force_cache=True)
    assert calls == [len(small[0])] and all(torch.equal(cached[k], plain[k]) for k in cached)


def test_evaluation_and_the_feature_cache_take_the_models_chunk(small):
    """A model may set ``eval_chunk`` (the ResNet-18 transfer network does: 512 images at 64 px
    hold about 370 MB of activations); evaluation, stage 1's feature cache and features recomputed
    every step then go that many rows at a time, with the numbers of one pass."""
    assert ts.TransferTwoStageNetwork.eval_chunk == 32
    torch.manual_seed(0)
    net = ts.TwoStageNetwork()
    seen = []
    net.stage1.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    whole = ts.evaluate_model(net, small[1])
    net.eval_chunk = 7
    seen.clear()
    chunked = ts.evaluate_model(net, small[1])
    assert max(seen) == 7 and chunked.accuracy == whole.accuracy
    seen.clear()
    x, _ = small[1].rows("cpu")
    features = ts.stage1_features(net, x[:30])
    assert max(seen) == 7 and torch.allclose(features, net.features(x[:30]), atol=1e-6)
    seen.clear()  # features recomputed every step are chunked too: a batch of 20 in chunks of 7
    ts.train_stage2(net, small[0], epochs=1, cache_features=False, **dict(FAST, batch_size=20))
    assert seen and max(seen) == 7


def test_every_stage_and_evaluation_hands_freed_memory_back(small, monkeypatch):
    """glibc keeps what PyTorch frees, so a kernel's memory only grows: each stage and each
    evaluation ends by returning it (release_memory; malloc_trim on Linux)."""
    from twostage_lib import evaluation, loop

    calls = []
    monkeypatch.setattr(loop, "release_memory", lambda: calls.append("stage"))
    monkeypatch.setattr(evaluation, "release_memory", lambda: calls.append("evaluation"))
    net = ts.TwoStageNetwork()
    ts.train_stage1(net, small[0], epochs=1, **FAST)
    ts.train_stage2(net, small[0], epochs=1, **FAST)
    ts.evaluate_model(net, small[1])
    assert calls == ["stage", "stage", "evaluation"]
    ts.runtime.release_memory()  # the real one runs (or does nothing off glibc) without error


def test_stage1_validates_in_batches_of_its_training_batch(small):
    """Stage 1's validation loss takes batches of the training batch size: a contrastive loss
    depends on how many images share a batch (4,096 would compare each with 4,095 others, training
    with 511), so the two losses measure the same thing, and validation needs no more memory."""
    torch.manual_seed(0)
    net = ts.TwoStageNetwork()
    sizes = []
    net.stage1.register_forward_hook(lambda m, args, out: None if m.training else sizes.append(len(args[0])))
    val = small[1].subset(range(200))
    h = ts.train_stage1(net, small[0].subset(range(300)), epochs=1, batch_size=64, val=val, device="cpu",
                        progress=False)  # fmt: skip
    assert sorted(set(sizes)) == [8, 64] and sum(sizes) == 200  # 3 x 64 + 8
    assert math.isfinite(h["val_loss"][0])
