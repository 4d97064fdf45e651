"""twostage_lib: two-stage training (self-supervised stage 1, classifier stage 2, fine-tuning) on MNIST."""
__version__ = "0.1.0"

from .augmentations import augment, erase, strong_augment
from .data import (Batches, DataNotFoundError, Splits, TensorData, from_tensors, imbalanced, labels_per_class,
                   load_mnist, validation_split)
from .models import TransferTwoStageNetwork, TwoStageNetwork, WeightsUnavailableError, count_parameters
from .objectives import Autoencoder, Contrastive, Denoising, seeds_loss
from .freezing import freeze_stage1, is_frozen, snapshot, unchanged, unfreeze_stage1
from .training import (EarlyStopping, History, TrainingDiverged, finetune, has_fast_bf16, seed_everything,
                       select_device, stage1_features, train_stage1, train_stage2, train_supervised)
from .evaluation import Evaluation, class_weights, evaluate_model
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = [name for name in dir() if not name.startswith("_")]
