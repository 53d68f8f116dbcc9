"""Heads-only retraining on cached embeddings versus running the backbone over the photos every epoch.

    python bench/retrain_speed.py            # 5,000 labelled products (myntra-dev photos, repeated)
    python bench/retrain_speed.py --smoke    # 300 products, for CI

Products are myntra-dev photos relabelled with fresh ids; each repeated photo is a distinct file
(a one-pixel change), so every product has its own sha256 and its own embedding, as real
products would. The "backbone every epoch" cost is measured on a subset in the same run (a
forward and backward pass through the trainable backbone, as a full retrain does) and
extrapolated to the same number of epochs.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

import torch
from _common import MYNTRA, add_common_args, emit, ready, work_dir
from PIL import Image

from taxonomy import taxonomy_from_competition
from trainer import (
    TrainConfig,
    build_model,
    default_model_config,
    load_images,
    retrain_heads,
    save_checkpoint,
)
from trainer.labels import encode_labels
from trainer.preprocess import Preprocess, augment
from trainer.train import make_loss


def make_products(n: int, folder: Path, taxonomy) -> list:
    from trainer import read_dataset

    base, _ = read_dataset(MYNTRA, taxonomy)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        ex = base[i % len(base)]
        path = folder / f"p{i:05d}.jpg"
        image = Image.open(ex.image_path).convert("RGB")
        image.putpixel((0, 0), (i % 256, (i // 256) % 256, 7))  # a distinct file per product
        image.save(path, quality=90)
        out.append(replace(ex, id=f"p{i:05d}", image_path=str(path)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--subset", type=int, default=128, help="photos for the per-epoch backbone cost")
    add_common_args(parser, "300 products")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not ready(args, MYNTRA):
        return 2
    n = 300 if args.smoke else args.products
    subset = 32 if args.smoke else args.subset
    taxonomy = taxonomy_from_competition(MYNTRA / "category_attributes.parquet", MYNTRA / "train.csv")
    work = work_dir(None, "retrain-speed-")
    products = make_products(n, work / "images", taxonomy)
    model_config = default_model_config("cpu", weights="none")
    config = TrainConfig()
    torch.manual_seed(0)
    model, _ = build_model(model_config, taxonomy)
    base = work / "base.pt"
    preprocess = Preprocess(model_config.image_size)
    save_checkpoint(base, model, preprocess=preprocess, train_config=config.to_dict(), metrics={})

    # 1. Embeddings once (what the app's cache holds after the first retrain).
    t0 = time.perf_counter()
    first = retrain_heads(
        products,
        taxonomy=taxonomy,
        base_checkpoint=base,
        out_dir=work / "v1",
        cache_dir=work / "cache",
        config=config,
        device="cpu",
    )
    first_s = time.perf_counter() - t0
    # 2. The retrain the button runs: everything cached.
    t0 = time.perf_counter()
    second = retrain_heads(
        products,
        taxonomy=taxonomy,
        base_checkpoint=base,
        out_dir=work / "v2",
        cache_dir=work / "cache",
        config=config,
        device="cpu",
    )
    heads_s = time.perf_counter() - t0
    assert second.embeddings_computed == 0
    epochs = second.metrics["epochs_run"]

    # 3. Backbone every epoch: forward + backward over a subset of photos, extrapolated.
    sample = load_images(products[:subset], preprocess)
    labels = encode_labels(sample.examples, taxonomy)
    loss_fn = make_loss(labels, taxonomy, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(0)
    model.train()
    t0 = time.perf_counter()
    for start in range(0, subset, config.batch_size):
        idx = torch.arange(start, min(start + config.batch_size, subset))
        out = model(augment(sample.images[idx], preprocess, generator), labels.categories[idx])
        loss = loss_fn(out, labels.categories[idx], labels.targets[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    per_photo = (time.perf_counter() - t0) / subset
    backbone_s = per_photo * n * epochs
    numbers = {
        "products": n,
        "model": f"{model_config.arch} {model_config.image_size}px",
        "threads": args.threads,
        "heads_epochs_run": epochs,
        "first_retrain_with_embedding_s": round(first_s, 1),
        "embeddings_computed_first": first.embeddings_computed,
        "heads_only_retrain_s": round(heads_s, 1),
        "backbone_per_photo_s": round(per_photo, 4),
        "backbone_every_epoch_estimate_s": round(backbone_s, 1),
        "speedup": round(backbone_s / heads_s, 1),
        "held_out_score": second.metrics["score"],
    }
    emit(numbers, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
