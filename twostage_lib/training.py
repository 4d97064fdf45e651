"""Training: one loop shared by stage 1, stage 2 and fine-tuning (slides 2, 3, 5, 6, 8, 9, 11)."""
from __future__ import annotations

import copy
import math
import os
import random
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augmentations import augment as augment_batch
from .data import Batches, TensorData, class_indices
from .freezing import freeze_stage1, unfreeze_stage1
from .objectives import Contrastive, make_objective

DEFAULT_BATCH_SIZE = 512
# Stage 2 trains the small head on cached features, where a step is mostly per-operation overhead
# (0.45 ms at batch 512, 0.13 ms of it arithmetic): 4x the batch does an epoch in a quarter of the
# steps, and 4x the learning rate (the linear scaling rule; 2e-3 at 512, as the notebooks used)
# keeps the accuracy. Measured on autoencoder features, 3 seeds: 5 epochs 93.7% (94.2% at 512,
# twice the time); in the same time as 5 epochs at 512, 10 epochs at 2048 reach 95.6%.
STAGE2_BATCH_SIZE = 2048
STAGE2_LR = 8e-3


# ---------------------------------------------------------------- set-up helpers

def seed_everything(seed=0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run repeats on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def select_device(device="auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU; anything else is used as given."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use device='cpu'")
    return device


def as_tensors(data, device, batch_size=4096):
    """Flattened float inputs and labels on ``device`` from a TensorData, an (X, y) pair, or a
    torch ``Dataset`` / ``DataLoader`` (read once into memory)."""
    if isinstance(data, TensorData):
        return data.on(device)
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        return TensorData(data[0], data[1]).on(device)
    if isinstance(data, torch.utils.data.Dataset):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size)
    if isinstance(data, torch.utils.data.DataLoader):
        xs, ys = zip(*((x.reshape(len(x), -1).float(), torch.as_tensor(y)) for x, y in data))
        return torch.cat(xs).to(device), class_indices(torch.cat(ys)).to(device)
    raise TypeError(f"cannot train on {type(data).__name__}: pass a TensorData (from load_mnist), "
                    "an (X, y) pair of tensors, or a torch Dataset / DataLoader")


def image_shape_of(data, x) -> tuple:
    if isinstance(data, TensorData) and len(data.image_shape) >= 2:
        shape = data.image_shape
        return shape if len(shape) == 3 else (1, *shape)
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"cannot infer an image shape for {x.shape[1]} features; pass TensorData images")
    return (1, side, side)


# ---------------------------------------------------------------- history and early stopping

@dataclass
class History:
    """What happened, epoch by epoch: ``history["val_loss"]`` is a list with one value per epoch."""

    stage: str
    epochs: list = field(default_factory=list)
    interrupted: bool = False
    stopped_early: bool = False
    best_epoch: int | None = None
    seconds: float = 0.0
    objective: object = None  # stage 1's objective module (decoder / projection head)
    precision: str = "fp32"  # what the forward pass ran in: "fp32" or "bf16" (autocast)

    def __getitem__(self, key):
        return [e.get(key) for e in self.epochs]

    def __len__(self):
        return len(self.epochs)

    @property
    def last(self) -> dict:
        return self.epochs[-1] if self.epochs else {}

    def __repr__(self):
        flags = "".join([", bf16" * (self.precision == "bf16"), ", interrupted" * self.interrupted,
                         ", stopped early" * self.stopped_early])
        last = ", ".join(f"{k}={v:.4g}" for k, v in self.last.items() if isinstance(v, float))
        return f"History({self.stage}: {len(self)} epochs{flags}; last: {last})"


class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs
    (slide 9), and keep a copy of the best weights so they can be put back."""

    def __init__(self, patience=5, min_delta=0.0, restore_best=True):
        self.patience, self.min_delta, self.restore_best = patience, min_delta, restore_best
        self.counter, self.best_loss, self.best_epoch, self.best_state = 0, float("inf"), None, None

    def __call__(self, val_loss, model=None, epoch=None) -> bool:
        """Record one epoch's validation loss; True means stop."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.counter, self.best_epoch = val_loss, 0, epoch
            if model is not None and self.restore_best:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.counter += 1
        return self.counter >= self.patience

    def restore(self, model) -> bool:
        if self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. ``.history`` holds the epochs completed before it."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


