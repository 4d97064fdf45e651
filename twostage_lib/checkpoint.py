"""Checkpoints: model state, config, metrics and library versions, written atomically."""

from __future__ import annotations

import numbers
import os
import pickle
import platform
import re
import stat
import tempfile
from importlib import metadata
from pathlib import Path

import torch

from .models import TwoStageNetwork


def library_version() -> str:
    """twostage_lib's version, from the installed package's metadata (written once: pyproject.toml)."""
    try:
        return metadata.version("twostage_lib")
    except metadata.PackageNotFoundError:  # a source folder that was never installed
        return "0+unknown"


def versions() -> dict:
    import torchvision

    return {
        "twostage_lib": library_version(),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def save_checkpoint(path, model, config=None, metrics=None) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash or a full disk never leaves
    half a file, and a checkpoint already there stays as it was. Non-finite weights are refused."""
    path = Path(path).expanduser()
    check_finite(model.state_dict(), "the model", "find the epoch that diverged and save before it")
    payload = {
        "model_class": type(model).__name__,
        "model_config": plain(getattr(model, "config", None), "the model's config"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": plain(config or {}, "config"),
        "metrics": plain(metrics or {}, "metrics"),
        "versions": versions(),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda f: torch.save(payload, f))
    except (OSError, RuntimeError) as exc:  # a full disk reaches torch.save as "enforce fail at inline_container"
        reason = " ".join(str(exc).split())
        raise OSError(
            f"could not write the checkpoint {path} ({reason}); disk full, folder not writable, or a part "
            "of the path a file? Free some space or save elsewhere; any checkpoint already there is "
            "unchanged"
        ) from exc
    return path


def plain(value, where):
    """``value`` as the plain data a checkpoint can hold and ``torch.load(weights_only=True)`` reads
    back: numbers, strings, None, lists, tuples, dicts with string keys, tensors. A NumPy number
    becomes a Python one and a path a string; anything else is refused now, at save, rather than
    written and then called corrupted at load."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, numbers.Number) and hasattr(value, "item"):  # a NumPy scalar
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where} has the key {bad[0]!r}: a checkpoint's dicts need string keys")
        return {k: plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(
        f"{where} holds a {type(value).__name__} ({value!r:.60}), which a checkpoint cannot load back "
        "safely; store a number, string, list or dict instead"
    )


def write_atomically(path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it: a crash or a full disk
    never leaves half a file, and what ``path`` held before stays as it was (checkpoints, reports).

    Behaves like writing the file: a symlink is followed (its target is replaced, the link stays);
    a special file (``/dev/stdout``, a pipe) is written directly, never replaced by a regular one;
    the new file gets the mode the old one had, or a new file's mode under the umask (not 0600)."""
    path = Path(os.path.realpath(Path(path).expanduser()))
    if path.exists() and not path.is_file() and not path.is_dir():  # a device or a pipe: write to it
        with open(path, "wb") as f:
            write(f)
        return
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_finite(state, where, fix) -> None:
    """Refuse weights that are NaN or infinite, naming the first such tensor."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{where} has non-finite weights in {name!r}: it comes from a run that diverged; {fix}")


def load_checkpoint(path, model=None, map_location="cpu"):
    """Load a checkpoint into ``model`` (or a new TwoStageNetwork built from its config).

    Returns (model, checkpoint dict). A layer that does not fit raises an error naming it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train the stage first or check the path")
    check_map_location(map_location)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # read well, but holds an object that is not plain data
        if found is None:
            reason = " ".join(str(exc).split())[:200]
            message = f"checkpoint {path} is corrupted or not a checkpoint ({reason}); delete it and train again"
            raise ValueError(message) from exc
        raise ValueError(
            f"checkpoint {path} is readable but holds a {found.group(1)} object, which is not loaded (loading objects "
            "could run code); it was saved by other code or an older version. If you trust it, load it with "
            "torch.load(path, weights_only=False); else train again"
        ) from exc
    except OSError as exc:
        raise OSError(f"could not read the checkpoint {path} ({exc.strerror or exc}); check its permissions") from exc
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


def check_map_location(map_location) -> None:
    """A device named by ``map_location`` must exist here: a missing GPU is not a corrupted file."""
    if map_location is None or callable(map_location) or isinstance(map_location, dict):
        return
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError):
        raise ValueError(f"map_location {map_location!r} is not a device; use 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"map_location {map_location!r} names a CUDA GPU, and this machine has none; load with map_location='cpu'"
        )


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
