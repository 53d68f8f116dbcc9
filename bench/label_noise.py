"""How well the "Labels that look wrong" ranking finds planted label noise on myntra-dev.

    python bench/label_noise.py                  # 5% of train.csv's labels flipped, top 10% checked
    python bench/label_noise.py --smoke          # a tiny run for CI (seconds)

1. 5% of train.csv's labelled cells (seeded) are flipped to another value of the same attribute.
2. A trunk is trained from scratch on the flipped labels (the CPU default's SE-ResNet18 with a
   shorter schedule: ``--epochs`` at ``--image-size`` px, no progressive resizing, last epoch kept),
   as the app's trunk would have been trained on the labels it holds.
3. Its embeddings of train.csv and val.csv are computed once; the ranking is ``trainer.noise``
   (5-fold heads on the embeddings, confident learning), as the Admin tab runs it.
4. Of the ranking's top 10%: how many of the flips it holds (recall) and how many of its
   entries are flips (precision); the same for the confident joint's issues alone and for
   ranking by normalised self-confidence alone.
5. val.csv's metric of heads-only models on the same embeddings, trained with the flipped labels,
   with the top 10%'s labels restored to the truth ("fixed"), and with the clean labels; each is
   the mean of ``--seeds`` heads trainings.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
from _common import MYNTRA, add_common_args, device_name, emit, read_split, ready, work_dir

from taxonomy import NOT_APPLICABLE, LabeledExample, Taxonomy
from trainer import (
    default_model_config,
    default_train_config,
    embed_examples,
    load_checkpoint,
    train_full,
)
from trainer.embeddings import Embedded
from trainer.heads import HeadBank
from trainer.labels import encode_labels
from trainer.noise import out_of_fold, rank_labels
from trainer.retrain import heads_report, train_heads
from trainer.runtime import seed_everything

Cell = tuple[str, str]  # (example id, attribute)


def flip_labels(
    examples: list[LabeledExample], taxonomy: Taxonomy, share: float, seed: int
) -> tuple[list[LabeledExample], set[Cell]]:
    """A share of the labelled cells set to another value of their attribute, chosen at random."""
    rng = random.Random(seed)
    cells = [
        (i, name) for i, ex in enumerate(examples) for name, v in ex.labels.items() if v not in (None, NOT_APPLICABLE)
    ]
    chosen = rng.sample(cells, round(share * len(cells)))
    out = [LabeledExample(e.id, e.category, dict(e.labels), e.image_path) for e in examples]
    for i, name in chosen:
        values = taxonomy.category(out[i].category).attribute(name).values
        out[i].labels[name] = rng.choice([v for v in values if v != out[i].labels[name]])
    return out, {(examples[i].id, name) for i, name in chosen}


def heads_score(
    vectors: torch.Tensor,
    train: list[LabeledExample],
    val: Embedded,
    val_examples: list[LabeledExample],
    taxonomy: Taxonomy,
    model_config,
    config,
    seeds: int,
) -> float:
    """val.csv's metric of heads trained on ``train``'s labels, the mean over ``seeds`` runs."""
    scores = []
    for seed in range(seeds):
        generator = seed_everything(seed)
        heads = HeadBank(taxonomy, in_features=vectors.shape[1], config=model_config)
        heads.standardize_from(vectors)
        labels = encode_labels(train, taxonomy)
        device = torch.device("cpu")
        train_heads(heads, vectors, labels, taxonomy=taxonomy, config=config, device=device, generator=generator)
        scores.append(heads_report(heads, val, val_examples, taxonomy, device).score)
    return round(sum(scores) / len(scores), 4)


def catch(ranked: list, flips: set[Cell], top: int) -> dict:
    hits = sum((s.example_id, s.attribute) in flips for s in ranked[:top])
    return {"top": top, "caught": hits, "recall": round(hits / len(flips), 4), "precision": round(hits / top, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MYNTRA)
    parser.add_argument("--share", type=float, default=0.05, help="share of the labelled cells flipped")
    parser.add_argument("--top", type=float, default=0.10, help="share of the ranking that is checked and fixed")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=6, help="trunk epochs")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3, help="heads trainings averaged per val.csv metric")
    parser.add_argument("--seed", type=int, default=0)
    add_common_args(parser, "120 photos, a 1-epoch 48-px trunk, 2 folds, 1 seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not ready(args, args.data):
        return 2
    t0 = time.perf_counter()
    taxonomy, train, val = read_split(args.data)
    model_config = replace(default_model_config("cpu", weights="none"), image_size=args.image_size)
    config = replace(default_train_config("cpu"), epochs=args.epochs, progressive_size=0, val_fraction=0.0)
    folds, seeds = args.folds, args.seeds
    if args.smoke:
        train, val = train[:120], val[:40]
        model_config = replace(model_config, image_size=48)
        config = replace(config, epochs=1, heads_epochs=5, heads_min_steps=20)
        folds, seeds = 2, 1
    noisy, flips = flip_labels(train, taxonomy, args.share, args.seed)

    out = work_dir(None, "label-noise-")
    t_trunk = time.perf_counter()
    result = train_full(
        noisy,
        taxonomy=taxonomy,
        out_dir=out,
        config=config,
        model_config=model_config,
        device="cpu",
        seed=args.seed,
        progress=lambda f, m: logging.info("trunk %3.0f%% %s", 100 * f, m),
    )
    trunk_minutes = (time.perf_counter() - t_trunk) / 60
    ckpt = load_checkpoint(result.checkpoint_path)
    backbone = ckpt.build_model("cpu").backbone
    cache = out / "cache"

    def embed(examples: list[LabeledExample]) -> Embedded:
        return embed_examples(
            backbone,
            examples,
            preprocess=ckpt.preprocess,
            cache_dir=cache,
            fingerprint=ckpt.backbone_fingerprint,
            device=torch.device("cpu"),
        )

    train_set, val_set = embed(noisy), embed(val)
    by_id = {e.id: e for e in train}
    noisy_kept = train_set.examples  # the same order as train_set.vectors
    t_rank = time.perf_counter()
    labels = encode_labels(noisy_kept, taxonomy)
    oof, fold_of = out_of_fold(
        train_set.vectors, labels, taxonomy, model_config=model_config, config=config, folds=folds, seed=args.seed
    )
    ranked = rank_labels(oof, fold_of, labels, noisy_kept, taxonomy)
    rank_seconds = time.perf_counter() - t_rank
    by_confidence = rank_labels(oof, fold_of, labels, noisy_kept, taxonomy, order="self_confidence")
    top = math.ceil(args.top * len(ranked))
    flagged = {(s.example_id, s.attribute) for s in ranked[:top]}
    fixed = [
        LabeledExample(
            e.id,
            e.category,
            {k: by_id[e.id].labels[k] if (e.id, k) in flagged else v for k, v in e.labels.items()},
            e.image_path,
        )
        for e in noisy_kept
    ]
    clean = [by_id[e.id] for e in noisy_kept]
    issues = sum(s.issue for s in ranked)

    def val_metric(examples: list[LabeledExample]) -> float:
        return heads_score(train_set.vectors, examples, val_set, val, taxonomy, model_config, config, seeds)

    numbers = {
        "machine": device_name(torch.device("cpu")),
        "trunk": {
            "model": f"{model_config.arch} {model_config.image_size} px, weights {model_config.weights}",
            "epochs": config.epochs,
            "trained_on": "flipped labels",
            "minutes": round(trunk_minutes, 2),
        },
        "train_products": len(noisy_kept),
        "labels_ranked": len(ranked),
        "flipped": len(flips),
        "folds": folds,
        "ranking_seconds": round(rank_seconds, 1),
        "top_10pct": catch(ranked, flips, top),
        "issues_only": catch(ranked, flips, issues) if issues else None,
        "self_confidence_top_10pct": catch(by_confidence, flips, top),
        "val_metric_heads": {
            "flipped": val_metric(noisy_kept),
            "flagged_fixed": val_metric(fixed),
            "clean": val_metric(clean),
            "seeds": seeds,
        },
        "wall_minutes": round((time.perf_counter() - t0) / 60, 2),
    }
    emit(numbers, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
