"""twostage_lib: two-stage training (self-supervised stage 1, classifier stage 2, fine-tuning) on MNIST.

Importing it changes no global state: call ``use_cpu_quota()`` where a process starts (the
command line and the notebooks do) to size PyTorch's thread pool to the CPUs really available.
"""

from .augmentations import augment, erase, strong_augment
from .batches import Batches
from .checkpoint import library_version, load_checkpoint, save_checkpoint
from .evaluation import class_weights, confident_mistakes, evaluate_model, stage1_features
from .freezing import freeze_stage1, snapshot, unchanged, unfreeze_stage1
from .guard import TrainingDiverged
from .loop import EarlyStopping, LoopSettings
from .mnist import DataNotFoundError, load_mnist
from .models import TransferTwoStageNetwork, TwoStageNetwork, WeightsUnavailableError, count_parameters
from .objectives import Contrastive, original_loss
from .probes import knn_probe, linear_probe
from .propagation import propagated_labels, spread_labels
from .runtime import has_fast_bf16, seed_everything, select_device, use_cpu_quota
from .subsets import imbalanced, labels_per_class, validation_split
from .tensors import TensorData, from_tensors
from .training import finetune, selftrain, train_stage1, train_stage2, train_supervised

__version__ = library_version()  # from the installed metadata: written once, in pyproject.toml

__all__ = [
    # data
    "load_mnist",
    "from_tensors",
    "TensorData",
    "Batches",
    "DataNotFoundError",
    "validation_split",
    "labels_per_class",
    "imbalanced",
    # the network
    "TwoStageNetwork",
    "TransferTwoStageNetwork",
    "WeightsUnavailableError",
    "count_parameters",
    # stage 1 and its objectives
    "train_stage1",
    "Contrastive",
    "original_loss",
    "augment",
    "strong_augment",
    "erase",
    "linear_probe",
    "knn_probe",
    # freezing and stage 2
    "freeze_stage1",
    "unfreeze_stage1",
    "snapshot",
    "unchanged",
    "train_stage2",
    "stage1_features",
    # fine-tuning, the baseline and self-training
    "finetune",
    "train_supervised",
    "selftrain",
    "spread_labels",
    "propagated_labels",
    # the loop
    "LoopSettings",
    "EarlyStopping",
    "TrainingDiverged",
    # evaluation
    "evaluate_model",
    "class_weights",
    "confident_mistakes",
    # checkpoints
    "save_checkpoint",
    "load_checkpoint",
    # the runtime
    "seed_everything",
    "select_device",
    "has_fast_bf16",
    "use_cpu_quota",
]
