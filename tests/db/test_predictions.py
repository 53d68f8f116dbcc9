"""Predictions round-trip; the review queue holds unconfirmed products, least confident first."""

from __future__ import annotations

import io

from sqlalchemy.orm import Session

import db
from taxonomy import AttributePrediction, ProductPrediction, Taxonomy


def _product(session: Session, owner: db.User, ident: str) -> db.Product:
    product = db.Product(owner_id=owner.id, category="Men Tshirts", source="import", external_id=ident)
    session.add(product)
    session.flush()
    return product


def _prediction(color: str, confidence: float) -> ProductPrediction:
    return ProductPrediction(
        id="ignored",
        category="Men Tshirts",
        category_probability=0.9,
        attributes={
            "color": AttributePrediction(color, confidence, ((color, confidence), ("multicolor", 1 - confidence))),
            "neck": AttributePrediction("round", 0.8, (("round", 0.8), ("polo", 0.2))),
        },
    )


def test_latest_prediction_round_trip(session: Session, alice: db.User, version_id: str, tmp_path) -> None:
    product = _product(session, alice, "p1")
    assert db.latest_prediction(session, alice, product.id) is None
    db.save_prediction(session, product, version_id, _prediction("white", 0.7))
    (tmp_path / "v2.pt").write_bytes(b"v2")
    db.register_version(session, version_id="v2", path=tmp_path / "v2.pt", taxonomy_fingerprint="f", kind="full")
    db.save_prediction(session, product, "v2", _prediction("black", 0.6))

    stored = db.latest_prediction(session, alice, product.id)
    assert stored.model_version_id == "v2" and stored.created_at.tzinfo is not None
    assert stored.prediction.id == "p1" and stored.prediction.category == "Men Tshirts"
    assert stored.prediction.labels == {"color": "black", "neck": "round"}
    assert stored.prediction.attributes["color"].top_k == (("black", 0.6), ("multicolor", 0.4))
    older = db.latest_prediction(session, alice, product.id, model_version_id=version_id)
    assert older.prediction.labels["color"] == "white"


def test_review_queue_order_and_confirmation(
    session: Session, taxonomy: Taxonomy, alice: db.User, version_id: str
) -> None:
    sure, unsure, confirmed, imported, _bare = (_product(session, alice, str(i)) for i in range(5))
    db.save_prediction(session, sure, version_id, _prediction("white", 0.95))
    db.save_prediction(session, unsure, version_id, _prediction("white", 0.2))
    db.save_prediction(session, confirmed, version_id, _prediction("white", 0.1))
    db.save_prediction(session, imported, version_id, _prediction("white", 0.5))
    db.record_labels(
        session, taxonomy, alice, confirmed, {"color": "white"}, source="model_accepted", model_version_id=version_id
    )
    db.record_labels(session, taxonomy, alice, imported, {"color": "white"}, source="import")
    queue = db.review_queue(session, alice, limit=10)
    assert [item.product.id for item in queue] == [unsure.id, imported.id, sure.id]  # bare has no prediction
    assert queue[0].min_confidence == 0.2 and abs(queue[0].mean_confidence - (0.9 + 0.2 + 0.8) / 3) < 1e-9
    assert len(db.review_queue(session, alice, limit=1)) == 1


def test_export_predictions_in_submission_layout(
    session: Session, taxonomy: Taxonomy, alice: db.User, version_id: str
) -> None:
    product = _product(session, alice, "42")
    db.save_prediction(session, product, version_id, _prediction("white", 0.7))
    out = io.StringIO()
    assert db.export_predictions(session, alice, taxonomy, out, model_version_id=version_id) == 1
    header, row = out.getvalue().splitlines()
    assert header.startswith("id,Category,len,attr_1,")
    assert row == "42,Men Tshirts,5,white,round,dummy_value,dummy_value,dummy_value," + ",".join(["dummy_value"] * 5)
    assert db.export_predictions(session, alice, taxonomy, io.StringIO(), model_version_id="nope") == 0
