"""One seller never sees another's products, labels or predictions; an admin sees all.

Each function that lists or reads products is checked here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session

import db
from taxonomy import AttributePrediction, ProductPrediction, Taxonomy

from ._data import image_bytes


@dataclass
class World:
    alice: db.User
    bob: db.User
    admin: db.User
    alices: list[db.Product]
    bobs: list[db.Product]


def _prediction(product: db.Product, confidence: float) -> ProductPrediction:
    return ProductPrediction(
        id=str(product.id),
        category=product.category,
        category_probability=confidence,
        attributes={"color": AttributePrediction("white", confidence, (("white", confidence),))},
    )


@pytest.fixture
def world(
    session: Session,
    taxonomy: Taxonomy,
    media: db.MediaStore,
    alice: db.User,
    bob: db.User,
    admin: db.User,
    version_id: str,
) -> World:
    owned = {}
    for n, user in enumerate((alice, bob)):
        products = []
        for i in range(2):
            p, _ = db.add_uploaded_product(session, taxonomy, media, user, image_bytes(10 * n + i), "Men Tshirts")
            db.record_labels(session, taxonomy, user, p, {"color": "white"} if i == 0 else {}, source="import")
            db.save_prediction(session, p, version_id, _prediction(p, 0.3 + 0.1 * i))
            products.append(p)
        owned[user.name] = products
    return World(alice, bob, admin, owned["alice"], owned["bob"])


def _ids(products) -> set[int]:
    return {p.id for p in products}


def test_reading_one_product(session: Session, taxonomy: Taxonomy, world: World) -> None:
    theirs = world.alices[0].id
    readers = [
        lambda: db.get_product(session, world.bob, theirs),
        lambda: db.current_labels(session, world.bob, taxonomy, theirs),
        lambda: db.current_labels(session, world.bob, taxonomy, world.alices[0]),
        lambda: db.label_history(session, world.bob, theirs),
        lambda: db.latest_prediction(session, world.bob, theirs),
        lambda: db.record_labels(session, taxonomy, world.bob, theirs, {"color": "black"}),
        lambda: db.set_category(session, taxonomy, world.bob, theirs, "Sarees"),
    ]
    for read in readers:
        with pytest.raises(db.NotFound):
            read()
    # The same calls work for the owner and for an admin.
    for viewer in (world.alice, world.admin):
        assert db.get_product(session, viewer, theirs).id == theirs
        assert db.current_labels(session, viewer, taxonomy, theirs)["color"] == "white"
        assert len(db.label_history(session, viewer, theirs)) == 1
        assert db.latest_prediction(session, viewer, theirs) is not None
    with pytest.raises(db.NotFound):
        db.get_product(session, world.bob, 999_999)  # a missing product reads the same


def test_lists_and_summaries(session: Session, taxonomy: Taxonomy, media: db.MediaStore, world: World) -> None:
    everyone = _ids(world.alices) | _ids(world.bobs)
    for viewer, mine in ((world.alice, _ids(world.alices)), (world.bob, _ids(world.bobs)), (world.admin, everyone)):
        assert _ids(db.list_products(session, viewer)) == mine
        assert db.count_products(session, viewer) == len(mine)
        # An owner filter never widens what a seller sees.
        assert _ids(db.list_products(session, viewer, db.ProductFilter(owner_id=world.alice.id))) <= mine
        assert set(db.current_labels_bulk(session, viewer, taxonomy, everyone)) == mine
        assert {p.id for p, _ in db.latest_predictions(session, viewer)} == mine
        shown = {e.id for e in db.labeled_examples(session, viewer, taxonomy, media, require_image=True)}
        assert shown == {str(i) for i in mine}
        assert db.label_counts(session, viewer, taxonomy).per_category == {"Men Tshirts": len(mine) // 2}
        labels_csv, submission = io.StringIO(), io.StringIO()
        assert db.export_labels(session, viewer, taxonomy, labels_csv) == len(mine)
        assert db.export_predictions(session, viewer, taxonomy, submission) == len(mine)
        exported = {line.split(",")[0] for line in labels_csv.getvalue().splitlines()[1:]}
        assert exported == {str(i) for i in mine}


def test_review_queue_shows_only_own_products(session: Session, world: World) -> None:
    assert _ids(i.product for i in db.review_queue(session, world.alice)) == _ids(world.alices)
    assert _ids(i.product for i in db.review_queue(session, world.bob)) == _ids(world.bobs)
    assert db.review_queue(session, world.admin) == []  # the queue is one's own work, even for an admin
