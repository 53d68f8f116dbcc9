"""A shop's catalogue as pretraining data: a folder of photos, a CSV of metadata, one task per column.

Each chosen column becomes a classification task. Its values are counted over the rows that have
a photo; a value seen fewer than ``min_count`` times, or beyond the ``max_values`` most common, is
folded into "other" (a rare value cannot be learned from a handful of photos, and a long tail of
them would dominate the head). A missing cell (empty, "NA", "null", ...) is no class: its target
is ``MASKED`` and the loss skips it. Without ``--columns`` the tasks are the categorical columns:
at least two values, at most ``MAX_DEFAULT_VALUES`` distinct ones and fewer than half as many as
rows (free text such as a product title and ids are not categories), and not every value a
number (a year or a price is an ordinal, not a class).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from taxonomy import FormatError, ImageError, find_image

from .data import DataError
from .preprocess import Preprocess, open_image, prepare_image

logger = logging.getLogger(__name__)

MASKED = -1  # the target of a missing cell: ``cross_entropy(ignore_index=MASKED)``
OTHER = "other"
MISSING_CELLS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "?"})
DEFAULT_MIN_COUNT = 20
DEFAULT_MAX_VALUES = 50
MAX_DEFAULT_VALUES = 200


def cell_value(raw: str | None) -> str | None:
    """A cell's value with outer white space stripped, or None for a missing cell."""
    value = (raw or "").strip()
    return None if value.lower() in MISSING_CELLS else value


@dataclass(frozen=True)
class ColumnTask:
    """One metadata column as a classification task: its classes, and what was folded or masked."""

    name: str
    values: tuple[str, ...]  # class order; "other" is one of them when rare values were folded
    folded: int = 0  # rows whose rare value became "other"
    missing: int = 0  # rows with no value: masked out of the loss

    def encode(self, raw: str | None) -> int:
        value = cell_value(raw)
        if value is None:
            return MASKED
        index = {v: i for i, v in enumerate(self.values)}
        return index.get(value, index.get(OTHER, MASKED))

    def describe(self) -> str:
        folded = f"{self.folded} rows folded into {OTHER!r}"
        return f"{self.name}: {len(self.values)} classes, {folded}, {self.missing} missing (masked)"


def column_task(
    name: str, cells: Sequence[str | None], *, min_count: int = DEFAULT_MIN_COUNT, max_values: int = DEFAULT_MAX_VALUES
) -> ColumnTask:
    """The task of one column from its cells (one per photo)."""
    values = [v for v in (cell_value(c) for c in cells) if v is not None]
    counts = Counter(values)
    kept = [v for v, n in counts.most_common() if n >= min_count and v != OTHER][:max_values]
    folded = sum(n for v, n in counts.items() if v not in kept)
    classes = tuple(kept) + ((OTHER,) if folded else ())
    if len(classes) < 2:
        raise DataError(
            f"column {name!r} has {len(classes)} class(es) after folding values seen fewer than {min_count} "
            f"times into {OTHER!r} ({len(counts)} distinct values, {len(cells) - len(values)} missing): "
            "nothing to learn from it; leave it out of --columns or lower --min-count"
        )
    return ColumnTask(name, classes, folded=folded, missing=len(cells) - len(values))


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def default_columns(rows: Sequence[dict[str, str]], columns: Sequence[str], *, id_column: str) -> list[str]:
    """The columns that look like categories (module docstring), in the CSV's order."""
    chosen = []
    for name in columns:
        if name == id_column:
            continue
        values = [v for v in (cell_value(r.get(name)) for r in rows) if v is not None]
        distinct = set(values)
        if 2 <= len(distinct) <= MAX_DEFAULT_VALUES and len(distinct) < len(values) / 2:
            if not all(_is_number(v) for v in distinct):
                chosen.append(name)
    return chosen


@dataclass(frozen=True)
class Catalogue:
    """The rows of the CSV that have a photo, in file order, and those that were skipped."""

    columns: tuple[str, ...]
    rows: tuple[dict[str, str], ...]
    image_paths: tuple[Path, ...]
    skipped: tuple[tuple[str, str], ...]  # (id, reason)


def read_catalogue(csv_path: str | Path, images_dir: str | Path, *, id_column: str = "id") -> Catalogue:
    """Rows of ``csv_path`` whose ``id_column`` names a photo ``images_dir/<id>.jpg`` (or .png, ...)."""
    csv_path, images_dir = Path(csv_path), Path(images_dir)
    if not csv_path.is_file():
        raise DataError(f"metadata CSV not found: {csv_path}")
    if not images_dir.is_dir():
        raise DataError(f"photo folder not found: {images_dir}")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = tuple(reader.fieldnames or ())
        if id_column not in columns:
            raise DataError(f"{csv_path.name} has no {id_column!r} column (found {list(columns)}); pass --id-column")
        raw_rows = list(reader)
    rows, paths, skipped = [], [], []
    for row in raw_rows:
        ident = (row.get(id_column) or "").strip()
        try:
            path = find_image(images_dir, ident)
        except FormatError as exc:
            skipped.append((ident, str(exc)))
            continue
        if path is None:
            skipped.append((ident, "no photo"))
            continue
        rows.append(row)
        paths.append(path)
    return Catalogue(columns, tuple(rows), tuple(paths), tuple(skipped))


def encode_targets(tasks: Sequence[ColumnTask], rows: Sequence[dict[str, str]]) -> torch.Tensor:
    """(N, T) class indices, ``MASKED`` for a missing cell."""
    return torch.tensor([[t.encode(r.get(t.name)) for t in tasks] for r in rows], dtype=torch.long).view(
        len(rows), len(tasks)
    )  # (N, T)


def load_photos(
    paths: Sequence[Path],
    preprocess: Preprocess,
    *,
    threads: int = 2,
    progress: Callable[[str], None] | None = None,
) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """Decode every photo once through the project's preprocessing, in a thread pool.

    Returns the uint8 photos (K, 3, S, S), the indices into ``paths`` they are, and the
    (file name, reason) of the photos that could not be read."""

    def one(path: Path) -> torch.Tensor | str:
        try:
            return prepare_image(open_image(path), preprocess)  # (3, S, S)
        except ImageError as exc:
            return str(exc)

    tensors, kept, skipped = [], [], []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for i, result in enumerate(pool.map(one, paths, chunksize=64)):
            if isinstance(result, str):
                skipped.append((paths[i].name, result))
            else:
                tensors.append(result)
                kept.append(i)
            if progress is not None and ((i + 1) % 2000 == 0 or i + 1 == len(paths)):
                progress(f"photos decoded {i + 1}/{len(paths)}")
    size = preprocess.image_size
    images = torch.stack(tensors) if tensors else torch.empty((0, 3, size, size), dtype=torch.uint8)  # (K, 3, S, S)
    if skipped:
        logger.warning("%d of %d photos could not be read, e.g. %s", len(skipped), len(paths), skipped[0])
    return images, kept, skipped
