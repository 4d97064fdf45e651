"""Reliability, round 2: one test (or a few) per class of fault in docs/reliability.md, "Round 2".

Each asserts the message or the behaviour and, where work could be lost, that it was not: the
trained model returned, the report written, the file left a file, the device left a device.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import twostage_lib as ts
from twostage_lib import course
from twostage_lib.__main__ import check_output_path, ctrl_c_stops_the_run, main, write_json
from twostage_lib.checkpoint import write_atomically
from twostage_lib.compare import progress_line, usable_budgets
from twostage_lib.recipe import COURSE
from twostage_lib.widgets import FigurePanel, TrainingPanel, slider

QUICK = dict(device="cpu", progress=False)


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    monkeypatch.setenv("TWOSTAGE_CHECKPOINTS", str(folder))
    return folder


def saved_stage1(train, **kwargs):
    """A stage 1 saved where ``stage1_model`` looks: one epoch of the autoencoder on ``train``."""
    model, how = course.stage1_model(train, objective="autoencoder", epochs=1, **kwargs)
    assert how.startswith("trained in") and "saved to" in how, how
    return model


# ------------------------------------------------------------ 1. a saved stage 1 is reused only when it matches


def test_a_matching_stage_1_is_loaded_bit_for_bit(checkpoints, small):
    first = saved_stage1(small[0])
    again, how = course.stage1_model(small[0], objective="autoencoder", epochs=1)
    assert how.startswith("loaded from") and ts.unchanged(again, ts.snapshot(first))


def test_a_stage_1_trained_at_another_learning_rate_is_trained_again(checkpoints, small):
    first = saved_stage1(small[0], lr=1e-3)
    again, how = course.stage1_model(small[0], objective="autoencoder", epochs=1)  # the default, 2e-3
    assert "was trained with lr=0.001, not 0.002, so it was not used" in how and "saved to" in how
    assert not ts.unchanged(again, ts.snapshot(first))
    assert course.stage1_model(small[0], objective="autoencoder", epochs=1)[1].startswith("loaded from")


def test_a_stage_1_trained_on_other_images_of_the_same_count_is_not_reused(checkpoints, small):
    """Fashion-MNIST and KMNIST have MNIST's 60,000 images: same file name, other data."""
    train = small[0]
    saved_stage1(train)
    other = ts.TensorData(train.images.flip(-1), train.labels, train.mean, train.std)  # mirrored digits
    assert len(other) == len(train) and other.fingerprint() != train.fingerprint()
    _, how = course.stage1_model(other, objective="autoencoder", epochs=1)
    assert "trained on other images of the same count" in how
    copy = ts.TensorData(train.images.clone(), train.labels, train.mean, train.std)  # the same images, held anew
    assert copy.fingerprint() == train.fingerprint()


def test_a_stage_1_of_other_layer_sizes_is_not_returned_as_it_is(checkpoints, small):
    train = small[0]
    narrow = ts.TwoStageNetwork(stage1_sizes=(64, 32))
    history = ts.train_stage1(narrow, train, objective="autoencoder", epochs=1, lr=COURSE.lr, **QUICK)
    course.save_stage1(narrow, train, history, objective="autoencoder", epochs=1)
    model, how = course.stage1_model(train, objective="autoencoder", epochs=1)
    assert "model_config" in how and "not used" in how
    assert model.config["stage1_sizes"] == (256, 128)


