"""The taxonomy stored in the database: stored, read back, replaced while empty, fixed once products exist."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

import db
from taxonomy import Attribute, Category, Taxonomy, default_taxonomy

from ._data import image_bytes

SMALL = Taxonomy(categories=(Category(name="Mugs", attributes=(Attribute(name="color", values=("white", "black")),)),))


def test_nothing_is_stored_until_a_taxonomy_is(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        assert db.stored_taxonomy(session) is None
        assert db.change_taxonomy(session, default_taxonomy(), SMALL) is True
    with session_factory.begin() as session:  # another transaction, as after a restart
        stored = db.stored_taxonomy(session)
    assert stored is not None and stored.to_dict() == SMALL.to_dict()


def test_the_taxonomy_cannot_change_once_products_exist(
    session_factory: sessionmaker[Session], media: db.MediaStore, alice: db.User
) -> None:
    with session_factory.begin() as session:
        db.add_uploaded_product(session, default_taxonomy(), media, alice, image_bytes(1), "Kurtis")
    with session_factory.begin() as session, pytest.raises(db.TaxonomyChangeRefused) as refused:
        db.change_taxonomy(session, default_taxonomy(), SMALL)
    assert "holds 1 products" in str(refused.value) and "category 'Mugs' only in the second" in str(refused.value)
    with session_factory.begin() as session:
        assert db.stored_taxonomy(session) is None
        # The same taxonomy is no change: it may be stored (and an import of it goes on).
        assert db.change_taxonomy(session, default_taxonomy(), default_taxonomy()) is False
        assert db.stored_taxonomy(session).fingerprint == default_taxonomy().fingerprint
