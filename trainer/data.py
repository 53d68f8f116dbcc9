"""Examples and their photos: competition-layout folders, decoding (unreadable photos skipped and
counted), the held-out split."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from taxonomy import ImageError, LabeledExample, RowError, Taxonomy, find_image, read_train_csv

from .preprocess import Preprocess, open_image, prepare_image

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


class DataError(ValueError):
    """A data folder or example set that cannot be trained or evaluated on; the text says why."""


@dataclass
class ImageSet:
    examples: list[LabeledExample]  # those whose photo was read, in input order
    images: torch.Tensor  # (N, 3, S, S) uint8
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)


def read_dataset(
    data_dir: str | Path, taxonomy: Taxonomy, *, csv_name: str = "train.csv"
) -> tuple[list[LabeledExample], list[RowError]]:
    """Examples of a competition-layout folder (``train.csv`` + ``images/<id>.jpg``).

    Rows whose photo is absent are kept with ``image_path=None`` (the loader skips and counts them).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    csv_path = root / csv_name
    if not csv_path.is_file():
        raise DataError(f"{csv_path} not found; a data folder holds {csv_name} and images/<id>.jpg")
    examples, errors = read_train_csv(csv_path, taxonomy)
    images_dir = root / "images"
    out = []
    for ex in examples:
        path = find_image(images_dir, ex.id) if images_dir.is_dir() else None
        out.append(replace(ex, image_path=str(path) if path else None))
    return out, errors


def load_images(
    examples: Sequence[LabeledExample], preprocess: Preprocess, *, progress: Progress | None = None
) -> ImageSet:
    """Decode and resize every example's photo once; unreadable ones are skipped and counted."""
    kept: list[LabeledExample] = []
    tensors: list[torch.Tensor] = []
    skipped: list[tuple[str, str]] = []
    for i, ex in enumerate(examples):
        if ex.image_path is None:
            skipped.append((ex.id, "no image file"))
            continue
        try:
            tensors.append(prepare_image(open_image(ex.image_path), preprocess))  # (3, S, S)
        except ImageError as exc:
            skipped.append((ex.id, str(exc)))
            continue
        kept.append(ex)
        if progress is not None and (i % 64 == 0 or i == len(examples) - 1):
            progress((i + 1) / len(examples), f"reading photos {i + 1}/{len(examples)}")
    if skipped:
        logger.warning(
            "%d of %d photos skipped (unreadable or absent), e.g. %s", len(skipped), len(examples), skipped[0]
        )
    size = preprocess.image_size
    images = torch.stack(tensors) if tensors else torch.empty((0, 3, size, size), dtype=torch.uint8)  # (N, 3, S, S)
    return ImageSet(kept, images, skipped)


HELD_OUT_SALT = "held-out"
EARLY_STOP_SALT = "early-stop"
BUCKETS = 100
MIN_CATEGORY_SIZE = 4  # a smaller category holds nothing out: all of it is needed to train


def bucket(example_id: str, salt: str = HELD_OUT_SALT) -> int:
    """The product's bucket in [0, 100): a hash of its id, the same on every machine and run."""
    digest = hashlib.sha256(f"{salt}:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def split_held_out(
    examples: Sequence[LabeledExample], fraction: float, *, salt: str = HELD_OUT_SALT
) -> tuple[list[LabeledExample], list[LabeledExample]]:
    """(train, held out): a product is held out when its id hashes into the first ``fraction`` of
    the buckets, so membership depends on the product alone and a product held out once stays held
    out however the data grows (a shuffle of the ids would reshuffle them all). A category with
    fewer than ``MIN_CATEGORY_SIZE`` products holds none out; another ``salt`` gives an independent
    split (the early-stopping slice of the training part)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    held_buckets = round(fraction * BUCKETS)
    sizes = Counter(ex.category for ex in examples)
    held = [sizes[ex.category] >= MIN_CATEGORY_SIZE and bucket(ex.id, salt) < held_buckets for ex in examples]
    return [e for e, h in zip(examples, held) if not h], [e for e, h in zip(examples, held) if h]


def require_trainable(examples: Sequence[LabeledExample]) -> None:
    if not examples:
        raise DataError("no training examples: label some products (or check the CSV and images folder) first")
    if not any(v is not None for ex in examples for v in ex.labels.values()):
        raise DataError(f"none of the {len(examples)} examples has a labelled attribute; nothing to learn")
