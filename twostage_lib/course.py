"""Helpers the notebooks share: load a saved stage when present, train it when not."""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import load_checkpoint, save_checkpoint
from .models import TwoStageNetwork
from .runtime import seed_everything
from .training import train_stage1


def checkpoint_dir() -> Path:
    """``$TWOSTAGE_CHECKPOINTS`` or ``checkpoints/`` under the current folder."""
    return Path(os.environ.get("TWOSTAGE_CHECKPOINTS", "checkpoints"))


def stage1_epochs(data, objective="autoencoder") -> int:
    """The notebooks' stage-1 length: 3 epochs of full MNIST for every objective; the contrastive one
    keeps about the same number of steps (some 350) on smaller data, because it learns per step, not
    per pass (3 epochs of the 10,000-image subset leave its features far behind)."""
    return max(3, round(3 * 60_000 / len(data))) if objective == "contrastive" else 3


def stage1_path(data, objective="autoencoder", epochs=3, seed=0) -> Path:
    """Where the stage 1 trained with these settings is saved: one file per objective, data size, epochs, seed."""
    return checkpoint_dir() / f"stage1_{objective}_{len(data)}_e{epochs}_s{seed}.pt"


def save_stage1(model, data, history, objective="autoencoder", epochs=3, seed=0) -> Path:
    """Save a stage 1 trained by ``train_stage1(model, data, objective, epochs, seed=seed)`` where
    ``stage1_model`` looks for it, so later notebooks load it instead of training it again."""
    config = {"objective": objective, "epochs": epochs, "seed": seed}
    metrics = {"train_loss": history.last.get("train_loss"), "seconds": history.seconds}
    return save_checkpoint(stage1_path(data, objective, epochs, seed), model.cpu(), config=config, metrics=metrics)


def stage1_model(data, objective="autoencoder", epochs=None, seed=0, lr=2e-3, progress=False):
    """A network whose stage 1 was trained with ``objective`` on ``data`` (labels unused), for
    ``epochs`` (default ``stage1_epochs(data, objective)``).

    Loads ``stage1_path(...)`` when it exists, so a notebook does not depend on another having run;
    otherwise trains it and saves it there. Returns (model, a sentence saying which: "loaded from ..."
    or "trained in ... and saved to ...").
    """
    epochs = stage1_epochs(data, objective) if epochs is None else epochs
    path = stage1_path(data, objective, epochs, seed)
    if path.is_file():
        model, _ = load_checkpoint(path)
        return model, f"loaded from {path}"
    seed_everything(seed)
    model = TwoStageNetwork(in_features=data.num_features)
    history = train_stage1(model, data, objective=objective, epochs=epochs, lr=lr, seed=seed, progress=progress)
    save_stage1(model, data, history, objective, epochs, seed)
    return model, f"trained in {history.seconds:.1f} s and saved to {path}"


def stage1_seconds(data, objective="autoencoder", epochs=None, seed=0) -> float | None:
    """How long the saved stage 1 (``stage1_model``'s settings) took to train, as recorded when it was
    saved, on the machine that trained it; None when there is none or it was saved without the time."""
    epochs = stage1_epochs(data, objective) if epochs is None else epochs
    path = stage1_path(data, objective, epochs, seed)
    if not path.is_file():
        return None
    _, ckpt = load_checkpoint(path)
    return ckpt["metrics"].get("seconds")