def test_an_unreadable_or_old_file_is_a_reason_to_train_not_a_crash(checkpoints, small):
    train = small[0]
    path = course.stage1_path(train, "autoencoder", epochs=1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    model, how = course.stage1_model(train, objective="autoencoder", epochs=1)
    assert "was not used" in how and "corrupted" in how and "saved to" in how
    ts.save_checkpoint(path, model, config={"objective": "autoencoder", "epochs": 1, "seed": 0})  # no record
    _, how = course.stage1_model(train, objective="autoencoder", epochs=1)
    assert "does not record its lr (saved by an older version)" in how
    assert course.stage1_seconds(train, "autoencoder", 1) > 0  # the new file is the one it reads


def test_the_study_stage_1_is_trained_and_saved_when_its_file_is_absent(tmp_path, bundled, monkeypatch):
    """Notebook 10 without results/stage1_contrastive_study_s0.pt: trained (here 2 epochs of 600 images),
    saved, then loaded."""
    monkeypatch.setattr(course, "STUDY", replace(course.STUDY, stage1_epochs={"contrastive": 2}))
    data = ts.from_tensors(bundled.train.images[:600], bundled.train.labels[:600])
    path = tmp_path / "study.pt"
    model, how = course.study_stage1(data, path)
    assert how.startswith("trained in") and path.is_file(), how
    again, how = course.study_stage1(data, path)
    assert how.startswith("loaded from") and ts.unchanged(again, ts.snapshot(model))


def test_stage1_seconds_reads_only_the_stage_1_that_would_be_loaded(checkpoints, small):
    saved_stage1(small[0], lr=1e-3)
    assert course.stage1_seconds(small[0], "autoencoder", 1) is None
    assert course.stage1_seconds(small[0], "autoencoder", 1, lr=1e-3) > 0


def test_save_stage1_refuses_an_unfinished_run_and_settings_it_was_not_trained_with(checkpoints, small):
    train = small[0]
    net = ts.TwoStageNetwork()
    history = ts.train_stage1(net, train, objective="autoencoder", epochs=1, lr=COURSE.lr, **QUICK)
    with pytest.raises(ValueError, match=r"save_stage1 was told epochs=3 \(trained with 1\)"):
        course.save_stage1(net, train, history, objective="autoencoder", epochs=3)
    history.interrupted = True
    with pytest.raises(ValueError, match="interrupted or stopped early.*train it to the end"):
        course.save_stage1(net, train, history, objective="autoencoder", epochs=1)
    assert not checkpoints.exists()


# ------------------------------------------------------------ 2. nothing computed is lost because it could not be saved


def test_checkpoints_naming_a_file_keeps_the_trained_model(tmp_path, monkeypatch, small):
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    monkeypatch.setenv("TWOSTAGE_CHECKPOINTS", str(target))
    untrained = ts.snapshot(ts.TwoStageNetwork())
    with pytest.warns(UserWarning, match="stage 1 not saved: .*The trained model is returned"):
        model, how = course.stage1_model(small[0], objective="autoencoder", epochs=1)
    assert "not saved" in how and not ts.unchanged(model, untrained)  # trained, and handed back
    assert target.read_text() == "not a folder"


def test_a_read_only_folder_keeps_the_trained_model(checkpoints, monkeypatch, small):
    """Root may write anywhere, so the read-only folder is the error a read-only one gives."""

    def read_only(path, *args, **kwargs):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(course, "save_checkpoint", read_only)
    with pytest.warns(UserWarning, match="Read-only file system.*set TWOSTAGE_CHECKPOINTS to a folder"):
        model, how = course.stage1_model(small[0], objective="autoencoder", epochs=1)
    assert isinstance(model, ts.TwoStageNetwork) and "not saved: [Errno 30] Read-only" in how


def test_values_that_are_not_plain_are_converted_or_refused_at_save(tmp_path, model):
    path = tmp_path / "m.pt"
    ts.save_checkpoint(path, model, config={"root": Path("/data"), "sizes": (1, 2)}, metrics={"acc": np.float32(0.5)})
    _, ckpt = ts.load_checkpoint(path)  # loads: nothing called corrupted
    assert ckpt["config"] == {"root": "/data", "sizes": (1, 2)} and type(ckpt["metrics"]["acc"]) is float
    with pytest.raises(TypeError, match=r"metrics\['when'\] holds a datetime.*store a number, string"):
        import datetime

        ts.save_checkpoint(tmp_path / "n.pt", model, metrics={"when": datetime.datetime.now()})
    assert not (tmp_path / "n.pt").exists()


def test_a_file_is_called_corrupted_only_when_reading_it_fails(tmp_path, model):
    path = tmp_path / "m.pt"
    ts.save_checkpoint(path, model)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="names a CUDA GPU, and this machine has none") as err:
            ts.load_checkpoint(path, map_location="cuda")
        assert "corrupted" not in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": model.state_dict(), "metrics": {"acc": np.float64(0.5)}}, foreign)
    with pytest.raises(ValueError, match="readable but holds a numpy.* object") as err:
        ts.load_checkpoint(foreign)
    assert "corrupted" not in str(err.value)


