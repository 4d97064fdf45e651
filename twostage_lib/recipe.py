"""The recipe: every default hyperparameter of the library, in one place.

Three doors, because the doors have different jobs (docs/decisions.md, "One recipe"):

- ``DEFAULT``: what a stage function does when given only ``(model, data)``; the notebooks teach
  from it. Stage 1 is the autoencoder of notebook 02; fine-tuning protects stage 1 with a 10x
  smaller step, as the original slides do.
- ``RUN``: ``python -m twostage_lib run`` and ``PipelineConfig``, the measured best recipe for a
  whole run: the contrastive stage 1, 25 epochs of fine-tuning with augmentation.
- ``STUDY``: ``python -m twostage_lib compare``, the label study: ``RUN``'s recipe, with run
  lengths counted in steps so that 10 labels and 60,000 get comparable training.

``COURSE`` is ``DEFAULT`` with the notebooks' shared 3-epoch stage 1. ``SELFTRAIN`` holds
self-training's own settings (FixMatch), ``PROPAGATE`` label propagation's. Every other module
reads its defaults from here; ``docs/library.md`` shows this file as one table (a test keeps the
two equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType

BASE_BATCH = 512  # the batch every learning rate below is stated for


def scaled_lr(lr: float, batch_size: int, base_batch: int = BASE_BATCH) -> float:
    """The linear scaling rule: a batch ``k`` times larger takes a ``k`` times larger step, so an
    epoch of fewer, larger steps moves the weights about as far (docs/decisions.md, "Stage 2's batch")."""
    return lr * (batch_size / base_batch)


@dataclass(frozen=True)
class Recipe:
    """The defaults of the three stages for one door (see the module's docstring)."""

    objective: str = "autoencoder"  # stage 1: the objective notebook 02 teaches first
    lr: float = 2e-3  # Adam, stage 1 and fine-tuning at batch_size (docs/decisions.md, "One recipe")
    batch_size: int = BASE_BATCH  # stage 1 and fine-tuning: fast on a CPU, fine for Adam (docs/decisions.md)
    batch_size_stage2: int = 2048  # the head on cached features: 4x the batch, a quarter of the steps
    stage1_lr_scale: float = 0.1  # fine-tuning: stage 1 at lr x this, so its features are not wrecked
    epochs_stage1: int = 5  # a stage told nothing trains 5 epochs; each door sets its own length
    epochs_stage2: int = 5  # at batch 2048, cheap: the head sees cached features
    epochs_finetune: int = 5  # the notebooks pass their own; RUN stops early on the validation loss
    augment: bool = False  # digit-safe augmentation while fine-tuning
    scheduler: str | None = None  # fine-tuning's learning-rate schedule

    @property
    def lr_stage2(self) -> float:
        """Stage 2's learning rate: ``lr`` scaled to stage 2's batch (8e-3 at 2048 for 2e-3 at 512)."""
        return scaled_lr(self.lr, self.batch_size_stage2, self.batch_size)


@dataclass(frozen=True)
class SelfTraining:
    """Self-training's settings (FixMatch, Sohn et al. 2020; docs/decisions.md, "Self-training")."""

    lr: float = 3e-3  # RUN's learning rate: self-training continues a run's head
    stage1_lr_scale: float = 1.0  # the whole network at one rate, as RUN fine-tunes
    batch_size: int = 64  # labelled images a step (more when there are many labels)
    unlabelled_ratio: int = 7  # unlabelled images a step per labelled one (FixMatch's mu)
    threshold: float = 0.9  # a pseudo-label counts when the model is this confident
    unlabelled_weight: float = 1.0  # the unlabelled loss's weight against the labelled one
    epochs: int = 30  # passes over the unlabelled images


@dataclass(frozen=True)
class Propagation:
    """Label propagation's settings (Zhou et al. 2004; docs/decisions.md, "Few labels")."""

    k: int = 10  # neighbours per image: 97% of them share its digit on the study's contrastive features
    power: float = 3.0  # an edge weighs its cosine similarity cubed: close neighbours count most
    alpha: float = 0.99  # the share of a step's score taken from the neighbours: labels travel far
    iterations: int = 150  # steps: 20 leave distant images unreached (docs/decisions.md)
    dims: int = 16  # spectral coordinates for the clustering: 10 merge digits, 16 separate them
    restarts: int = 10  # k-means restarts: the tightest of 10 is kept
    most_clusters_per_class: int = 3  # clustered again with more when a cluster is named for a digit it hardly holds
    overrule: float = 0.3  # self-training sets aside a spread label the network contradicts this confidently
    repeats: int = 50  # the given labels, the only sure ones, repeated this many times among the spread ones
    vat: float = 2.0  # virtual adversarial training's radius (normalized pixels) there: +0.5 points at 10 labels
    epochs: int = 60  # self-training on the spread labels: 45 is 0.1 point lower, a run 25% shorter (decisions)


@dataclass(frozen=True)
class StudyLengths:
    """How long the label study trains: in steps, so every label budget gets comparable training."""

    # contrastive learning needs many passes over strongly augmented views; reconstruction settles fast
    stage1_epochs: MappingProxyType = field(
        default_factory=lambda: MappingProxyType({"autoencoder": 3, "denoising": 3, "contrastive": 30})
    )
    head_steps: int = 300  # stage 2 (and the linear probe)
    tune_steps: int = 600  # fine-tuning, and the supervised baselines
    min_epochs: int = 10  # at least this many passes over the labelled images, however few


DEFAULT = Recipe()
COURSE = replace(DEFAULT, epochs_stage1=3)  # the stage 1 the notebooks share (course.stage1_model)
RUN = replace(
    DEFAULT,
    objective="contrastive",  # the best features for the head (notebook 02b, docs/decisions.md)
    lr=3e-3,  # measured best for 25 epochs of fine-tuning with augmentation
    stage1_lr_scale=1.0,  # with a cosine schedule and augmentation, one rate is as good and simpler
    epochs_stage1=3,
    epochs_stage2=6,  # at batch 2048: the time of 3 epochs at 512
    epochs_finetune=25,  # early stopping on the validation loss ends it sooner when it stops helping
    augment=True,
    scheduler="cosine",
)
STUDY = StudyLengths()  # the study trains RUN's recipe for these lengths
SELFTRAIN = SelfTraining()
PROPAGATE = Propagation()
