"""Catalogue-scale scoring, end to end: products per second of ``python app.py score --missing``.

    python bench/score_throughput.py                     # 2,000 products, the time for 70,213 extrapolated
    python bench/score_throughput.py --products 70213    # the full catalogue, measured
    python bench/score_throughput.py --int8              # the same model served as its int8 twin
    python bench/score_throughput.py --gpu-default [--int8]   # SE-ResNet50 224 px on the CPU
    python bench/score_throughput.py --smoke             # 64 products, for CI

A SQLite database in a temporary folder (or ``--data-dir``) holds ``--products`` products whose
photos repeat myntra-dev's distinct ones (224x224 JPEGs; product i has photo i mod their number, the repeats
belong to other sellers, as the same photo of one seller is one product). The active version is
the CPU default model (SE-ResNet18 at 112 px, random-init trunk: speed does not depend on the
weights), loaded as the app serves it. The clock covers what ``score`` does: reading which
products are left, decoding their photos in the thread pool, the model, and the short write
transaction of each batch (``webapp.scoring.score_catalogue``); not the set-up nor the start of
the process. ``--int8``: the active version is that model's int8 twin (``python -m trainer
quantize``, calibrated on 64 myntra-dev photos), registered as an admin would register it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MYNTRA, add_common_args, device_name, emit, ready
from sqlalchemy import insert

import db
from taxonomy import decode_image, file_sha256, taxonomy_from_competition
from trainer import Preprocess, build_model, default_model_config, save_checkpoint
from trainer.quantize import calibration_photos, quantize_checkpoint
from webapp.scoring import BATCH, DECODE_THREADS, score_catalogue
from webapp.serving import ModelManager

CATALOGUE = 70_213  # the ids of meesho-labels: the competition's catalogue
VERSION = "bench"


def build_catalogue(data_dir: Path, products: int, recipe: str, int8: bool) -> tuple[ModelManager, db.MediaStore]:
    """The database, the photos and the active version, as ``python app.py`` keeps them. ``recipe``:
    whose default model is served, "cpu" (SE-ResNet18 112 px) or "cuda" (SE-ResNet50 224 px), always
    on this machine's CPU; ``int8``: its int8 twin."""
    taxonomy = taxonomy_from_competition(MYNTRA / "category_attributes.parquet", MYNTRA / "train.csv")
    engine = db.make_engine(db.default_sqlite_url(data_dir))
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    media = db.MediaStore(data_dir / "media")
    photos, seen = [], set()
    rows = [line.split(",", 2) for line in (MYNTRA / "train.csv").read_text("utf-8").splitlines()[1:]]
    rows += [line.split(",", 2) for line in (MYNTRA / "val.csv").read_text("utf-8").splitlines()[1:]]
    for pid, category, _ in rows:
        path = MYNTRA / "images" / f"{pid}.jpg"
        if path.is_file():
            data = path.read_bytes()
            _, info = decode_image(data)
            if info.sha256 not in seen:  # a few ids share one photo: one product per (seller, photo)
                seen.add(info.sha256)
                media.put(data, info)
                photos.append((taxonomy.category(category).name, info))
    owners = -(-products // len(photos))
    with sessions.begin() as session:
        db.store_taxonomy(session, taxonomy)
        users = [db.create_user(session, f"seller{i}", "a-long-password") for i in range(owners)]
        session.execute(
            insert(db.Product),
            [
                {
                    "owner_id": users[i // len(photos)].id,
                    "category": photos[i % len(photos)][0],
                    "image_sha256": photos[i % len(photos)][1].sha256,
                    "image_ext": photos[i % len(photos)][1].suffix,
                    "source": "upload",
                }
                for i in range(products)
            ],
        )
    config = default_model_config(recipe, weights="none")
    torch.manual_seed(0)
    model, source = build_model(config, taxonomy)
    checkpoint = data_dir / "models" / VERSION / "model.pt"
    save_checkpoint(
        checkpoint,
        model,
        preprocess=Preprocess(config.image_size),
        train_config={},
        metrics={},
        backbone_source=source,
        version_id=VERSION,
    )
    version = VERSION
    if int8:
        twin = data_dir / "models" / f"{VERSION}-int8" / "model.pt"
        photos = calibration_photos(MYNTRA / "images", limit=64)
        version = quantize_checkpoint(checkpoint, twin, photos=photos).checkpoint.version_id
        checkpoint = twin
    with sessions.begin() as session:
        db.register_version(
            session,
            version_id=version,
            path=str(checkpoint.relative_to(data_dir / "models")),
            checksum=file_sha256(checkpoint),
            taxonomy_fingerprint=taxonomy.fingerprint,
            kind="full",
        )
    manager = ModelManager(
        taxonomy=taxonomy, sessions=sessions, media=media, models_dir=data_dir / "models", cache_dir=data_dir / "cache"
    )
    manager.activate(version)
    return manager, media


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--decode-threads", type=int, default=DECODE_THREADS)
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the database here (default: a temporary one)")
    parser.add_argument("--int8", action="store_true", help="serve the model's int8 twin (x86 backend)")
    parser.add_argument(
        "--gpu-default", action="store_true", help="serve the GPU default (SE-ResNet50 224 px), on this CPU"
    )
    add_common_args(parser, "64 products")
    args = parser.parse_args(argv)
    if not ready(args, MYNTRA):
        return 2
    products = 64 if args.smoke else args.products
    with tempfile.TemporaryDirectory(prefix="score-bench-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        manager, media = build_catalogue(data_dir, products, "cuda" if args.gpu_default else "cpu", args.int8)
        setup = time.perf_counter() - t0
        loaded = manager.active
        assert loaded is not None
        report = score_catalogue(
            manager.sessions,
            media,
            loaded.version_id,
            loaded.predictor,
            missing_only=True,
            batch_size=args.batch_size,
            decode_threads=args.decode_threads,
        )
        manager.sessions.kw["bind"].dispose()
    rate = report.scored / report.seconds
    config = loaded.predictor.checkpoint.model_config
    numbers = {
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "threads": args.threads,
        "decode_threads": args.decode_threads,
        "batch_size": args.batch_size,
        "model": f"se-{config.arch} {config.image_size}px, "
        + ("int8 (x86 backend)" if args.int8 else "fast path")
        + " (as served)",
        "products": products,
        "scored": report.scored,
        "unreadable": report.unreadable,
        "set_up_seconds": round(setup, 1),
        "seconds": round(report.seconds, 2),
        "products_per_s": round(rate, 1),
        f"{CATALOGUE}_products_minutes": round(CATALOGUE / rate / 60, 1),
        f"{CATALOGUE}_products_minutes_is": "measured" if products >= CATALOGUE else f"extrapolated from {products}",
    }
    emit(numbers, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
