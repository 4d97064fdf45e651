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


def stage1_model(data, objective="autoencoder", epochs=3, seed=0, lr=2e-3, progress=True):
    """A network whose stage 1 was trained with ``objective`` on ``data`` (labels unused).

    Loads ``<checkpoint_dir()>/stage1_<objective>_<data size>_e<epochs>_s<seed>.pt`` when it exists,
    so a notebook does not depend on another having run; otherwise trains it and saves it there.
    Returns (model, a sentence saying which: "loaded from ..." or "trained in ... and saved to ...").
    """
    path = checkpoint_dir() / f"stage1_{objective}_{len(data)}_e{epochs}_s{seed}.pt"
    if path.is_file():
        model, _ = load_checkpoint(path)
        return model, f"loaded from {path}"
    seed_everything(seed)
    model = TwoStageNetwork(in_features=data.num_features)
    history = train_stage1(model, data, objective=objective, epochs=epochs, lr=lr, seed=seed, progress=progress)
    save_checkpoint(
        path,
        model.cpu(),
        config={"objective": objective, "epochs": epochs, "seed": seed},
        metrics={"train_loss": history.last.get("train_loss")},
    )
    return model, f"trained in {history.seconds:.1f} s and saved to {path}"
