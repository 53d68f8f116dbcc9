"""Undo, completeness and the filtered product list as queries, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

import db
from taxonomy import Attribute, AttributePrediction, Category, ProductPrediction, Taxonomy

TAXONOMY = Taxonomy(
    (
        Category("tee", (Attribute("color", ("red", "blue")), Attribute("pattern", ("solid", "striped")))),
        Category("mug", (Attribute("color", ("red", "blue")), Attribute("size", ("small", "large")))),
    )
)


def _product(session: Session, owner: db.User, category: str = "tee") -> db.Product:
    product = db.Product(owner_id=owner.id, category=category, source="import")
    session.add(product)
    session.flush()
    return product


def test_undo_list_and_completeness_agree(session: Session, alice: db.User, admin: db.User, version_id: str) -> None:
    alice = session.merge(alice)
    admin = session.merge(admin)
    first, second, mug = _product(session, alice), _product(session, alice), _product(session, alice, "mug")
    db.record_labels(session, TAXONOMY, alice, first, {"color": "red"}, source="import")
    db.record_labels(session, TAXONOMY, alice, first, {"color": "blue", "pattern": "not applicable"})
    db.record_labels(session, TAXONOMY, alice, second, {"color": "red"})
    db.save_prediction(
        session,
        mug,
        version_id,
        ProductPrediction(str(mug.id), "mug", 0.9, {"size": AttributePrediction("small", 0.2, (("small", 0.2),))}),
    )

    def listed(**filters: object) -> list[tuple[int, str, int, int]]:
        rows, total = db.list_page(session, alice, TAXONOMY, db.ListFilter(**filters))  # type: ignore[arg-type]
        assert total == len(rows)
        return [(r.product.id, r.status, r.answered, r.required) for r in rows]

    assert listed() == [(mug.id, "suggested", 0, 2), (second.id, "confirmed", 1, 2), (first.id, "confirmed", 2, 2)]
    assert [r[0] for r in listed(status="ready")] == [first.id]
    assert [r[0] for r in listed(labels=(("color", "red"),))] == [second.id]
    assert [r[0] for r in listed(search="BLU")] == [first.id]
    assert [r[0] for r in listed(confidence_below=0.5)] == [mug.id]
    assert [r[0] for r in listed(status="new")] == []

    undone = db.undo_last_save(session, TAXONOMY, admin, first)  # an admin may undo anyone's save
    assert [(r.attribute, r.restored) for r in undone.reverted] == [("color", "red"), ("pattern", None)]
    # Back to the imported red, which is not a confirmation: 0 answered, and no longer confirmed.
    assert listed(labels=(("color", "red"),))[-1] == (first.id, "new", 0, 2)  # no suggestion either
    assert db.confirmed_products(session, alice, [first.id, second.id]) == {second.id}
    (line,) = db.owner_completeness(session, admin, TAXONOMY)
    assert (line.owner, line.products, line.ready, line.answered, line.required) == ("alice", 3, 0, 1, 6)
    with pytest.raises(db.NothingToUndo, match="every save of it has been undone already"):
        db.undo_last_save(session, TAXONOMY, alice, first)
