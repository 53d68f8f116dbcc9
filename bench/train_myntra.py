"""Train from scratch on myntra-dev's train.csv; report the metric on val.csv and the wall time.

    python bench/train_myntra.py                 # the project's CPU default (about 15 minutes here)
    python bench/train_myntra.py --smoke         # a tiny run for CI (seconds)
    python bench/train_myntra.py --no-val ...    # tuning: report only the held-out part of train.csv
    python bench/train_myntra.py --no-val --sweep-tau OUT   # held-out score of OUT/model.pt per tau
    python bench/train_myntra.py --all-train ... # all of train.csv, fixed schedule, last epoch kept

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
    Checkpoint,
    ModelConfig,
    TrainConfig,
    default_model_config,
    default_train_config,
    evaluate,
    load_checkpoint,
    load_images,
    majority_baseline,
    read_dataset,
    split_held_out,
    to_model_input,
    train_full,
)
from trainer.evaluation import average, score, to_probabilities, top_values  # noqa: E402
from trainer.labels import encode_labels, head_counts  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "myntra-dev"
REFERENCES = {"majority value": 0.333, "plain ResNet18 128px CE 10 ep (about 4.5 min)": 0.528}


TAUS = (-0.5, -0.4, -0.3, -0.25, -0.2, -0.15, -0.1, 0.0, 0.25, 0.5, 1.0)


@torch.inference_mode()
def held_out_by_tau(ckpt: Checkpoint, train: list, held: list, taus: tuple[float, ...], tta_flip: bool
                    ) -> dict[float, float]:
    """The held-out metric for each prior-correction strength tau: the backbone runs once, only the
    heads are re-run. Counts come from the training part (the held-out ids are left out)."""
    model = ckpt.build_model("cpu")
    fit_part = [e for e in train if e.id not in {h.id for h in held}]
    model.heads.record_label_counts(head_counts(encode_labels(fit_part, model.taxonomy), model.taxonomy))
    held_set = load_images(held, ckpt.preprocess)
    cats = encode_labels(held_set.examples, model.taxonomy).categories  # (N,)
    x = to_model_input(held_set.images, ckpt.preprocess)  # (N, 3, S, S)
    views = [model.backbone(x)] + ([model.backbone(x.flip(3))] if tta_flip else [])  # (N, C) each
    out = {}
    for tau in taus:
        model.heads.set_logit_adjustment(tau)
        probs = to_probabilities(model.heads(views[0], cats))
        for f in views[1:]:
            probs = average(probs, to_probabilities(model.heads(f, cats)))
        rows = top_values(probs, model.taxonomy, len(held_set.examples))
        out[tau] = round(score(held_set.examples, {e.id: r for e, r in zip(held_set.examples, rows)},
                               model.taxonomy).score, 4)
    return out


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
    parser.add_argument("--tau", type=float, default=None, help="logit adjustment (prior correction) strength")
    parser.add_argument("--sweep-tau", type=Path, default=None,
                        help="only score this run's checkpoint on its held-out part for several tau, no training")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few photos, 1 epoch at 64 px")
    parser.add_argument("--all-train", action="store_true",
                        help="train on all of train.csv for the fixed schedule (no held-out part, no early stopping)")
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
        "logit_adjustment": args.tau,
    }
    config = replace(config, seed=args.seed, **{k: v for k, v in train_over.items() if v is not None})
    if args.no_sampler:
        config = replace(config, balanced_sampling=False)
    if args.all_train:
        config = replace(config, val_fraction=0.0)

    if args.sweep_tau is not None:
        ckpt = load_checkpoint(args.sweep_tau / "model.pt")
        _, held = split_held_out(train, config.val_fraction, seed=config.seed)  # the split train_full made
        print(json.dumps(held_out_by_tau(ckpt, train, held, TAUS, config.tta_flip), indent=1))
        return 0

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
