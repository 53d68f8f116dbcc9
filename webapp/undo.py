"""Undo of a product's last save, for its owner (and admins, for any product).

The history stays whole: the values from before the save come back as new ``undo`` events
(``db.undo``). Undos stack: a second undo undoes the save before, until none is left; then
the seller is told so. Saves made after an undo are undone first, as in any editor.
"""

from __future__ import annotations

from dataclasses import dataclass

import db

from .context import AppContext
from .services import ServiceError, Viewer, user_of

EMPTY = "empty"


@dataclass(frozen=True)
class UndoResult:
    product_id: int
    category: str  # the product's category after the undo
    saved_at: str  # when the undone save was made (UTC, ISO 8601)
    saved_by: str | None
    reverted: list[dict]  # {"attribute", "saved", "restored"} per attribute put back
    labels: dict[str, str | None]  # the product's current labels after the undo
    message: str


def _shown(attribute: str) -> str:
    return "category" if attribute == db.CATEGORY_ATTRIBUTE else attribute.replace("_", " ")


def describe(undone: db.UndoneSave, saved_by: str | None, viewer: str) -> str:
    """ "Undid your save of 14:02 UTC: color back to red, pattern back to empty." """
    whose = "your" if saved_by == viewer else f"{saved_by}'s" if saved_by else "a"
    when = undone.saved_at.strftime("%H:%M UTC")
    changes = [
        f"{_shown(r.attribute)} back to {r.restored if r.restored is not None else EMPTY}" for r in undone.reverted
    ]
    return f"Undid {whose} save of {when}: " + (", ".join(changes) if changes else "nothing had changed") + "."


def undo_last_save(ctx: AppContext, viewer: Viewer, product_id: int) -> UndoResult:
    """Undo the newest save of the product that is not undone yet; refused when there is none."""
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        try:
            undone = db.undo_last_save(session, ctx.taxonomy, user, db.get_product(session, user, product_id))
        except db.NothingToUndo as exc:
            raise ServiceError(f"{exc}.") from None
        author = session.get(db.User, undone.saved_by) if undone.saved_by is not None else None
        saved_by = author.name if author is not None else None
        product = db.get_product(session, user, product_id)
        labels = db.current_labels(session, user, ctx.taxonomy, product)
        result = UndoResult(
            product_id=product.id,
            category=product.category,
            saved_at=undone.saved_at.isoformat(timespec="seconds"),
            saved_by=saved_by,
            reverted=[{"attribute": r.attribute, "saved": r.saved, "restored": r.restored} for r in undone.reverted],
            labels=labels,
            message=describe(undone, saved_by, user.name),
        )
    ctx.policy.nudge()  # labels changed: the retrain policy counts them like a save's
    return result
