"""The stages (notebooks 02-05 and 10): what each trains and on what loss; the loop is ``loop.fit``.

Each stage takes ``(model, data)`` (self-training: ``(model, labelled, unlabelled)``) and then only
keywords: its own settings, whose defaults are in ``recipe.py``, and the loop's, which mean the
same in every stage (``loop.LoopSettings``: pass one as ``settings=``, or its fields as keywords).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .augmentations import augment as augment_batch
from .augmentations import strong_augment
from .batches import Batches, forever
from .checks import number, whole
from .evaluation import check_targets, criterion_on, graph_safe_criterion, over_chunks, stage1_features
from .freezing import freeze_stage1, unfreeze_stage1
from .loop import fit, loop_settings, make_optimizer, validator
from .objectives import Contrastive, check_stage1_gradient, graph_safe_objective, make_objective
from .recipe import DEFAULT, SELFTRAIN
from .runtime import seed_everything, select_device
from .smoothness import RAMP_EPOCHS, Smoothing, eased
from .tensors import as_tensors, image_shape_of


def train_stage1(model, data, *, objective=DEFAULT.objective, lr=DEFAULT.lr, val=None, seed=0, settings=None, **loop):
    """Stage 1: train ``model.stage1`` on images alone (labels ignored).

    ``objective`` is ``"autoencoder"``, ``"denoising"``, ``"contrastive"``, an objective module or a
    callable ``loss(model, x)``. The objective's head (decoder, projection) trains with stage 1 and
    is returned as ``history.objective``. An objective that gives stage 1 no gradient is refused.
    ``loop``: any field of ``LoopSettings`` (``epochs``, ``batch_size``, ``progress``, ...).
    """
    s = loop_settings("train_stage1", settings, loop, DEFAULT.epochs_stage1, DEFAULT.batch_size)
    batch_size = s.batch_size
    device, x, y = _prepare(model, data, s.device, seed)
    unfreeze_stage1(model)
    shape = lambda: image_shape_of(data, x)  # noqa: E731 - asked only by objectives that need images
    obj = make_objective(objective, model, shape)
    heads = [obj.to(device)] if isinstance(obj, nn.Module) else []  # the decoder or projection head
    loss_of = obj.loss if hasattr(obj, "loss") else obj
    if isinstance(obj, Contrastive) and min(batch_size, len(x)) < 2:
        raise ValueError(
            "the contrastive objective compares each image with the others of its batch, so it "
            f"needs at least 2 a batch (got {min(batch_size, len(x))}); use batch_size=256 or more"
        )
    batches = Batches(x, y, batch_size, shuffle=True, seed=seed)
    check_stage1_gradient(model, loss_of, next(iter(batches))[0], objective)
    params = [p for m in [model.stage1, *heads] for p in m.parameters()]
    history = fit(
        "stage1",
        model,
        make_optimizer(params, lr),
        batches,
        lambda xb, yb: loss_of(model, xb),
        s,
        validate=_stage1_validator(model, heads, loss_of, val, device, batch_size),
        train_modules=[model.stage1, *heads],
        objective=obj,
        replayable=() if graph_safe_objective(obj) else None,
    )
    model.eval()
    history.settings = {
        "objective": objective if isinstance(objective, str) else type(obj).__name__,
        "epochs": s.epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "scheduler": s.scheduler if isinstance(s.scheduler, str) or s.scheduler is None else "custom",
        "clip_grad_norm": s.clip_grad_norm,
        "precision": s.precision,
    }
    return history


def _stage1_validator(model, heads, loss_of, val, device, batch_size):
    """``validate()`` for stage 1: the objective's mean loss on ``val`` (labels unused), in batches
    of the training batch size. A contrastive loss depends on how many other images a batch holds
    (4,095 negatives in a batch of 4,096, 511 in one of 512), so the validation loss then measures
    what the training loss measures; and no batch needs more memory than a training step."""
    if val is None:
        return None
    xv, yv = as_tensors(val, device)

    def validate():
        for m in [model, *heads]:
            m.eval()
        loss, _ = over_chunks(lambda xb, yb: (loss_of(model, xb), None), xv, yv, batch_size)
        return {"val_loss": loss}

    return validate


def train_stage2(
    model,
    data,
    *,
    lr=DEFAULT.lr_stage2,
    val=None,
    seed=0,
    cache_features=True,
    optimizer=None,
    criterion=None,
    settings=None,
    **loop,
):
    """Stage 2: train ``model.stage2`` on stage 1's frozen features (notebook 04).

    Stage 1 is frozen and in eval mode; its features are computed without autograd, once for the
    whole training set when ``cache_features`` (the default), else every step. A given
    ``optimizer`` may hold stage-1 parameters (even with Adam state): they still do not move.
    The defaults, a batch of 2048 at 4x the learning rate of stage 1 (``recipe.Recipe.lr_stage2``),
    suit a head on cached features; a smaller batch wants a proportionally smaller rate
    (``recipe.scaled_lr``). A stage 1 with no parameters and no buffers (``nn.Identity``: the head
    sees the pixels) is never cached: its features are the normalized pixels, and the cache would
    be a float32 copy of every image; the numbers are the same either way.
    ``loop``: any field of ``LoopSettings`` (``epochs``, ``batch_size``, ``progress``, ...).
    """
    s = loop_settings("train_stage2", settings, loop, DEFAULT.epochs_stage2, DEFAULT.batch_size_stage2)
    device, x, y = _prepare(model, data, s.device, seed, classify=criterion is None)
    freeze_stage1(model)
    criterion = criterion_on(criterion, device)
    cache_features = cache_features and _has_state(model.stage1)
    if cache_features:
        x = stage1_features(model, x)

    def loss_fn(xb, yb):
        if not cache_features:
            with torch.autocast(xb.device.type, enabled=False):  # as the cache is built
                xb = stage1_features(model, xb)  # in chunks too: a batch of ResNet-18 activations is large
        return criterion(model.stage2(xb), yb)

    if optimizer is not None:  # its state (Adam's moments) follows the weights to the device; values unchanged
        optimizer.load_state_dict(optimizer.state_dict())
    optimizer = optimizer or make_optimizer(model.stage2.parameters(), lr)
    history = fit(
        "stage2",
        model,
        optimizer,
        Batches(x, y, s.batch_size, seed=seed),
        loss_fn,
        s,
        validate=validator(model, val, device),
        train_modules=[model.stage2],
        replayable=() if cache_features and graph_safe_criterion(criterion) else None,
    )
    model.eval()
    return history


def finetune(
    model,
    data,
    *,
    lr=DEFAULT.lr,
    stage1_lr_scale=DEFAULT.stage1_lr_scale,
    val=None,
    seed=0,
    augment=DEFAULT.augment,
    criterion=None,
    sample_weights=None,
    stage="finetune",
    settings=None,
    **loop,
):
    """Fine-tune end to end (notebook 05): stage 1 unfrozen at ``lr * stage1_lr_scale``, stage 2 at ``lr``.

    The smaller step for stage 1 keeps its pretrained features from being wrecked by the large
    early gradients of the classifier. ``augment=True`` applies digit-safe augmentation per batch
    (or pass a function of a batch); ``sample_weights`` (one per training sample) draws batches in
    proportion to them. ``stage`` names the run in the progress bar, warnings and TensorBoard.
    ``loop``: any field of ``LoopSettings`` (``epochs``, ``batch_size``, ``progress``, ...).
    """
    s = loop_settings("finetune", settings, loop, DEFAULT.epochs_finetune, DEFAULT.batch_size)
    device, x, y = _prepare(model, data, s.device, seed, classify=criterion is None)
    unfreeze_stage1(model)
    criterion = criterion_on(criterion, device)
    graph_safe = (augment is True or not augment) and graph_safe_criterion(criterion)
    generator = None
    if augment is True:
        shape = image_shape_of(data, x)
        generator = torch.Generator(device=device).manual_seed(seed)  # on the device: no per-step copy
        augment = lambda xb: augment_batch(xb, shape, generator=generator)  # noqa: E731

    batches = Batches(x, y, s.batch_size, seed=seed, sample_weights=sample_weights)
    optimizer = make_optimizer(_param_groups(model, lr, stage1_lr_scale), lr)
    history = fit(
        stage,
        model,
        optimizer,
        batches,
        lambda xb, yb: criterion(model(xb), yb),
        s,
        validate=validator(model, val, device),
        augment=augment or None,
        replayable=[generator] if graph_safe else None,
    )
    model.eval()
    return history


def train_supervised(
    model,
    data,
    *,
    lr=DEFAULT.lr,
    val=None,
    seed=0,
    augment=False,
    criterion=None,
    sample_weights=None,
    settings=None,
    **loop,
):
    """The baseline: the same network trained end to end from scratch, one learning rate.
    ``loop``: any field of ``LoopSettings`` (``epochs``, ``batch_size``, ``progress``, ...)."""
    s = loop_settings("train_supervised", settings, loop, DEFAULT.epochs_finetune, DEFAULT.batch_size)
    return finetune(
        model,
        data,
        lr=lr,
        stage1_lr_scale=1.0,
        val=val,
        seed=seed,
        augment=augment,
        criterion=criterion,
        sample_weights=sample_weights,
        stage="supervised",
        settings=s,
    )


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


def _has_state(module) -> bool:
    """Whether ``module`` holds any parameter or buffer (else it is a fixed function of its input)."""
    return next(module.parameters(), None) is not None or next(module.buffers(), None) is not None


def _check_classes(model, y):
    """Labels that stage 2 has no output for fail before training (``_prepare`` refused empty data)."""
    outputs = [m.out_features for m in model.stage2.modules() if isinstance(m, nn.Linear)]
    check_targets(y, outputs[-1] if outputs else int(y.max()) + 1, "stage 2")


def selftrain(
    model,
    labelled,
    unlabelled,
    *,
    lr=SELFTRAIN.lr,
    stage1_lr_scale=SELFTRAIN.stage1_lr_scale,
    unlabelled_ratio=SELFTRAIN.unlabelled_ratio,
    threshold=SELFTRAIN.threshold,
    unlabelled_weight=SELFTRAIN.unlabelled_weight,
    overrule=None,
    vat=None,
    val=None,
    seed=0,
    settings=None,
    **loop,
):
    """Fine-tune on the labelled images *and* the unlabelled ones (FixMatch, Sohn et al. 2020; notebook 10).

    Each step takes ``batch_size * unlabelled_ratio`` unlabelled images and ``batch_size`` labelled
    ones (cross-entropy on a gentle view), or more labelled ones when there are many: enough that an
    epoch, one pass over the unlabelled images, is also a pass over the labelled ones. The model's
    prediction on a gentle view of an unlabelled image, when at least ``threshold`` confident,
    becomes its *pseudo-label*, and a strong view of the same image is trained towards it (weight
    ``unlabelled_weight``). Only ``labelled`` has its labels read; ``unlabelled``'s (if any) are
    never used. ``history["pseudo_rate"]`` is the share above the threshold.
    ``overrule``, for guessed labels (``propagated_labels``): a label the model contradicts at least
    this confidently on the gentle view is left out of that step's labelled loss (``None``: every
    label trusted); ``history["overruled"]`` is the share of labelled images drawn left out. It eases
    in from 1.0 over VAT's first ``RAMP_EPOCHS`` epochs: a network trained no further than its head
    would set aside a whole digit's labels (docs/decisions.md).
    ``vat``: the radius, in normalized pixels, of virtual adversarial training's perturbation of the
    unlabelled images' gentle view (``smoothness.py``; ``None``: none).
    ``loop``: any field of ``LoopSettings`` (``epochs``, ``batch_size``, ``progress``, ...).
    """
    s = loop_settings("selftrain", settings, loop, SELFTRAIN.epochs, SELFTRAIN.batch_size)
    number("threshold", threshold, 0.0, 1.0)
    number("unlabelled_weight", unlabelled_weight, low=0.0)
    overrule = None if overrule is None else number("overrule", overrule, high=1.0, above=0.0)
    unlabelled_ratio = whole("unlabelled_ratio", unlabelled_ratio)
    batch_size = whole("batch_size", s.batch_size)
    if s.early_stopping is not None and val is None:
        raise ValueError("early_stopping watches the validation loss: pass val= or drop early_stopping")
    device, xl, yl = _prepare(model, labelled, s.device, seed, classify=True)
    xu = _unlabelled_images(unlabelled, device)
    unfreeze_stage1(model)
    shape = image_shape_of(labelled, xl)
    generator = torch.Generator(device=device).manual_seed(seed)
    no_labels = torch.zeros(len(xu), dtype=torch.long, device=device)
    batches = Batches(xu, no_labels, batch_size * unlabelled_ratio, seed=seed + 1)  # a step per unlabelled batch
    # with few labels FixMatch's 1 : ratio; with many, every label once an epoch (docs/decisions.md)
    labelled_batch = min(max(batch_size, math.ceil(len(xl) / len(batches))), len(xl))
    labelled_batches = forever(Batches(xl, yl, labelled_batch, seed=seed))
    smoothing = None if vat is None else Smoothing(vat, len(batches))
    bars = eased(overrule, RAMP_EPOCHS * len(batches))  # each step's overrule
    vat_weights = smoothing.weights if smoothing is not None else itertools.repeat(None)
    # each step's labelled batch and ramped numbers come from the host beside its unlabelled batch (the
    # loop's feed), and the tallies are summed in place on the device: a GPU may replay the step
    feed = ((xl_b, yl_b, bar, w) for (xl_b, yl_b), bar, w in zip(labelled_batches, bars, vat_weights))
    tally = {k: torch.zeros((), device=device) for k in ("confident", "images", "overruled", "labelled")}
    step_loss = _fixmatch_loss(model, shape, generator, threshold, unlabelled_weight, smoothing, tally)
    check = validator(model, val, device)

    def per_epoch():  # the share of confident pseudo-labels this epoch, and validation when asked
        share = dict(zip(tally, torch.stack(list(tally.values())).tolist()))  # read once an epoch, at once
        rate = {"pseudo_rate": share["confident"] / max(share["images"], 1)}
        if overrule is not None:
            rate["overruled"] = share["overruled"] / max(share["labelled"], 1)
        for total in tally.values():
            total.zero_()
        return {**rate, **(check() if check is not None else {})}

    optimizer = make_optimizer(_param_groups(model, lr, stage1_lr_scale), lr)
    replay = dict(replayable=[generator], feed=feed)  # on a GPU, from a CUDA graph (step.py)
    history = fit("selftrain", model, optimizer, batches, step_loss, s, validate=per_epoch, **replay)
    model.eval()
    return history


def _fixmatch_loss(model, shape, generator, threshold, unlabelled_weight, smoothing, tally):
    """Self-training's ``step_loss(unlabelled batch, (_, labelled images, labels, overrule, VAT weight))``:
    the labelled loss, the consistency loss on confident pseudo-labels, and VAT's term if any; the
    confident share summed into ``tally`` in place."""

    def step_loss(xu_b, inputs):
        _, xl_b, yl_b, bar, vat_weight = inputs
        supervised = _labelled_loss(model(augment_batch(xl_b, shape, generator=generator)), yl_b, bar, tally)
        gentle = augment_batch(xu_b, shape, generator=generator)
        with torch.no_grad():  # the pseudo-labels: the model's own confident answers on a gentle view
            answer = model(gentle)
            confidence, pseudo = answer.float().softmax(1).max(1)
            mask = (confidence >= threshold).float()
        strong = model(strong_augment(xu_b, shape, generator=generator))
        consistency = (F.cross_entropy(strong.float(), pseudo, reduction="none") * mask).mean()
        tally["confident"] += mask.sum()
        tally["images"] += len(mask)
        smooth = 0.0 if smoothing is None else smoothing(model, gentle, answer, vat_weight, generator=generator)
        return supervised + unlabelled_weight * consistency + smooth

    return step_loss


def _labelled_loss(logits, labels, overrule, tally):
    """Cross-entropy on a labelled batch, less the labels ``overrule`` sets aside (counted in ``tally``)."""
    if overrule is None:
        return F.cross_entropy(logits, labels)
    with torch.no_grad():
        confidence, said = logits.float().softmax(1).max(1)
        trusted = ((said == labels) | (confidence < overrule)).float()
    tally["overruled"] += len(trusted) - trusted.sum()
    tally["labelled"] += len(trusted)
    return (F.cross_entropy(logits.float(), labels, reduction="none") * trusted).mean()


def _param_groups(model, lr, stage1_lr_scale):
    """Stage 1 at ``lr * stage1_lr_scale``, stage 2 at ``lr``: fine-tuning's two parameter groups."""
    return [
        {"params": model.stage1.parameters(), "lr": lr * stage1_lr_scale},
        {"params": model.stage2.parameters(), "lr": lr},
    ]


def _unlabelled_images(unlabelled, device):
    """The images of ``unlabelled`` (what ``as_tensors`` reads: a TensorData, an (X, y) pair, a
    Dataset) on ``device``, normalized like the training data; its labels are dropped unread."""
    x, _ = as_tensors(unlabelled, device)
    if len(x) == 0:
        raise ValueError("the unlabelled data holds no images; pass the training images (labels are not read)")
    return x
