"""Import a competition-layout dataset: ``train.csv``, ``images/<id>.jpg``, ``category_attributes.parquet``.

The whole CSV is read and validated before anything is written, so a malformed file
(``taxonomy.FormatError``) or a layout that disagrees with the taxonomy changes nothing. Bad rows
are skipped whole and reported. Products go in with their label events in the same transaction,
a batch at a time, so a crash never leaves a product without its labels; re-running the import
finds the products already present (same owner, same id) and adds nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from taxonomy import (
    LAYOUT_FILES,
    BadRow,
    FormatError,
    ImageError,
    RowError,
    RowValidator,
    Taxonomy,
    TaxonomyError,
    decode_image,
    find_image,
    iter_raw_rows,
    read_category_attributes,
)

from .media import MediaStore
from .products import user_id
from .tables import LabelEvent, Product, User, utcnow

log = logging.getLogger(__name__)

MAX_EXAMPLES = 10

# Why a row was skipped (the keys of ImportReport.skipped): taxonomy's BadRow kinds, and these.
MISSING_IMAGE = "missing image"
UNREADABLE_IMAGE = "unreadable image"
DUPLICATE_IMAGE = "duplicate image"


class LayoutMismatchError(TaxonomyError):
    """The dataset's category_attributes file lists other categories or attributes than the taxonomy."""


