"""``python -m trainer quantize CKPT --out CKPT_INT8 --calibration-dir DIR``: an int8 checkpoint, offline.

The serving process never calibrates, traces or compiles: this step observes the activation
ranges of the trunk on a few hundred training photos (``int8.calibrated_backbone``), converts it,
and writes an ordinary self-describing checkpoint whose ``quantization`` says it is int8 (scheme,
engine, how many photos calibrated it, the fp32 version it came from) and whose backbone weights
are quantized tensors (read back with ``weights_only=True``). ``Checkpoint.build_model`` rebuilds
the module structure and loads them, so the predictor, the gate and ``score`` serve it as they
serve any checkpoint.

The int8 checkpoint gets a version id of its own (it is another model: its suggestions may differ
from the fp32 one's on a few photos, and the gate judges it as it judges any candidate); the fp32
version is its parent.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from taxonomy import ImageError

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .int8 import ENGINE, SCHEME, calibrated_backbone
from .preprocess import Preprocess, open_image, prepare_image, to_model_input

logger = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
DEFAULT_CALIBRATION_PHOTOS = 256
CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class Quantized:
    checkpoint: Checkpoint
    path: Path
    calibration_photos: int
    skipped: tuple[tuple[str, str], ...]


def calibration_photos(
    folder: str | os.PathLike, *, limit: int = DEFAULT_CALIBRATION_PHOTOS, seed: int = 0
) -> list[Path]:
    """Up to ``limit`` photos under ``folder`` (recursively), a seeded random choice in a fixed order:
    the same folder and seed give the same int8 model."""
    root = Path(folder)
    if not root.is_dir():
        raise CheckpointError(f"calibration folder not found: {root}")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if not found:
        raise CheckpointError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) under {root} to calibrate with")
    random.Random(seed).shuffle(found)
    return sorted(found[:limit])


def _batches(paths: Sequence[Path], preprocess: Preprocess, skipped: list[tuple[str, str]]) -> Iterator[torch.Tensor]:
    batch: list[torch.Tensor] = []
    for path in paths:
        try:
            batch.append(prepare_image(open_image(path), preprocess))  # (3, S, S) uint8
        except ImageError as exc:
            skipped.append((str(path), str(exc)))
            continue
        if len(batch) == CALIBRATION_BATCH:
            yield to_model_input(torch.stack(batch), preprocess)  # (b, 3, S, S)
            batch = []
    if batch:
        yield to_model_input(torch.stack(batch), preprocess)


def quantize_checkpoint(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    photos: Sequence[str | os.PathLike],
    engine: str = ENGINE,
) -> Quantized:
    """Write the int8 twin of the fp32 checkpoint ``source`` to ``out``, calibrated on ``photos``."""
    ckpt = load_checkpoint(source)
    if ckpt.is_int8:
        raise CheckpointError(f"{Path(source).name} is int8 already; quantize the fp32 checkpoint it was made from")
    model = ckpt.build_model("cpu")
    skipped: list[tuple[str, str]] = []
    paths = [Path(p) for p in photos]
    try:
        model.backbone = calibrated_backbone(  # type: ignore[assignment]
            model.backbone, _batches(paths, ckpt.preprocess, skipped), config=ckpt.model_config, engine=engine
        )
    except ValueError as exc:
        raise CheckpointError(
            f"cannot quantize {Path(source).name}: {exc} ({len(skipped)} photos unreadable)"
        ) from None
    used = len(paths) - len(skipped)
    written = save_checkpoint(
        out,
        model,
        preprocess=ckpt.preprocess,
        train_config=ckpt.train_config,
        metrics=ckpt.metrics,  # the fp32 model's numbers: the gate scores the int8 one itself
        parent_version=ckpt.version_id,
        backbone_source=ckpt.backbone_source,
        quantization={
            "scheme": SCHEME,
            "engine": engine,
            "calibration_photos": used,
            "source_version": ckpt.version_id,
        },
    )
    logger.info("int8 checkpoint %s from %s, calibrated on %d photos", written.version_id, ckpt.version_id, used)
    return Quantized(written, Path(out), used, tuple(skipped))
