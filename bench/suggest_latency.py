"""Suggestion latency: one photo through the app's whole path, against a naive ResNet50 forward.

    python bench/suggest_latency.py            # 40 myntra-dev photos, agreement over all of val.csv
    python bench/suggest_latency.py --smoke    # 2 photos, 4 val photos, for CI

The path is the app's upload path (``webapp.services.upload_one``) minus the HTTP layer: read the
file, decode it upright (``taxonomy.decode_image``), preprocess, backbone, heads
(``trainer.Predictor.predict``), then one transaction that stores the product and writes its
prediction rows (``db.add_uploaded_product`` + ``db.save_prediction``) into a real SQLite file.
It runs for three models, each with the fast path (the default) and the plain fp32 eager path:
the project's CPU default (SE-ResNet18, 112 px), the same at 144 px (what the CPU default trains
at for a shop of 3:4 portrait photos such as flixstock-dev's, ``trainer.recipe.fit_to_photos``)
and the GPU default architecture (SE-ResNet50, 224 px). The reference is torchvision's
``resnet50`` in fp32 eager mode, batch 1, 224 px, forward only (under ``no_grad``). Every figure
is measured interleaved, photo by photo, in one process.

Trunks are randomly initialised (nothing is downloaded) and the heads' feature standardisation
is set from embeddings of train.csv photos, as training does, so the heads' outputs are not flat.
Top-1 agreement of the fast path with fp32 eager is counted over every (photo, attribute)
suggestion and the category of val.csv's photos.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MYNTRA, add_common_args, device_name, emit, percentile, pick_device, ready, sync, work_dir

import db
from db.users import hash_password
from taxonomy import decode_image, read_image_bytes, taxonomy_from_competition
from trainer import (
    Predictor,
    Preprocess,
    build_model,
    default_model_config,
    load_images,
    read_dataset,
    save_checkpoint,
    to_model_input,
)

# label: (the device whose default architecture it is, the photo size; None: that default's)
MODELS: dict[str, tuple[str, int | None]] = {
    "se-resnet18-112 (CPU default)": ("cpu", None),
    "se-resnet18-144 (CPU default, 3:4 portrait photos)": ("cpu", 144),
    "se-resnet50-224 (GPU default)": ("cuda", None),
}


def make_checkpoint(path: Path, kind: str, size: int | None, taxonomy, calibration: list, device: torch.device) -> None:
    config = default_model_config(kind, weights="none")
    if size is not None:
        config = replace(config, image_size=size)
    torch.manual_seed(0)
    model, _ = build_model(config, taxonomy)
    preprocess = Preprocess(config.image_size)
    images = load_images(calibration, preprocess).images
    with torch.inference_mode():
        model.eval().to(device)
        vectors = model.backbone(to_model_input(images.to(device), preprocess)).cpu()  # (n, C)
    model.cpu().heads.standardize_from(vectors)
    save_checkpoint(path, model, preprocess=preprocess, train_config={}, metrics={})


class Store:
    """A real SQLite database with one owner per measured path (so every upload is a new product)."""

    def __init__(self, folder: Path, owners: list[str]) -> None:
        self.engine = db.make_engine(db.default_sqlite_url(folder))
        db.upgrade(self.engine)
        self.factory = db.make_session_factory(self.engine)
        self.media = db.MediaStore(folder / "media")
        with self.factory.begin() as session:
            for name in owners:
                session.add(db.User(name=name, password_hash=hash_password("unused-password"), role="seller"))

    def save(self, owner: str, taxonomy, data: bytes, version: str, prediction) -> None:
        with self.factory.begin() as session:
            user = db.get_user_by_name(session, owner)
            product, _ = db.add_uploaded_product(session, taxonomy, self.media, user, data, prediction.category)
            db.save_prediction(session, product, version, prediction)


def suggest_once(predictor: Predictor, store: Store, owner: str, taxonomy, path: Path) -> float:
    """Seconds for one photo through the whole path."""
    t0 = time.perf_counter()
    data = read_image_bytes(path)
    image, _ = decode_image(data, max_bytes=len(data))
    (prediction,) = predictor.predict([image], [None], top_k=3)
    sync(predictor.device)
    store.save(owner, taxonomy, data, predictor.version_id, prediction)
    return time.perf_counter() - t0


def agreement(fast: Predictor, plain: Predictor, paths: list[Path]) -> tuple[int, int]:
    """(agreeing top-1 values, compared values) over the category and every attribute."""
    same = total = 0
    for start in range(0, len(paths), 32):
        chunk = [str(p) for p in paths[start : start + 32]]
        for a, b in zip(fast.predict(chunk), plain.predict(chunk)):
            same += a.category == b.category
            total += 1
            if a.category != b.category:
                continue  # different heads were asked; the category disagreement is counted
            for name, attr in a.attributes.items():
                same += attr.value == b.attributes[name].value
                total += 1
    return same, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--val", type=int, default=None, help="val.csv photos for the agreement (default all)")
    parser.add_argument(
        "--val-large",
        type=int,
        default=100,
        help="at most this many of them for the SE-ResNet50 (its fp32 pass is slow on a CPU)",
    )
    add_common_args(parser, "2 photos")
    args = parser.parse_args(argv)
    if not ready(args, MYNTRA):
        return 2
    device = pick_device()
    n_photos, n_val, n_calib = (2, 4, 4) if args.smoke else (args.photos, args.val, 64)
    taxonomy = taxonomy_from_competition(MYNTRA / "category_attributes.parquet", MYNTRA / "train.csv")
    train, _ = read_dataset(MYNTRA, taxonomy)
    val, _ = read_dataset(MYNTRA, taxonomy, csv_name="val.csv")
    photos = [Path(ex.image_path) for ex in train[-n_photos:]]
    val_paths = [Path(ex.image_path) for ex in val[:n_val]]
    work = work_dir(None, "suggest-latency-")

    store = Store(work, [f"owner{i}" for i in range(2 * len(MODELS))])
    paths: dict[str, Predictor] = {}
    for label, (kind, size) in MODELS.items():
        ckpt = work / f"{kind}-{size or 'default'}.pt"
        make_checkpoint(ckpt, kind, size, taxonomy, train[:n_calib], device)
        paths[f"{label} fast"] = Predictor.load(ckpt, device=device, fast=True)
        paths[f"{label} fp32 eager"] = Predictor.load(ckpt, device=device, fast=False)
        with store.factory.begin() as session:  # prediction rows name their model version
            db.register_version(
                session,
                version_id=paths[f"{label} fast"].version_id,
                path=ckpt,
                taxonomy_fingerprint=taxonomy.fingerprint,
                kind="full",
            )
    reference = torchvision.models.resnet50(weights=None).eval().to(device)
    ref_input = torch.randn(1, 3, 224, 224, device=device)

    def ref_forward() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            reference(ref_input)
        sync(device)
        return time.perf_counter() - t0

    # Warm-up (first-call allocations, oneDNN primitive creation), on photos not measured.
    warm = [Path(ex.image_path) for ex in train[n_calib : n_calib + (1 if args.smoke else 2)]]
    for _ in range(2):
        ref_forward()
    for i, p in enumerate(paths.values()):
        for w in warm:
            suggest_once(p, store, f"owner{i}", taxonomy, w)

    times: dict[str, list[float]] = {"reference resnet50-224 fp32 eager forward": [], **{k: [] for k in paths}}
    for photo in photos:  # interleaved: each path sees the same moments of a noisy machine
        times["reference resnet50-224 fp32 eager forward"].append(ref_forward())
        for i, (name, p) in enumerate(paths.items()):
            times[name].append(suggest_once(p, store, f"owner{i}", taxonomy, photo))
    ref_p50 = percentile(times["reference resnet50-224 fp32 eager forward"], 50)
    rows = {
        name: {
            "p50_ms": round(percentile(t, 50) * 1000, 1),
            "p95_ms": round(percentile(t, 95) * 1000, 1),
            "p50_over_reference": round(percentile(t, 50) / ref_p50, 3),
        }
        for name, t in times.items()
    }
    agree = {}
    for label in MODELS:
        some = val_paths if MODELS[label][0] == "cpu" else val_paths[: args.val_large]
        same, total = agreement(paths[f"{label} fast"], paths[f"{label} fp32 eager"], some)
        agree[label] = {"photos": len(some), "agree": same, "compared": total, "fraction": round(same / total, 4)}
    numbers = {
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": args.threads,
        "photos": len(photos),
        "latency": rows,
        "top1_agreement": agree,
    }
    emit(numbers, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
