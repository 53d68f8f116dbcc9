"""Calibrated confidence: ECE of the top-1 confidence on val.csv before and after the temperatures.

    python bench/calibration.py                          # myntra-dev, 12 epochs (a reduced CPU default)
    python bench/calibration.py --data ../shared/data/flixstock-dev
    python bench/calibration.py --epochs 38              # the CPU default's full schedule (about 14 min quiet)
    python bench/calibration.py --smoke                  # a tiny run for CI (seconds)

A full training run on train.csv (the CPU default recipe, ``--epochs`` of it) fits one
temperature per attribute head on its early-stopping slice (15% of train.csv, after the prior
correction); then a heads-only retrain on cached embeddings from that checkpoint fits its own. For
both, the predictor the app uses (categories known, no mirroring) scores val.csv's photos with the
checkpoint's temperatures and with every temperature set to 1; val.csv is only measured, never
fitted on. ECE: 15 equal-width bins of the top-1 confidence, over every labelled (product,
attribute) field, pooled and per attribute name (pooled over the categories that have it).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from _common import MYNTRA, add_common_args, device_name, emit, read_split, ready, work_dir

from taxonomy import LabeledExample
from trainer import (
    Predictor,
    default_model_config,
    default_train_config,
    expected_calibration_error,
    load_checkpoint,
    retrain_heads,
    train_full,
)

Field = tuple[str, float, bool, float]  # attribute, top-1 confidence, top-1 right, probability of the truth
DEFAULT_EPOCHS = 12  # the default's 38 take 14 min on the quiet machine; 12 keep the bench near 10


def _fields(predictor: Predictor, photos: torch.Tensor, rows: list[LabeledExample]) -> list[Field]:
    """One ``Field`` per labelled (product, attribute) of ``rows``."""
    taxonomy = predictor.taxonomy
    top_k = max(len(a.values) for c in taxonomy.categories for a in c.attributes)
    preds = predictor.predict_prepared(photos, [e.category for e in rows], top_k=top_k, ids=[e.id for e in rows])
    out = []
    for e, p in zip(rows, preds):
        for name, truth in e.labels.items():
            if truth is None or name not in p.attributes:
                continue
            a = p.attributes[name]
            out.append((name, a.probability, a.value == truth, dict(a.top_k).get(truth, 0.0)))
    return out


def _scores(fields: list[Field]) -> dict[str, float]:
    conf = torch.tensor([f[1] for f in fields])
    right = torch.tensor([f[2] for f in fields])
    truth_p = torch.tensor([f[3] for f in fields]).clamp_min(1e-12)
    return {
        "fields": len(fields),
        "accuracy": round(float(right.float().mean()), 4),
        "mean_confidence": round(float(conf.mean()), 4),
        "ece": round(expected_calibration_error(conf, right), 4),
        "nll": round(float(-truth_p.log().mean()), 4),
    }


def val_calibration(checkpoint_path: Path, val: list[LabeledExample]) -> dict[str, Any]:
    """val.csv's ECE and NLL with the checkpoint's temperatures ("after") and with T = 1 ("before")."""
    calibrated = Predictor.load(checkpoint_path)
    ckpt = load_checkpoint(checkpoint_path)
    model = ckpt.build_model()
    model.heads.set_temperatures([1.0] * len(model.heads.attribute_heads))
    plain = Predictor(replace(ckpt, state_dict=model.state_dict()))
    rows = [e for e in val if e.image_path and Path(e.image_path).is_file()]
    photos = torch.stack([calibrated.prepare(e.image_path) for e in rows])  # (N, 3, S, S)
    before, after = _fields(plain, photos, rows), _fields(calibrated, photos, rows)
    assert [f[2] for f in before] == [f[2] for f in after], "calibration changed a top-1 suggestion"
    names = list(dict.fromkeys(f[0] for f in before))
    return {
        "before": _scores(before),
        "after": _scores(after),
        "per_attribute": {
            n: {
                "ece_before": _scores([f for f in before if f[0] == n])["ece"],
                "ece_after": _scores([f for f in after if f[0] == n])["ece"],
            }
            for n in names
        },
    }


def _slice(metrics: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's own calibration entry, without its per-head temperatures."""
    entry = dict(metrics.get("calibration") or {})
    entry.pop("temperatures", None)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MYNTRA)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: a temporary one, removed at the end)"
    )
    parser.add_argument("--seed", type=int, default=0)
    add_common_args(parser, "a few photos, 1 epoch at 64 px")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not ready(args, args.data):
        return 2
    taxonomy, train, val = read_split(args.data)
    model_config = default_model_config("cpu", weights="none")
    config = replace(default_train_config("cpu"), epochs=args.epochs, seed=args.seed)
    if args.smoke:
        train, val = train[:160], val[:40]
        model_config = replace(model_config, image_size=64)
        config = replace(config, epochs=1, tau_min_labels=5)
    out = work_dir(args.out, "calibration-")

    t0 = time.perf_counter()
    # val.csv is the held-out set the run's metric is measured on; the temperatures (and the taus,
    # and the best epoch) are chosen on the early-stopping slice of train.csv alone.
    full = train_full(
        train,
        taxonomy=taxonomy,
        out_dir=out / "full",
        config=config,
        model_config=model_config,
        device="cpu",
        val_examples=val,
        progress=lambda f, m: logging.info("%3.0f%% %s", 100 * f, m),
    )
    full_minutes = (time.perf_counter() - t0) / 60
    t1 = time.perf_counter()
    heads = retrain_heads(
        train,
        taxonomy=taxonomy,
        base_checkpoint=full.checkpoint_path,
        out_dir=out / "heads",
        cache_dir=out / "cache",
        config=config,
        device="cpu",
    )
    heads_minutes = (time.perf_counter() - t1) / 60
    numbers = {
        "data": args.data.name,
        "machine": device_name(torch.device("cpu")),
        "model": model_config.to_dict(),
        "epochs": config.epochs,
        "train_examples": len(train),
        "val_examples": len(val),
        "full": {
            "val_score": round(full.metrics["score"], 4),
            "minutes": round(full_minutes, 2),
            "early_stop_slice": _slice(full.metrics),
            "val": val_calibration(full.checkpoint_path, val),
        },
        "heads_only": {
            "held_out_score": heads.metrics.get("score"),
            "minutes": round(heads_minutes, 2),
            "early_stop_slice": _slice(heads.metrics),
            "val": val_calibration(heads.checkpoint_path, val),
        },
        "wall_minutes": round((time.perf_counter() - t0) / 60, 2),
    }
    emit(numbers, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
