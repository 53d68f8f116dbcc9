"""Uploads: decoded before anything is written; the same image by the same owner is one product."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import db
from taxonomy import ImageError, Taxonomy, UnknownCategoryError

from ._data import image_bytes


def test_upload_stores_the_image_once(
    session: Session, taxonomy: Taxonomy, media: db.MediaStore, alice: db.User, bob: db.User
) -> None:
    data = image_bytes(1, "PNG", (40, 30))
    product, created = db.add_uploaded_product(session, taxonomy, media, alice, data, "sarees")
    assert created and product.category == "Sarees" and product.source == "upload"
    assert (product.width, product.height, product.image_size, product.image_ext) == (40, 30, len(data), ".png")
    assert Path(db.image_path(media, product)).read_bytes() == data

    again, created = db.add_uploaded_product(session, taxonomy, media, alice, data, "Kurtis")
    assert again.id == product.id and not created and again.category == "Sarees"
    other, created = db.add_uploaded_product(session, taxonomy, media, bob, data, "Kurtis")
    assert created and other.id != product.id  # another owner's upload is another product
    assert len([p for p in media.root.rglob("*") if p.is_file()]) == 1


@pytest.mark.parametrize("data", [b"", b"not an image at all", image_bytes(2)[:40]])
def test_unreadable_upload_writes_nothing(
    session: Session, taxonomy: Taxonomy, media: db.MediaStore, alice: db.User, data: bytes
) -> None:
    with pytest.raises(ImageError):
        db.add_uploaded_product(session, taxonomy, media, alice, data, "Sarees")
    assert session.scalar(select(func.count()).select_from(db.Product)) == 0
    assert not media.root.exists() or not any(media.root.rglob("*.*"))


def test_unknown_category_writes_nothing(
    session: Session, taxonomy: Taxonomy, media: db.MediaStore, alice: db.User
) -> None:
    with pytest.raises(UnknownCategoryError, match="allowed"):
        db.add_uploaded_product(session, taxonomy, media, alice, image_bytes(3), "Hats")
    assert session.scalar(select(func.count()).select_from(db.Product)) == 0


def test_list_filters_and_pages(session: Session, taxonomy: Taxonomy, media: db.MediaStore, alice: db.User) -> None:
    ids = []
    for i in range(5):
        p, _ = db.add_uploaded_product(session, taxonomy, media, alice, image_bytes(i), ["Sarees", "Kurtis"][i % 2])
        ids.append(p.id)
    session.add(db.Product(owner_id=alice.id, category="Sarees", source="import", external_id="e1"))
    session.flush()
    assert [p.id for p in db.list_products(session, alice, limit=2)] == [ids[4] + 1, ids[4]]  # newest first
    assert [p.id for p in db.list_products(session, alice, limit=2, offset=2)] == [ids[3], ids[2]]
    sarees = db.ProductFilter(category="Sarees", has_image=True)
    assert [p.id for p in db.list_products(session, alice, sarees)] == [ids[4], ids[2], ids[0]]
    assert db.count_products(session, alice) == 6
    assert db.count_products(session, alice, db.ProductFilter(source="import")) == 1
    assert db.count_products(session, alice, db.ProductFilter(external_id="e1", has_image=False)) == 1
