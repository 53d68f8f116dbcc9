"""Label history is append-only; current labels are the latest event per attribute of the category."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import db
from taxonomy import NOT_APPLICABLE, InvalidValueError, Taxonomy


def _product(session: Session, owner: db.User, category: str = "Men Tshirts") -> db.Product:
    product = db.Product(owner_id=owner.id, category=category, source="import", external_id=f"x{category[:3]}")
    session.add(product)
    session.flush()
    return product


def _events(session: Session) -> list[tuple]:
    rows = session.execute(select(db.LabelEvent).order_by(db.LabelEvent.id)).scalars()
    return [(e.id, e.product_id, e.attribute, e.value, e.source, e.user_id, e.created_at) for e in rows]


def test_later_events_win_and_history_is_kept(session: Session, taxonomy: Taxonomy, alice: db.User) -> None:
    product = _product(session, alice)
    db.record_labels(session, taxonomy, alice, product, {"color": "white", "neck": "polo"})
    before = _events(session)
    db.record_labels(session, taxonomy, alice, product.id, {"color": "Black \n", "pattern": "solid"})
    after = _events(session)
    assert after[: len(before)] == before  # earlier events untouched
    assert len(after) == len(before) + 2

    labels = db.current_labels(session, alice, taxonomy, product)
    assert labels == {
        "color": "black",
        "neck": "polo",
        "pattern": "solid",
        "print_or_pattern_type": None,
        "sleeve_length": None,
    }
    history = db.label_history(session, alice, product.id)
    assert [(h.attribute, h.value) for h in history] == [
        ("color", "white"),
        ("neck", "polo"),
        ("color", "black"),
        ("pattern", "solid"),
    ]
    assert {h.user_name for h in history} == {"alice"} and {h.source for h in history} == {"seller"}


def test_clear_and_not_applicable(session: Session, taxonomy: Taxonomy, alice: db.User) -> None:
    product = _product(session, alice)
    db.record_labels(session, taxonomy, alice, product, {"color": "white", "neck": "polo"})
    db.record_labels(session, taxonomy, alice, product, {"color": None, "neck": "Not Applicable"})
    labels = db.current_labels(session, alice, taxonomy, product)
    assert labels["color"] is None and labels["neck"] == NOT_APPLICABLE
    assert [h.value for h in db.label_history(session, alice, product.id)] == ["white", "polo", None, NOT_APPLICABLE]


def test_invalid_labels_write_nothing(session: Session, taxonomy: Taxonomy, alice: db.User) -> None:
    product = _product(session, alice)
    db.record_labels(session, taxonomy, alice, product, {"color": "white"})
    before = _events(session)
    with pytest.raises(InvalidValueError, match="allowed") as caught:
        db.record_labels(session, taxonomy, alice, product, {"color": "black", "neck": "turtle", "sleeve": "x"})
    assert "'polo'" in str(caught.value) and "sleeve" in str(caught.value)  # names what is allowed
    assert _events(session) == before


def test_sources_and_model_provenance(session: Session, taxonomy: Taxonomy, alice: db.User, version_id: str) -> None:
    product = _product(session, alice)
    with pytest.raises(ValueError, match="model_version_id"):
        db.record_labels(session, taxonomy, alice, product, {"color": "white"}, source="model_accepted")
    with pytest.raises(ValueError, match="unknown label source"):
        db.record_labels(session, taxonomy, alice, product, {"color": "white"}, source="robot")
    db.record_labels(
        session,
        taxonomy,
        alice,
        product,
        {"color": "white", "neck": "round"},
        source={"color": "model_accepted", "neck": "model_edited"},
        model_version_id=version_id,
    )
    history = db.label_history(session, alice, product.id)
    assert [(h.source, h.model_version_id) for h in history] == [
        ("model_accepted", version_id),
        ("model_edited", version_id),
    ]


def test_category_change_restricts_and_restores(session: Session, taxonomy: Taxonomy, alice: db.User) -> None:
    product = _product(session, alice, "Men Tshirts")
    db.record_labels(session, taxonomy, alice, product, {"color": "white", "neck": "polo"})
    db.set_category(session, taxonomy, alice, product.id, "kurtis")  # matched ignoring case
    assert product.category == "Kurtis"
    kurti = db.current_labels(session, alice, taxonomy, product)
    assert set(kurti) == set(taxonomy.category("Kurtis").attribute_names)
    assert kurti["color"] == "white" and "neck" not in kurti  # shared attribute carries over
    with pytest.raises(InvalidValueError):
        db.record_labels(session, taxonomy, alice, product, {"neck": "polo"})
    counts = db.label_counts(session, alice, taxonomy)
    assert counts.per_category == {"Kurtis": 1} and counts.per_attribute == {("Kurtis", "color"): 1}
    db.set_category(session, taxonomy, alice, product.id, "Men Tshirts")
    assert db.current_labels(session, alice, taxonomy, product)["neck"] == "polo"
    changes = [h.value for h in db.label_history(session, alice, product.id) if h.attribute == db.CATEGORY_ATTRIBUTE]
    assert changes == ["Kurtis", "Men Tshirts"]


def test_bulk_matches_single(session: Session, taxonomy: Taxonomy, alice: db.User) -> None:
    products = []
    for i, cat in enumerate(["Men Tshirts", "Sarees", "Kurtis"]):
        p = db.Product(owner_id=alice.id, category=cat, source="import", external_id=str(i))
        session.add(p)
        session.flush()
        products.append(p)
    db.record_labels(session, taxonomy, alice, products[0], {"color": "white"})
    db.record_labels(session, taxonomy, alice, products[1], {"transparency": "yes", "color": "cream"})
    db.record_labels(session, taxonomy, alice, products[1], {"transparency": "no"})
    bulk = db.current_labels_bulk(session, alice, taxonomy, [p.id for p in products] + [10_000])
    assert set(bulk) == {p.id for p in products}
    for p in products:
        assert bulk[p.id] == db.current_labels(session, alice, taxonomy, p)
    assert bulk[products[1].id]["transparency"] == "no"


def test_events_are_never_rewritten_by_the_api(session: Session, taxonomy: Taxonomy, alice: db.User) -> None:
    product = _product(session, alice)
    for value in ("white", "black", None, "white"):
        db.record_labels(session, taxonomy, alice, product, {"color": value})
    db.set_category(session, taxonomy, alice, product.id, "Sarees")
    count = session.scalar(select(func.count()).select_from(db.LabelEvent))
    assert count == 5
    history = [h.value for h in db.label_history(session, alice, product.id)]
    assert history == ["white", "black", None, "white", "Sarees"]