# ------------------------------------------------------------ 3. environment variables checked where they are read


@pytest.mark.parametrize("value", ["0", "-1", "abc", "2.5"])
def test_a_bad_thread_count_does_not_break_the_start(value):
    env = dict(os.environ, TWOSTAGE_THREADS=value)
    code = "import twostage_lib as ts; ts.use_cpu_quota()"  # where a process starts: the CLI, a notebook
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert f"TWOSTAGE_THREADS={value!r} is not a whole number of threads" in done.stderr


def test_folders_in_variables_expand_home_and_treat_empty_as_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TWOSTAGE_CHECKPOINTS", "~/x")
    assert course.checkpoint_dir() == tmp_path / "x"
    monkeypatch.setenv("TWOSTAGE_CHECKPOINTS", "  ")
    assert course.checkpoint_dir() == Path("checkpoints")
    monkeypatch.setenv("TWOSTAGE_DATA", "")
    assert ts.mnist.full_data_dir() is None


def test_a_data_variable_naming_a_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("TWOSTAGE_DATA", str(tmp_path / "f"))
    with pytest.raises(ValueError, match=r"TWOSTAGE_DATA=.*/f names a file, not a folder; set TWOSTAGE_DATA to"):
        ts.load_mnist(verbose=False)


def test_a_yes_no_variable_takes_yes_and_no_and_names_anything_else(monkeypatch):
    monkeypatch.setenv("TWOSTAGE_NO_FAST_BF16", "true")
    assert ts.has_fast_bf16(torch.device("cpu")) is False
    monkeypatch.setenv("TWOSTAGE_NO_FAST_BF16", "maybe")
    with pytest.raises(ValueError, match="TWOSTAGE_NO_FAST_BF16='maybe' is not a yes or no"):
        ts.has_fast_bf16(torch.device("cpu"))


# ------------------------------------------------------------ 4. images are what they claim to be


def digits(n=40, dtype=torch.uint8):
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, 28, 28)).to(dtype), torch.arange(n) % 10


@pytest.mark.parametrize(
    "shape, message",
    [
        ((40, 28, 28, 1), r"looks channels-last \(N, H, W, C\).*x.permute\(0, 3, 1, 2\)"),
        ((40, 28, 28, 3), "looks channels-last"),
        ((40,), "not a stack of images"),
        ((40, 1, 1, 28, 28), "not a stack of images"),
    ],
)
def test_image_layouts_are_checked_where_they_enter(shape, message):
    with pytest.raises(ValueError, match=message):
        ts.from_tensors(torch.zeros(shape, dtype=torch.uint8), torch.arange(40) % 10)


def test_pixel_types_and_ranges_are_checked_where_they_enter():
    x, y = digits()
    with pytest.raises(ValueError, match="pixels of type torch.complex64 are not numbers"):
        ts.from_tensors(x.to(torch.complex64), y)
    with pytest.raises(ValueError, match="integer pixels must be 0-255.*run from 0 to 300"):
        ts.from_tensors(x.long().index_fill(0, torch.tensor([3]), 300), y)
    as_int, as_uint8 = ts.TensorData(x.long(), y), ts.TensorData(x, y)  # 8-bit pixels mean the same either way
    assert torch.equal(as_int.rows("cpu")[0][:], as_uint8.rows("cpu")[0][:])
    with pytest.raises(ValueError, match="whole numbers up to 255 are 0-255 pixels never scaled; divide them by 255"):
        ts.evaluate_model(ts.TwoStageNetwork(), (x.float(), y))
    with pytest.raises(ValueError, match="one set is on the 0-255 scale and the other on 0-1"):
        ts.from_tensors(x, y, x.float(), y)
    ts.evaluate_model(ts.TwoStageNetwork(in_features=5), (torch.rand(40, 5).mul(9).round(), y))  # tabular: read


