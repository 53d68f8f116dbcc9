"""``python -m trainer train|eval|predict|embed`` on competition-layout folders; ``pretrain`` on a catalogue."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from taxonomy import (
    ImageError,
    LabeledExample,
    Taxonomy,
    TaxonomyError,
    default_taxonomy,
    find_image,
    load_taxonomy,
    taxonomy_from_competition,
    write_submission,
)

from . import handoff
from .catalogue import DEFAULT_MAX_VALUES, DEFAULT_MIN_COUNT
from .checkpoint import CheckpointError, load_checkpoint
from .config import (
    CROPS,
    ModelConfig,
    TrainConfig,
    default_model_config,
    default_train_config,
    finetune_config,
    recipe_for,
)
from .data import DataError, read_dataset
from .distributed import DistContext, distributed_run
from .embeddings import embed_examples
from .pipeline import train_full
from .predictor import Predictor
from .pretrain import PretrainConfig, pretrain_catalogue
from .quantize import DEFAULT_CALIBRATION_PHOTOS, calibration_photos, quantize_checkpoint
from .recipe import plan_run, survey_photos
from .retrain import evaluate_checkpoint, retrain_heads
from .runtime import resolve_device
from .train import TrainResult


class CommandError(Exception):
    """A mistake in the command's input; printed as one line and exit status 2."""


def _data_dir(path: Path) -> Path:
    if not path.is_dir():
        raise CommandError(f"data folder not found: {path}")
    return path


def _taxonomy_for(data: Path, explicit: Path | None) -> Taxonomy:
    if explicit is not None:
        return load_taxonomy(explicit)
    for name in ("category_attributes.parquet", "category_attributes.json"):
        if (data / name).is_file() and (data / "train.csv").is_file():
            return taxonomy_from_competition(data / name, data / "train.csv")
    return default_taxonomy()


def _report_skipped(skipped: tuple | list, what: str = "photos") -> None:
    if skipped:
        print(f"skipped {len(skipped)} unreadable or missing {what}; first: {skipped[0][0]}: {skipped[0][1]}")


