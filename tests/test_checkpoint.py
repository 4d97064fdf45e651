import pytest
import torch

import twostage_lib as ts


def test_round_trip_is_bit_for_bit(model, tmp_path):
    path = ts.save_checkpoint(
        tmp_path / "stage1.pt", model, config={"objective": "autoencoder"}, metrics={"accuracy": 0.9}
    )
    loaded, ckpt = ts.load_checkpoint(path)
    assert ts.unchanged(loaded, ts.snapshot(model))
    assert ckpt["config"] == {"objective": "autoencoder"} and ckpt["metrics"] == {"accuracy": 0.9}
    assert ckpt["versions"]["torch"] == torch.__version__ and "twostage_lib" in ckpt["versions"]
    assert [p.name for p in tmp_path.iterdir()] == ["stage1.pt"]  # no temporary file left


@pytest.mark.parametrize(
    "error",  # a full disk as the OS reports it, and as torch.save's zip writer does
    [OSError("No space left on device"), RuntimeError("[enforce fail at inline_container.cc:664] unexpected pos")],
)
def test_a_failed_save_is_named_and_keeps_the_previous_file(model, tmp_path, monkeypatch, error):
    path = ts.save_checkpoint(tmp_path / "m.pt", model)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "save", crash)
    with torch.no_grad():
        model.stage2[0].weight.zero_()
    with pytest.raises(OSError, match=r"could not write the checkpoint .*m\.pt.*disk full"):
        ts.save_checkpoint(path, model)
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_wrong_architecture_names_the_layer(model, tmp_path):
    path = ts.save_checkpoint(tmp_path / "m.pt", model)
    other = ts.TwoStageNetwork(stage1_sizes=(256, 64))
    with pytest.raises(ValueError, match=r"layer 'stage1.2.weight' has shape \(128, 256\) in the checkpoint"):
        ts.load_checkpoint(path, other)


def test_corrupted_or_missing_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="corrupted or not a checkpoint"):
        ts.load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ts.load_checkpoint(tmp_path / "none.pt")
