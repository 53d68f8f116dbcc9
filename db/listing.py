"""The "My products" list: one page of the viewer's products, filtered and counted in SQL.

Filters: category; status (``new``: no suggestion yet, ``suggested``: a suggestion but nothing
confirmed, ``confirmed``: a current label confirmed by a person, ``ready``: every attribute
answered, ``incomplete``: not ready); a search text (the product id, or part of a current label
value); current label values (attribute = value, all of them); and "confidence below X" (the
newest suggestion has a field, its category or an attribute, below X, as the review queue's
least-sure measure). Labels are the current ones, confirmed or imported, not suggestions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, literal, or_, select
from sqlalchemy.orm import Session

from taxonomy import Taxonomy

from .completeness import _SEP, answered_counts, category_pairs, confirmed_ids, current_state, required_count
from .products import MAX_ID, MAX_PAGE, visible_to
from .tables import Prediction, Product, User

LIST_STATUSES = ("new", "suggested", "confirmed", "ready", "incomplete")


@dataclass(frozen=True)
class ListFilter:
    """What the list shows; None / empty means any. ``labels``: validated (attribute, value) pairs."""

    category: str | None = None
    status: str | None = None
    search: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    confidence_below: float | None = None


@dataclass(frozen=True)
class ListedProduct:
    product: Product
    status: str  # "new", "suggested" or "confirmed"
    answered: int
    required: int


def _with_prediction(viewer: User) -> Select[tuple[int]]:
    # The helpers here are used inside a query of products: never correlated to it.
    return (
        select(Prediction.product_id)
        .join(Product, Product.id == Prediction.product_id)
        .where(visible_to(viewer))
        .correlate(None)
    )


def _unsure(viewer: User, below: float) -> Select[tuple[int]]:
    """Products whose newest prediction has a field below ``below``."""
    newest = (
        select(func.max(Prediction.id).label("id"))
        .join(Product, Product.id == Prediction.product_id)
        .where(visible_to(viewer))
        .group_by(Prediction.product_id)
        .subquery()
    )
    groups = select(Prediction.group_id).join(newest, Prediction.id == newest.c.id).correlate(None)
    return (
        select(Prediction.product_id)
        .where(Prediction.group_id.in_(groups), Prediction.confidence < below)
        .correlate(None)
    )


def _label_match(
    taxonomy: Taxonomy, viewer: User, condition: Callable[[Any], ColumnElement[bool]]
) -> Select[tuple[int]]:
    """Products with a current label of their own category for which ``condition(columns)`` holds
    (``columns``: the current-state subquery's ``product_id, attribute, value, source``)."""
    state = current_state(visible_to(viewer))
    return (
        select(state.c.product_id)
        .join(Product, Product.id == state.c.product_id)
        .where((Product.category + _SEP + state.c.attribute).in_(category_pairs(taxonomy)), condition(state.c))
        .correlate(None)
    )


def _equals(attribute: str, value: str) -> Callable[[Any], ColumnElement[bool]]:
    return lambda c: (c.attribute == attribute) & (c.value == value)


def list_page(
    session: Session, viewer: User, taxonomy: Taxonomy, f: ListFilter, *, limit: int = 24, offset: int = 0
) -> tuple[list[ListedProduct], int]:
    """One page of products (newest first) and how many match in all."""
    if f.status is not None and f.status not in LIST_STATUSES:
        raise ValueError(f"unknown status {f.status!r}; choose one of {', '.join(LIST_STATUSES)}")
    counts = answered_counts(taxonomy, visible_to(viewer))
    answered = func.coalesce(counts.c.answered, 0)
    required = required_count(taxonomy)
    confirmed = Product.id.in_(confirmed_ids(visible_to(viewer)))
    predicted = Product.id.in_(_with_prediction(viewer))
    status = case((confirmed, literal("confirmed")), (predicted, literal("suggested")), else_=literal("new"))
    query = select(Product, status, answered, required).outerjoin(counts, counts.c.product_id == Product.id)
    query = query.where(visible_to(viewer))
    if f.category is not None:
        query = query.where(Product.category == f.category)
    if f.status == "confirmed":
        query = query.where(confirmed)
    elif f.status == "suggested":
        query = query.where(~confirmed, predicted)
    elif f.status == "new":
        query = query.where(~confirmed, ~predicted)
    elif f.status == "ready":
        query = query.where(answered >= required)
    elif f.status == "incomplete":
        query = query.where(answered < required)
    needle = f.search.strip().lower()
    if needle:
        found = Product.id.in_(
            _label_match(taxonomy, viewer, lambda c: func.lower(c.value).contains(needle, autoescape=True))
        )
        by_id = needle.isdigit() and int(needle) <= MAX_ID
        query = query.where(or_(Product.id == int(needle), found) if by_id else found)
    for attribute, value in f.labels:
        query = query.where(Product.id.in_(_label_match(taxonomy, viewer, _equals(attribute, value))))
    if f.confidence_below is not None:
        query = query.where(Product.id.in_(_unsure(viewer, f.confidence_below)))
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    limit = max(0, min(int(limit), MAX_PAGE))
    if limit == 0:
        return [], total  # only the count, for a caller that works out which page to ask for
    page = query.order_by(Product.id.desc()).limit(limit).offset(max(0, int(offset)))
    rows = [ListedProduct(p, s, int(a), int(r)) for p, s, a, r in session.execute(page)]
    return rows, total
