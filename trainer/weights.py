"""Pretrained weights for the ResNet trunk: torchvision's weights API, a local file, or none.

Nothing downloads at import time; ``load_trunk_weights`` is the only place that may.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
Fetch = Callable[[str], StateDict]


class PretrainedWeightsUnavailable(UserWarning):
    """ImageNet weights could not be had; the model starts from random initialisation."""


def torchvision_fetch(arch: str) -> StateDict:
    """ImageNet weights through torchvision's API: its cache under $TORCH_HOME, with progress."""
    from torchvision import models

    enum = {
        "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
        "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
        "resnet50": models.ResNet50_Weights.IMAGENET1K_V2,
    }[arch]
    return enum.get_state_dict(progress=True)


def load_trunk_weights(arch: str, weights: str, *, fetch: Fetch | None = None) -> tuple[StateDict | None, str]:
    """The trunk's state dict and where it came from: "imagenet", the file's path, or "random".

    ``weights`` is "imagenet", "none" or a path. When ImageNet weights cannot be downloaded (no
    network) the model starts from random initialisation with one ``PretrainedWeightsUnavailable``
    warning; a local file that does not exist is an error, since it was asked for by name.
    ``fetch`` replaces the download (tests pass one that fails the way an offline machine does).
    """
    if weights == "none":
        return None, "random"
    if weights == "imagenet":
        try:
            state = (fetch or torchvision_fetch)(arch)
        except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
            warnings.warn(
                f"ImageNet weights for {arch} could not be downloaded ({exc}); training starts from "
                "random initialisation, which needs far more data and epochs. Put the weights file "
                "in torchvision's cache ($TORCH_HOME/hub/checkpoints) or pass a local file path.",
                PretrainedWeightsUnavailable,
                stacklevel=2,
            )
            return None, "random"
        return state, "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file not found: {path}; pass 'imagenet', 'none' or the path of a ResNet state dict"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        raise ValueError(f"cannot read weights file {path}: {exc}") from None
    recorded = None
    if isinstance(state, dict) and "state_dict" in state:
        recorded = state.get("source")  # a trunk file of ``python -m trainer pretrain`` says where it came from
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path} does not hold a state dict")
    logger.info("trunk weights loaded from %s", path)
    return state, f"{recorded}; weights file {path}" if isinstance(recorded, str) else str(path)


def recorded_trunk(weights: str) -> dict[str, Any]:
    """What a weights file written by ``python -m trainer pretrain`` records of its trunk
    (``arch``, ``image_size``), so a run can take them as its defaults; {} for anything else."""
    path = Path(weights)
    if weights in ("imagenet", "none") or not path.is_file():
        return {}
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # load_trunk_weights reads the file again and names what is wrong with it
        return {}
    if not isinstance(raw, dict) or not str(raw.get("format", "")).startswith("visual-taxonomy-trunk/"):
        return {}
    return {k: raw[k] for k in ("arch", "image_size") if k in raw}