def test_a_dataset_of_uint8_images_is_scaled_like_the_images_themselves():
    x, y = digits()
    dataset = torch.utils.data.TensorDataset(x.unsqueeze(1), y)
    from_dataset, _ = ts.tensors.as_tensors(dataset, "cpu")
    from_pair, _ = ts.tensors.as_tensors((x, y), "cpu")
    assert torch.equal(from_dataset[:], from_pair[:]) and float(from_dataset[:].max()) <= 1.0


# ------------------------------------------------------------ 5. every public argument checked


def test_an_early_stopping_object_used_twice_starts_each_run_afresh(small):
    train, val = ts.validation_split(small[0], 0.2)
    stopper = ts.EarlyStopping(patience=2)
    first = ts.TwoStageNetwork()
    ts.finetune(first, train, epochs=4, val=val, early_stopping=stopper, batch_size=256, **QUICK)
    best_of_first = ts.snapshot(first)
    torch.manual_seed(1)
    second = ts.TwoStageNetwork()
    history = ts.finetune(second, train, epochs=1, val=val, early_stopping=stopper, batch_size=256, **QUICK)
    assert stopper.best_epoch == 1 and history.best_epoch == 1  # the second run's own best
    assert not ts.unchanged(second, best_of_first)  # not the first run's weights put into the second model


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, d: ts.finetune(m, d, epochs=-1, **QUICK), "epochs must be a whole number >= 0, got -1"),
        (lambda m, d: ts.finetune(m, d, epochs=2.5, **QUICK), "epochs must be a whole number >= 0, got 2.5"),
        (lambda m, d: ts.finetune(m, d, epochs=1, batch_size=0, **QUICK), "batch_size must be a whole number >= 1"),
        (lambda m, d: ts.train_stage1(m, d, epochs=1, batch_size=-5, **QUICK), "batch_size must be a whole number"),
        (lambda m, d: ts.train_stage2(m, d, epochs=1, seed=-1, **QUICK), "seed must be a whole number >= 0"),
        (lambda m, d: ts.finetune(m, d, epochs=1, clip_grad_norm=0, **QUICK), "clip_grad_norm must be a finite"),
        (lambda m, d: ts.selftrain(m, d, d, epochs=1, batch_size=0, **QUICK), "batch_size must be a whole number"),
        (lambda m, d: ts.stage1_features(m, torch.zeros(4, 784), batch_size=0), "batch_size must be a whole"),
        (lambda m, d: ts.evaluate_model(m, d, batch_size=0), "batch_size must be a whole number >= 1"),
        (lambda m, d: ts.confident_mistakes(m, d, k=-1), "k must be a whole number >= 0"),
        (lambda m, d: ts.imbalanced(d, ratio=float("nan")), r"ratio \(largest / smallest class size\) must be"),
        (lambda m, d: ts.Contrastive(m, temperature=0), "temperature must be a finite number > 0.0"),
        (lambda m, d: ts.objectives.Denoising(m, mask=1.5), r"mask \(the share of pixels hidden\) must be"),
        (lambda m, d: ts.augment(torch.zeros(2, 784), rotation=-5), r"rotation \(degrees\) must be"),
        (lambda m, d: ts.augment(torch.zeros(2, 784), scale=(1.2, 0.8)), "scale must be a .smallest, largest. zoom"),
        (lambda m, d: ts.erase(torch.zeros(2, 784), size=2), r"size \(a share of the image side\) must be"),
        (lambda m, d: ts.TwoStageNetwork(stage1_sizes=(0,)), r"stage1_sizes\[0\] must be a whole number >= 1"),
        (lambda m, d: ts.EarlyStopping(patience=0), "patience must be a whole number >= 1"),
        (lambda m, d: ts.EarlyStopping(min_delta=-1), "min_delta must be a finite number >= 0.0"),
        (lambda m, d: ts.Batches(torch.zeros(4, 2), torch.zeros(4), batch_size=1.5), "batch_size must be a whole"),
    ],
)
def test_public_arguments_are_named_when_they_cannot_mean_anything(small, call, message):
    model = ts.TwoStageNetwork()
    before = ts.snapshot(model)
    with pytest.raises(ValueError, match=message):
        call(model, small[0])
    assert ts.unchanged(model, before)


