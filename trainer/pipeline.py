"""``train_full``: examples in, a checkpoint out (split, photos, model, fit)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from taxonomy import LabeledExample, Taxonomy, file_sha256

from .config import ModelConfig, TrainConfig, default_model_config, default_train_config
from .data import DataError, load_images, require_trainable, split_held_out
from .labels import encode_labels
from .model import build_model
from .preprocess import Preprocess
from .runtime import resolve_device, seed_everything
from .train import TrainResult, fit
from .weights import Fetch

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


def train_full(
    examples: list[LabeledExample],
    *,
    taxonomy: Taxonomy,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
    progress: Progress | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    val_examples: list[LabeledExample] | None = None,
    resume: bool = False,
    fetch: Fetch | None = None,
) -> TrainResult:
    """Train backbone and heads on ``examples``; the best epoch on the held-out split (or on
    ``val_examples``) is written to ``out_dir/model.pt``. ``resume`` continues ``out_dir/last.pt``."""
    t0 = time.perf_counter()
    report = progress or (lambda f, m: None)
    require_trainable(examples)
    dev = resolve_device(device)
    config = config or default_train_config(dev.type)
    model_config = model_config or default_model_config(dev.type)
    seed = config.seed if seed is None else seed
    encode_labels(examples, taxonomy)  # fail before any photo is read if a label is unknown
    if val_examples is None:
        train, held = split_held_out(examples, config.val_fraction, seed=seed)
    else:
        train, held = examples, list(val_examples)
    preprocess = Preprocess(model_config.image_size)
    train_set = load_images(train, preprocess, progress=lambda f, m: report(0.1 * f, m))
    val_set = load_images(held, preprocess)
    if not train_set.examples:
        raise DataError(f"none of the {len(train)} training photos could be read (e.g. {train_set.skipped[:1]})")
    generator = seed_everything(seed)
    model, source = build_model(model_config, taxonomy, fetch=fetch)
    result = fit(
        model,
        train_set,
        val_set,
        preprocess=preprocess,
        config=config,
        device=dev,
        out_dir=Path(out_dir),
        generator=generator,
        backbone_source=source,
        resume=resume,
        progress=lambda f, m: report(0.1 + 0.9 * f, m),
        extra_config={"seed": seed},
    )
    skipped = tuple(train_set.skipped + val_set.skipped)
    return TrainResult(
        checkpoint_path=result.checkpoint_path,
        version_id=result.checkpoint.version_id,
        metrics=result.checkpoint.metrics,
        held_out_ids=tuple(sorted(e.id for e in held)),
        sha256=file_sha256(result.checkpoint_path),
        skipped=skipped,
        seconds=time.perf_counter() - t0,
    )
