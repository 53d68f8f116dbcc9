"""Model predictions per product, and the review queue built from them.

One ``ProductPrediction`` is stored as rows sharing a ``group_id``: one for the category
(attribute ``CATEGORY_ATTRIBUTE``) and one per attribute, each with its top-k.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, insert, select
from sqlalchemy.orm import Session

from taxonomy import AttributePrediction, ProductPrediction

from .completeness import confirmed_ids
from .media import MediaStore
from .products import resolve_product, user_id, visible_to
from .tables import CATEGORY_ATTRIBUTE, AppSetting, Prediction, Product, User, utcnow

SCORING_CURSOR_KEY = "scoring_cursor"  # app_settings: how far an unfinished ``score --all`` went


@dataclass(frozen=True)
class StoredPrediction:
    product_id: int
    model_version_id: str
    created_at: datetime
    prediction: ProductPrediction


@dataclass(frozen=True)
class ToScore:
    """A product waiting to be scored: its id, category and photo file."""

    product_id: int
    category: str
    image_path: str


@dataclass(frozen=True)
class QueueItem:
    product: Product
    mean_confidence: float
    min_confidence: float


def _rows(group: str, product_id: int, model_version_id: str, prediction: ProductPrediction) -> list[dict[str, Any]]:
    """The ``predictions`` rows of one product prediction: the category first, then each attribute."""
    now = utcnow()
    common = {"group_id": group, "product_id": product_id, "model_version_id": model_version_id, "created_at": now}
    rows = [
        {
            **common,
            "attribute": CATEGORY_ATTRIBUTE,
            "value": prediction.category,
            "confidence": float(prediction.category_probability),
            "top_k": [],
        }
    ]
    for name, attr in prediction.attributes.items():
        rows.append(
            {
                **common,
                "attribute": name,
                "value": attr.value,
                "confidence": float(attr.probability),
                "top_k": [[value, float(p)] for value, p in attr.top_k],
            }
        )
    return rows


def save_prediction(session: Session, product: Product, model_version_id: str, prediction: ProductPrediction) -> str:
    """Store ``prediction`` for ``product`` as made by ``model_version_id``; returns its group id."""
    group = uuid.uuid4().hex
    session.add_all(Prediction(**row) for row in _rows(group, product.id, model_version_id, prediction))
    session.flush()
    return group


def save_predictions(
    session: Session,
    model_version_id: str,
    scored: Sequence[tuple[int, ProductPrediction]],
    *,
    once: bool = False,
) -> int:
    """Store many (product id, prediction) pairs in one statement; returns how many were stored.

    Products deleted since they were read are left out; with ``once``, so are products that
    already have a prediction by ``model_version_id`` (another process scored them meanwhile).
    """
    ids = [product_id for product_id, _ in scored]
    present = set(session.scalars(select(Product.id).where(Product.id.in_(ids))))
    if once:
        present -= set(
            session.scalars(
                select(Prediction.product_id)
                .where(Prediction.product_id.in_(ids), Prediction.model_version_id == model_version_id)
                .distinct()
            )
        )
    rows = [
        row
        for product_id, prediction in scored
        if product_id in present
        for row in _rows(uuid.uuid4().hex, product_id, model_version_id, prediction)
    ]
    if rows:
        session.execute(insert(Prediction), rows)
    return len({row["product_id"] for row in rows})


def _unscored(model_version_id: str) -> ColumnElement[bool]:
    return ~exists().where(Prediction.product_id == Product.id, Prediction.model_version_id == model_version_id)


def products_to_score(
    session: Session,
    media: MediaStore,
    *,
    model_version_id: str,
    after_id: int = 0,
    limit: int = 64,
    missing_only: bool = True,
) -> list[ToScore]:
    """Products with a photo and an id above ``after_id``, by id; with ``missing_only``, only those
    with no prediction by ``model_version_id``. Every viewer's products: scoring is an admin's job."""
    query = select(Product.id, Product.category, Product.image_sha256, Product.image_ext).where(
        Product.id > after_id, Product.image_sha256.is_not(None), Product.image_ext.is_not(None)
    )
    if missing_only:
        query = query.where(_unscored(model_version_id))
    rows = session.execute(query.order_by(Product.id).limit(max(1, int(limit))))
    return [ToScore(pid, category, str(media.path_for(sha, ext))) for pid, category, sha, ext in rows]


def count_to_score(session: Session, *, model_version_id: str, after_id: int = 0, missing_only: bool = True) -> int:
    """How many products ``products_to_score`` would go through from ``after_id`` on."""
    query = select(func.count()).select_from(Product).where(Product.id > after_id, Product.image_sha256.is_not(None))
    if missing_only:
        query = query.where(_unscored(model_version_id))
    return session.scalar(query) or 0


def scoring_cursor(session: Session, model_version_id: str) -> int | None:
    """The last product id a re-score of every product by ``model_version_id`` stored, if one is
    unfinished (it was interrupted); None otherwise."""
    row = session.get(AppSetting, SCORING_CURSOR_KEY)
    if row is None or row.value.get("model_version_id") != model_version_id:
        return None
    return int(row.value["after_id"])


def set_scoring_cursor(session: Session, model_version_id: str, after_id: int | None) -> None:
    """Record how far a re-score of every product went (in the transaction that stores its
    predictions, so the two cannot disagree after a crash); None: it finished."""
    row = session.get(AppSetting, SCORING_CURSOR_KEY)
    if after_id is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(
            AppSetting(key=SCORING_CURSOR_KEY, value={"model_version_id": model_version_id, "after_id": after_id})
        )
    else:
        row.value = {"model_version_id": model_version_id, "after_id": after_id}
    session.flush()


def _latest_groups(
    session: Session, where: ColumnElement[bool], model_version_id: str | None
) -> dict[int, list[Prediction]]:
    """product id -> rows of its latest prediction, for the products matching ``where``."""
    newest = select(func.max(Prediction.id).label("id")).join(Product, Product.id == Prediction.product_id).where(where)
    if model_version_id is not None:
        newest = newest.where(Prediction.model_version_id == model_version_id)
    newest_ids = newest.group_by(Prediction.product_id).subquery()
    groups = select(Prediction.group_id).join(newest_ids, Prediction.id == newest_ids.c.id).subquery()
    rows = session.scalars(
        select(Prediction).join(groups, Prediction.group_id == groups.c.group_id).order_by(Prediction.id)
    )
    out: dict[int, list[Prediction]] = {}
    for row in rows:
        out.setdefault(row.product_id, []).append(row)
    return out


def _assemble(product: Product, rows: list[Prediction]) -> StoredPrediction:
    head = next((r for r in rows if r.attribute == CATEGORY_ATTRIBUTE), rows[0])
    attributes = {
        r.attribute: AttributePrediction(
            value=r.value, probability=r.confidence, top_k=tuple((str(v), float(p)) for v, p in r.top_k)
        )
        for r in rows
        if r.attribute != CATEGORY_ATTRIBUTE
    }
    return StoredPrediction(
        product_id=product.id,
        model_version_id=head.model_version_id,
        created_at=head.created_at,
        prediction=ProductPrediction(
            id=product.display_id,
            category=head.value if head.attribute == CATEGORY_ATTRIBUTE else product.category,
            category_probability=head.confidence if head.attribute == CATEGORY_ATTRIBUTE else 0.0,
            attributes=attributes,
        ),
    )


def latest_prediction(
    session: Session, viewer: User, product_id: int, *, model_version_id: str | None = None
) -> StoredPrediction | None:
    """The newest prediction of the product (by one model version, if given), or None."""
    product = resolve_product(session, viewer, product_id)
    rows = _latest_groups(session, Product.id == product.id, model_version_id).get(product.id)
    return _assemble(product, rows) if rows else None


def latest_predictions(
    session: Session, viewer: User, *, model_version_id: str | None = None
) -> list[tuple[Product, StoredPrediction]]:
    """The newest prediction of every product the viewer may see that has one, by product id."""
    groups = _latest_groups(session, visible_to(viewer), model_version_id)
    # A subquery rather than an IN list of ids: SQLite caps the number of bound parameters.
    with_prediction = select(Prediction.product_id).distinct()
    query = select(Product).where(visible_to(viewer), Product.id.in_(with_prediction)).order_by(Product.id)
    return [(p, _assemble(p, groups[p.id])) for p in session.scalars(query) if p.id in groups]


def predicted_products(session: Session, viewer: User, product_ids: list[int]) -> set[int]:
    """The ids among ``product_ids`` that the viewer may see and a model has made a prediction for."""
    ids = sorted(set(product_ids))
    out: set[int] = set()
    for start in range(0, len(ids), 500):  # well under every backend's parameter limit
        query = (
            select(Prediction.product_id)
            .join(Product, Product.id == Prediction.product_id)
            .where(Prediction.product_id.in_(ids[start : start + 500]), visible_to(viewer))
            .distinct()
        )
        out.update(session.scalars(query))
    return out


def review_queue(session: Session, viewer: User, limit: int = 20) -> list[QueueItem]:
    """The viewer's own products with a prediction but no label confirmed by a person, least sure first.

    Confidence is that of the newest prediction (category and attributes together); imported
    labels and raw model output do not count as confirmed.
    """
    newest = (
        select(Prediction.product_id, func.max(Prediction.id).label("id"))
        .join(Product, Product.id == Prediction.product_id)
        .where(Product.owner_id == user_id(viewer))
        .group_by(Prediction.product_id)
        .subquery()
    )
    group = select(newest.c.product_id, Prediction.group_id).join(Prediction, Prediction.id == newest.c.id).subquery()
    mean = func.avg(Prediction.confidence)
    confirmed = Product.id.in_(confirmed_ids(Product.owner_id == user_id(viewer)))
    query = (
        select(Product, mean, func.min(Prediction.confidence))
        .join(group, group.c.product_id == Product.id)
        .join(Prediction, Prediction.group_id == group.c.group_id)
        .where(~confirmed)
        .group_by(Product.id)
        .order_by(mean, Product.id)
        .limit(max(0, int(limit)))
    )
    return [
        QueueItem(product=p, mean_confidence=float(m), min_confidence=float(lo)) for p, m, lo in session.execute(query)
    ]
