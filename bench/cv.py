"""K-fold cross-validation of the default recipe on any competition-layout folder's train.csv
(val.csv is never read).

    python bench/cv.py --data ../shared/data/myntra-dev --out /tmp/cv-myntra          # 3 folds of the CPU default
    python bench/cv.py --data ../shared/data/flixstock-dev --out /tmp/cv-flix-top --crop top
    python bench/cv.py --smoke                                                          # 2 tiny folds, for CI
    python bench/cv.py --recipe-of cpu --out /tmp/cv-cpu-recipe    # the CPU recipe, trained on a GPU if there is one

Each fold trains what ``train_full`` trains on the other folds: the recipe its trunk calls for
(``--weights none``: from scratch; a weights file: the pretrained recipe), the best epoch and
the per-attribute prior correction chosen on the early-stopping slice of those folds
(``--val-fraction``, default the recipe's; 0 keeps the last epoch of the fixed schedule and the
configured tau, as the schedule was first cross-validated). The fold itself is then predicted
once by that checkpoint as the app serves it (no mirroring unless ``--flip``): with its own
per-attribute taus and the heads alone ("in_run"), for comparison with each constant tau of
``TAUS`` for every attribute, and with its own taus and the vote of the most similar products of
the training part served at each weight ("neighbours <alpha>", ``trainer.neighbours``) and at
the weight the run chose on its slice ("served"; the configured one without a slice). The
out-of-fold predictions of all folds together give one score per choice over every photo of
train.csv. A finished fold is kept in ``OUT/fold<i>``; a rerun with the same
settings continues from there (other settings in the same OUT are refused).

``--recipe-of cpu`` cross-validates the CPU recipe (SE-ResNet18, 112 px, 38 epochs) wherever the
script runs: on a GPU one arm takes minutes instead of the hours it takes on a 2-core CPU, in
fp32 as on the CPU (``precision``), so that the CPU default's choices can be made by
cross-validation with a borrowed accelerator. Timings from such a run say nothing of the CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
from _common import MYNTRA, add_common_args, device_name, emit, per_attribute_mean, pick_device, ready, work_dir

from taxonomy import LabeledExample, Taxonomy, default_taxonomy, taxonomy_from_competition
from trainer import TrainConfig, load_checkpoint, load_images, plan_run, read_dataset, survey_photos, train_full
from trainer.config import CROPS
from trainer.evaluation import mean_of, score, to_probabilities, top_values
from trainer.labels import encode_labels
from trainer.model import TaxonomyNet
from trainer.neighbours import ALPHAS
from trainer.preprocess import Preprocess
from trainer.train import trunk_embeddings

TAUS = (-0.5, -0.3, -0.2, -0.15, -0.1, 0.0, 0.1, 0.3, 0.5)
IN_RUN = "in_run"
NEIGHBOURS = "neighbours "  # + weight: the in-run taus with the training part's vote served at that weight
SMOKE_PHOTOS = 160  # --smoke: the first photos of train.csv, in 2 folds
SERVED = "served"  # the in-run taus and the vote at the weight the run chose (or its configured one)


def taxonomy_of(data: Path) -> Taxonomy:
    for name in ("category_attributes.parquet", "category_attributes.json"):
        if (data / name).is_file():
            return taxonomy_from_competition(data / name, data / "train.csv")
    return default_taxonomy()


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
def features_of(
    model: TaxonomyNet, images: torch.Tensor, preprocess: Preprocess, flip: bool, device: torch.device
) -> list[torch.Tensor]:
    """The pooled features of every photo (N, C), and of its mirror image with ``flip``, on ``device``
    (``train.trunk_embeddings``, which also fills the vote's memory)."""
    views = [images, images.flip(3)] if flip else [images]
    return [trunk_embeddings(model, v, preprocess, device).to(device) for v in views]


def remember_training_part(
    model: TaxonomyNet, train: list[LabeledExample], preprocess: Preprocess, device: torch.device, balancing: float
) -> None:
    """A fold model written before the neighbours' vote was served gets the memory its run would
    have given it: the training part's unmirrored embeddings and labels (``train.fit``)."""
    if model.heads.memory_vectors.shape[0] > 0:
        return
    train_set = load_images(train, preprocess)
    vectors = trunk_embeddings(model.eval().to(device), train_set.images, preprocess, device)
    model.heads.set_memory(vectors, encode_labels(train_set.examples, model.taxonomy))
    model.heads.set_neighbour_weight(0.0, balance=balancing)


def pooled_scores(
    folds: list[list[LabeledExample]],
    per_fold: list[dict[str, dict[str, dict[str, str]]]],
    choices: list[str],
    taxonomy: Taxonomy,
) -> tuple[dict[str, float], dict[str, dict[str, float]], int]:
    """The out-of-fold score of each choice (``per_fold``: per fold, choice -> id -> predicted
    values) over every photo of ``folds`` that its fold could read (those predicted under the first
    choice), its per-attribute means, and how many photos were scored."""
    predicted = {i for fold in per_fold for i in fold[choices[0]]}
    scored = [e for f in folds for e in f if e.id in predicted]
    pooled, per_attribute = {}, {}
    for choice in choices:
        preds = {i: row for fold in per_fold for i, row in fold[choice].items()}
        report = score(scored, preds, taxonomy)
        pooled[choice] = round(report.score, 4)
        per_attribute[choice] = per_attribute_mean(report)
    return pooled, per_attribute, len(scored)


@torch.inference_mode()
def served_rows(
    model: TaxonomyNet, examples: list[LabeledExample], views: list[torch.Tensor], cats: torch.Tensor
) -> dict[str, dict[str, str]]:
    """id -> predicted values of ``examples`` as the heads serve them now, their probabilities
    averaged over ``views`` (the features of the photos, and of their mirror images with ``flip``)."""
    probs = mean_of([to_probabilities(model.heads(f, cats)) for f in views])
    return {e.id: r for e, r in zip(examples, top_values(probs, model.taxonomy, len(examples)), strict=True)}


@torch.inference_mode()
def rows_by_choice(
    model: TaxonomyNet,
    examples: list[LabeledExample],
    images: torch.Tensor,
    preprocess: Preprocess,
    taus: tuple[float, ...],
    flip: bool,
    device: torch.device,
) -> dict[str, dict[str, dict[str, str]]]:
    """choice -> id -> predicted values: the heads alone with the checkpoint's own taus and with
    each constant tau, and the own taus with the neighbours' vote served at each weight of
    ``neighbours.ALPHAS``; the backbone runs once (twice with the mirror image)."""
    model.eval().to(device)
    cats = encode_labels(examples, model.taxonomy).categories.to(device)  # (N,)
    views = features_of(model, images, preprocess, flip, device)
    heads = model.heads
    own, own_weight = heads.head_logit_adjustment.clone(), float(heads.neighbour_weight)  # what the run chose
    settings = [(IN_RUN, None, 0.0), *((str(t), t, 0.0) for t in taus)]
    settings += [(f"{NEIGHBOURS}{a}", None, a) for a in ALPHAS]
    settings += [(SERVED, None, own_weight)]
    out: dict[str, dict[str, dict[str, str]]] = {}
    for name, tau, weight in settings:
        heads.head_logit_adjustment.copy_(own)
        if tau is not None:
            heads.head_logit_adjustment.fill_(float(tau))
        heads.set_neighbour_weight(weight)
        out[name] = served_rows(model, examples, views, cats)
    heads.head_logit_adjustment.copy_(own)
    heads.set_neighbour_weight(own_weight)
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
    flip: bool,
    trunk,
) -> dict:
    fold_dir = out / f"fold{i}"
    done = fold_dir / "fold.json"
    if done.is_file():
        logging.info("fold %d already done: %s", i, done)
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    # The fold is passed as the held-out set: the run never sees it (its early stopping and tau
    # choice use a slice of ``train``), and train_full scores the checkpoint on it.
    result = train_full(
        train,
        taxonomy=taxonomy,
        out_dir=fold_dir,
        config=config,
        model_config=model_config,
        device=device,
        val_examples=test,
        resume=True,
        trunk=trunk,
        progress=lambda f, m: logging.info("fold %d %3.0f%% %s", i, 100 * f, m),
    )
    minutes = (time.perf_counter() - t0) / 60
    ckpt = load_checkpoint(result.checkpoint_path)
    model = ckpt.build_model("cpu")
    last = torch.load(fold_dir / "last.pt", map_location="cpu", weights_only=True)
    test_set = load_images(test, ckpt.preprocess)
    remember_training_part(model, train, ckpt.preprocess, device, TrainConfig.from_dict(ckpt.train_config).balancing)
    preds = rows_by_choice(model, test_set.examples, test_set.images, ckpt.preprocess, TAUS, flip, device)
    record = {
        "fold": i,
        "train_examples": len(train),
        "test_examples": len(test_set.examples),
        "minutes": round(minutes, 2),
        "best_epoch": ckpt.metrics.get("epoch"),
        "curve": [round(h["val_score"], 4) for h in last["history"]],  # on the early-stopping slice
        "chosen_taus": ckpt.metrics.get("logit_adjustment"),
        "chosen_vote": ckpt.metrics.get("neighbour_weight"),
        "score_by_choice": {c: round(score(test_set.examples, p, taxonomy).score, 4) for c, p in preds.items()},
        "predictions": preds,
    }
    done.write_text(json.dumps(record) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MYNTRA, help="a competition-layout folder (train.csv, images/)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the folds; a rerun with it continues (default: a temporary one, removed at the end)",
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--weights", default="none", help="none (from scratch) or a ResNet weights file")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--crop", choices=CROPS, default=None, help="how a photo becomes square (default: pad)")
    parser.add_argument(
        "--colour-bins", type=int, default=None, help="bins per RGB channel of the colour histogram (0: none)"
    )
    parser.add_argument("--val-fraction", type=float, default=None, help="early-stopping slice (0: none)")
    parser.add_argument("--tau", type=float, default=None, help="the configured tau (the fallback)")
    parser.add_argument(
        "--tau-min-labels", type=int, default=None, help="fewer labelled slice rows keep the configured tau"
    )
    parser.add_argument("--flip", action="store_true", help="score with mirror averaging (the app serves without)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipe-of",
        choices=["cpu", "cuda"],
        default=None,
        help="whose default recipe to cross-validate (default: this machine's device's)",
    )
    parser.add_argument(
        "--progressive-size",
        type=int,
        default=None,
        help="photo side of the first --progressive-fraction of the epochs (0: off)",
    )
    parser.add_argument("--progressive-fraction", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="photos per training step")
    parser.add_argument("--cutmix", type=float, default=None, help="share of batches mixed within a category")
    parser.add_argument("--weight-decay", type=float, default=None, help="AdamW's decoupled weight decay")
    parser.add_argument("--lr", type=float, default=None, help="the one-cycle schedule's peak learning rate")
    parser.add_argument(
        "--sampler-power", type=float, default=None, help="the balanced sampler's power (0: no balanced sampler)"
    )
    add_common_args(parser, "2 folds of 80 photos, 1 epoch at 64 px")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not ready(args, args.data):
        return 2
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    device = pick_device()
    taxonomy = taxonomy_of(args.data)
    examples, _ = read_dataset(args.data, taxonomy)
    # The default's photo size follows the photos' shape (``fit_to_photos``), for a fold's share.
    photos = survey_photos(e.image_path for e in examples)
    if photos is not None and not (args.image_size or args.progressive_size is not None):
        photos = replace(photos, count=round(len(examples) * (args.folds - 1) / args.folds))
    else:
        photos = None
    recipe_of = args.recipe_of or device.type
    plan = plan_run(recipe_of, weights=args.weights, photos=photos)
    if plan.photo_note:
        logging.info("photo size: %s", plan.photo_note)
    model_config, config = plan.model_config, replace(plan.config, seed=args.seed)
    if recipe_of == "cpu" and device.type != "cpu":  # the CPU's arithmetic too: it trains in fp32
        config = replace(config, precision="fp32")
    k = args.folds
    if args.smoke:
        examples, k = examples[:SMOKE_PHOTOS], 2
        model_config = replace(model_config, image_size=64)
        config = replace(config, epochs=1, tau_min_labels=5)
    model_over = {"image_size": args.image_size, "crop": args.crop, "colour_bins": args.colour_bins}
    model_config = replace(model_config, **{key: v for key, v in model_over.items() if v is not None})
    train_over = {
        "epochs": args.epochs,
        "val_fraction": args.val_fraction,
        "logit_adjustment": args.tau,
        "tau_min_labels": args.tau_min_labels,
        "progressive_size": args.progressive_size,
        "progressive_fraction": args.progressive_fraction,
        "batch_size": args.batch_size,
        "cutmix": args.cutmix,
        "weight_decay": args.weight_decay,
        "lr": args.lr,
    }
    if args.sampler_power is not None:
        train_over |= {"sampler_power": args.sampler_power, "balanced_sampling": args.sampler_power > 0}
    config = replace(config, **{key: v for key, v in train_over.items() if v is not None})
    if config.progressive_size >= model_config.image_size:  # early epochs never larger than the rest
        config = replace(config, progressive_size=0)
    args.out = work_dir(args.out, "cv-")
    settings = {
        "data": str(args.data.resolve()),
        "folds": k,
        "seed": args.seed,
        "flip": args.flip,
        "smoke": args.smoke,
        "model": model_config.to_dict(),
        "train": config.to_dict(),
        "backbone_source": plan.backbone_source,
    }
    settings_path = args.out / "settings.json"
    if settings_path.is_file() and json.loads(settings_path.read_text()) != json.loads(json.dumps(settings)):
        parser.error(f"{args.out} holds folds of other settings ({settings_path}); pass another --out")
    settings_path.write_text(json.dumps(settings, indent=1) + "\n")
    folds = folds_of(examples, k, args.seed)
    records = []
    for i in range(k):
        train = [e for j, f in enumerate(folds) if j != i for e in f]
        records.append(
            run_fold(i, train, folds[i], taxonomy, args.out, model_config, config, device, args.flip, plan.trunk)
        )
    choices = [IN_RUN, *map(str, TAUS), *(f"{NEIGHBOURS}{a}" for a in ALPHAS), SERVED]
    choices = [c for c in choices if all(c in r["predictions"] for r in records)]  # folds of older runs
    pooled, per_attribute, scored = pooled_scores(folds, [r["predictions"] for r in records], choices, taxonomy)
    constants = [c for c in choices if c not in (IN_RUN, SERVED) and not c.startswith(NEIGHBOURS)]
    best = max(constants, key=lambda t: (pooled[t], -abs(float(t))))
    summary = {
        "data": str(args.data),
        "device": device_name(device),
        "backbone_source": plan.backbone_source,
        "recipe": config.recipe,
        "recipe_of": recipe_of,
        "precision": config.precision,
        "folds": k,
        "photos_scored": scored,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "val_fraction": config.val_fraction,
        "image_size": model_config.image_size,
        "crop": model_config.crop,
        "colour_bins": model_config.colour_bins,
        "flip": args.flip,
        "progressive": [config.progressive_size, config.progressive_fraction] if config.progressive_size else None,
        "minutes_per_fold": [r["minutes"] for r in records],
        "best_epoch_per_fold": [r["best_epoch"] for r in records],
        "out_of_fold_score": pooled,
        "best_constant_tau": float(best),
        "per_fold_score": {c: [r["score_by_choice"][c] for r in records] for c in choices},
        "per_attribute": per_attribute,
        "chosen_taus_per_fold": [r["chosen_taus"] for r in records],
        "chosen_vote_per_fold": [r.get("chosen_vote") for r in records],
    }
    emit(summary, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
