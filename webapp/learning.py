"""What the loop did, shown to the people who fed it: the retrain policy's state and switch, a
run's cancellation, per-attribute change of a version against the one it replaced (the same
held-out products, measured at the gate), and a seller's own corrections at work."""

from __future__ import annotations

from dataclasses import dataclass

import db

from . import policy as policy_mod
from .context import AppContext
from .services import Viewer, admin_of, user_of


@dataclass(frozen=True)
class AttributeChange:
    category: str
    attribute: str
    support: int  # held-out products with a true value
    before: float  # the attribute's metric (harmonic mean of micro and macro F1)
    after: float
    right_before: float  # share of those products whose value was right (micro F1)
    right_after: float

    @property
    def change(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class VersionChange:
    version: str
    against: str  # what it was compared with at the gate
    score_before: float
    score_after: float
    held_out: int
    attributes: tuple[AttributeChange, ...]


def policy_state(ctx: AppContext, viewer: Viewer) -> policy_mod.PolicyState:
    with ctx.transaction() as session:
        admin_of(session, viewer)
    return ctx.policy.state()


def set_auto_retrain(ctx: AppContext, viewer: Viewer, enabled: bool) -> policy_mod.PolicyState:
    with ctx.transaction() as session:
        admin_of(session, viewer)
    return ctx.policy.set_enabled(bool(enabled))


def cancel_run(ctx: AppContext, viewer: Viewer, run_id: int | None = None) -> int:
    """Cancel ``run_id`` (default: the run that is going); returns its id."""
    with ctx.transaction() as session:
        admin = admin_of(session, viewer)
        if run_id is None:
            running = db.running_run(session)
            if running is None:
                raise db.RegistryError("no training run is going; nothing to cancel")
            run_id = running.id
    ctx.models.cancel(int(run_id), admin)
    return int(run_id)


def _changes(metrics: dict) -> tuple[AttributeChange, ...]:
    before = {(a["category"], a["attribute"]): a for a in (metrics.get("before") or {}).get("per_attribute", [])}
    out = []
    for a in metrics.get("per_attribute", []):
        b = before.get((a["category"], a["attribute"]))
        if b is None:
            continue
        out.append(
            AttributeChange(
                a["category"],
                a["attribute"],
                int(a["support"]),
                float(b["score"]),
                float(a["score"]),
                float(b["micro_f1"]),
                float(a["micro_f1"]),
            )
        )
    return tuple(sorted(out, key=lambda c: c.change, reverse=True))


def version_change(ctx: AppContext, viewer: Viewer, version_id: str | None = None) -> VersionChange | None:
    """Per attribute, ``version_id`` (default: the active one) against the version it was judged
    against at the gate, on the same held-out products; None for a version judged before the
    app kept both sides (or with nothing active)."""
    with ctx.transaction() as session:
        admin_of(session, viewer)
        version = db.get_version(session, version_id) if version_id else db.active_version(session)
        if version is None:
            return None
        metrics = dict(version.metrics or {})
    before = metrics.get("before")
    if not before or metrics.get("score") is None:
        return None
    return VersionChange(
        version.id,
        str(before.get("against", "the version before")),
        float(before["score"]),
        float(metrics["score"]),
        int(metrics.get("held_out") or 0),
        _changes(metrics),
    )


def _merged(changes: tuple[AttributeChange, ...], attribute: str) -> tuple[float, float, int] | None:
    """Share right before and after for ``attribute`` over every category that has it."""
    rows = [c for c in changes if c.attribute == attribute and c.support]
    support = sum(c.support for c in rows)
    if not support:
        return None
    before = sum(c.right_before * c.support for c in rows) / support
    after = sum(c.right_after * c.support for c in rows) / support
    return before, after, support


def _corrections(n: int) -> str:
    return f"{n} correction" if n == 1 else f"{n} corrections"


def my_corrections_line(ctx: AppContext, viewer: Viewer) -> str:
    """One line for the Label tab: what this seller's corrections did for the model now serving,
    or what they are waiting for."""
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        active = db.active_version(session)
        if active is None:
            pending = sum(db.corrections_between(session, user, 0, None).values())
            return f"Your {_corrections(pending)} will train the first model." if pending else ""
        watermark = policy_mod.version_watermark(session, active)
        parent = db.get_version(session, active.parent_id) if active.parent_id else None
        floor = policy_mod.version_watermark(session, parent) if parent is not None else 0
        used = db.corrections_between(session, user, floor, watermark)
        waiting = sum(db.corrections_between(session, user, watermark, None).values())
        metrics = dict(active.metrics or {})
    state = ctx.policy.state()
    later = ""
    if waiting:
        when = ""
        if state.enabled and state.remaining:
            when = f"; the next retrain starts after {state.remaining} more labelled products"
        later = f"Your {_corrections(waiting)} since then go into the next retrain{when}."
    if not used:
        return later
    changes = _merged(_changes(metrics), max(used, key=lambda a: used[a]))
    total = sum(used.values())
    if changes is None:
        now = f"Your last {_corrections(total)} trained the model now serving."
    else:
        before, after, support = changes
        attribute = max(used, key=lambda a: used[a])
        now = (
            f"Your last {_corrections(total)} trained the model now serving: {attribute} {before:.0%} -> {after:.0%} "
            f"right on {support} held-out products."
        )
    return f"{now} {later}".strip()
