"""twostage_lib: two-stage training (self-supervised stage 1, classifier stage 2, fine-tuning) on MNIST."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("twostage_lib")  # written in one place: pyproject.toml
except _metadata.PackageNotFoundError:  # a source folder that was never installed
    __version__ = "0+unknown"

from .augmentations import augment, erase, strong_augment
from .checkpoint import load_checkpoint, save_checkpoint
from .data import (
    Batches,
    DataNotFoundError,
    Splits,
    TensorData,
    from_tensors,
    imbalanced,
    labels_per_class,
    load_mnist,
    validation_split,
)
from .evaluation import Evaluation, class_weights, confident_mistakes, evaluate_model
from .freezing import freeze_stage1, is_frozen, snapshot, unchanged, unfreeze_stage1
from .loop import EarlyStopping, History, TrainingDiverged
from .models import TransferTwoStageNetwork, TwoStageNetwork, WeightsUnavailableError, count_parameters
from .objectives import Autoencoder, Contrastive, Denoising, original_loss
from .runtime import has_fast_bf16, match_threads_to_quota, seed_everything, select_device
from .training import finetune, selftrain, stage1_features, train_stage1, train_stage2, train_supervised

__all__ = [name for name in dir() if not name.startswith("_")]
match_threads_to_quota()  # torch's threads follow the container's CPU quota, not the host's cores
