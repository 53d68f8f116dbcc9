"""Training and prediction: an SE-ResNet with one head per (category, attribute) of the taxonomy.

"SE-ResNet" here is a ResNet with one Squeeze-and-Excitation block after its last stage (as the
competition solution describes), not SE in every residual block; see ``model.py``.

This package imports ``taxonomy`` only. Importing it picks no device, downloads nothing and
loads no model; that happens in the functions below.
"""

from .calibration import calibrate_heads, calibration_note, expected_calibration_error, is_calibrated
from .checkpoint import (
    Checkpoint,
    CheckpointError,
    TaxonomyMismatchError,
    atomic_save,
    load_checkpoint,
    save_checkpoint,
)
from .config import ModelConfig, TrainConfig, default_model_config, default_train_config, recipe_for
from .data import DataError, ImageSet, load_images, read_dataset, split_held_out
from .embeddings import EmbeddingCache, embed_examples
from .evaluation import majority_baseline
from .losses import TaxonomyLoss, class_weights, focal_loss, sample_weights
from .model import Backbone, SEBlock, TaxonomyNet, build_model
from .pipeline import train_full
from .predictor import Predictor
from .preprocess import Preprocess, augment, open_image, prepare_image, preprocess_for, to_model_input
from .prior import choose_logit_adjustments
from .recipe import PhotoSurvey, RunPlan, fit_to_photos, plan_run, survey_photos
from .retrain import evaluate_checkpoint, retrain_heads
from .runtime import intra_op_threads
from .train import FitResult, TrainResult, evaluate, fit, train_one_epoch
from .weights import PretrainedWeightsUnavailable, load_trunk_weights

__all__ = [
    "Backbone",
    "Checkpoint",
    "CheckpointError",
    "DataError",
    "EmbeddingCache",
    "FitResult",
    "ImageSet",
    "ModelConfig",
    "PhotoSurvey",
    "Predictor",
    "Preprocess",
    "PretrainedWeightsUnavailable",
    "RunPlan",
    "SEBlock",
    "TaxonomyLoss",
    "TaxonomyMismatchError",
    "TaxonomyNet",
    "TrainConfig",
    "TrainResult",
    "atomic_save",
    "augment",
    "build_model",
    "calibrate_heads",
    "calibration_note",
    "choose_logit_adjustments",
    "class_weights",
    "default_model_config",
    "default_train_config",
    "embed_examples",
    "evaluate",
    "evaluate_checkpoint",
    "expected_calibration_error",
    "fit",
    "fit_to_photos",
    "focal_loss",
    "intra_op_threads",
    "is_calibrated",
    "load_checkpoint",
    "load_images",
    "load_trunk_weights",
    "majority_baseline",
    "open_image",
    "plan_run",
    "prepare_image",
    "preprocess_for",
    "read_dataset",
    "recipe_for",
    "retrain_heads",
    "sample_weights",
    "save_checkpoint",
    "split_held_out",
    "survey_photos",
    "to_model_input",
    "train_full",
    "train_one_epoch",
]
