"""Completeness: which current labels a person confirmed, per product and per owner, in SQL.

An attribute of a product is *answered* when its current value (its latest event) is not empty
and was confirmed by a person: saved by a seller or an accepted/edited suggestion;
``not applicable`` is an answer. Imported labels and raw model output are not. An ``undo``
event counts as the event it restored did (``restores_id``). A product is *ready* when every
attribute of its category is answered. Only the attributes of the product's current category
count. Everything here is a query (SQLite and PostgreSQL alike), so a paginated list can filter
on it without loading every product.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, Subquery, case, func, literal, select
from sqlalchemy.orm import Session, aliased

from taxonomy import Taxonomy

from .products import visible_to
from .tables import CONFIRMED_SOURCES, UNDO_SOURCE, LabelEvent, Product, User

_SEP = "|"


def current_state(where: ColumnElement[bool]) -> Subquery:
    """(product_id, attribute, value, source) of the latest event of each attribute of the
    products matching ``where``; ``source`` is the restored event's for an undo (None: restored
    to empty)."""
    latest = (
        select(func.max(LabelEvent.id).label("id"))
        .join(Product, Product.id == LabelEvent.product_id)
        .where(where)
        .group_by(LabelEvent.product_id, LabelEvent.attribute)
        .subquery()
    )
    restored = aliased(LabelEvent)
    source = case((LabelEvent.source == UNDO_SOURCE, restored.source), else_=LabelEvent.source)
    return (
        select(LabelEvent.product_id, LabelEvent.attribute, LabelEvent.value, source.label("source"))
        .join(latest, LabelEvent.id == latest.c.id)
        .outerjoin(restored, restored.id == LabelEvent.restores_id)
        .subquery()
    )


def confirmed_ids(where: ColumnElement[bool]) -> Select[tuple[int]]:
    """Ids of the products matching ``where`` that have a current label a person confirmed (a
    value, a cleared value or a category): the "confirmed" status. An undone save no longer counts."""
    state = current_state(where)
    # Never correlated: it is used inside queries of products (``Product.id.in_(...)``).
    return select(state.c.product_id).where(state.c.source.in_(CONFIRMED_SOURCES)).distinct().correlate(None)


def category_pairs(taxonomy: Taxonomy) -> list[str]:
    """ "category|attribute" keys of every attribute of every category."""
    return [f"{cat.name}{_SEP}{attr}" for cat in taxonomy.categories for attr in cat.attribute_names]


def answered_counts(taxonomy: Taxonomy, where: ColumnElement[bool]) -> Subquery:
    """(product_id, answered) for the products matching ``where`` with at least one answer."""
    state = current_state(where)
    return (
        select(state.c.product_id, func.count().label("answered"))
        .join(Product, Product.id == state.c.product_id)
        .where(
            state.c.value.is_not(None),
            state.c.source.in_(CONFIRMED_SOURCES),
            (Product.category + _SEP + state.c.attribute).in_(category_pairs(taxonomy)),
        )
        .group_by(state.c.product_id)
        .subquery()
    )


def required_count(taxonomy: Taxonomy) -> ColumnElement[int]:
    """The number of attributes of each product's category, as a column."""
    return case(
        *[(Product.category == cat.name, literal(len(cat.attributes))) for cat in taxonomy.categories],
        else_=literal(0),
    )


def product_answered(session: Session, viewer: User, taxonomy: Taxonomy, product_id: int) -> int:
    """How many attributes of one product's category are answered."""
    counts = answered_counts(taxonomy, (Product.id == product_id) & visible_to(viewer))
    return int(session.scalar(select(counts.c.answered)) or 0)


@dataclass(frozen=True)
class OwnerCompleteness:
    """One owner's products: how many, how many ready, and answered of all required attributes."""

    owner_id: int
    owner: str
    products: int
    ready: int
    answered: int
    required: int

    @property
    def share(self) -> float:
        """Answered attributes over all their products' attributes (1.0 with nothing to answer)."""
        return self.answered / self.required if self.required else 1.0


def owner_completeness(session: Session, viewer: User, taxonomy: Taxonomy) -> list[OwnerCompleteness]:
    """Per owner of the products the viewer may see (a seller: only themselves), by name."""
    counts = answered_counts(taxonomy, visible_to(viewer))
    answered = func.coalesce(counts.c.answered, 0)
    required = required_count(taxonomy)
    query = (
        select(
            Product.owner_id,
            User.name,
            func.count(Product.id),
            func.sum(case((answered >= required, 1), else_=0)),
            func.sum(answered),
            func.sum(required),
        )
        .join(User, User.id == Product.owner_id)
        .outerjoin(counts, counts.c.product_id == Product.id)
        .where(visible_to(viewer))
        .group_by(Product.owner_id, User.name)
        .order_by(User.name)
    )
    return [
        OwnerCompleteness(int(owner_id), name, int(n), int(ready or 0), int(done or 0), int(need or 0))
        for owner_id, name, n, ready, done, need in session.execute(query)
    ]
