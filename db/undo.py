"""Undo of a product's last save, as new events: the history is never rewritten.

A save is the events one person wrote for one product in one action: they share the product,
the user and the time (``services.save_labels`` gives all of them, the category change
included, one ``at``). Undoing a save appends, for each attribute it wrote, an ``undo`` event
with the value the attribute had before it (None where it was empty); a category the save
changed goes back too. Undos stack: the next undo undoes the save before, and so on, until
there is no save left that has not been undone; saves made after an undo are undone first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from taxonomy import Taxonomy

from .products import resolve_product, set_category, user_id
from .tables import CATEGORY_ATTRIBUTE, CONFIRMED_SOURCES, UNDO_SOURCE, LabelEvent, Product, User, utcnow


class NothingToUndo(LookupError):
    """The product has no save left to undo; the text says why."""


@dataclass(frozen=True)
class Reverted:
    """One attribute an undo put back: from the saved value to the one before the save."""

    attribute: str
    saved: str | None
    restored: str | None


@dataclass(frozen=True)
class UndoneSave:
    product_id: int
    saved_at: datetime
    saved_by: int | None  # the user id of whoever made the save
    reverted: list[Reverted]


def _actions(events: list[LabelEvent]) -> list[tuple[str, list[LabelEvent]]]:
    """The product's events (oldest first) as actions: ("save" | "undo" | "other", events)."""
    actions: list[tuple[str, list[LabelEvent]]] = []
    last_key: tuple[str, int | None, datetime] | None = None
    for e in events:
        kind = "undo" if e.source == UNDO_SOURCE else "save" if e.source in CONFIRMED_SOURCES else "other"
        key = (kind, e.user_id, e.created_at)
        if key == last_key:
            actions[-1][1].append(e)
        else:
            actions.append((kind, [e]))
        last_key = key
    return actions


def _target(actions: list[tuple[str, list[LabelEvent]]]) -> list[LabelEvent] | None:
    """The newest save not undone yet: walking back, each undo cancels the newest save before it."""
    pending = 0
    for kind, events in reversed(actions):
        if kind == "undo":
            pending += 1
        elif kind == "save":
            if pending == 0:
                return events
            pending -= 1
    return None


def _before(events: list[LabelEvent], first_id: int, attribute: str) -> LabelEvent | None:
    earlier = [e for e in events if e.attribute == attribute and e.id < first_id]
    return earlier[-1] if earlier else None


def undo_last_save(session: Session, taxonomy: Taxonomy, user: User, product: Product | int) -> UndoneSave:
    """Undo the newest save of ``product`` not undone yet; ``NothingToUndo`` when there is none."""
    product = resolve_product(session, user, product)
    query = select(LabelEvent).where(LabelEvent.product_id == product.id).order_by(LabelEvent.id)
    history = list(session.scalars(query))
    saved = _target(_actions(history))
    if saved is None:
        had_saves = any(e.source in CONFIRMED_SOURCES for e in history)
        raise NothingToUndo(
            f"nothing to undo for product {product.id}: "
            + ("every save of it has been undone already" if had_saves else "it has no saved labels yet")
        )
    first = saved[0].id
    now = utcnow()
    reverted: list[Reverted] = []
    for event in saved:
        prior = _before(history, first, event.attribute)
        # An undo event carries the value of the event it restored: point at that one, so a
        # chain of undos always names the original (and its confirmation) in one step.
        restores = None if prior is None else prior.restores_id if prior.source == UNDO_SOURCE else prior.id
        if event.attribute == CATEGORY_ATTRIBUTE:
            back = prior.value if prior is not None else event.replaced
            if back is None or back not in taxonomy.category_names:
                continue  # a save from before the app kept the category it replaced
            reverted.append(Reverted(event.attribute, event.value, back))
            set_category(session, taxonomy, user, product.id, back, source=UNDO_SOURCE, at=now, restores_id=restores)
            continue
        value = prior.value if prior is not None else None
        reverted.append(Reverted(event.attribute, event.value, value))
        session.add(
            LabelEvent(
                product_id=product.id,
                attribute=event.attribute,
                value=value,
                source=UNDO_SOURCE,
                user_id=user_id(user),
                created_at=now,
                restores_id=restores,
            )
        )
    product.updated_at = now
    session.flush()
    return UndoneSave(product.id, saved[0].created_at, saved[0].user_id, reverted)
