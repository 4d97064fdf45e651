"""Nothing silent, nothing lost: one test per class of fault (docs/reliability.md lists them all).

Each test names the fault, asserts the error type and the message's fix, and, where work could be
lost, that it was not: weights finite and equal to the last good state, the report written, the
checkpoint intact.
"""

import json
import os
import signal
import threading

import numpy as np
import pytest
import torch
from conftest import extracted_full

import twostage_lib as ts
from twostage_lib.__main__ import main

QUICK = dict(device="cpu", progress=False)


def finite(model):
    return all(torch.isfinite(t).all() for t in model.state_dict().values())


def one_batch(small, n=64):
    return small[0].subset(torch.arange(n))


# ------------------------------------------------------------ 1. training never leaves non-finite weights


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), -1e-3])
def test_a_learning_rate_that_is_not_finite_and_positive_is_refused_up_front(model, small, lr):
    before = ts.snapshot(model)
    with pytest.raises(ValueError, match=r"learning rate.*must be a finite number"):
        ts.finetune(model, small[0], epochs=2, lr=lr, batch_size=64, **QUICK)
    assert ts.unchanged(model, before)


def test_a_stage1_scale_that_makes_the_rate_infinite_is_refused(model, small):
    with pytest.raises(ValueError, match="learning rate"):
        ts.finetune(model, small[0], epochs=1, lr=1e-3, stage1_lr_scale=float("inf"), **QUICK)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])  # fmt: skip
def test_a_single_exploding_step_is_caught_and_the_weights_put_back(model, small, device):
    """One batch, one step at lr=1e12: the loss and gradient are finite, the weights land near 1e12.
    Without a next step nothing would see it; the end-of-epoch check does, and puts them back."""
    data = one_batch(small)
    before = ts.snapshot(model)
    with pytest.raises(ts.TrainingDiverged, match=r"finetune: the weights grew .*epoch 1.*put back.*learning rate"):
        ts.finetune(model, data, epochs=1, lr=1e12, batch_size=64, device=device, progress=False)
    assert finite(model) and ts.unchanged(model, before)


def test_divergence_in_a_later_epoch_restores_that_epochs_start(model, small):
    """Two good epochs, then the learning rate jumps: the weights go back to the end of epoch 2."""
    states = []

    def keep(record):
        states.append(ts.snapshot(model))
        if record["epoch"] == 2:
            for group in optimizer_of["opt"].param_groups:
                group["lr"] = 1e12

    optimizer_of = {}
    original = ts.loop.make_optimizer

    def spy(*args, **kwargs):
        optimizer_of["opt"] = original(*args, **kwargs)
        return optimizer_of["opt"]

    ts.loop.make_optimizer, ts.training.make_optimizer = spy, spy
    try:
        with pytest.raises(ts.TrainingDiverged, match="epoch 3") as err:
            ts.finetune(model, small[0], epochs=4, lr=1e-3, batch_size=256, callback=keep, **QUICK)
    finally:
        ts.loop.make_optimizer, ts.training.make_optimizer = original, original
    assert len(err.value.history) == 2 and finite(model)
    assert ts.unchanged(model, states[1])  # the last good state: the end of epoch 2


def nan_gradient(out, y):
    """A loss whose value is finite but whose gradient is NaN (sqrt at 0)."""
    return torch.nn.functional.cross_entropy(out, y) + 0 * (out - out.detach()).sum().sqrt()


def test_a_nan_gradient_is_caught_by_the_next_step_and_rolled_back(model, small):
    before = ts.snapshot(model)
    with pytest.raises(ts.TrainingDiverged, match=r"loss became nan in epoch 1 at step 1 \(the update of step 0 "
                       r"had made the weights non-finite: its gradient was not finite\); the weights were put back"
                       r".*sqrt or log of 0"):  # fmt: skip
        ts.finetune(model, small[0], epochs=1, criterion=nan_gradient, batch_size=256, **QUICK)
    assert ts.unchanged(model, before)