def make_scheduler(name, optimizer, epochs, steps_per_epoch, step_size=None, gamma=0.1):
    """``"step"``: StepLR stepped each epoch (slide 6). ``"cosine"``: cosine decay to 0 over every
    step of the run. A ready LR scheduler is stepped each epoch. Returns (scheduler, per_step)."""
    if name is None or name == "none":
        return None, False
    if name == "step":
        step_size = step_size or max(1, epochs // 3)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma), False
    if name == "cosine":
        total = max(1, epochs * steps_per_epoch)
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), True
    if isinstance(name, torch.optim.lr_scheduler.LRScheduler):
        return name, False
    raise ValueError(f"unknown scheduler {name!r}; choose 'step', 'cosine', None or pass an LR scheduler")


def make_optimizer(param_groups, lr, weight_decay=0.0):
    """Adam with a fused update (one kernel for all parameters) on CPU and CUDA, else foreach."""
    groups = [dict(g, params=list(g["params"])) if isinstance(g, dict) else g for g in param_groups]
    device = (groups[0]["params"][0] if isinstance(groups[0], dict) else groups[0]).device
    fast = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, **fast)


PRECISIONS = ("auto", "fp32", "bf16")


def has_fast_bf16(device) -> bool:
    """True where bfloat16 matrix products run in hardware: CUDA GPUs that support it, and CPUs
    with AVX-512 BF16 or AMX (recent AMD EPYC / Ryzen, Intel Xeon from Sapphire Rapids)."""
    if device.type == "cuda":  # Ampere (compute capability 8.0) and later; older GPUs only emulate it
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


# Below this much work per step (trained weights x batch size, about the multiply-adds of one
# forward pass) a step is per-operation overhead, not arithmetic, and the casts cost more than
# bfloat16 saves. Measured on a 2-core AVX-512 BF16 CPU (bf16 / fp32 speed, median of 5): 0.95 and
# 0.84 for the autoencoder and fine-tuning at 11-12 million; 1.04, 1.00 and 1.08 for them and the
# 128-64-10 head at 14-16 million; the head at batch 512 (4.6 million) 0.85, fine-tuning at 512
# (124 million) 2.3. The threshold sits between the two groups.
BF16_MIN_WORK = 12_000_000


