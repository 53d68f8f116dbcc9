"""The CPU default against the plain reference, on one data set, same split, same run.

    python bench/versus_plain.py --data ../shared/data/flixstock-dev    # about 45 min on a 2-core AVX2 box
    python bench/versus_plain.py                                        # myntra-dev, about 20 min
    python bench/versus_plain.py --smoke                                # a few photos, for CI

Issue 14's yardstick: the from-scratch CPU default must beat a *plain multi-head ResNet18, 128 px,
cross-entropy, 10 epochs* trained on the same photos. Both arms train on all of ``train.csv`` for
their fixed schedule (last epoch kept) and are scored on ``val.csv`` with mirror averaging; val.csv
is read only to score, after both have trained.

- default: what ``python -m trainer train --weights none`` plans on the CPU (``trainer.plan_run``
  with the training photos' survey): SE-ResNet18, 112 px, 38 epochs (90 where the CPU computes
  bf16) with the first half at 80 px, focal loss with class weights, balanced sampler,
  label-true augmentation, prior correction;
  for photos that are not square the size follows their shape within the recipe's budget
  (``trainer.recipe.fit_to_photos``: flixstock's 225x300 train at 144 px, the first half at 96).
- plain: the same network code (one SE block after the last stage and MLP heads, which the plain
  recipe lacks in name only: they are a few percent of the parameters) at 128 px with everything
  the default adds switched off: cross-entropy (focal gamma 0), no class weights, no balanced
  sampler, no prior correction, no progressive resizing; one-cycle AdamW, 10 epochs, flips.

Also printed: each attribute's score for both arms and the majority value per attribute (what a
model that learned nothing scores).
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from _common import MYNTRA, add_common_args, emit, per_attribute_mean, read_split, ready, work_dir

from trainer import (
    ModelConfig,
    TrainConfig,
    default_model_config,
    default_train_config,
    evaluate,
    load_checkpoint,
    load_images,
    majority_baseline,
    plan_run,
    survey_photos,
    train_full,
)


def plain_configs() -> tuple[ModelConfig, TrainConfig]:
    """The issue's plain reference: multi-head ResNet18, 128 px, cross-entropy, 10 epochs."""
    model = replace(default_model_config("cpu", weights="none"), image_size=128)
    train = replace(
        default_train_config("cpu"),
        epochs=10,
        focal_gamma=0.0,
        class_weight_power=0.0,
        balanced_sampling=False,
        logit_adjustment=0.0,
        tau_grid=(),
        progressive_size=0,
        recipe="custom",
    )
    return model, train


def train_and_score(train, val, taxonomy, model_config, config, out: Path) -> dict[str, Any]:
    """Train on ``train`` (all of it, fixed schedule), score ``val``: score, per attribute, minutes."""
    t0 = time.perf_counter()
    result = train_full(
        train,
        taxonomy=taxonomy,
        out_dir=out,
        config=replace(config, val_fraction=0.0),
        model_config=model_config,
        device="cpu",
        progress=lambda f, m: logging.info("%3.0f%% %s", 100 * f, m),
    )
    minutes = (time.perf_counter() - t0) / 60
    ckpt = load_checkpoint(result.checkpoint_path)
    val_set = load_images(val, ckpt.preprocess)
    report = evaluate(
        ckpt.build_model("cpu"),
        val_set.images,
        val_set.examples,
        preprocess=ckpt.preprocess,
        device=torch.device("cpu"),
        tta_flip=True,
    )
    return {
        "val_score": round(report.score, 4),
        "val_per_attribute": per_attribute_mean(report),
        "train_minutes": round(minutes, 2),
        "model": model_config.to_dict(),
        "train": config.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MYNTRA, help="a competition-layout folder with val.csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep both checkpoints here (default: a temporary folder, removed at the end)",
    )
    add_common_args(parser, "a few photos, 1 epoch each at 64 px")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not ready(args, args.data):
        return 2
    taxonomy, train, val = read_split(args.data)
    plan = plan_run("cpu", weights="none", photos=survey_photos(e.image_path for e in train))
    if plan.photo_note:
        logging.info("default arm's photo size: %s", plan.photo_note)
    arms = {
        "default": (plan.model_config, plan.config),
        "plain": plain_configs(),
    }
    if args.smoke:
        train, val = train[:96], val[:32]
        arms = {k: (replace(m, image_size=64), replace(t, epochs=1, progressive_size=0)) for k, (m, t) in arms.items()}
    out = work_dir(args.out, "versus-plain-")
    numbers: dict[str, Any] = {
        "data": args.data.name,
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}",
        "train_examples": len(train),
        "val_examples": len(val),
    }
    for name, (model_config, config) in arms.items():
        numbers[name] = train_and_score(train, val, taxonomy, model_config, replace(config, seed=args.seed), out / name)
    numbers["default_minus_plain"] = round(numbers["default"]["val_score"] - numbers["plain"]["val_score"], 4)
    majority = majority_baseline(train, val, taxonomy)
    numbers["majority_value"] = {
        "val_score": round(majority.score, 4),
        "val_per_attribute": per_attribute_mean(majority),
    }
    emit(numbers, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
