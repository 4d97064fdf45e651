"""Helpers the notebooks share: load a saved stage when present, train it when not.

A saved stage 1 is reused only when it is the one asked for: its file records every setting that
decides its weights (objective, epochs, learning rate, batch size, seed, schedule, precision asked
for, layer sizes) and a fingerprint of the images it was trained on; ``stage1_model`` compares them
and trains again, saying why, on any difference. A stage 1 that cannot be saved is still returned.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .checkpoint import load_checkpoint, save_checkpoint
from .checks import env_folder
from .models import TwoStageNetwork
from .recipe import COURSE, RUN, STUDY
from .runtime import seed_everything
from .subsets import holdout_size, validation_split
from .training import train_stage1


def checkpoint_dir() -> Path:
    """``$TWOSTAGE_CHECKPOINTS`` (``~`` expanded; empty means unset) or ``checkpoints/`` here."""
    return env_folder("TWOSTAGE_CHECKPOINTS") or Path("checkpoints")


def stage1_epochs(data, objective="autoencoder") -> int:
    """The notebooks' stage-1 length: ``COURSE.epochs_stage1`` (3) epochs of full MNIST for every
    objective; the contrastive one keeps about the same number of steps (some 350) on smaller data,
    because it learns per step, not per pass (3 epochs of the 10,000-image subset leave its features
    far behind)."""
    epochs = COURSE.epochs_stage1
    return max(epochs, round(epochs * 60_000 / len(data))) if objective == "contrastive" else epochs


def stage1_path(data, objective="autoencoder", epochs=3, seed=0) -> Path:
    """Where the stage 1 trained with these settings is saved: one file per objective, data size, epochs, seed."""
    return checkpoint_dir() / f"stage1_{objective}_{len(data)}_e{epochs}_s{seed}.pt"


def stage1_record(data, settings: dict, model_config: dict) -> dict:
    """What decides a stage 1's weights: the training settings (``History.settings``), the layer
    sizes and the images' fingerprint. Saved with it; compared when it is loaded."""
    return {**settings, "model_config": dict(model_config), "data": data.fingerprint()}


def save_stage1(model, data, history, objective="autoencoder", epochs=3, seed=0) -> Path:
    """Save a stage 1 trained by ``train_stage1(model, data, objective=..., epochs=..., seed=...)``
    where ``stage1_model`` looks for it, so later notebooks load it instead of training it again.

    The settings recorded are the ones the training used (``history.settings``), so a file never
    claims a learning rate it was not trained at. An interrupted stage 1, or arguments that do not
    match the training, are refused: a later notebook would load the wrong stage 1."""
    trained = history.settings
    asked = {"objective": objective, "epochs": epochs, "seed": seed}
    wrong = [f"{k}={v!r} (trained with {trained.get(k)!r})" for k, v in asked.items() if trained.get(k) != v]
    if wrong:
        raise ValueError(f"save_stage1 was told {', '.join(wrong)}: pass the settings train_stage1 used")
    if history.interrupted or len(history) != epochs:
        raise ValueError(
            f"this stage 1 ran {len(history)} of its {epochs} epochs (interrupted or stopped early); "
            "a later notebook would load it as finished: train it to the end, then save"
        )
    config = stage1_record(data, trained, model.config)
    metrics = {"train_loss": history.last.get("train_loss"), "seconds": history.seconds}
    return save_checkpoint(stage1_path(data, objective, epochs, seed), model.cpu(), config=config, metrics=metrics)


def stage1_model(data, objective="autoencoder", epochs=None, seed=0, lr=COURSE.lr, progress=False):
    """A network whose stage 1 was trained with ``objective`` on ``data`` (labels unused), for
    ``epochs`` (default ``stage1_epochs(data, objective)``).

    Loads ``stage1_path(...)`` when it holds this very stage 1 (same settings, same images), so a
    notebook does not depend on another having run; otherwise trains it and saves it there. Returns
    (model, a sentence saying which: "loaded from ...", "trained in ... and saved to ...", and why
    a file that was there was not used, or why the new one could not be saved).
    """
    epochs = stage1_epochs(data, objective) if epochs is None else epochs
    path = usable_path(data, objective, epochs, seed)
    saved, _, why_not = load_matching(path, wanted_record(data, objective, epochs, lr, seed))
    if saved is not None:
        return saved, f"loaded from {path}"
    seed_everything(seed)
    model = TwoStageNetwork(in_features=data.num_features)
    history = train_stage1(model, data, objective=objective, epochs=epochs, lr=lr, seed=seed, progress=progress)
    how = f"trained in {history.seconds:.1f} s"
    if why_not:
        how += f" ({why_not})"
    try:
        save_stage1(model, data, history, objective, epochs, seed)
    except (OSError, ValueError) as exc:  # the trained model is returned all the same
        reason = " ".join(str(exc).split())
        fix = "; to keep it for the next notebooks, set TWOSTAGE_CHECKPOINTS to a folder you can write to"
        warnings.warn(
            f"stage 1 not saved: {reason}. The trained model is returned{fix if isinstance(exc, OSError) else ''}",
            stacklevel=2,
        )
        return model, f"{how}; not saved: {reason}"
    return model, f"{how} and saved to {path}"


