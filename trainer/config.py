"""What a model is and what a training run does: two frozen dataclasses and their defaults.

The defaults are chosen per device. With a GPU the model is the issue's SE-ResNet50 at 224 px;
on a CPU it is an SE-ResNet18 at 112 px ("SE-ResNet": a ResNet with one Squeeze-and-Excitation
block after its last stage, see ``model.py``). A ResNet50 costs about 2.3x the FLOPs of a ResNet18
(4.1 vs 1.8 GFLOPs at 224 px), and without ImageNet weights (none can be downloaded on the
project's 2-core machines) fewer epochs of a bigger network is the worse trade within a
15-minute budget. The CPU schedule (38 epochs, the first half on 80-pixel photos: the cost of
30 full-size epochs) and the prior correction tau = -0.15 were chosen by 3-fold
cross-validation on myntra-dev's train.csv (``bench/cv_myntra.py``; numbers in
``bench/RESULTS.md``). The GPU defaults keep the plain schedule: nothing was measured there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

Arch = Literal["resnet18", "resnet34", "resnet50"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build ``cls`` from a dict, ignoring unknown keys and turning lists back into tuples."""
    known = {f.name for f in fields(cls)}
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
    return cls(**clean)


@dataclass(frozen=True)
class ModelConfig:
    arch: Arch = "resnet50"
    # "imagenet" (torchvision's weights API and cache), "none" (random initialisation) or the
    # path of a local state-dict file for the ResNet trunk.
    weights: str = "imagenet"
    image_size: int = 224
    se_reduction: int = 16
    dropout: float = 0.3
    head_hidden: int = 256
    complex_hidden: tuple[int, ...] = (512, 256)
    # An attribute with more values than this gets the deeper head; so does any attribute
    # named in ``complex_attributes`` (as "attribute" or "Category/attribute").
    complex_threshold: int = 16
    complex_attributes: tuple[str, ...] = ()
    # Frozen when the trunk starts from pretrained weights (the competition solution's recipe);
    # from random initialisation every layer trains.
    frozen_when_pretrained: tuple[str, ...] = ("conv1", "bn1", "layer1", "layer2")

    def __post_init__(self) -> None:
        if self.arch not in ("resnet18", "resnet34", "resnet50"):
            raise ValueError(f"arch must be resnet18, resnet34 or resnet50, got {self.arch!r}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 pixels, got {self.image_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    # full training
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    grad_clip: float = 2.0
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup_fraction: float = 0.15
    patience: int = 8  # epochs without a better validation metric before stopping
    val_fraction: float = 0.15
    augment: bool = True
    # Progressive resizing: the first ``progressive_fraction`` of the epochs train on photos of
    # ``progressive_size`` pixels (0: off), the rest at the model's size; evaluation is always at
    # the model's size. Cheaper early epochs buy more epochs in the same time.
    progressive_size: int = 0
    progressive_fraction: float = 0.5
    tta_flip: bool = True  # average with the mirrored photo when evaluating
    precision: Precision = "auto"
    # loss and balancing
    focal_gamma: float = 2.0
    class_weight_smoothing: float = 1.0  # added to every count before inverting
    class_weight_power: float = 0.5  # 1 is plain inverse frequency, 0 no weighting
    balanced_sampling: bool = True
    sampler_power: float = 0.5
    category_loss_weight: float = 0.5
    # Post-hoc prior correction at inference: logit - tau * log prior (``HeadBank.log_prior``),
    # the prior counted on the training labels and stored in the checkpoint. tau > 0 favours rare
    # values (for a model trained without balancing), tau < 0 gives back some of the prior where
    # the weighting and sampling above already over-favour them; 0 leaves the logits alone.
    logit_adjustment: float = 0.0
    # heads-only retraining on cached embeddings
    heads_epochs: int = 40
    heads_batch_size: int = 256
    heads_lr: float = 2e-3
    heads_patience: int = 10
    heads_min_steps: int = 200  # optimiser steps at the least, however few products there are
    embed_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.heads_epochs < 1:
            raise ValueError("epochs and heads_epochs must be at least 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.progressive_size and self.progressive_size < 32:
            raise ValueError(f"progressive_size must be 0 (off) or at least 32 pixels, got {self.progressive_size}")
        if not 0.0 <= self.progressive_fraction <= 1.0:
            raise ValueError(f"progressive_fraction must be in [0, 1], got {self.progressive_fraction}")
        if self.batch_size < 1 or self.heads_batch_size < 1:
            raise ValueError("batch sizes must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data)


def default_model_config(device: str, *, weights: str = "imagenet") -> ModelConfig:
    """SE-ResNet50 at 224 px where a GPU trains it; SE-ResNet18 at 112 px on a CPU."""
    if device.startswith("cuda"):
        return ModelConfig(arch="resnet50", image_size=224, weights=weights)
    return ModelConfig(arch="resnet18", image_size=112, weights=weights)


def default_train_config(device: str) -> TrainConfig:
    if device.startswith("cuda"):
        return TrainConfig(epochs=30, batch_size=64)
    # 3-fold cross-validation on myntra-dev's train.csv (bench/RESULTS.md), same folds, same cost:
    # 38 epochs with the first half at 80 px scored 0.556 out of fold (every fold higher) against
    # 0.536 for 30 epochs at 112 px. tau: -0.2 to -0.1 form a plateau on both the pooled and the
    # mean-per-fold score (0 scores 0.013-0.024 lower); -0.15 is its middle. tau < 0 gives back
    # part of the prior that class weights, sampler and focal loss together over-correct.
    return TrainConfig(epochs=38, progressive_size=80, progressive_fraction=0.5, logit_adjustment=-0.15)


FINETUNE_EPOCH_SHARE = 0.3
FINETUNE_LR_SHARE = 0.3


def finetune_config(config: TrainConfig) -> TrainConfig:
    """The schedule of a full retrain that starts from a trained model rather than from scratch.

    The weights already sit near a good solution for the older labels, so a short schedule at a
    lower peak learning rate adapts them to the new ones: about 30% of the epochs (at least 6) at
    30% of the learning rate, every epoch at the model's own size (the cheap low-resolution
    epochs of progressive resizing are for learning from nothing). Not cross-validated: the loop
    benchmark (``bench/loop.py``) measures what it gains per round against training by hand.
    """
    return replace(
        config,
        epochs=max(6, round(config.epochs * FINETUNE_EPOCH_SHARE)),
        lr=config.lr * FINETUNE_LR_SHARE,
        progressive_size=0,
        patience=max(3, round(config.patience * FINETUNE_EPOCH_SHARE)),
    )