def _config_file(path: Path) -> dict[str, dict[str, Any]]:
    """The "train" and "model" objects of a JSON config file (the layout of a run's config.json,
    whose other keys are ignored), their fields checked against ``TrainConfig``/``ModelConfig``."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read the config file {path}: {exc}") from None
    if not isinstance(raw, dict) or not {"train", "model"} & set(raw):
        raise CommandError(f'{path}: a config file is a JSON object with a "train" and/or a "model" object')
    out = {}
    for key, cls in (("train", TrainConfig), ("model", ModelConfig)):
        given = raw.get(key, {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known) if isinstance(given, dict) else ["(not an object)"]
        if unknown:
            raise CommandError(f"{path}: unknown {key} settings {unknown}; known: {sorted(known)}")
        _overridden(cls(), given, path)  # a bad value is named before any trunk is loaded
        out[key] = given
    return out


def _overridden(config: Any, given: dict[str, Any], path: Path) -> Any:
    try:
        return type(config).from_dict({**config.to_dict(), **given})
    except (TypeError, ValueError) as exc:
        raise CommandError(f"{path}: {exc}") from None


def cmd_train(args: argparse.Namespace) -> int:
    with distributed_run(resolve_device(args.device)) as (dist, device):
        if dist.enabled and args.mode == "heads":
            raise CommandError("--mode heads trains on one process; run it without torchrun")
        result = _train(args, device, dist)
        if args.result_file is not None and dist.is_main:
            handoff.write_result(result, args.result_file)
    score = result.metrics.get("score")
    if dist.enabled:
        print(f"rank {dist.rank} of {dist.world_size}: last epoch's parameters sha256 {result.last_state_sha256}")
    if dist.is_main:
        _report_skipped(result.skipped)
        print(f"checkpoint {result.checkpoint_path} (version {result.version_id}, sha256 {result.sha256[:12]})")
        print(f"held-out score {score:.4f}" if score is not None else "no held-out examples to score")
    return 0


def _train(args: argparse.Namespace, device: torch.device, dist: DistContext) -> TrainResult:
    taxonomy, examples = _examples(args, dist)
    given = _config_file(args.config) if args.config else {"train": {}, "model": {}}
    if args.init is not None:
        if args.mode == "heads":
            raise CommandError("--init fine-tunes a full run; --mode heads takes --base")
        # The schedule the app fine-tunes with (``config.finetune_config``), before any override.
        base_ckpt = load_checkpoint(args.init)
        recipe = recipe_for(base_ckpt.backbone_source)
        config = finetune_config(default_train_config(device.type, recipe=recipe))
        model_config, trunk = base_ckpt.model_config, None
    elif args.mode == "heads" and args.base is not None:
        base = load_checkpoint(args.base)
        config: TrainConfig = default_train_config(device.type, recipe=recipe_for(base.backbone_source))
        model_config, trunk = base.model_config, None
    else:
        # The trunk is loaded first: its source (ImageNet, a file, or random when ImageNet cannot
        # be downloaded) decides the recipe's defaults, which the config file and the options
        # below then override.
        weights = args.weights or given["model"].get("weights")
        # The scratch recipe's size follows the photos' shape unless a size or crop is asked for.
        asked = (given["model"].get("image_size"), given["model"].get("crop"), given["train"].get("progressive_size"))
        sized = args.image_size or args.crop or any(v is not None for v in asked)
        photos = None if sized else survey_photos(e.image_path for e in examples)
        plan = plan_run(device.type, weights=weights, arch=args.arch or given["model"].get("arch"), photos=photos)
        config, model_config, trunk = plan.config, plan.model_config, plan.trunk
        if dist.is_main:
            print(f"trunk weights: {plan.backbone_source}; recipe: {plan.recipe}")
            if plan.photo_note:
                print(f"photo size: {plan.photo_note}")
    if args.config:
        config, model_config = (
            _overridden(config, given["train"], args.config),
            _overridden(model_config, given["model"], args.config),
        )
    config = replace(config, seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    if args.batch_size:
        config = replace(config, batch_size=args.batch_size)
    try:
        dist.rank_batch(config.batch_size)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.epochs and args.mode == "heads":
        config = replace(config, heads_epochs=args.epochs)
    if args.image_size:
        model_config = replace(model_config, image_size=args.image_size)
    if config.progressive_size >= model_config.image_size:  # a size asked below the early epochs' own
        config = replace(config, progressive_size=0)
    if args.crop:
        model_config = replace(model_config, crop=args.crop)
    if args.colour_bins is not None and args.mode == "full":
        model_config = replace(model_config, colour_bins=args.colour_bins)
    progress = (lambda f, m: logging.info("%3.0f%% %s", 100 * f, m)) if args.verbose else None
    if args.progress_file is not None and dist.is_main:
        progress = handoff.progress_writer(args.progress_file)
    if args.mode == "heads":
        return retrain_heads(
            examples,
            taxonomy=taxonomy,
            base_checkpoint=args.base,
            out_dir=args.out,
            cache_dir=args.cache or args.out / "embeddings",
            config=config,
            seed=args.seed,
            device=device,
            model_config=model_config,
            progress=progress,
        )
    return train_full(
        examples,
        taxonomy=taxonomy,
        out_dir=args.out,
        config=config,
        model_config=model_config,
        device=device,
        seed=args.seed,
        resume=args.resume,
        progress=progress,
        trunk=trunk,
        dist=dist,
        init_checkpoint=args.init,
    )


def _examples(args: argparse.Namespace, dist: DistContext) -> tuple[Taxonomy, list[LabeledExample]]:
    """The taxonomy and the labelled examples of ``--data`` (a competition folder) or of
    ``--examples`` (a launcher's file, ``trainer.handoff``, which needs ``--taxonomy``)."""
    if args.examples is not None:
        if args.taxonomy is None:
            raise CommandError("--examples needs --taxonomy (the label order the examples were written for)")
        try:
            return load_taxonomy(args.taxonomy), handoff.read_examples(args.examples)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    data = _data_dir(args.data)
    taxonomy = _taxonomy_for(data, args.taxonomy)
    examples, errors = read_dataset(data, taxonomy)
    if errors and dist.is_main:
        print(f"skipped {len(errors)} bad rows of train.csv; first: line {errors[0].row}: {errors[0].reason}")
    return taxonomy, examples


def _checked_examples(data: Path, csv_name: str, taxonomy: Taxonomy) -> list[LabeledExample]:
    examples, errors = read_dataset(data, taxonomy, csv_name=csv_name)
    unknown = [e for e in errors if "unknown category" in e.reason]
    if unknown:
        raise CommandError(
            f"line {unknown[0].row}: {unknown[0].reason} (the checkpoint does not know it; "
            f"{len(unknown)} rows like this)"
        )
    if errors:
        print(f"skipped {len(errors)} bad rows; first: line {errors[0].row}: {errors[0].reason}")
    return examples


def cmd_eval(args: argparse.Namespace) -> int:
    data = _data_dir(args.data)
    ckpt = load_checkpoint(args.checkpoint)
    examples = _checked_examples(data, args.csv, ckpt.taxonomy)
    if not examples:
        raise CommandError(f"no rows to evaluate in {data / args.csv}")
    missing = sum(e.image_path is None for e in examples)
    report = evaluate_checkpoint(args.checkpoint, examples, cache_dir=args.cache, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(report.as_dict(), indent=1) + "\n", "utf-8")
    with open(args.out / "per_attribute.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["category", "attribute", "support", "micro_f1", "macro_f1", "score"])
        for a in report.per_attribute:
            writer.writerow(
                [a.category, a.attribute, a.support, f"{a.micro_f1:.4f}", f"{a.macro_f1:.4f}", f"{a.score:.4f}"]
            )
    if missing:
        print(f"{missing} rows have no photo; they count as wrong")
    print(f"score {report.score:.4f} on {len(examples)} rows; wrote {args.out / 'metrics.json'} and per_attribute.csv")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    data = _data_dir(args.data)
    predictor = Predictor.load(args.checkpoint, device=args.device)
    taxonomy = predictor.taxonomy
    rows = _id_category_rows(data / args.csv)
    for line, _ident, category in rows:
        try:
            taxonomy.category(category)
        except TaxonomyError as exc:
            raise CommandError(f"{args.csv} line {line}: {exc} (the checkpoint does not know it)") from None
    out, skipped = [], []
    for _, ident, category in rows:
        path = find_image(data / "images", ident) if (data / "images").is_dir() else None
        try:
            if path is None:
                raise ImageError("no image file")
            pred = predictor.predict([path], [category], top_k=1, ids=[ident])[0]
            out.append((ident, pred.category, pred.labels))
        except ImageError as exc:
            skipped.append((ident, str(exc)))
            out.append((ident, taxonomy.category(category).name, {}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = write_submission(out, args.out, taxonomy)
    _report_skipped(skipped)
    print(f"wrote {count} rows to {args.out}")
    return 0


def _id_category_rows(path: Path) -> list[tuple[int, str, str]]:
    if not path.is_file():
        raise CommandError(f"{path} not found")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"id", "Category"} <= set(reader.fieldnames):
            raise CommandError(f"{path.name} needs the columns id and Category; found {reader.fieldnames}")
        return [(i + 2, r["id"].strip(), r["Category"]) for i, r in enumerate(reader) if r.get("id")]


def cmd_embed(args: argparse.Namespace) -> int:
    data = _data_dir(args.data)
    ckpt = load_checkpoint(args.checkpoint)
    examples = _checked_examples(data, args.csv, ckpt.taxonomy)
    device = resolve_device(args.device)
    model = ckpt.build_model(device)
    done = embed_examples(
        model.backbone,
        examples,
        preprocess=ckpt.preprocess,
        cache_dir=args.cache,
        fingerprint=ckpt.backbone_fingerprint,
        device=device,
    )
    _report_skipped(done.skipped)
    print(
        f"{len(done.examples)} embeddings in {args.cache} ({done.computed} computed, "
        f"{len(done.examples) - done.computed} already cached)"
    )
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    base = default_model_config(device.type, weights="none")  # the trunk a run on this device trains
    config = PretrainConfig(
        arch=args.arch or base.arch,
        image_size=args.image_size or base.image_size,
        crop=args.crop or base.crop,
        epochs=args.epochs,
        batch_size=args.batch_size,
        self_supervised=args.self_supervised,
        seed=args.seed,
    )
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    result = pretrain_catalogue(
        args.metadata,
        args.images,
        out=args.out,
        config=config,
        columns=columns,
        id_column=args.id_column,
        min_count=args.min_count,
        max_values=args.max_values,
        device=device,
        resume=args.resume,
        max_photos=args.max_photos,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    _report_skipped(result.skipped)
    print(f"trunk weights {result.weights_path} ({result.source}, {result.photos} photos)")
    print(f"use it: python -m trainer train --data DIR --out DIR --weights {result.weights_path}")
    return 0


def _pretrain_parser(sub: Any) -> None:
    p = sub.add_parser("pretrain", help="learn the trunk from a folder of photos and a CSV of their metadata")
    p.add_argument("--images", type=Path, required=True, help="folder of photos named <id>.jpg")
    p.add_argument("--metadata", type=Path, required=True, help="CSV with an id column and metadata columns")
    p.add_argument("--columns", default=None, help="a,b,c: the columns to learn (default: the categorical ones)")
    p.add_argument("--out", type=Path, required=True, help="the weights file to write (and OUT.state.pt beside it)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--image-size", type=int, default=None, help="default: the device's (112 px CPU, 224 px GPU)")
    p.add_argument("--arch", choices=["resnet18", "resnet34", "resnet50"], default=None)
    p.add_argument("--crop", choices=CROPS, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--self-supervised", action="store_true", help="also learn by predicting each photo's rotation")
    p.add_argument("--min-count", type=int, default=DEFAULT_MIN_COUNT, help="rarer values become 'other'")
    p.add_argument("--max-values", type=int, default=DEFAULT_MAX_VALUES, help="values beyond the most common: 'other'")
    p.add_argument("--id-column", default="id")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue after the last finished epoch of OUT.state.pt")
    p.add_argument(
        "--max-photos", type=int, default=None, help="learn from a random sample of this many photos (a quick try)"
    )
    p.set_defaults(func=cmd_pretrain)


def cmd_quantize(args: argparse.Namespace) -> int:
    photos = calibration_photos(args.calibration_dir, limit=args.calibration_photos, seed=args.seed)
    done = quantize_checkpoint(args.checkpoint, args.out, photos=photos)
    _report_skipped(done.skipped)
    print(
        f"int8 checkpoint {done.path} (version {done.checkpoint.version_id}, from {done.checkpoint.parent_version}), "
        f"calibrated on {done.calibration_photos} photos"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train on DIR/train.csv and DIR/images")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a competition-layout folder (train.csv, images/)")
    source.add_argument(
        "--examples", type=Path, help="a JSON list of labelled examples with photo paths (the app's worker writes one)"
    )
    train.add_argument("--out", type=Path, required=True, help="output folder (model.pt, config.json, train.log)")
    train.add_argument("--mode", choices=["full", "heads"], default="full")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--weights", default=None, help="imagenet (the default), none or a local ResNet weights file")
    train.add_argument("--arch", choices=["resnet18", "resnet34", "resnet50"], default=None)
    train.add_argument("--image-size", type=int, default=None, help="default: the recipe's (224 px pretrained)")
    train.add_argument("--crop", choices=CROPS, default=None, help="how a photo becomes square (default: pad)")
    train.add_argument(
        "--colour-bins",
        type=int,
        default=None,
        help="bins per RGB channel of a colour histogram beside the trunk's features (default 0: none)",
    )
    train.add_argument("--base", type=Path, default=None, help="heads mode: checkpoint whose backbone is kept")
    train.add_argument("--cache", type=Path, default=None, help="heads mode: embedding cache folder")
    train.add_argument("--taxonomy", type=Path, default=None, help="taxonomy JSON (default: from the data)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--batch-size", type=int, default=None, help="the global batch; under torchrun each process takes 1/N of it"
    )
    train.add_argument(
        "--config",
        type=Path,
        default=None,
        help='JSON overriding defaults: {"train": {TrainConfig fields}, "model": {ModelConfig fields}} '
        "(a run's config.json works); the flags above override it",
    )
    train.add_argument("--resume", action="store_true", help="full mode: continue OUT/last.pt")
    train.add_argument("--init", type=Path, default=None, help="full mode: fine-tune this checkpoint")
    train.add_argument("--progress-file", type=Path, default=None, help="append progress as JSON lines (rank 0)")
    train.add_argument("--result-file", type=Path, default=None, help="write the run's result as JSON (rank 0)")
    train.set_defaults(func=cmd_train)

    quantize = sub.add_parser("quantize", help="an int8 checkpoint for serving on a CPU, calibrated on photos")
    quantize.add_argument("checkpoint", type=Path, help="the fp32 checkpoint")
    quantize.add_argument("--out", type=Path, required=True, help="the int8 checkpoint to write")
    quantize.add_argument(
        "--calibration-dir", type=Path, required=True, help="a folder of training photos (e.g. DATA/images)"
    )
    quantize.add_argument("--calibration-photos", type=int, default=DEFAULT_CALIBRATION_PHOTOS)
    quantize.add_argument("--seed", type=int, default=0, help="which photos of the folder calibrate")
    quantize.set_defaults(func=cmd_quantize)

    for name, func, text in (
        ("eval", cmd_eval, "the metric with a per-attribute table"),
        ("predict", cmd_predict, "a submission CSV"),
        ("embed", cmd_embed, "fill the embedding cache"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--checkpoint", type=Path, required=True)
        p.add_argument("--data", type=Path, required=True)
        p.add_argument("--csv", default="test.csv" if name == "predict" else "train.csv")
        if name == "eval":
            p.add_argument("--out", type=Path, required=True, help="folder for metrics.json and per_attribute.csv")
            p.add_argument("--cache", type=Path, default=None)
        elif name == "predict":
            p.add_argument("--out", type=Path, required=True, help="submission CSV to write")
        else:
            p.add_argument("--cache", type=Path, required=True)
        p.set_defaults(func=func)
    _pretrain_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (CommandError, DataError, CheckpointError, TaxonomyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
