"""Label-only import of a slice of the competition's real train.csv (skipped without ../shared/data)."""

from __future__ import annotations

import shutil
from itertools import islice
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

import db
from taxonomy import Taxonomy, read_train_csv

ROWS = 2000


def test_real_labels_slice(
    shared_data: Path,
    session_factory: sessionmaker[Session],
    taxonomy: Taxonomy,
    media: db.MediaStore,
    admin: db.User,
    tmp_path: Path,
) -> None:
    source = shared_data / "meesho-labels"
    with open(source / "train.csv", encoding="utf-8", newline="") as handle:
        (tmp_path / "train.csv").write_text("".join(islice(handle, ROWS + 1)), "utf-8")
    shutil.copy(source / "category_attributes.parquet", tmp_path)

    report = db.import_dataset(session_factory, taxonomy, media, tmp_path, owner=admin, labels_only=True)
    expected, errors = read_train_csv(tmp_path / "train.csv", taxonomy)
    assert errors == [] and report.read == report.imported == len(expected) == ROWS
    assert report.labels == sum(v is not None for e in expected for v in e.labels.values())

    with session_factory() as s:
        stored = db.labeled_examples(s, admin, taxonomy)
        counts = db.label_counts(s, admin, taxonomy)
    assert sorted(stored, key=lambda e: int(e.id)) == sorted(expected, key=lambda e: int(e.id))
    per_cat: dict[str, int] = {}
    for e in expected:
        if any(v is not None for v in e.labels.values()):
            per_cat[e.category] = per_cat.get(e.category, 0) + 1
    assert counts.per_category == per_cat
    assert sum(counts.per_attribute.values()) == report.labels
