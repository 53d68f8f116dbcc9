"""Where to put the near-duplicate threshold of ``webapp.similar``: cosine of trunk embeddings
between a photo and a near-copy of it (cropped a few pixels, resized, re-encoded as JPEG q75),
against the cosine between a photo and the most similar *other* product, raw and centred (the
mean embedding of the catalogue subtracted, as ``webapp.embedding_index`` does).

    python bench/near_duplicates.py --checkpoint path/to/model.pt [--data ../shared/data/myntra-dev] [--n 300]
    python bench/near_duplicates.py --smoke    # an untrained CPU-default trunk on 8 photos, for CI
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MYNTRA, myntra_missing, work_dir

from taxonomy import taxonomy_from_competition
from trainer import Predictor, Preprocess, build_model, default_model_config, save_checkpoint

THRESHOLDS = (0.95, 0.97, 0.98, 0.99, 0.995)


def near_copy(path: Path) -> Image.Image:
    image = Image.open(path).convert("RGB")
    w, h = image.size
    image = image.crop((3, 2, w - 2, h - 3)).resize((int(w * 0.9), int(h * 0.9)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def measure(vectors: np.ndarray, n: int, centre: bool) -> dict[str, float]:
    """``vectors``: n originals then their n near-copies."""
    if centre:
        vectors = vectors - vectors[:n].mean(axis=0)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    originals, copies = unit[:n], unit[n:]
    copy_vs_original = np.einsum("ij,ij->i", copies, originals)  # (n,)
    among = originals @ originals.T  # (n, n)
    np.fill_diagonal(among, -np.inf)
    nearest_other = among.max(axis=1)  # (n,): each product's most similar other product
    # How far the best match stands out from the next one: a copy's original, against a new
    # product's nearest other product.
    copy_others = copies @ originals.T  # (n, n)
    np.fill_diagonal(copy_others, -np.inf)
    copy_gap = copy_vs_original - copy_others.max(axis=1)  # (n,)
    top2 = np.sort(among, axis=1)[:, -2:]  # (n, 2)
    other_gap = top2[:, 1] - top2[:, 0]  # (n,)
    rates = {
        "copy_gap_p10": float(np.percentile(copy_gap, 10)),
        "copy_gap_median": float(np.median(copy_gap)),
        "other_gap_p90": float(np.percentile(other_gap, 90)),
        "other_gap_median": float(np.median(other_gap)),
    }
    for t in THRESHOLDS:
        rates[f"copies>={t}"] = float((copy_vs_original >= t).mean())
        rates[f"others>={t}"] = float((nearest_other >= t).mean())
    return rates | {
        "copy_min": float(copy_vs_original.min()),
        "copy_p1": float(np.percentile(copy_vs_original, 1)),
        "copy_median": float(np.median(copy_vs_original)),
        "other_max": float(nearest_other.max()),
        "other_p99": float(np.percentile(nearest_other, 99)),
        "other_median": float(np.median(nearest_other)),
    }


def untrained_checkpoint(data: Path, path: Path) -> Path:
    """The CPU default's architecture with random weights: what --smoke measures (the numbers mean
    nothing; the run shows the script works end to end)."""
    config = default_model_config("cpu", weights="none")
    model, _ = build_model(config, taxonomy_from_competition(data / "category_attributes.parquet", data / "train.csv"))
    save_checkpoint(path, model, preprocess=Preprocess(config.image_size), train_config={}, metrics={})
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="the trained model whose trunk is measured")
    parser.add_argument("--data", default=str(MYNTRA))
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--smoke", action="store_true", help="an untrained trunk on 8 photos, for CI")
    args = parser.parse_args()
    data = Path(args.data)
    if myntra_missing(data):
        return 1
    if args.checkpoint is None and not args.smoke:
        parser.error("--checkpoint is required (or --smoke)")
    if args.smoke:
        args.n = 8
        if args.checkpoint is None:
            args.checkpoint = untrained_checkpoint(data, work_dir(None, "near-dup-") / "model.pt")
    with open(data / "train.csv", newline="") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    # One product per distinct photo: the set holds a few byte-identical photos under two ids.
    by_content = {hashlib.sha256((data / "images" / f"{i}.jpg").read_bytes()).hexdigest(): i for i in ids}
    paths = [data / "images" / f"{i}.jpg" for i in sorted(set(by_content.values()), key=ids.index)][: args.n]
    predictor = Predictor.load(args.checkpoint, device="cpu")
    images = [Image.open(p).convert("RGB") for p in paths] + [near_copy(p) for p in paths]
    _, vectors = predictor.predict_with_embeddings(images)
    print(
        f"{len(paths)} photos of {data.name}, trunk {predictor.checkpoint.model_config.arch} "
        f"{predictor.checkpoint.preprocess.image_size}px ({predictor.checkpoint.backbone_source})"
    )
    for centre in (False, True):
        stats = measure(vectors.numpy(), len(paths), centre)
        print("centred" if centre else "raw", "\n  " + "\n  ".join(f"{k} {v:.4f}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