def test_a_nan_gradient_in_the_last_step_is_caught_after_the_epoch(model, small):
    before = ts.snapshot(model)
    with pytest.raises(ts.TrainingDiverged, match=r"the weights became nan in epoch 1.*put back.*gradient was not"):
        ts.finetune(model, one_batch(small), epochs=1, criterion=nan_gradient, batch_size=64, **QUICK)
    assert ts.unchanged(model, before)


def test_with_clipping_a_nan_gradient_is_never_applied(model, small):
    before = ts.snapshot(model)
    with pytest.raises(ts.TrainingDiverged, match=r"the gradient became nan in epoch 1 at step 0"):
        ts.finetune(model, small[0], epochs=1, criterion=nan_gradient, clip_grad_norm=1.0, batch_size=256, **QUICK)
    assert ts.unchanged(model, before)


def test_reading_the_loss_once_an_epoch_trains_the_same_weights(model, small):
    """What a GPU does by default (no host read each step) changes when the loss is read, not what is trained."""
    start = ts.snapshot(model)
    runs = []
    for every_step in (True, False):
        model.load_state_dict(start)
        ts.seed_everything(0)
        h = ts.finetune(model, small[0], epochs=2, batch_size=256, clip_grad_norm=5.0, read_every_step=every_step,
                        augment=True, seed=0, **QUICK)  # fmt: skip
        runs.append((ts.snapshot(model), h["train_loss"], h["grad_norm_max"]))
    assert ts.unchanged(model, runs[0][0]) and runs[0][1:] == runs[1][1:]
    assert not ts.unchanged(model, start)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])  # fmt: skip
def test_read_once_an_epoch_a_nan_step_is_rolled_back_with_its_epoch(model, small, device):
    """On a GPU (the default there, or asked for) a NaN step is seen after the epoch and the epoch undone."""
    assert ts.loop.reads_every_step(ts.LoopSettings(), torch.device(device)) == (device == "cpu")
    before = ts.snapshot(model)
    with pytest.raises(ts.TrainingDiverged, match=r"loss became nan in epoch 1 at step 1 \(read after the epoch's "
                       r"last step\); the weights were put back.*gradient was not finite"):  # fmt: skip
        ts.finetune(model, small[0], epochs=1, criterion=nan_gradient, batch_size=256, read_every_step=False,
                    device=device, progress=False)  # fmt: skip
    assert finite(model) and ts.unchanged(model.cpu(), before)
    with pytest.raises(ts.TrainingDiverged, match=r"the gradient became nan in epoch 1 at step 0 \(read after"):
        ts.finetune(model, small[0], epochs=1, criterion=nan_gradient, clip_grad_norm=1.0, batch_size=256,
                    read_every_step=False, device=device, progress=False)  # fmt: skip
    assert finite(model) and ts.unchanged(model.cpu(), before)


def test_non_finite_inputs_are_blamed_on_the_data_not_the_learning_rate(model, small):
    """A NaN that appears inside training (here from a broken augmentation) is named as the data."""
    spoil = lambda xb: xb.masked_fill(torch.arange(xb.shape[1]) == 3, float("nan"))  # noqa: E731
    with pytest.raises(ts.TrainingDiverged, match=r"the inputs of this batch are not finite \(row 0\)") as err:
        ts.finetune(model, small[0], epochs=1, augment=spoil, batch_size=256, **QUICK)
    assert "learning rate" not in str(err.value) and finite(model)


# ------------------------------------------------------------ 2. data is checked where it enters


def test_a_nan_pixel_is_refused_where_the_data_enters():
    x = torch.rand(20, 4, 4)
    x[7, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"x_train: image 7 holds a NaN or infinite pixel"):
        ts.from_tensors(x, torch.arange(20) % 3)
    with pytest.raises(ValueError, match=r"image 7 holds a NaN"):
        ts.finetune(ts.TwoStageNetwork(in_features=16, num_classes=3), (x.reshape(20, -1), torch.arange(20) % 3))


