"""``train_full``: examples in, a checkpoint out (split, photos, model, fit)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from taxonomy import LabeledExample, Taxonomy, file_sha256

from .calibration import UNCALIBRATED
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig, default_train_config, finetune_config, recipe_for
from .data import EARLY_STOP_SALT, DataError, load_images, require_trainable, split_held_out
from .distributed import SINGLE, DistContext
from .labels import encode_labels
from .model import build_model
from .preprocess import preprocess_for
from .recipe import plan_run, survey_photos
from .retrain import evaluate_checkpoint
from .runtime import resolve_device, seed_everything
from .train import TrainResult, fit
from .weights import Fetch, StateDict

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
    init_checkpoint: str | os.PathLike | None = None,
    trunk: tuple[StateDict | None, str] | None = None,
    dist: DistContext = SINGLE,
    weights: str | None = None,
) -> TrainResult:
    """Train backbone and heads on ``examples``; the epoch that scores best on an early-stopping
    slice of the training part is written to ``out_dir/model.pt``, and the returned metrics are its
    score on the held-out split (or on ``val_examples``). ``resume`` continues ``out_dir/last.pt``.

    The configs not given are the defaults of the recipe the trunk's weights call for
    (``recipe.plan_run``); ``trunk`` is a plan's already loaded weights for ``model_config``.
    ``weights`` ("imagenet", "none" or a weights file, e.g. one of ``python -m trainer pretrain``)
    chooses the trunk when ``model_config`` is not given (default: ImageNet where it can be had).

    With ``init_checkpoint`` (the active version, in the app) the run fine-tunes that model, its
    architecture and preprocessing kept, on the shorter schedule of ``config.finetune_config``
    unless ``config`` is given: what a retrain after new labels needs, at a fraction of the cost.

    Under ``torchrun`` every rank calls this with the same examples and its ``dist`` (see
    ``distributed.py``); ``device`` is then this rank's. Only rank 0 writes."""
    t0 = time.perf_counter()
    report = progress or (lambda f, m: None)
    require_trainable(examples)
    dev = resolve_device(device)
    base = load_checkpoint(init_checkpoint) if init_checkpoint is not None else None
    if base is not None and base.is_int8:
        raise DataError(
            f"cannot fine-tune {base.version_id}: it is an int8 model for serving (trainer.quantize); "
            f"fine-tune its fp32 parent {base.parent_version} or train from scratch"
        )
    if base is not None:
        if base.taxonomy.fingerprint != taxonomy.fingerprint:
            differences = "; ".join(base.taxonomy.differences(taxonomy)[:5])
            raise DataError(f"cannot fine-tune {base.version_id}: it was trained for another taxonomy ({differences})")
        model_config = base.model_config
        recipe = recipe_for(base.backbone_source)
        config = config or finetune_config(default_train_config(dev.type, recipe=recipe))
    else:
        # A fully default run fits the recipe's photo size to the photos' shape (``fit_to_photos``).
        photos = survey_photos(e.image_path for e in examples) if config is None and model_config is None else None
        plan = plan_run(
            dev.type,
            config=config,
            model_config=model_config,
            weights=weights,
            trunk=trunk,
            fetch=fetch,
            photos=photos,
        )
        config, model_config = plan.config, plan.model_config
        if plan.photo_note:
            logger.info("photo size: %s", plan.photo_note)
    seed = config.seed if seed is None else seed
    encode_labels(examples, taxonomy)  # fail before any photo is read if a label is unknown
    if val_examples is None:
        train, held = split_held_out(examples, config.val_fraction)
    else:
        train, held = examples, list(val_examples)
    # The best epoch is chosen on a slice of the training part, never on the held-out products
    # that then judge the model (and the active one) at the gate.
    fit_part, stop_part = split_held_out(train, config.val_fraction, salt=EARLY_STOP_SALT)
    preprocess = base.preprocess if base is not None else preprocess_for(model_config)
    train_set = load_images(fit_part, preprocess, progress=lambda f, m: report(0.1 * f, m))
    stop_set = load_images(stop_part, preprocess)
    if not train_set.examples:
        raise DataError(f"none of the {len(fit_part)} training photos could be read (e.g. {train_set.skipped[:1]})")
    generator = seed_everything(seed)
    if base is not None:
        model, source = base.build_model("cpu").train(), base.backbone_source
        if source != "random":  # a pretrained trunk keeps its early layers frozen, as when it was trained
            model.backbone.freeze(model_config.frozen_when_pretrained)
    else:
        model, source = build_model(model_config, taxonomy, trunk=plan.trunk)
    result = fit(
        model,
        train_set,
        stop_set,
        preprocess=preprocess,
        config=config,
        device=dev,
        out_dir=Path(out_dir),
        generator=generator,
        backbone_source=source,
        resume=resume,
        progress=lambda f, m: report(0.1 + 0.9 * f, m),
        extra_config={"seed": seed, "init_version": base.version_id if base is not None else None},
        dist=dist,
    )
    # Scored as the gate scores every version (``evaluate_checkpoint``): an unreadable held-out
    # photo counts as wrong, no mirroring (the app serves without it).
    metrics = evaluate_checkpoint(result.checkpoint_path, held, device=dev).as_dict() if held else {"score": None}
    metrics.update(
        {
            "mode": "finetune" if base is not None else "full",
            "epoch": result.best_epoch,
            "early_stop_score": result.checkpoint.metrics.get("score"),
            "train_examples": len(train_set.examples),
            "early_stop_examples": len(stop_set.examples),
            "held_out_examples": len(held),
            "logit_adjustment": result.checkpoint.metrics.get("logit_adjustment"),
            "neighbour_weight": result.checkpoint.metrics.get("neighbour_weight"),
            "calibration": result.checkpoint.metrics.get("calibration", UNCALIBRATED),
            "neighbours": model.heads.neighbour_summary(),
        }
    )
    # The checkpoint describes itself by the held-out numbers too (same weights, same version id).
    if dist.is_main:
        save_checkpoint(
            result.checkpoint_path,
            model,
            preprocess=preprocess,
            train_config=config.to_dict(),
            metrics=metrics,
            backbone_source=source,
            version_id=result.checkpoint.version_id,
            parent_version=base.version_id if base is not None else None,
        )
    dist.barrier()
    skipped = tuple(train_set.skipped + stop_set.skipped)
    return TrainResult(
        checkpoint_path=result.checkpoint_path,
        version_id=result.checkpoint.version_id,
        metrics=metrics,
        held_out_ids=tuple(sorted(e.id for e in held)),
        sha256=file_sha256(result.checkpoint_path),
        skipped=skipped,
        seconds=time.perf_counter() - t0,
        backbone_source=source,
        last_state_sha256=result.last_state_sha256,
    )
