"""Import of a competition-layout dataset (generated images) and export back to its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import db
from taxonomy import FormatError, Taxonomy, TaxonomyError, read_train_csv

from ._data import HEADER, csv_row, image_bytes, make_dataset


def _counts(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory() as s:
        return (
            s.scalar(select(func.count()).select_from(db.Product)),
            s.scalar(select(func.count()).select_from(db.LabelEvent)),
        )


@pytest.mark.parametrize("layout", ["json", "parquet"])
def test_round_trip_and_reimport(
    session_factory: sessionmaker[Session],
    taxonomy: Taxonomy,
    media: db.MediaStore,
    alice: db.User,
    tmp_path: Path,
    layout: str,
) -> None:
    truth = make_dataset(taxonomy, tmp_path / "data", 12, layout=layout)
    seen = []
    report = db.import_dataset(
        session_factory,
        taxonomy,
        media,
        tmp_path / "data",
        owner=alice,
        batch_size=5,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (report.read, report.imported, report.already_present, report.skipped_total) == (12, 12, 0, 0)
    assert report.labels == sum(sum(v is not None for v in t["labels"].values()) for t in truth.values())
    assert seen == [(5, 12), (10, 12), (12, 12)]
    assert "12 imported" in report.summary()

    with session_factory() as s:
        examples = {e.id: e for e in db.labeled_examples(s, alice, taxonomy, media, require_image=True)}
        assert {k: (e.category, e.labels) for k, e in examples.items()} == {
            k: (t["category"], t["labels"]) for k, t in truth.items()
        }
        for ident, example in examples.items():  # the stored image is the file's bytes
            source = next((tmp_path / "data" / "images").glob(f"{ident.zfill(6) if int(ident) % 2 else ident}.*"))
            assert Path(example.image_path).read_bytes() == source.read_bytes()
        history = db.label_history(s, alice, db.list_products(s, alice, db.ProductFilter(external_id="1"))[0].id)
        assert {h.source for h in history} == {"import"}
        out = tmp_path / "export.csv"
        assert db.export_labels(s, alice, taxonomy, out) == 12
    exported, errors = read_train_csv(out, taxonomy)
    source_rows, _ = read_train_csv(tmp_path / "data" / "train.csv", taxonomy)
    assert errors == [] and sorted(exported, key=lambda e: e.id) == sorted(source_rows, key=lambda e: e.id)

    before = _counts(session_factory)
    again = db.import_dataset(session_factory, taxonomy, media, tmp_path / "data", owner=alice)
    assert (again.imported, again.already_present, again.labels) == (0, 12, 0)
    assert _counts(session_factory) == before


def test_bad_rows_are_reported_and_good_rows_kept(
    session_factory: sessionmaker[Session],
    taxonomy: Taxonomy,
    media: db.MediaStore,
    alice: db.User,
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    make_dataset(taxonomy, root, 4)  # ids 0-3, all good
    images = root / "images"
    saree = [
        "same as saree",
        "zari",
        "small border",
        "cream",
        "party",
        "jacquard",
        "zari woven",
        "solid",
        "default",
        "no",
    ]
    bad = [
        csv_row("10", "Sarees", ["same as saree\n", *saree[1:]]),  # dirty whitespace: imports normalised
        csv_row("11", "Sarees", saree),  # corrupt image
        csv_row("12", "Sarees", saree),  # zero-byte image
        csv_row("13", "Sarees", saree),  # no image at all
        csv_row("14", "Hats", ["red"]),
        csv_row("15", "Sarees", ["plaid", *saree[1:]]),
        csv_row("2", "Sarees", saree),  # duplicated id
        csv_row("../16", "Sarees", saree),
        csv_row("17", "Sarees", saree, length=4),
        csv_row("18", "Sarees", saree),  # the same picture as id 10
    ]
    with open(root / "train.csv", "a", encoding="utf-8", newline="") as handle:
        for line in bad:
            handle.write(line.replace("same as saree\n", '"same as saree\n"') + "\n")
    (images / "10.jpg").write_bytes(image_bytes(100))
    (images / "11.jpg").write_bytes(image_bytes(101)[:60])
    (images / "12.jpg").write_bytes(b"")
    (images / "15.jpg").write_bytes(image_bytes(102))
    (images / "16.jpg").write_bytes(image_bytes(103))
    (images / "18.jpg").write_bytes(image_bytes(100))

    report = db.import_dataset(session_factory, taxonomy, media, root, owner=alice)
    assert report.read == 14 and report.imported == 5
    assert dict(report.skipped) == {
        "unreadable image": 2,
        "missing image": 1,
        "unknown category": 1,
        "invalid value": 1,
        "duplicate id": 1,
        "bad id": 1,
        "bad row": 1,
        "duplicate image": 1,
    }
    reasons = {e.id: e.reason for e in report.examples}
    assert "damaged or truncated" in reasons["11"] and "empty (0 bytes)" in reasons["12"]
    assert "13.jpg" in reasons["13"] and "'Sarees'" in reasons["14"] and "'plaid'" in reasons["15"]
    assert "duplicated id '2'" in reasons["2"] and "path" in reasons["../16"] and "len is '4'" in reasons["17"]
    assert "same image as product '10'" in reasons["18"]
    # Line numbers count the header as line 1; the quoted cell of id 10 spans two lines.
    assert sorted(e.row for e in report.examples) == list(range(8, 17))
    assert "line 8 (id '11')" in report.summary()

    with session_factory() as s:
        examples = {e.id: e for e in db.labeled_examples(s, alice, taxonomy)}
        assert set(examples) == {"0", "1", "2", "3", "10"}
        assert examples["10"].labels["blouse_pattern"] == "same as saree"
        assert examples["2"].category == taxonomy.categories[2].name  # the first row of id 2 kept
        # Nothing half-written: every product has exactly the labels of its row.
        events = s.scalar(select(func.count()).select_from(db.LabelEvent))
        assert events == sum(sum(v is not None for v in e.labels.values()) for e in examples.values())


def test_labels_only_import_needs_no_images(
    session_factory: sessionmaker[Session],
    taxonomy: Taxonomy,
    media: db.MediaStore,
    alice: db.User,
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "train.csv").write_text(
        "\ufeff" + HEADER + "\n" + csv_row("7", "Men Tshirts", ["white", "polo", "", "", "short sleeves"]) + "\n",
        "utf-8",
    )
    report = db.import_dataset(session_factory, taxonomy, media, root, owner=alice, labels_only=True)
    assert (report.imported, report.labels) == (1, 3)  # a BOM before the header is fine
    with session_factory() as s:
        (product,) = db.list_products(s, alice)
        assert product.image_sha256 is None and product.external_id == "7" and product.source == "import"
        assert db.labeled_examples(s, alice, taxonomy, media, require_image=True) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,Category,attr_1\n1,Sarees,x\n", "missing column"),
        ("id;Category;len;attr_1\n1;Sarees;10;x\n", "delimited by ';'"),
        ("", "empty"),
    ],
)
def test_malformed_csv_writes_nothing(
    session_factory: sessionmaker[Session],
    taxonomy: Taxonomy,
    media: db.MediaStore,
    alice: db.User,
    tmp_path: Path,
    content: str,
    message: str,
) -> None:
    (tmp_path / "train.csv").write_text(content, "utf-8")
    with pytest.raises(FormatError, match=message):
        db.import_dataset(session_factory, taxonomy, media, tmp_path, owner=alice, labels_only=True)
    assert _counts(session_factory) == (0, 0)


def test_missing_csv_and_disagreeing_layout(
    session_factory: sessionmaker[Session],
    taxonomy: Taxonomy,
    media: db.MediaStore,
    alice: db.User,
    tmp_path: Path,
) -> None:
    with pytest.raises(FormatError, match=r"no train\.csv"):
        db.import_dataset(session_factory, taxonomy, media, tmp_path, owner=alice)
    make_dataset(taxonomy, tmp_path, 3)
    layout = {c.name: list(c.attribute_names) for c in taxonomy.categories}
    layout["Sarees"] = layout["Sarees"][::-1]
    layout["Hats"] = ["brim"]
    (tmp_path / "category_attributes.json").write_text(json.dumps(layout), "utf-8")
    with pytest.raises(TaxonomyError) as caught:
        db.import_dataset(session_factory, taxonomy, media, tmp_path, owner=alice)
    assert "'Hats' is not in the taxonomy" in str(caught.value) and "'Sarees': the file lists" in str(caught.value)
    assert _counts(session_factory) == (0, 0)
    # A file listing fewer categories (with the same attributes) agrees.
    (tmp_path / "category_attributes.json").write_text(json.dumps({"Kurtis": layout["Kurtis"]}), "utf-8")
    db.check_layout(taxonomy, tmp_path)


def test_same_ids_for_two_owners_are_two_products(
    session_factory: sessionmaker[Session],
    taxonomy: Taxonomy,
    media: db.MediaStore,
    alice: db.User,
    bob: db.User,
    tmp_path: Path,
) -> None:
    make_dataset(taxonomy, tmp_path, 3)
    for owner in (alice, bob):
        assert db.import_dataset(session_factory, taxonomy, media, tmp_path, owner=owner).imported == 3
    assert _counts(session_factory)[0] == 6