def test_the_pixel_check_reads_a_large_set_in_chunks_and_names_the_first_bad_image():
    """The check reads 1,024 images at a time (a whole-set isfinite held 1.5x the set in temporaries):
    a bad pixel in a later chunk, or in the last, short one, is still found, and the first one named."""
    from twostage_lib.tensors import first_nonfinite

    x = torch.zeros(2600, 784)
    assert first_nonfinite(x) is None and first_nonfinite(x[:0]) is None
    x[2599, 5] = float("inf")
    assert first_nonfinite(x) == 2599
    x[1500, 0] = float("-inf")
    x[2100, 0] = float("nan")
    assert first_nonfinite(x) == 1500
    with pytest.raises(ValueError, match=r"image 1500 holds a NaN or infinite pixel"):
        ts.finetune(ts.TwoStageNetwork(), (x, torch.arange(2600) % 10))


def test_labels_outside_the_training_classes_and_fractions_are_refused():
    x = torch.rand(20, 4, 4)
    with pytest.raises(ValueError, match=r"y_test: label 7 at index 2 is not one of the training classes 0-2"):
        ts.from_tensors(x, torch.arange(20) % 3, x[:5], torch.tensor([0, 1, 7, 1, 0]))
    with pytest.raises(ValueError, match="whole class indices, got 2.7"):
        ts.from_tensors(x, torch.tensor([2.7] + [1.0] * 19))


def test_train_and_test_images_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match=r"test images are 5x5 but training images are 4x4"):
        ts.from_tensors(torch.rand(20, 4, 4), torch.arange(20) % 2, torch.rand(5, 5, 5), torch.arange(5) % 2)