def test_a_loss_that_is_not_one_number_is_named_with_the_fix(model, small):
    per_sample = torch.nn.CrossEntropyLoss(reduction="none")
    with pytest.raises(ValueError, match=r"finetune's loss must be a single number.*got a tensor of shape \(256,\)"):
        ts.finetune(model, small[0], epochs=1, criterion=per_sample, batch_size=256, **QUICK)
    with pytest.raises(ValueError, match="the stage-1 objective's loss must be a single number.*loss.mean"):
        ts.train_stage1(model, small[0], objective=lambda m, x: (m.features(x) ** 2).mean(1), epochs=1, **QUICK)
    with pytest.raises(ValueError, match="the criterion's loss must be a single number.*reduction='mean'"):
        ts.evaluate_model(model, small[1], criterion=per_sample)


# ------------------------------------------------------------ 6. output files behave like files


def test_files_written_respect_the_umask_and_an_existing_files_mode(tmp_path):
    old = os.umask(0o027)
    try:
        new = tmp_path / "new.json"
        write_atomically(new, lambda f: f.write(b"{}"))
        assert stat.S_IMODE(new.stat().st_mode) == 0o640  # 0o666 under the umask, not mkstemp's 0o600
        ts.save_checkpoint(tmp_path / "m.pt", ts.TwoStageNetwork())
        assert stat.S_IMODE((tmp_path / "m.pt").stat().st_mode) == 0o640
        os.chmod(new, 0o644)
        write_atomically(new, lambda f: f.write(b"[]"))
        assert stat.S_IMODE(new.stat().st_mode) == 0o644 and new.read_text() == "[]"  # replaced, mode kept
    finally:
        os.umask(old)


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    check_output_path(str(link))
    assert write_json({"a": 1}, str(link)) == 0
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 1}


