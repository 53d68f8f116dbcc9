"""How the run should choose its prior correction on its early-stopping slice: rules rescored on
the fold models of a ``bench/cv.py`` run made the app's way (``--val-fraction`` > 0), without
training anything again (val.csv is never read).

    python bench/cv_taus.py --cv /tmp/cv-myntra            # the folds of bench/cv.py --out /tmp/cv-myntra
    python bench/cv_taus.py --smoke                         # 2 tiny folds trained first, for CI

For every fold the run's own slice (the same products ``train_full`` held out of the fold's
training part, by the same hash) is predicted by the fold's checkpoint as ``train.fit`` sees it
(unmirrored, heads alone, in the run's precision), each rule chooses taus from it (the run's own
rule must give the taus the run chose, or the script stops), and the fold is then predicted as
``bench/cv.py`` predicts it (mirror averaging with ``--flip``), heads alone, with those taus:

- ``constant``: the recipe's configured tau for every attribute (``TrainConfig.logit_adjustment``);
- ``attribute``: each (category, attribute) its own best tau of ``tau_grid`` on the slice
  (``prior.choose_logit_adjustments``, ``tau_scope="attribute"``);
- ``name``: one tau per attribute name, shared by the categories that have it, best by the sum
  of their slice scores (``tau_scope="name"``);
- ``model``: one tau for the whole model, best by the whole metric on the slice (``tau_scope="model"``);
- each of them followed by a confidence (``tau_confidence``, ``CONFIDENCES``): the best tau is
  taken only where it also beats the constant in that share of bootstrap resamples of the slice.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from _common import add_common_args, emit, pick_device, ready
from cv import SMOKE_PHOTOS, features_of, folds_of, pooled_scores, served_rows, taxonomy_of

from taxonomy import LabeledExample
from trainer import TrainConfig, load_checkpoint, load_images, read_dataset, split_held_out
from trainer.config import TAU_SCOPES
from trainer.data import EARLY_STOP_SALT
from trainer.evaluation import score
from trainer.labels import encode_labels
from trainer.prior import choose_logit_adjustments
from trainer.runtime import resolve_precision
from trainer.train import served_heads, trunk_embeddings

CONSTANT = "constant"
CONFIDENCES = (0.0, 0.8, 0.9, 0.95)  # tau_confidence: 0 takes the slice's best as it is


def rule_name(scope: str, confidence: float) -> str:
    return f"{scope} {confidence}" if confidence else scope


@torch.inference_mode()
def fold_taus(model, config: TrainConfig, stop: list[LabeledExample], preprocess, device) -> dict[str, list[float]]:
    """rule -> one tau per attribute head, chosen on the slice ``stop`` as ``train.fit`` chooses."""
    heads = model.heads
    heads.set_neighbour_weight(0.0)  # the taus are chosen for the heads alone, before the vote
    stop_set = load_images(stop, preprocess)
    dtype = resolve_precision(config.precision, device)  # the run's precision, as it chose
    features = trunk_embeddings(model, stop_set.images, preprocess, device, dtype)  # (n, C) unmirrored
    forward = served_heads(model, device, dtype)
    taus = {CONSTANT: [float(config.logit_adjustment)] * len(heads.attribute_heads)}
    for scope in TAU_SCOPES:
        for confidence in CONFIDENCES:
            chosen = choose_logit_adjustments(
                heads,
                forward,
                features,
                stop_set.examples,
                taxonomy=model.taxonomy,
                config=replace(config, tau_scope=scope, tau_confidence=confidence),
            )
            taus[rule_name(scope, confidence)] = list(chosen.values())
    return taus


@torch.inference_mode()
def predict_fold(model, test, preprocess, taus: dict[str, list[float]], flip: bool, device) -> dict[str, dict]:
    """rule -> id -> predicted values of the fold, heads alone, mirror-averaged with ``flip``."""
    test_set = load_images(test, preprocess)
    cats = encode_labels(test_set.examples, model.taxonomy).categories.to(device)  # (N,)
    views = features_of(model, test_set.images, preprocess, flip, device)
    model.heads.set_neighbour_weight(0.0)
    out = {}
    for rule, values in taus.items():
        model.heads.set_head_logit_adjustments(values)
        out[rule] = served_rows(model, test_set.examples, views, cats)
    return out


def rescore(cv_dir: Path, device: torch.device) -> dict:
    settings = json.loads((cv_dir / "settings.json").read_text())
    data = Path(settings["data"])
    taxonomy = taxonomy_of(data)
    examples, _ = read_dataset(data, taxonomy)
    if settings.get("smoke"):
        examples = examples[:SMOKE_PHOTOS]  # as bench/cv.py --smoke takes them
    folds = folds_of(examples, settings["folds"], settings["seed"])
    names = [f"{c.name}/{a.name}" for c in taxonomy.categories for a in c.attributes]
    records = []
    for i, test in enumerate(folds):
        checkpoint = cv_dir / f"fold{i}" / "model.pt"
        if not checkpoint.is_file():
            raise SystemExit(f"{checkpoint} is missing: run bench/cv.py --out {cv_dir} to the end first")
        ckpt = load_checkpoint(checkpoint)
        config = TrainConfig.from_dict(ckpt.train_config)
        if config.val_fraction <= 0:
            raise SystemExit(f"{cv_dir} was trained without a slice (--val-fraction 0): no choice to rescore")
        train = [e for j, f in enumerate(folds) if j != i for e in f]
        _, stop = split_held_out(train, config.val_fraction, salt=EARLY_STOP_SALT)
        model = ckpt.build_model("cpu").eval().to(device)
        taus = fold_taus(model, config, stop, ckpt.preprocess, device)
        preds = predict_fold(model, test, ckpt.preprocess, taus, settings["flip"], device)
        # The run's own rule (checkpoints from before tau_confidence chose without it) must give
        # the taus the run chose, or this rescoring is not what the runs did.
        own = rule_name(config.tau_scope, float(ckpt.train_config.get("tau_confidence", 0.0)))
        stored = ckpt.state_dict["heads.head_logit_adjustment"].float()
        if own not in taus or not torch.allclose(torch.tensor(taus[own]), stored):
            raise SystemExit(f"fold {i}: rule {own!r} chose {taus.get(own)}, the run chose {stored.tolist()}")
        records.append(
            {
                "fold": i,
                "slice": len(stop),
                "own_rule": own,
                "taus": {rule: dict(zip(names, v, strict=True)) for rule, v in taus.items() if rule != CONSTANT},
                "score": {rule: round(score(test, p, taxonomy).score, 4) for rule, p in preds.items()},
                "predictions": preds,
            }
        )
        logging.info("fold %d: %s", i, records[-1]["score"])
    per_fold = [r["predictions"] for r in records]
    pooled, per_attribute, _ = pooled_scores(folds, per_fold, list(per_fold[0]), taxonomy)  # CONSTANT first
    return {
        "cv": str(cv_dir),
        "data": str(data),
        "folds": len(folds),
        "out_of_fold_score": pooled,
        "per_fold_score": {rule: [r["score"][rule] for r in records] for rule in pooled},
        "per_attribute": per_attribute,
        "slice_sizes": [r["slice"] for r in records],
        "own_rule_per_fold": [r["own_rule"] for r in records],  # reproduced: checked above
        "taus_per_fold": [r["taus"] for r in records],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cv", type=Path, help="the --out of a finished bench/cv.py run with --val-fraction > 0")
    add_common_args(parser, "2 tiny folds trained by bench/cv.py --smoke --val-fraction 0.3, then rescored")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.smoke and not ready(args):
        return 2
    torch.set_num_threads(args.threads)
    device = pick_device()
    if args.smoke:
        import cv

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cv"
            cv.main(["--smoke", "--val-fraction", "0.3", "--out", str(out)])
            emit(rescore(out, device), args.json)
        return 0
    if args.cv is None:
        parser.error("--cv is required (or --smoke)")
    emit(rescore(args.cv, device), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