def usable_path(data, objective, epochs, seed) -> Path | None:
    """``stage1_path``, or None when ``TWOSTAGE_CHECKPOINTS`` names a file: then there is nothing to
    load, and saving says why the stage 1 was not saved."""
    try:
        return stage1_path(data, objective, epochs, seed)
    except ValueError:
        return None


def wanted_record(data, objective, epochs, lr, seed) -> dict:
    """The record of the stage 1 ``stage1_model`` would train: its settings, as ``train_stage1``
    records them in its history, the default layer sizes and the images' fingerprint."""
    settings = {
        "objective": objective,
        "epochs": epochs,
        "lr": lr,
        "batch_size": COURSE.batch_size,
        "seed": seed,
        "scheduler": None,
        "clip_grad_norm": None,
        "precision": "auto",
    }
    return stage1_record(data, settings, TwoStageNetwork(in_features=data.num_features).config)


def load_matching(path: Path | None, wanted: dict):
    """(model, checkpoint, None) when ``path`` holds a stage 1 whose record equals ``wanted``; else
    (None, None, why not: None when there is no file). An unreadable file is a reason to train
    again, not a crash."""
    if path is None or not path.is_file():
        return None, None, None
    try:
        model, ckpt = load_checkpoint(path)
    except (OSError, ValueError) as exc:
        return None, None, f"{path} was not used: {' '.join(str(exc).split())}"
    saved = ckpt.get("config", {})
    differ = [k for k in wanted if saved.get(k) != wanted[k]]
    if not differ:
        return model, ckpt, None
    k = differ[0]
    if k == "data":
        why = "was trained on other images of the same count (another data set?)"
    elif k not in saved:
        why = f"does not record its {k} (saved by an older version)"
    else:
        why = f"was trained with {k}={saved[k]!r}, not {wanted[k]!r}"
    return None, None, f"{path} {why}, so it was not used"


def stage1_seconds(data, objective="autoencoder", epochs=None, seed=0, lr=COURSE.lr) -> float | None:
    """How long the saved stage 1 (``stage1_model``'s settings) took to train, as recorded when it was
    saved, on the machine that trained it; None when there is none, it is not the one ``stage1_model``
    would load, or it was saved without the time."""
    epochs = stage1_epochs(data, objective) if epochs is None else epochs
    _, ckpt, _ = load_matching(
        usable_path(data, objective, epochs, seed), wanted_record(data, objective, epochs, lr, seed)
    )
    return None if ckpt is None else ckpt["metrics"].get("seconds")


def study_stage1(data, path, seed=0, progress=False):
    """The label study's contrastive stage 1 for ``seed`` (``compare``: 30 epochs on the training
    part of ``data.train``, RUN's settings), loaded from ``path`` when there (the course ships the
    seed-0 one: notebook 10), else trained (minutes on a CPU) and saved there. Returns (model, how)."""
    path = Path(path)
    if path.is_file():
        model, saved = load_checkpoint(path)
        return model, f"loaded from {path} ({saved['config'].get('what', 'a saved stage 1')})"
    train, _ = validation_split(data.train, holdout_size(len(data.train)), seed=seed)
    seed_everything(seed)
    model = TwoStageNetwork(in_features=data.train.num_features)
    epochs = STUDY.stage1_epochs["contrastive"]
    history = train_stage1(
        model,
        train,
        objective="contrastive",
        lr=RUN.lr,
        seed=seed,
        epochs=epochs,
        batch_size=RUN.batch_size,
        scheduler=RUN.scheduler,
        progress=progress,
    )
    what = f"the study's contrastive stage 1, seed {seed}, {epochs} epochs of {len(train):,} images"
    save_checkpoint(path, model, config={"what": what, "seed": seed, "epochs": epochs, "images": len(train)})
    return model, f"trained in {history.seconds:.0f} s and saved to {path} ({what})"
