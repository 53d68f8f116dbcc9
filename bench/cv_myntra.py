"""K-fold cross-validation of the CPU default on myntra-dev's train.csv (val.csv is never read).

    python bench/cv_myntra.py --out /tmp/cv          # 3 folds of the default (about 40 minutes here)
    python bench/cv_myntra.py --out /tmp/cv --smoke  # 2 folds of a tiny run, for CI

Each fold trains the project's default recipe on the other folds for its fixed schedule and keeps
the last epoch (as ``train_myntra.py`` does for the final model). Its fold is scored
every epoch (the cross-validated learning curve) and, from the last epoch, predicted once per
prior-correction strength tau. The out-of-fold predictions of all folds together give one score
per tau over every photo of train.csv: the choice the default takes, instead of one held-out
split of 270 photos. A finished fold is kept in ``OUT/fold<i>``; a rerun continues from there.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from _common import MYNTRA, add_common_args, device_name, emit, per_attribute_mean, pick_device, ready

from taxonomy import LabeledExample, Taxonomy, taxonomy_from_competition
from trainer import default_model_config, default_train_config, load_checkpoint, load_images, read_dataset, train_full
from trainer.evaluation import average, score, to_probabilities, top_values
from trainer.labels import encode_labels
from trainer.model import TaxonomyNet
from trainer.preprocess import Preprocess, to_model_input

TAUS = (-1.0, -0.75, -0.5, -0.4, -0.3, -0.25, -0.2, -0.15, -0.1, -0.05, 0.0, 0.1, 0.25, 0.5)


def folds_of(examples: list[LabeledExample], k: int, seed: int) -> list[list[LabeledExample]]:
    """``k`` disjoint folds, each category dealt round-robin after a seeded shuffle."""
    rng = random.Random(seed)
    by_cat: dict[str, list[LabeledExample]] = {}
    for ex in examples:
        by_cat.setdefault(ex.category, []).append(ex)
    folds: list[list[LabeledExample]] = [[] for _ in range(k)]
    for cat in sorted(by_cat):
        items = sorted(by_cat[cat], key=lambda e: e.id)
        rng.shuffle(items)
        for i, ex in enumerate(items):
            folds[i % k].append(ex)
    return folds


@torch.inference_mode()
def rows_by_tau(
    model: TaxonomyNet,
    examples: list[LabeledExample],
    images: torch.Tensor,
    preprocess: Preprocess,
    taus: tuple[float, ...],
    tta_flip: bool,
    device: torch.device,
) -> dict[float, dict[str, dict[str, str]]]:
    """id -> predicted values, for each tau; the backbone runs once (twice with the mirror image)."""
    model.eval().to(device)
    cats = encode_labels(examples, model.taxonomy).categories.to(device)  # (N,)
    feats = []
    for start in range(0, images.shape[0], 128):
        x = to_model_input(images[start : start + 128].to(device), preprocess)  # (b, 3, S, S)
        feats.append([model.backbone(x)] + ([model.backbone(x.flip(3))] if tta_flip else []))  # (b, C) each
    views = [torch.cat([f[i] for f in feats]) for i in range(len(feats[0]))]  # (N, C) each
    out: dict[float, dict[str, dict[str, str]]] = {}
    for tau in taus:
        model.heads.set_logit_adjustment(tau)
        probs = to_probabilities(model.heads(views[0], cats))
        for f in views[1:]:
            probs = average(probs, to_probabilities(model.heads(f, cats)))
        rows = top_values(probs, model.taxonomy, len(examples))
        out[tau] = {e.id: r for e, r in zip(examples, rows)}
    model.heads.set_logit_adjustment(0.0)
    return out


def run_fold(
    i: int,
    train: list[LabeledExample],
    test: list[LabeledExample],
    taxonomy: Taxonomy,
    out: Path,
    model_config,
    config,
    device: torch.device,
    taus: tuple[float, ...],
) -> dict:
    fold_dir = out / f"fold{i}"
    done = fold_dir / "fold.json"
    if done.is_file():
        logging.info("fold %d already done: %s", i, done)
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    # The fold is passed as the validation set so every epoch is scored on it (the learning
    # curve); the predictions below come from the last epoch's weights (last.pt), not the best.
    result = train_full(
        train,
        taxonomy=taxonomy,
        out_dir=fold_dir,
        config=config,
        model_config=model_config,
        device=device,
        val_examples=test,
        resume=True,
        progress=lambda f, m: logging.info("fold %d %3.0f%% %s", i, 100 * f, m),
    )
    minutes = (time.perf_counter() - t0) / 60
    ckpt = load_checkpoint(result.checkpoint_path)
    model = ckpt.build_model("cpu")
    last = torch.load(fold_dir / "last.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(last["model"])
    test_set = load_images(test, ckpt.preprocess)
    preds = rows_by_tau(model, test_set.examples, test_set.images, ckpt.preprocess, taus, config.tta_flip, device)
    record = {
        "fold": i,
        "train_examples": len(train),
        "test_examples": len(test_set.examples),
        "minutes": round(minutes, 2),
        "curve": [round(h["val_score"], 4) for h in last["history"]],
        "last_epoch_score": {str(t): round(score(test_set.examples, p, taxonomy).score, 4) for t, p in preds.items()},
        "predictions": {str(t): p for t, p in preds.items()},
    }
    done.write_text(json.dumps(record) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MYNTRA)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the folds; a rerun with the same folder continues (default: a temp dir)",
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--progressive-size",
        type=int,
        default=None,
        help="photo side of the first --progressive-fraction of the epochs (0: off)",
    )
    parser.add_argument("--progressive-fraction", type=float, default=None)
    add_common_args(parser, "2 folds of 80 photos, 1 epoch at 64 px")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not ready(args, args.data):
        return 2
    device = pick_device()
    taxonomy = taxonomy_from_competition(args.data / "category_attributes.parquet", args.data / "train.csv")
    examples, _ = read_dataset(args.data, taxonomy)
    model_config = default_model_config(device.type, weights="none")
    config = replace(default_train_config(device.type), seed=args.seed, val_fraction=0.0)
    k = args.folds
    if args.smoke:
        examples, k = examples[:160], 2
        model_config = replace(model_config, image_size=64)
        config = replace(config, epochs=1)
    if args.epochs:
        config = replace(config, epochs=args.epochs)
    if args.image_size:
        model_config = replace(model_config, image_size=args.image_size)
    if args.progressive_size is not None:
        config = replace(config, progressive_size=args.progressive_size)
    if args.progressive_fraction is not None:
        config = replace(config, progressive_fraction=args.progressive_fraction)
    if k < 2:
        parser.error("--folds must be at least 2")
    args.out = args.out or Path(tempfile.mkdtemp(prefix="cv-myntra-"))
    args.out.mkdir(parents=True, exist_ok=True)
    folds = folds_of(examples, k, args.seed)
    records = []
    for i in range(k):
        train = [e for j, f in enumerate(folds) if j != i for e in f]
        records.append(run_fold(i, train, folds[i], taxonomy, args.out, model_config, config, device, TAUS))
    predicted = {i for r in records for i in r["predictions"]["0.0"]}  # photos that could be read
    scored = [e for f in folds for e in f if e.id in predicted]
    by_tau = {}
    per_attribute: dict[str, dict[str, float]] = {}
    for tau in TAUS:
        preds = {i: row for r in records for i, row in r["predictions"][str(tau)].items()}
        report = score(scored, preds, taxonomy)
        by_tau[str(tau)] = round(report.score, 4)
        per_attribute[str(tau)] = per_attribute_mean(report)
    best = max(by_tau, key=lambda t: (by_tau[t], -abs(float(t))))
    epochs = len(records[0]["curve"])
    curve = [round(sum(r["curve"][e] for r in records) / k, 4) for e in range(epochs)]
    summary = {
        "device": device_name(device),
        "folds": k,
        "photos_scored": len(scored),
        "epochs": config.epochs,
        "image_size": model_config.image_size,
        "progressive": [config.progressive_size, config.progressive_fraction] if config.progressive_size else None,
        "minutes_per_fold": [r["minutes"] for r in records],
        "out_of_fold_score_by_tau": by_tau,
        "best_tau": float(best),
        "per_fold_score_by_tau": {str(t): [r["last_epoch_score"][str(t)] for r in records] for t in TAUS},
        "per_attribute_by_tau": per_attribute,
        "mean_fold_curve_per_epoch": curve,
    }
    emit(summary, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
