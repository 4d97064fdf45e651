import json
import subprocess
import sys

import pytest

from twostage_lib.__main__ import main

# one epoch of each stage on the bundled subset, autoencoder stage 1: the quickest whole run
QUICK = ["run", "--data", "bundled", "--epochs-stage1", "1", "--epochs-stage2", "1", "--epochs-finetune", "1",
         "--objective", "autoencoder", "--no-progress", "--device", "cpu"]  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--epochs-stage1", "-1"],
        ["run", "--objective", "vae"],
        ["run", "--data", "web"],
        ["run", "--precision", "fp16"],
        ["run", "--bogus"],
        ["fly"],
        [],
    ],
)
def test_bad_flags_exit_2_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: python -m twostage_lib" in capsys.readouterr().err


def test_run_prints_a_table_and_writes_the_report(tmp_path, capsys):
    path = tmp_path / "report.json"
    code = main([*QUICK, "--labels-per-class", "50", "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0 and "stage1" in out and "finetune" in out and "test accuracy" in out
    report = json.loads(path.read_text())
    assert report["data_source"] == "bundled" and report["n_test"] == 10000
    assert report["n_labelled"] == 500 and report["n_train"] == 9000
    for stage in ("stage1", "stage2", "finetune"):
        assert report["stages"][stage]["seconds"] > 0 and "test_accuracy" in report["stages"][stage]
    assert report["final_test_accuracy"] == report["stages"]["finetune"]["test_accuracy"] > 0.3  # chance: 0.1


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "twostage_lib", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout


def test_precision_flag_reaches_the_report(tmp_path, capsys):
    path = tmp_path / "report.json"
    main([*QUICK, "--labels-per-class", "20", "--precision", "fp32", "--json", str(path)])
    stages = json.loads(path.read_text())["stages"]
    assert {s["precision"] for s in stages.values()} == {"fp32"}
    assert "precision on cpu" in capsys.readouterr().out


def test_stage2_has_its_own_batch_and_learning_rate(tmp_path):
    path = tmp_path / "report.json"
    main(
        [*QUICK, "--labels-per-class", "20", "--batch-size-stage2", "100", "--lr-stage2", "0.004", "--json", str(path)]
    )
    report = json.loads(path.read_text())
    assert report["config"]["batch_size_stage2"] == 100 and report["config"]["batch_size"] == 512
    assert report["stages"]["stage2"]["history"][0]["lr"] == 0.004  # stage 2's rate, not --lr (3e-3)
    assert report["stages"]["finetune"]["history"][0]["lrs"][-1] != 0.004


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--device", "tpu"], "unknown device 'tpu'; use 'auto', 'cpu'"),
        (
            ["--labels-per-class", "5000"],
            "held out for validation, which leaves at most 900 per class; use --labels-per-class 900",
        ),
    ],
)
def test_bad_input_is_one_line_on_stderr_not_a_traceback(capsys, flags, message):
    assert main(["run", "--data", "bundled", "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m twostage_lib run: error: ") and message in err and "Traceback" not in err
