"""Checkpoints: model state, config, metrics and library versions, written atomically."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import torch

from . import __version__
from .models import TwoStageNetwork


def versions() -> dict:
    import torchvision

    return {
        "twostage_lib": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def save_checkpoint(path, model, config=None, metrics=None) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash or a full disk never leaves
    half a file, and a checkpoint already there stays as it was. Non-finite weights are refused."""
    path = Path(path)
    check_finite(model.state_dict(), "the model", "find the epoch that diverged and save before it")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model_class": type(model).__name__,
        "model_config": getattr(model, "config", None),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config or {},
        "metrics": metrics or {},
        "versions": versions(),
    }
    try:
        write_atomically(path, lambda f: torch.save(payload, f))
    except (OSError, RuntimeError) as exc:  # a full disk reaches torch.save as "enforce fail at inline_container"
        raise OSError(f"could not write the checkpoint {path} ({exc}); disk full or not writable? Free some "
                      "space or save elsewhere; any checkpoint already there is unchanged") from exc  # fmt: skip
    return path


def write_atomically(path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it: a crash or a full disk
    never leaves half a file, and what ``path`` held before stays as it was (checkpoints, reports)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_finite(state, where, fix) -> None:
    """Refuse weights that are NaN or infinite, naming the first such tensor."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{where} has non-finite weights in {name!r}: it comes from a run that diverged; {fix}")


def load_checkpoint(path, model=None, map_location="cpu"):
    """Load a checkpoint into ``model`` (or a new TwoStageNetwork built from its config).

    Returns (model, checkpoint dict). A layer that does not fit raises an error naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train the stage first or check the path")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a damaged file
        raise ValueError(
            f"checkpoint {path} is corrupted or not a checkpoint ({exc}); delete it and train again"
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a twostage_lib checkpoint (no state_dict); save with save_checkpoint")
    if model is None:
        if ckpt.get("model_class") != "TwoStageNetwork" or not ckpt.get("model_config"):
            raise ValueError(f"{path} holds a {ckpt.get('model_class')}; pass model= built the same way")
        model = TwoStageNetwork(**ckpt["model_config"])
    check_compatible(model, ckpt["state_dict"], path)
    check_finite(ckpt["state_dict"], f"checkpoint {path}", "load an earlier checkpoint or train again")
    model.load_state_dict(ckpt["state_dict"])
    return model, ckpt


def check_compatible(model, state, path="checkpoint") -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if shapes:
        k = shapes[0]
        raise ValueError(
            f"{path} does not fit this model: layer {k!r} has shape "
            f"{tuple(state[k].shape)} in the checkpoint but {tuple(own[k].shape)} in the "
            "model; build the model with the checkpoint's sizes (its 'model_config')"
        )
    if missing or extra:
        raise ValueError(
            f"{path} does not fit this model: missing layers {missing[:3]}, unexpected "
            f"layers {extra[:3]}; build the model the checkpoint was saved from"
        )