@dataclass
class ImportReport:
    source: str = ""
    labels_only: bool = False
    read: int = 0  # data rows in the file
    imported: int = 0  # new products
    already_present: int = 0  # rows whose id this owner already has
    labels: int = 0  # label events written
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[RowError] = field(default_factory=list)  # the first few skipped rows
    seconds: float = 0.0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skip(self, line: int, ident: str | None, kind: str, reason: str) -> None:
        self.skipped[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(RowError(row=line, id=ident or None, reason=reason))

    def summary(self) -> str:
        mode = " (labels only)" if self.labels_only else ""
        lines = [
            f"Read {self.read} rows from {self.source}{mode} in {self.seconds:.1f} s: "
            f"{self.imported} imported ({self.labels} labels), {self.already_present} already present, "
            f"{self.skipped_total} skipped."
        ]
        if self.skipped:
            lines.append("Skipped: " + ", ".join(f"{kind} {n}" for kind, n in self.skipped.most_common()) + ".")
            lines.append(f"First {len(self.examples)} skipped rows:")
            lines += [f"  line {e.row} (id {e.id!r}): {e.reason}" for e in self.examples]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Row:
    line: int
    id: str
    category: str
    labels: dict[str, str]  # only the cells that hold a value


def check_layout(taxonomy: Taxonomy, data_dir: str | os.PathLike[str]) -> None:
    """Raise ``LayoutMismatchError`` listing every way the dataset's category_attributes file disagrees.

    The file may list fewer categories than the taxonomy; each one it lists must exist with
    exactly the taxonomy's attributes in the same order (they name the attr_1.. columns).
    """
    for name in LAYOUT_FILES:
        path = Path(data_dir) / name
        if not path.is_file():
            continue
        problems = []
        for category, attributes in read_category_attributes(path).items():
            try:
                cat = taxonomy.category(category)
            except TaxonomyError:
                problems.append(f"category {category!r} is not in the taxonomy")
                continue
            if [a.strip() for a in attributes] != list(cat.attribute_names):
                problems.append(f"{cat.name!r}: the file lists {attributes}, the taxonomy {list(cat.attribute_names)}")
        if problems:
            raise LayoutMismatchError(f"{path.name} disagrees with the taxonomy: " + "; ".join(problems))
        return


def _parse(csv_path: Path, taxonomy: Taxonomy, report: ImportReport) -> list[_Row]:
    """Every valid row of the file; bad rows go to the report. Raises FormatError for a bad file."""
    validator = RowValidator(taxonomy)
    rows: list[_Row] = []
    for raw in iter_raw_rows(csv_path):
        report.read += 1
        try:
            example = validator.check(raw)
        except BadRow as exc:
            report.skip(raw.line, exc.id, exc.kind, str(exc))
            continue
        labels = {name: value for name, value in example.labels.items() if value is not None}
        rows.append(_Row(line=raw.line, id=example.id, category=example.category, labels=labels))
    return rows


def _batches(rows: list[_Row], size: int) -> Iterator[list[_Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _image_columns(
    row: _Row, images_dir: Path, media: MediaStore, known: dict[str, str], report: ImportReport
) -> dict[str, Any] | None:
    """Store the row's image and return its product columns, or None (reported) when unusable."""
    path = find_image(images_dir, row.id)  # the id was checked: it cannot name a path
    if path is None:
        report.skip(row.line, row.id, MISSING_IMAGE, f"no image {row.id}.jpg (or .jpeg/.png/.webp) in {images_dir}")
        return None
    try:
        data = path.read_bytes()
        _, info = decode_image(data)
    except (ImageError, OSError) as exc:
        report.skip(row.line, row.id, UNREADABLE_IMAGE, f"{path.name}: {exc}")
        return None
    if info.sha256 in known:
        report.skip(
            row.line, row.id, DUPLICATE_IMAGE, f"{path.name} is the same image as product {known[info.sha256]!r}"
        )
        return None
    media.put(data, info)
    known[info.sha256] = row.id
    return {
        "image_sha256": info.sha256,
        "image_ext": info.suffix,
        "image_size": info.size,
        "width": info.width,
        "height": info.height,
    }


def _write_batch(session: Session, owner_id: int, batch: list[tuple[_Row, dict[str, Any]]]) -> int:
    """Insert the batch's products and their import events; returns the number of events."""
    now = utcnow()
    products = [
        {
            "owner_id": owner_id,
            "category": row.category,
            "source": "import",
            "external_id": row.id,
            "created_at": now,
            "updated_at": now,
            **image,
        }
        for row, image in batch
    ]
    # Rows come back in any order (asking for parameter order makes SQLite insert row by row);
    # the external id says which is which.
    returned = session.execute(insert(Product).returning(Product.id, Product.external_id), products)
    ids = {external_id: pid for pid, external_id in returned}
    events = [
        {"product_id": ids[row.id], "attribute": attr, "value": value, "source": "import", "created_at": now}
        for row, _ in batch
        for attr, value in row.labels.items()
    ]
    if events:
        # Core insert of the table: the ORM's per-row bookkeeping doubled the time of 450k rows.
        session.execute(insert(cast(Table, LabelEvent.__table__)), events)
    return len(events)


def import_dataset(
    session_factory: sessionmaker[Session],
    taxonomy: Taxonomy,
    media: MediaStore,
    data_dir: str | os.PathLike[str],
    *,
    owner: User,
    labels_only: bool = False,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import ``data_dir`` for ``owner``; commits one transaction per batch of products.

    ``labels_only`` imports rows without looking for images (the products have none).
    ``progress(done, total)`` is called after each batch.
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    csv_path = data_dir / "train.csv"
    if not csv_path.is_file():
        raise FormatError(f"no train.csv in {data_dir}; expected the competition layout (train.csv, images/)")
    check_layout(taxonomy, data_dir)
    owner_id = user_id(owner)
    report = ImportReport(source=str(csv_path), labels_only=labels_only)
    rows = _parse(csv_path, taxonomy, report)

    with session_factory() as session:
        mine = select(Product.external_id, Product.image_sha256).where(Product.owner_id == owner_id)
        existing = session.execute(mine).all()
    present = {ext for ext, _ in existing if ext is not None}
    known_images = {sha: ext or "(uploaded)" for ext, sha in existing if sha is not None}
    todo = [row for row in rows if row.id not in present]
    report.already_present = len(rows) - len(todo)

    images_dir = data_dir / "images"
    done = 0
    for batch in _batches(todo, max(1, batch_size)):
        ready = []
        for row in batch:
            image = {} if labels_only else _image_columns(row, images_dir, media, known_images, report)
            if image is not None:
                ready.append((row, image))
        if ready:
            with session_factory.begin() as session:
                report.labels += _write_batch(session, owner_id, ready)
            report.imported += len(ready)
        done += len(batch)
        if progress is not None:
            progress(done, len(todo))
    if report.imported:
        with session_factory.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                # Fresh statistics after a bulk load, or the planner takes the tables for empty.
                session.execute(text("ANALYZE products, label_events"))
    report.seconds = time.perf_counter() - started
    log.info("import of %s: %d imported, %d skipped", csv_path, report.imported, report.skipped_total)
    return report
