"""Train from scratch on myntra-dev's train.csv; report the metric on val.csv and the wall time.

    python bench/train_myntra.py                 # the project's CPU default (about 15 minutes here)
    python bench/train_myntra.py --smoke         # a tiny run for CI (seconds)
    python bench/train_myntra.py --no-val ...    # tuning: report only the held-out part of train.csv

Choices were tuned on a held-out split of train.csv (``--no-val``); val.csv is only reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taxonomy import taxonomy_from_competition  # noqa: E402
from trainer import (  # noqa: E402
    ModelConfig,
    TrainConfig,
    default_model_config,
    default_train_config,
    evaluate,
    load_checkpoint,
    load_images,
    majority_baseline,
    read_dataset,
    train_full,
)

DATA = ROOT.parent / "shared" / "data" / "myntra-dev"
REFERENCES = {"majority value": 0.333, "plain ResNet18 128px CE 10 ep (about 4.5 min)": 0.528}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    parser.add_argument("--arch", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--gamma", type=float, default=None)
    parser.add_argument("--no-sampler", action="store_true")
    parser.add_argument("--weight-power", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few photos, 1 epoch at 64 px")
    parser.add_argument("--no-val", action="store_true", help="do not read val.csv (tuning on train.csv only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if not (args.data / "train.csv").is_file():
        print(f"myntra-dev not found at {args.data}", file=sys.stderr)
        return 2

    taxonomy = taxonomy_from_competition(args.data / "category_attributes.parquet", args.data / "train.csv")
    train, _ = read_dataset(args.data, taxonomy)
    val, _ = read_dataset(args.data, taxonomy, csv_name="val.csv") if not args.no_val else ([], [])
    model_config: ModelConfig = default_model_config("cpu", weights="none")
    config: TrainConfig = default_train_config("cpu")
    if args.smoke:
        train, val = train[:120], val[:40]
        model_config = replace(model_config, image_size=64)
        config = replace(config, epochs=1)
    overrides = {"arch": args.arch, "image_size": args.image_size}
    model_config = replace(model_config, **{k: v for k, v in overrides.items() if v is not None})
    train_over = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "patience": args.patience,
        "focal_gamma": args.gamma,
        "class_weight_power": args.weight_power,
    }
    config = replace(config, seed=args.seed, **{k: v for k, v in train_over.items() if v is not None})
    if args.no_sampler:
        config = replace(config, balanced_sampling=False)

    out = args.out or Path(tempfile.mkdtemp(prefix="myntra-"))
    t0 = time.perf_counter()
    result = train_full(
        train,
        taxonomy=taxonomy,
        out_dir=out,
        config=config,
        model_config=model_config,
        device="cpu",
        progress=lambda f, m: logging.info("%3.0f%% %s", 100 * f, m),
    )
    minutes = (time.perf_counter() - t0) / 60
    numbers = {
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}",
        "model": model_config.to_dict(),
        "train": config.to_dict(),
        "train_examples": len(train),
        "held_out_score": result.metrics.get("score"),
        "best_epoch": result.metrics.get("epoch"),
        "wall_minutes": round(minutes, 2),
    }
    if val:
        ckpt = load_checkpoint(result.checkpoint_path)
        model = ckpt.build_model("cpu")
        val_set = load_images(val, ckpt.preprocess)
        report = evaluate(
            model,
            val_set.images,
            val_set.examples,
            preprocess=ckpt.preprocess,
            device=torch.device("cpu"),
            tta_flip=config.tta_flip,
        )
        numbers["val_score"] = round(report.score, 4)
        numbers["val_per_category"] = {k: round(v, 4) for k, v in report.per_category.items()}
        numbers["val_majority_baseline"] = round(majority_baseline(train, val, taxonomy).score, 4)
    numbers["references"] = REFERENCES
    print(json.dumps(numbers, indent=1))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