def test_empty_training_data_is_refused_at_the_door(bundled):
    with pytest.raises(ValueError, match="x_train holds no images"):
        ts.from_tensors(torch.rand(0, 4, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="validation_split needs at least 2 training images.*got 0"):
        ts.validation_split(bundled.train.subset(torch.arange(0)))


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(folder, train_labels=None):
    """A tiny MNIST-shaped raw folder: 30 train and 10 test images of 28x28."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 255, (30, 28, 28)))
    write_idx(folder / "train-labels-idx1-ubyte", np.arange(30) % 10 if train_labels is None else train_labels)
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 255, (10, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(10))
    return folder


def test_a_corrupt_label_byte_is_caught_and_named(tmp_path):
    labels = np.arange(30) % 10
    labels[17] = 200
    folder = fake_mnist(tmp_path / "MNIST" / "raw", labels)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: label 200 at index 17 .* 0-9.*copy or download"):
        ts.load_mnist(tmp_path, source="full", verbose=False)
    assert folder.is_dir()


def test_a_wrong_pixel_byte_in_the_real_mnist_files_is_caught(tmp_path):
    """Pixel bytes have no invalid values, so the real MNIST files are checked against their checksums."""
    if ts.mnist.full_data_dir() is None:
        pytest.skip("needs the full MNIST raw files (TWOSTAGE_DATA)")
    dst = extracted_full(tmp_path) / "MNIST" / "raw"
    raw = bytearray((dst / "t10k-images-idx3-ubyte").read_bytes())
    raw[5000] ^= 0x01  # one bit of one pixel
    (dst / "t10k-images-idx3-ubyte").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte does not match the published MNIST file"):
        ts.load_mnist(tmp_path, source="full", verbose=False)


def test_labels_that_do_not_fit_the_model_are_named_in_evaluation(model, small):
    x, _ = small[1].on("cpu")
    y = torch.full((len(x),), 10)
    with pytest.raises(ValueError, match=r"labels go up to 10 but the model has 10 outputs"):
        ts.evaluate_model(model, (x, y))


# ------------------------------------------------------------ 3. the command line is a good citizen


@pytest.mark.parametrize(
    "make_path, message",
    [
        (lambda tmp: tmp, "is a folder"),
        (lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "report.json", "is a file, not a folder"),
    ],
)
def test_a_bad_output_path_fails_before_any_training(tmp_path, capsys, make_path, message):
    path = make_path(tmp_path)
    assert main(["run", "--data", "bundled", "--no-progress", "--json", str(path)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert "stage1" not in captured.out  # no training started


def test_a_folder_nobody_may_write_in_fails_before_training(tmp_path, capsys):
    """A read-only folder; as root (CI) permissions do not apply, so /sys stands in: no one writes there."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() == 0:
        folder = "/sys"
    assert main(["run", "--data", "bundled", "--no-progress", "--json", f"{folder}/r.json"]) == 2
    err = capsys.readouterr().err
    assert "cannot write in" in err and "Traceback" not in err


def test_the_first_ctrl_c_stops_the_whole_run_keeps_the_finished_stages_and_exits_130(tmp_path, capsys, monkeypatch):
    """SIGINT during stage 2: stage 1 is kept, stage 2 stops after its current step, fine-tuning never
    starts; the table marks the stage, the JSON says where it stopped, the exit code is 130."""
    import twostage_lib.__main__ as cli

    path, original = tmp_path / "report.json", cli.run_pipeline
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a job started with `&`

    def on_epoch(stage, record):
        if stage == "stage2" and record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # as a terminal's Ctrl-C would

    monkeypatch.setattr(cli, "run_pipeline", lambda config, **kw: original(config, on_epoch=on_epoch, **kw))
    code = main(["run", "--data", "bundled", "--no-progress", "--epochs-stage1", "1", "--epochs-stage2", "5",
                 "--epochs-finetune", "2", "--json", str(path)])  # fmt: skip
    assert code == 130
    out = capsys.readouterr().out
    assert "stage2" in out and "interrupted in epoch 2, step 0" in out and "finetune" not in out
    report = json.loads(path.read_text())
    assert report["interrupted"] is True and report["interrupted_at"] == {"stage": "stage2", "epoch": 2, "step": 0}
    assert list(report["stages"]) == ["stage1", "stage2"] and len(report["stages"]["stage2"]["history"]) == 1
    # one epoch of each stage: 46.9% on torch 2.6 on an AMD EPYC without AVX-512, so a floor well above chance
    assert report["final_test_accuracy"] == report["stages"]["stage2"]["test_accuracy"] > 0.3
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_ctrl_c_in_the_real_command_stops_it_with_130_and_a_report(tmp_path):
    """The command in its own process, a real SIGINT: the table and the JSON say where it stopped."""
    import subprocess
    import sys
    import time

    path = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "twostage_lib", "run", "--data", "bundled", "--no-progress",
                             "--epochs-finetune", "300", "--json", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(8)  # past the imports: loading or training
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted in epoch" in out and "Traceback" not in err and json.loads(path.read_text())["interrupted"]


def test_a_second_ctrl_c_quits_at_once(monkeypatch):
    import time

    import twostage_lib.__main__ as cli

    exits = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    with cli.ctrl_c_stops_the_run() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # the handler runs in the main thread between two bytecodes
        assert stop.requested.is_set() and exits == []
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
    assert exits == [130]


@pytest.mark.parametrize(
    "device, message",
    [("meta", "cannot train on device 'meta'"), ("mps", "no Apple MPS device"), ("cuda:7", "no CUDA GPU")],
)
def test_unusable_devices_are_one_line_and_exit_2(capsys, device, message):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    assert main(["run", "--data", "bundled", "--no-progress", "--device", device]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_empty_data_dir_is_an_error_not_a_silent_fallback(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ts.mnist, "online", lambda *a, **k: False)
    assert main(["run", "--no-progress", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "holds no mnist raw files" in err.lower()


def test_ctrl_c_stops_the_study_and_keeps_the_runs_so_far(bundled):
    """An interrupted run is no result: the study stops there and reports what it finished."""
    from twostage_lib.compare import format_study, run_study

    small = ts.tensors.Splits(ts.labels_per_class(bundled.train, 30), bundled.test, "mnist", "bundled", "subset")
    stop = threading.Event()
    stop.set()  # as the command line's Ctrl-C handler does
    study = run_study(small, budgets=(10,), seeds=(0,), objectives=("autoencoder",), log=lambda *a: None, stop=stop)
    assert study["interrupted"] is True and study["methods"] == {}
    assert format_study(study).startswith("method")


def test_duplicate_seeds_are_refused(capsys):
    assert main(["compare", "--data", "bundled", "--no-progress", "--seeds", "0", "0"]) == 2
    assert "seed 0 is given twice" in capsys.readouterr().err


# ------------------------------------------------------------ 4. every API function validates its arguments


def test_class_weights_checks_num_classes_and_fractions():
    with pytest.raises(ValueError, match=r"labels go up to 9 but num_classes=5"):
        ts.class_weights(torch.arange(10), num_classes=5)
    with pytest.raises(ValueError, match="whole class indices, got 2.7"):
        ts.class_weights(torch.tensor([0.0, 1.0, 2.7]))


@pytest.mark.parametrize("n", [0, -1, 2.5])
def test_labels_per_class_needs_a_positive_whole_number(bundled, n):
    with pytest.raises(ValueError, match=r"labels_per_class needs n >= 1"):
        ts.labels_per_class(bundled.train, n)


@pytest.mark.parametrize(
    "weights, message",
    [(torch.zeros(64), "all zero"), (torch.tensor([float("nan")] + [1.0] * 63), "NaN"), (-torch.ones(64), "negative")],
)
def test_sample_weights_must_be_finite_non_negative_and_not_all_zero(model, small, weights, message):
    with pytest.raises(ValueError, match=f"sample_weights.*{message}"):
        ts.finetune(model, one_batch(small), epochs=1, sample_weights=weights, **QUICK)


def test_evaluate_model_checks_num_classes(model, small):
    with pytest.raises(ValueError, match=r"num_classes=5 but the labels go up to 9"):
        ts.evaluate_model(model, small[1], num_classes=5)


def test_a_checkpoint_with_non_finite_weights_is_refused(model, tmp_path):
    path = ts.save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["stage1.0.weight"][0, 0] = float("nan")
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"non-finite weights in 'stage1.0.weight'"):
        ts.load_checkpoint(path)


def test_saving_non_finite_weights_is_refused(model, tmp_path):
    with torch.no_grad():
        model.stage2[0].bias[0] = float("inf")
    with pytest.raises(ValueError, match=r"non-finite weights in 'stage2.0.bias'"):
        ts.save_checkpoint(tmp_path / "m.pt", model)
    assert not (tmp_path / "m.pt").exists()


def test_tabular_data_trains_in_every_stage_that_needs_no_image():
    """101 features, not an image: the autoencoder, stage 2 and plain fine-tuning work; contrastive
    views and augmentation need 2-D images and say so."""
    torch.manual_seed(0)
    x, y = torch.randn(256, 101), torch.randint(0, 3, (256,))
    net = ts.TwoStageNetwork(in_features=101, num_classes=3)
    ts.train_stage1(net, (x, y), objective="autoencoder", epochs=1, **QUICK)
    ts.train_stage2(net, (x, y), epochs=1, **QUICK)
    ts.finetune(net, (x, y), epochs=1, **QUICK)
    for train in (lambda: ts.train_stage1(net, (x, y), objective="contrastive", epochs=1, **QUICK),
                  lambda: ts.finetune(net, (x, y), epochs=1, augment=True, **QUICK)):  # fmt: skip
        with pytest.raises(ValueError, match=r"101 features are not an image.*objective='autoencoder'.*augment=False"):
            train()
