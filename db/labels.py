"""Label events, append-only, and the current labels derived from them.

A product's current value of an attribute is the value of its latest event for that attribute
(highest id), looked at only for the attributes of the product's current category. Nothing here
updates or deletes an event: clearing a label is a new event whose value is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from taxonomy import Taxonomy

from .completeness import confirmed_ids
from .products import resolve_product, user_id, visible_to
from .tables import CONFIRMED_SOURCES, LABEL_SOURCES, LabelEvent, Product, User, utcnow

MODEL_SOURCES = ("model_accepted", "model_edited")
_CHUNK = 500  # ids per IN (...) list, well under every backend's parameter limit

Labels = dict[str, str | None]


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    attribute: str
    value: str | None
    source: str
    user_name: str | None
    model_version_id: str | None
    created_at: datetime


def record_labels(
    session: Session,
    taxonomy: Taxonomy,
    user: User,
    product: Product | int,
    labels: Mapping[str, str | None],
    *,
    source: str | Mapping[str, str] = "seller",
    model_version_id: str | None = None,
    at: datetime | None = None,
) -> list[LabelEvent]:
    """Validate ``labels`` (attribute -> value, None clears) and append one event per attribute.

    All or nothing: any unknown attribute or invalid value raises ``taxonomy.InvalidValueError``
    naming the allowed ones, and nothing is written. ``source`` is one source for all attributes
    or one per attribute; model sources need ``model_version_id``. ``at``: the time of the
    action the events belong to (all events of one save share it; an undo finds a save by it).
    """
    product = resolve_product(session, user, product)
    clean = taxonomy.validate_labels(product.category, dict(labels))
    category = taxonomy.category(product.category)
    if isinstance(source, str):
        sources = dict.fromkeys(clean, source)
    else:
        sources = {category.attribute(k).name: v for k, v in source.items()}
        missing = sorted(set(clean) - set(sources))
        if missing:
            raise ValueError(f"no source given for {missing}")
    for attr in clean:
        if sources[attr] not in LABEL_SOURCES:
            raise ValueError(f"unknown label source {sources[attr]!r}; allowed: {', '.join(LABEL_SOURCES)}")
        if sources[attr] in MODEL_SOURCES and model_version_id is None:
            raise ValueError(f"source {sources[attr]!r} needs the model_version_id of the suggestion")
    now = at or utcnow()
    events = [
        LabelEvent(
            product_id=product.id,
            attribute=attr,
            value=value,
            source=sources[attr],
            user_id=user_id(user),
            model_version_id=model_version_id if sources[attr] in MODEL_SOURCES else None,
            created_at=now,
        )
        for attr, value in clean.items()
    ]
    session.add_all(events)
    product.updated_at = now
    session.flush()
    return events


def latest_values(session: Session, where: ColumnElement[bool]) -> dict[int, tuple[str, dict[str, str | None]]]:
    """product id -> (category, attribute -> latest value) for the products matching ``where``."""
    latest = (
        select(func.max(LabelEvent.id).label("id"))
        .join(Product, Product.id == LabelEvent.product_id)
        .where(where)
        .group_by(LabelEvent.product_id, LabelEvent.attribute)
        .subquery()
    )
    rows = session.execute(
        select(LabelEvent.product_id, Product.category, LabelEvent.attribute, LabelEvent.value)
        .join(latest, LabelEvent.id == latest.c.id)
        .join(Product, Product.id == LabelEvent.product_id)
    )
    out: dict[int, tuple[str, dict[str, str | None]]] = {}
    for product_id, category, attribute, value in rows:
        out.setdefault(product_id, (category, {}))[1][attribute] = value
    return out


def restrict(taxonomy: Taxonomy, category: str, latest: Mapping[str, str | None]) -> Labels:
    """Every attribute of ``category`` -> its current value (None when missing or cleared)."""
    return {name: latest.get(name) for name in taxonomy.category(category).attribute_names}


def current_labels(session: Session, viewer: User, taxonomy: Taxonomy, product: Product | int) -> Labels:
    """The product's current labels: every attribute of its category, None where unknown."""
    product = resolve_product(session, viewer, product)
    found = latest_values(session, Product.id == product.id)
    return restrict(taxonomy, product.category, found.get(product.id, ("", {}))[1])


def current_labels_bulk(
    session: Session, viewer: User, taxonomy: Taxonomy, product_ids: Iterable[int]
) -> dict[int, Labels]:
    """Current labels of many products in a few queries; ids the viewer may not see are left out."""
    ids = sorted(set(product_ids))
    out: dict[int, Labels] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        where = Product.id.in_(chunk) & visible_to(viewer)
        found = latest_values(session, where)
        for pid, category in session.execute(select(Product.id, Product.category).where(where)):
            out[pid] = restrict(taxonomy, category, found.get(pid, (category, {}))[1])
    return out


def confirmed_products(session: Session, viewer: User, product_ids: Iterable[int]) -> set[int]:
    """The ids among ``product_ids`` that the viewer may see and that have a current label a
    person confirmed (an undone save no longer counts; see ``completeness.confirmed_ids``)."""
    ids = sorted(set(product_ids))
    out: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        out.update(session.scalars(confirmed_ids(Product.id.in_(ids[start : start + _CHUNK]) & visible_to(viewer))))
    return out


def label_history(session: Session, viewer: User, product_id: int) -> list[HistoryEntry]:
    """Every event of the product, oldest first, with the name of the user who made it."""
    product = resolve_product(session, viewer, product_id)
    rows = session.execute(
        select(LabelEvent, User.name)
        .outerjoin(User, User.id == LabelEvent.user_id)
        .where(LabelEvent.product_id == product.id)
        .order_by(LabelEvent.id)
    )
    return [
        HistoryEntry(
            id=e.id,
            attribute=e.attribute,
            value=e.value,
            source=e.source,
            user_name=name,
            model_version_id=e.model_version_id,
            created_at=e.created_at,
        )
        for e, name in rows
    ]


def last_saved_product(session: Session, viewer: User, category: str, *, exclude: int | None = None) -> Product | None:
    """The product of ``category`` whose labels ``viewer`` confirmed most recently (not ``exclude``).

    "Most recently" is the newest confirmed event the viewer wrote (ids only grow), so a product
    saved again moves to the front; None when the viewer has saved no other product of ``category``.
    """
    query = (
        select(Product)
        .join(LabelEvent, LabelEvent.product_id == Product.id)
        .where(
            LabelEvent.user_id == user_id(viewer),
            LabelEvent.source.in_(CONFIRMED_SOURCES),
            Product.category == category,
            visible_to(viewer),
        )
        .order_by(LabelEvent.id.desc())
        .limit(1)
    )
    if exclude is not None:
        query = query.where(Product.id != exclude)
    return session.scalars(query).first()
