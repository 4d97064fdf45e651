import json

import pytest
import torch

from twostage_lib.__main__ import main
from twostage_lib.compare import epochs_for, format_study, run_study
from twostage_lib.data import Splits


def test_epochs_give_enough_steps():
    assert epochs_for(10, 300, 10) == 300  # one step per epoch
    assert epochs_for(55000, 600, 512) == 10  # never fewer than 10 passes


def test_small_study_has_every_method_and_budget(bundled):
    train = bundled.train.subset(torch.arange(0, 10000, 2))  # 5,000 images: fast
    splits = Splits(train, bundled.test.subset(torch.arange(2000)), "mnist", "bundled", "test")
    study = run_study(splits, budgets=(5, None), seeds=(0, 1), objectives=("autoencoder",), log=lambda *a: None)
    assert set(study["methods"]) == {"supervised", "autoencoder+probe", "autoencoder+head", "autoencoder+finetune"}
    for method, row in study["methods"].items():
        assert set(row) == {"5", "all"}
        assert len(row["all"]["runs"]) == 2 and row["all"]["std"] >= 0
        assert row["all"]["mean"] > row["5"]["mean"] > 0.1, method  # more labels help; all beat chance
    assert "labels" not in format_study(study) and "5/class" in format_study(study)


def test_compare_cli_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--labels-per-class", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--objectives", "vae"])
    assert exc.value.code == 2


def test_compare_cli_writes_json(tmp_path, capsys, monkeypatch):
    import twostage_lib.compare as C

    monkeypatch.setattr(C, "TUNE_STEPS", 20)
    monkeypatch.setattr(C, "HEAD_STEPS", 20)
    monkeypatch.setattr(C, "MIN_EPOCHS", 1)
    path = tmp_path / "study.json"
    assert main(["compare", "--data", "bundled", "--labels-per-class", "10", "--seeds", "0",
                 "--objectives", "denoising", "--no-progress", "--json", str(path)]) == 0
    study = json.loads(path.read_text())
    assert study["budgets"] == ["10"] and "denoising+finetune" in study["methods"]
    assert "total" in capsys.readouterr().out
