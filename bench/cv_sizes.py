"""Would the model suggest better if photos were shown to it at another size than it trained at?
The fold models of a finished ``bench/cv.py`` run are rescored, without training anything again,
with each fold's photos prepared at each size of ``--sizes`` and with the mean of the probabilities
of several sizes (val.csv is never read).

    python bench/cv_sizes.py --cv /tmp/cv-myntra --sizes 96,112,128,144   # folds of bench/cv.py --out /tmp/cv-myntra
    python bench/cv_sizes.py --smoke                                       # 2 tiny folds trained first, for CI

Every view is served as ``bench/cv.py`` serves it: the checkpoint's own taus, the heads alone, and
the mirror image averaged in when the folds were scored with ``--flip``. "S" is one size, "S+T" the
checkpoint's size together with another, "all" every size at once; the checkpoint's own size is
always served, asked for or not. Each size is prepared from the photo files (``load_images`` at
that size), not resampled from another size's tensors.
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

from taxonomy import LabeledExample, Taxonomy
from trainer import load_checkpoint, load_images, read_dataset
from trainer.evaluation import score
from trainer.labels import encode_labels
from trainer.model import TaxonomyNet

ALL = "all"


def combinations(sizes: list[int], own: int) -> dict[str, list[int]]:
    """name -> the sizes whose views are averaged: each alone, the checkpoint's own with each other, all."""
    out = {str(s): [s] for s in sizes}
    out.update({f"{own}+{s}": [own, s] for s in sizes if s != own})
    if len(sizes) > 2:
        out[ALL] = list(sizes)
    return out


@torch.inference_mode()
def fold_rows(
    model: TaxonomyNet, ckpt, test: list[LabeledExample], sizes: list[int], flip: bool, device: torch.device
) -> dict[str, dict[str, dict[str, str]]]:
    """combination -> id -> predicted values of the fold ``test`` (the checkpoint's own size is always
    one of the sizes)."""
    model.heads.set_neighbour_weight(0.0)
    own = ckpt.preprocess.image_size
    sizes = sorted({*sizes, own})
    per_size: dict[int, list[torch.Tensor]] = {}  # size -> the features of the photos (and mirror images)
    for size in sizes:
        preprocess = replace(ckpt.preprocess, image_size=size)
        test_set = load_images(test, preprocess)  # the same readable photos at every size
        per_size[size] = features_of(model, test_set.images, preprocess, flip, device)
    cats = encode_labels(test_set.examples, model.taxonomy).categories.to(device)  # (N,)
    return {
        name: served_rows(model, test_set.examples, [f for s in chosen for f in per_size[s]], cats)
        for name, chosen in combinations(sizes, own).items()
    }


def rescore(cv_dir: Path, sizes: list[int], device: torch.device) -> dict:
    settings = json.loads((cv_dir / "settings.json").read_text())
    data = Path(settings["data"])
    taxonomy: Taxonomy = taxonomy_of(data)
    examples, _ = read_dataset(data, taxonomy)
    if settings.get("smoke"):
        examples = examples[:SMOKE_PHOTOS]  # as bench/cv.py --smoke takes them
    folds = folds_of(examples, settings["folds"], settings["seed"])
    records: list[dict[str, float]] = []  # per fold: combination -> the fold's score
    per_fold: list[dict[str, dict[str, dict[str, str]]]] = []  # per fold: combination -> id -> values
    own_sizes = set()
    for i, test in enumerate(folds):
        checkpoint = cv_dir / f"fold{i}" / "model.pt"
        if not checkpoint.is_file():
            raise SystemExit(f"{checkpoint} is missing: run bench/cv.py --out {cv_dir} to the end first")
        ckpt = load_checkpoint(checkpoint)
        own_sizes.add(ckpt.preprocess.image_size)
        model = ckpt.build_model("cpu").eval().to(device)
        preds = fold_rows(model, ckpt, test, sizes, settings["flip"], device)
        per_fold.append(preds)
        records.append({name: round(score(test, p, taxonomy).score, 4) for name, p in preds.items()})
        logging.info("fold %d: %s", i, records[-1])
    pooled, per_attribute, _ = pooled_scores(folds, per_fold, list(per_fold[0]), taxonomy)
    return {
        "cv": str(cv_dir),
        "data": str(data),
        "trained_at": sorted(own_sizes),
        "flip": settings["flip"],
        "out_of_fold_score": pooled,
        "per_fold_score": {name: [r[name] for r in records] for name in pooled},
        "per_attribute": per_attribute,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cv", type=Path, help="the --out of a finished bench/cv.py run")
    parser.add_argument("--sizes", default="96,112,128,144", help="photo sides to serve at, comma-separated")
    add_common_args(parser, "2 tiny folds trained by bench/cv.py --smoke (64 px), rescored at 48, 64 and 80 px")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.smoke and not ready(args):
        return 2
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be whole numbers separated by commas, got {args.sizes!r}")
    if not sizes or min(sizes) < 32:
        parser.error(f"--sizes must name at least one size of 32 px or more, got {args.sizes!r}")
    torch.set_num_threads(args.threads)
    device = pick_device()
    if args.smoke:
        import cv

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cv"
            cv.main(["--smoke", "--flip", "--out", str(out)])
            emit(rescore(out, [48, 64, 80], device), args.json)
        return 0
    if args.cv is None:
        parser.error("--cv is required (or --smoke)")
    emit(rescore(args.cv, sizes, device), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