def test_special_files_are_written_to_not_replaced():
    check_output_path("/dev/null")
    assert write_json({"a": 1}, "/dev/null") == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if os.path.exists("/dev/full"):  # a device that is always full: the report goes to the temp folder
        assert write_json({"a": 1}, "/dev/full") == 2 and stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_json_to_standard_output_is_json_alone(capsys, tmp_path):
    code = main(["run", "--data", "bundled", "--no-progress", "--epochs-stage1", "0", "--epochs-stage2", "1",
                 "--epochs-finetune", "0", "--json", "-"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["stages"]["stage2"]["test_accuracy"] > 0.5
    assert "stage2" in err and "Data:" in err  # the table and the data line went to standard error


# ------------------------------------------------------------ 7. every way a run is stopped keeps what finished


def test_sigterm_stops_the_run_like_ctrl_c_and_keeps_the_finished_stages(tmp_path, capsys, monkeypatch):
    import twostage_lib.__main__ as cli

    path, original = tmp_path / "report.json", cli.run_pipeline

    def on_epoch(stage, record):
        if stage == "stage2" and record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as kill, timeout and docker stop do

    monkeypatch.setattr(cli, "run_pipeline", lambda config, **kw: original(config, on_epoch=on_epoch, **kw))
    code = main(["run", "--data", "bundled", "--no-progress", "--epochs-stage1", "1", "--epochs-stage2", "5",
                 "--epochs-finetune", "2", "--json", str(path)])  # fmt: skip
    assert code == 143
    report = json.loads(path.read_text())
    assert report["interrupted"] and list(report["stages"]) == ["stage1", "stage2"]
    assert "SIGTERM received: stopping after the current step" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_a_second_sigterm_quits_at_once(monkeypatch):
    import twostage_lib.__main__ as cli

    exits = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    with ctrl_c_stops_the_run() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert stop.requested.is_set() and exits == []
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
    assert exits == [143]


def test_sigterm_in_the_real_study_reports_the_runs_so_far(tmp_path):
    path = tmp_path / "study.json"
    command = [sys.executable, "-m", "twostage_lib", "compare", "--data", "bundled", "--labels-per-class", "10",
               "--seeds", "0", "1", "--objectives", "autoencoder", "--json", str(path)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = ""
    deadline = time.monotonic() + 600
    while "labels/class" not in out and time.monotonic() < deadline and proc.poll() is None:
        out += proc.stdout.readline()  # until the first run is finished
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=600)
    assert proc.returncode == 143 and "Traceback" not in err, err
    study = json.loads(path.read_text())
    assert study["interrupted"] and study["methods"]["supervised"]["10"]["runs"]  # the finished run is kept
    assert "seed 0 (1 of 2)" in out and "SIGTERM received" in err


def test_an_interrupt_inside_a_panel_says_so_and_frees_the_button():
    def train(values, on_epoch):
        on_epoch({"train_loss": 1.0})
        raise KeyboardInterrupt

    panel = TrainingPanel({"epochs": slider("epochs", 1, 1, 5)}, train)
    with pytest.raises(KeyboardInterrupt):
        panel.run()
    assert "interrupted after" in panel.status.value and not panel.button.disabled


# ------------------------------------------------------------ 8. messages that say what to change


def test_too_many_labels_per_class_names_the_holdout_and_the_largest_value(capsys):
    assert main(["run", "--data", "bundled", "--no-progress", "--labels-per-class", "950"]) == 2
    err = capsys.readouterr().err
    assert "1,000 images per class" in err and "held out for validation" in err
    assert "at most 900 per class; use --labels-per-class 900 or less" in err


def test_the_default_budgets_leave_out_what_the_data_cannot_give(bundled):
    said = []
    trains = [ts.validation_split(bundled.train, 0.1, seed=seed)[0] for seed in (0, 1)]  # the study's holdout
    assert usable_budgets(bundled.train, trains, None, said.append) == [1, 10, 100, None]
    assert said == ["labels per class 1000 left out: after the validation holdout this data has at most 900 per "
                    "class (choose budgets with --labels-per-class)"]  # fmt: skip
    with pytest.raises(ValueError, match="--labels-per-class 1000 is more than this data can give"):
        usable_budgets(bundled.train, trains, [10, 1000], said.append)


def test_a_long_study_says_where_it_is_and_how_long_is_left():
    assert progress_line(0, [0, 1, 2], 0.0) == "seed 0 (1 of 3)"
    assert progress_line(1, [0, 1, 2], 462.0) == "seed 1 (2 of 3; 1 done in 7.7 min, about 15 min left)"


def test_showing_a_panel_before_any_run_says_what_to_do():
    panel = FigurePanel({"k": slider("k", 1, 1, 3)}, lambda values: (None, None), title="Explore")
    with pytest.raises(RuntimeError, match="Explore: nothing to show yet; run the panel first"):
        panel.show()


def idx(path, dims):
    header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(header + bytes(int(np.prod(dims))))


def test_raw_files_holding_no_images_are_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, dims in [("train-images-idx3-ubyte", [0, 28, 28]), ("train-labels-idx1-ubyte", [0]),
                       ("t10k-images-idx3-ubyte", [0, 28, 28]), ("t10k-labels-idx1-ubyte", [0])]:  # fmt: skip
        idx(raw / name, dims)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero on the way
        with pytest.raises(ValueError, match="train-images-idx3-ubyte holds no images"):
            ts.load_mnist(tmp_path, source="full", verbose=False)