def resolve_precision(precision, device, work=None) -> str:
    """``"auto"`` is ``"bf16"`` where the hardware has fast bfloat16 (``has_fast_bf16``) and a step
    does at least ``BF16_MIN_WORK`` (trained weights x batch size; None: assume enough), else ``"fp32"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose 'auto', 'fp32' (float32 throughout) "
                         "or 'bf16' (bfloat16 autocast of the forward pass)")
    if precision == "auto":
        big_enough = work is None or work >= BF16_MIN_WORK
        return "bf16" if big_enough and has_fast_bf16(device) else "fp32"
    if precision == "bf16" and not has_fast_bf16(device):
        warnings.warn(f"precision='bf16' on {device}, which has no fast bfloat16: training will likely be "
                      "slower than with precision='fp32'")
    return precision


# ---------------------------------------------------------------- the shared loop

def run_epochs(stage, model, optimizer, batches, loss_fn, epochs, *, scheduler=None,
               clip_grad_norm=None, validate=None, early_stopping=None, writer=None,
               progress=True, train_modules=None, objective=None, callback=None,
               precision="auto") -> History:
    """Train for ``epochs`` passes over ``batches`` with ``loss_fn(x, y) -> loss``.

    Stops with ``TrainingDiverged`` (history kept) on a NaN or infinite loss; on Ctrl-C it
    finishes cleanly and returns the history with ``interrupted=True``. ``callback(record)`` is
    called after every epoch (the notebooks' live plots use it); if it returns True, training
    stops there (``stopped_early``).

    ``precision="bf16"`` runs the forward pass under bfloat16 autocast: matrix products in
    bfloat16 (2-4x faster where the hardware has it), weights, gradients and optimizer in float32.
    ``"auto"`` (the default) picks it only where it is faster (``resolve_precision``); ``"fp32"``
    turns it off.
    """
    if early_stopping is not None and validate is None:
        raise ValueError("early_stopping watches the validation loss: pass val= (a validation set, e.g. from "
                         "ts.validation_split) or drop early_stopping")
    history = History(stage, objective=objective)
    sched, per_step = make_scheduler(scheduler, optimizer, epochs, len(batches))
    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    writer = _writer(writer)
    device = params[0].device
    batch = min(batches.batch_size, len(batches.x)) if isinstance(batches, Batches) else None
    work = sum(p.numel() for p in params) * batch if batch else None
    history.precision = resolve_precision(precision, device, work)
    mixed = history.precision == "bf16"
    train_modules = train_modules or [model]
    bar = tqdm(range(epochs), desc=stage, disable=not progress, leave=True)
    start = time.perf_counter()
    epoch = step = 0
    first_loss, warned = None, False  # the loss before any update: the yardstick for divergence
    try:
        for epoch in bar:
            for m in train_modules:
                m.train()
            t0 = time.perf_counter()
            total = 0.0
            norm_sum = torch.zeros((), device=device)
            norm_max = torch.zeros((), device=device)
            seen = 0
            for step, (x, y) in enumerate(batches):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
                    loss = loss_fn(x, y)
                # Read the loss on the host every step, before it can move a weight: free on a CPU,
                # 1-12% of a step on an H100 for these small networks, and a NaN never gets applied.
                value = loss.item()
                if not math.isfinite(value):
                    raise _diverged(stage, epoch, step, value, history)
                if first_loss is None:
                    first_loss = value
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_grad_norm is not None:
                    norm = torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)  # norm before clipping
                    norm_sum += norm
                    norm_max = torch.maximum(norm_max, norm)
                optimizer.step()
                if per_step:
                    sched.step()
                total += value * len(x)
                seen += len(x)
            train_loss = total / max(seen, 1)
            # 10x the loss before training (at least 10: a near-zero start, as after stage 2 memorized a few
            # labels, is not a yardstick); the course's losses all start near 1-7
            if not warned and train_loss > 10 * max(abs(first_loss), 1.0):
                warned = True
                warnings.warn(f"{stage}: the training loss rose from {first_loss:.4g} (first step) to "
                              f"{train_loss:.4g} (epoch {epoch + 1}): training is diverging. The learning rate "
                              "is probably too high: try one 3-10x lower (or gradient clipping)")
            lrs = [g["lr"] for g in optimizer.param_groups]  # used this epoch
            record = {"epoch": epoch + 1, "train_loss": train_loss, "lr": lrs[-1], "lrs": lrs}
            if clip_grad_norm is not None:
                record["grad_norm_mean"] = norm_sum.item() / max(len(batches), 1)
                record["grad_norm_max"] = norm_max.item()
            if sched is not None and not per_step:
                sched.step()
            if validate is not None:
                record.update(validate())
            record["seconds"] = time.perf_counter() - t0
            history.epochs.append(record)
            _log(writer, stage, record)
            if callback is not None and callback(record) is True:
                history.stopped_early = True
                break
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k in ("train_loss", "val_loss", "val_acc")})
            if early_stopping is not None and "val_loss" in record:
                if early_stopping(record["val_loss"], model, epoch + 1):
                    history.stopped_early = True
                    break
    except KeyboardInterrupt:
        history.interrupted = True
        warnings.warn(f"{stage}: interrupted in epoch {epoch + 1}, step {step}; the model keeps its "
                      f"latest weights and the history its {len(history)} completed epochs")
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
        if writer is not None:
            writer.flush()
    if early_stopping is not None and early_stopping.restore_best and early_stopping.restore(model):
        history.best_epoch = early_stopping.best_epoch
    return history


def _diverged(stage, epoch, step, value, history):
    return TrainingDiverged(
        f"{stage}: the loss became {value} in epoch {epoch + 1} at step {step}. The learning rate is "
        f"probably too high: try one 3-10x lower (or gradient clipping). The {len(history)} "
        "completed epochs are in this error's .history", history)


def _writer(writer):
    if writer is None or hasattr(writer, "add_scalar"):
        return writer
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(os.fspath(writer))


def _log(writer, stage, record):
    if writer is None:
        return
    for key, value in record.items():
        if key != "epoch" and isinstance(value, (int, float)):
            writer.add_scalar(f"{stage}/{key}", value, record["epoch"])


@contextmanager
def evaluating(model):
    """Eval mode for a while, then every submodule back to its own mode. ``model.train(was_training)``
    would put a frozen stage 1 back in train mode too, and its BatchNorm layers (ResNet-18) would
    then update their running statistics on every later forward pass."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@torch.no_grad()
def loss_and_accuracy(model, x, y, batch_size=4096) -> dict:
    """Sample-weighted mean cross-entropy and accuracy of ``model`` over (x, y), without autograd."""
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        loss_sum += F.cross_entropy(out, yb) * len(yb)
        correct += (out.argmax(1) == yb).sum()
    return {"val_loss": loss_sum.item() / len(x), "val_acc": correct.item() / len(x)}


def _validator(model, val, device):
    if val is None:
        return None
    xv, yv = as_tensors(val, device)

    def validate():
        with evaluating(model):
            return loss_and_accuracy(model, xv, yv)

    return validate


# ---------------------------------------------------------------- the three stages

def _prepare(model, data, device, seed, classify=False):
    """Shared set-up of every stage: device, seeds, model and data on the device. ``classify``:
    the labels feed the default cross-entropy, so each must have an output in stage 2."""
    device = select_device(device)
    seed_everything(seed)
    model.to(device)
    x, y = as_tensors(data, device)
    if len(x) == 0:
        raise ValueError("the training data holds no images; check the subset or filter that built it")
    if classify:
        _check_classes(model, y)
    return device, x, y


def criterion_on(criterion, device):
    """The loss to train with: cross-entropy by default. A loss module moves to the device with the
    model, so a class-weighted ``nn.CrossEntropyLoss(weight=...)`` built on the CPU works on a GPU."""
    if criterion is None:
        return nn.CrossEntropyLoss()
    return criterion.to(device) if isinstance(criterion, nn.Module) else criterion


def _check_classes(model, y):
    """Labels that the classifier has no output for fail here, named, not deep inside the loss."""
    if int(y.min()) < 0:  # _prepare has refused empty data already
        raise ValueError(f"labels must be class indices from 0, got {int(y.min())}: stage 2 and fine-tuning "
                         "need labelled images (-1 often marks unlabelled ones; leave those to stage 1)")
    outputs = [m.out_features for m in model.stage2.modules() if isinstance(m, nn.Linear)]
    if outputs and int(y.max()) >= outputs[-1]:
        raise ValueError(f"labels go up to {int(y.max())} but stage 2 has {outputs[-1]} outputs (classes "
                         f"0-{outputs[-1] - 1}); build the model with num_classes={int(y.max()) + 1} or "
                         "relabel the data from 0")


def train_stage1(model, data, objective="autoencoder", epochs=5, lr=1e-3, batch_size=DEFAULT_BATCH_SIZE,
                 device="auto", seed=0, val=None, **loop) -> History:
    """Stage 1: train ``model.stage1`` on images alone (labels ignored).

    ``objective`` is ``"autoencoder"``, ``"denoising"``, ``"contrastive"``, an objective module or a
    callable ``loss(model, x)``. The objective's head (decoder, projection) trains with stage 1 and
    is returned as ``history.objective``. An objective that gives stage 1 no gradient is refused.
    """
    device, x, y = _prepare(model, data, device, seed)
    unfreeze_stage1(model)
    obj = make_objective(objective, model, image_shape_of(data, x))
    if isinstance(obj, nn.Module):
        obj.to(device)
    loss_of = obj.loss if hasattr(obj, "loss") else obj
    params = list(model.stage1.parameters()) + (list(obj.parameters()) if isinstance(obj, nn.Module) else [])
    if isinstance(obj, Contrastive) and min(batch_size, len(x)) < 2:
        raise ValueError("the contrastive objective compares each image with the others of its batch, so it "
                         f"needs at least 2 a batch (got {min(batch_size, len(x))}); use batch_size=256 or more")
    batches = Batches(x, y, batch_size, shuffle=True, seed=seed)
    _check_stage1_gradient(model, loss_of, next(iter(batches))[0], objective)
    validate = None
    if val is not None:
        xv, _ = as_tensors(val, device)

        @torch.no_grad()
        def validate():
            modules = [model] + ([obj] if isinstance(obj, nn.Module) else [])
            for m in modules:
                m.eval()
            total = sum(float(loss_of(model, xv[i:i + 4096])) * len(xv[i:i + 4096])
                        for i in range(0, len(xv), 4096))
            return {"val_loss": total / len(xv)}

    train_modules = [model.stage1] + ([obj] if isinstance(obj, nn.Module) else [])
    history = run_epochs("stage1", model, make_optimizer(params, lr), batches,
                         lambda xb, yb: loss_of(model, xb), epochs, validate=validate,
                         train_modules=train_modules, objective=obj, **loop)
    model.eval()
    return history


def _check_stage1_gradient(model, loss_of, x, objective):
    """Refuse an objective whose loss gives stage 1 a zero gradient (the seeds' MSE(f, f.detach()))."""
    model.zero_grad(set_to_none=True)
    loss = loss_of(model, x)
    grads = torch.autograd.grad(loss, list(model.stage1.parameters()), allow_unused=True)
    loss = loss.detach()
    norm = sum(float(g.abs().sum()) for g in grads if g is not None)
    if norm == 0.0:
        name = getattr(objective, "__name__", objective)
        raise ValueError(
            f"stage-1 objective {name!r} gives the encoder a zero gradient on the first batch "
            f"(loss {loss.item():.3g}), so stage 1 would learn nothing. A loss that compares the "
            "features with themselves, like criterion(features, features.detach()), is always 0; "
            "compare a reconstruction with the input instead (objective='autoencoder').")


def train_stage2(model, data, epochs=5, lr=STAGE2_LR, batch_size=STAGE2_BATCH_SIZE, device="auto", seed=0,
                 val=None, cache_features=True, optimizer=None, criterion=None, **loop) -> History:
    """Stage 2: train ``model.stage2`` on stage 1's frozen features (slides 3 and 4).

    Stage 1 is frozen and in eval mode; its features are computed without autograd, once for the
    whole training set when ``cache_features`` (the default), else every step. A given
    ``optimizer`` may hold stage-1 parameters (even with Adam state): they still do not move.
    The defaults, batch 2048 at a learning rate of 8e-3, suit a head on cached features
    (``STAGE2_BATCH_SIZE``); a smaller batch wants a proportionally smaller rate.
    """
    device, x, y = _prepare(model, data, device, seed, classify=criterion is None)
    freeze_stage1(model)
    criterion = criterion_on(criterion, device)
    if cache_features:
        x = stage1_features(model, x)
        loss_fn = lambda fb, yb: criterion(model.stage2(fb), yb)  # noqa: E731
    else:
        def loss_fn(xb, yb):
            with torch.no_grad(), torch.autocast(xb.device.type, enabled=False):  # as the cache is built
                features = model.features(xb)
            return criterion(model.stage2(features), yb)
    if optimizer is not None:  # its state (Adam's moments) follows the weights to the device; values unchanged
        optimizer.load_state_dict(optimizer.state_dict())
    optimizer = optimizer or make_optimizer(model.stage2.parameters(), lr)
    history = run_epochs("stage2", model, optimizer, Batches(x, y, batch_size, seed=seed), loss_fn, epochs,
                         validate=_validator(model, val, device), train_modules=[model.stage2], **loop)
    model.eval()
    return history


@torch.no_grad()
def stage1_features(model, x, batch_size=DEFAULT_BATCH_SIZE):
    """Stage 1's features (``model.features``: for the transfer network, after adapting the
    images) for every row of ``x``, computed once in eval mode, ``batch_size`` rows at a time
    (larger chunks gain nothing on a CPU; ResNet-18 runs 1.5x slower in chunks of 2048)."""
    model.stage1.eval()
    return torch.cat([model.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def finetune(model, data, epochs=5, lr=1e-3, stage1_lr_scale=0.1, batch_size=DEFAULT_BATCH_SIZE,
             device="auto", seed=0, val=None, augment=False, criterion=None, stage="finetune",
             sample_weights=None, **loop) -> History:
    """Fine-tune end to end (slide 5): stage 1 unfrozen at ``lr * stage1_lr_scale``, stage 2 at ``lr``.

    The smaller step for stage 1 keeps its pretrained features from being wrecked by the large
    early gradients of the classifier. ``augment=True`` applies digit-safe augmentation per batch;
    ``sample_weights`` (one per training sample) draws batches in proportion to them.
    """
    device, x, y = _prepare(model, data, device, seed, classify=criterion is None)
    unfreeze_stage1(model)
    criterion = criterion_on(criterion, device)
    groups = [{"params": model.stage1.parameters(), "lr": lr * stage1_lr_scale},
              {"params": model.stage2.parameters(), "lr": lr}]
    shape = image_shape_of(data, x)
    if augment is True:
        generator = torch.Generator(device=device).manual_seed(seed)  # on the device: no per-step copy
        augment = lambda xb: augment_batch(xb, shape, generator=generator)  # noqa: E731

    def loss_fn(xb, yb):
        return criterion(model(augment(xb) if augment else xb), yb)

    batches = Batches(x, y, batch_size, seed=seed, sample_weights=sample_weights)
    history = run_epochs(stage, model, make_optimizer(groups, lr), batches,
                         loss_fn, epochs, validate=_validator(model, val, device), **loop)
    model.eval()
    return history


def train_supervised(model, data, epochs=5, lr=1e-3, **kwargs) -> History:
    """The baseline: the same network trained end to end from scratch, one learning rate."""
    return finetune(model, data, epochs=epochs, lr=lr, stage1_lr_scale=1.0, stage="supervised", **kwargs)
