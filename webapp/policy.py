"""The retrain policy: when the app retrains by itself, and which kind of run it starts.

Counted in labelled products (a product with at least one new label event, any source, an
import included) since the data the active version was trained on, read from the database
by the label-event watermark each version records, so every process on the database agrees:

- no active version yet: a full training once ``MIN_TRAINING_PRODUCTS`` products are labelled;
- the active backbone was pretrained (ImageNet or another weights file) and fine-tuned: heads-only
  retrains, the cheap loop that pays on a good trunk;
- the backbone was trained from scratch, or from a catalogue trunk (``python -m trainer
  pretrain``) with the scratch recipe's schedule, which trains every layer on the labels as
  from-scratch training does (a fresh full run starts from the trunk the app is configured
  with, ``--weights``): heads-only retrains learn little from new labels on its features
  (issue 11 measured -0.022 to +0.009 for four of them), and so does fine-tuning it
  (``bench/loop.py`` on myntra-dev: -0.016 and -0.020 on val.csv against the version it started
  from, rejected by the gate), while the from-scratch recipe gains with data (0.538 on val.csv
  from 900 products, 0.59-0.60 from 1,800; ``bench/RESULTS.md``). So a full training from scratch
  on every label once the labelled set has grown by ``full_growth`` since the backbone was
  trained, or after ``full_after_heads`` heads-only runs in a row; heads in between.

A run starts once ``heads_after`` products were labelled since the newest version's data (the
active one, or a newer candidate the gate rejected), and
at most one automatic run every ``min_minutes``. An admin switches the policy off or on in the
Admin tab (stored in the database); ``VT_AUTO_RETRAIN`` is the default.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import db
import trainer

from .serving import MIN_TRAINING_PRODUCTS, ModelManager

log = logging.getLogger(__name__)

ENABLED_KEY = "auto_retrain"


@dataclass(frozen=True)
class RetrainPolicy:
    enabled: bool = True
    heads_after: int = 100  # labelled products since the active version's data
    min_minutes: float = 10.0  # between two automatic runs
    full_growth: float = 1.2  # labelled products / products the backbone was trained on
    full_after_heads: int = 3  # heads-only runs in a row before a full one (from-scratch backbones)
    poll_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.heads_after < 1:
            raise ValueError(f"retrain after at least 1 labelled product, got {self.heads_after}")
        if self.min_minutes < 0 or self.poll_seconds <= 0:
            raise ValueError("min_minutes must be >= 0 and poll_seconds > 0")
        if self.full_growth <= 1.0:
            raise ValueError(f"full_growth must be above 1 (a growth factor), got {self.full_growth}")
        if self.full_after_heads < 1:
            raise ValueError(f"full_after_heads must be at least 1, got {self.full_after_heads}")


@dataclass(frozen=True)
class PolicyState:
    enabled: bool
    kind: str  # the kind of the next automatic run: "heads" or "full"
    reason: str  # why that kind, in words
    new_products: int  # labelled since the active version's data
    threshold: int  # how many start a run
    wait_seconds: float  # before the minimum interval allows the next automatic run
    running: bool  # a run (of any trigger) is queued or going
    fresh: bool = False  # a full run from the configured trunk rather than fine-tuning the active version

    @property
    def remaining(self) -> int:
        return max(0, self.threshold - self.new_products)

    @property
    def due(self) -> bool:
        return self.enabled and not self.running and self.remaining == 0 and self.wait_seconds <= 0

    def describe(self) -> str:
        """One line for the Admin tab."""
        if not self.enabled:
            return "Automatic retraining is off: runs start only from the buttons below."
        kind = "heads retrain" if self.kind == "heads" else "full retrain"
        if self.fresh:
            kind = "full training from scratch"
        if self.running:
            return f"A run is going; afterwards the next automatic run is a {kind} ({self.reason})."
        if self.remaining:
            return (
                f"Next {kind} after {self.remaining} more labelled products "
                f"({self.new_products} of {self.threshold} so far; {self.reason})."
            )
        if self.wait_seconds > 0:
            return (
                f"A {kind} is due ({self.new_products} products labelled; {self.reason}); it starts in "
                f"{self.wait_seconds / 60:.0f} min (at most one automatic run every interval)."
            )
        return f"A {kind} starts now ({self.new_products} products labelled; {self.reason})."


def stored_enabled(session: Session) -> bool | None:
    row = session.get(db.AppSetting, ENABLED_KEY)
    return None if row is None else bool(row.value)


def store_enabled(session: Session, enabled: bool) -> None:
    row = session.get(db.AppSetting, ENABLED_KEY)
    if row is None:
        session.add(db.AppSetting(key=ENABLED_KEY, value=bool(enabled)))
    else:
        row.value = bool(enabled)
    session.flush()


def version_watermark(session: Session, version: db.ModelVersion) -> int:
    """The label-event id the version's data went up to; for a version that did not record it
    (registered before the policy existed), the newest event older than the version."""
    recorded = (version.metrics or {}).get("label_watermark")
    if recorded is not None:
        return int(recorded)
    query = select(db.LabelEvent.id).where(db.LabelEvent.created_at <= version.created_at)
    return int(session.scalar(query.order_by(db.LabelEvent.id.desc()).limit(1)) or 0)


def _heads_in_a_row(session: Session) -> int:
    """Heads-only runs that ended (activated or not) since the last full one."""
    count = 0
    for run in db.list_runs(session, limit=50):
        if run.status not in ("succeeded", "rejected"):
            continue
        if run.kind == "full":
            break
        count += 1
    return count


def _last_automatic(session: Session) -> datetime | None:
    query = select(db.TrainingRun.created_at).where(db.TrainingRun.trigger == "policy")
    return session.scalar(query.order_by(db.TrainingRun.id.desc()).limit(1))


def decide(session: Session, policy: RetrainPolicy, now: datetime | None = None) -> PolicyState:
    """What the policy would do now, read from the database alone."""
    now = now or datetime.now(UTC)
    stored = stored_enabled(session)
    enabled = policy.enabled if stored is None else stored
    running = db.running_run(session) is not None
    last = _last_automatic(session)
    wait = 0.0 if last is None else max(0.0, policy.min_minutes * 60 - (now - last).total_seconds())
    active = db.active_version(session)
    labelled = db.labelled_products(session)
    # Counted since the newest version's data, active or not: a candidate the gate rejected was
    # trained on these labels already, and training again on them would judge the same again.
    versions = db.list_versions(session)
    newest = versions[0] if versions else None
    if active is None:
        if newest is None:
            reason, new, threshold = "no model yet: the first one is a full training", labelled, MIN_TRAINING_PRODUCTS
        else:
            new = db.products_labelled_since(session, version_watermark(session, newest))
            reason, threshold = "no model active yet: the next one is a full training", policy.heads_after
        return PolicyState(enabled, "full", reason, new, threshold, wait, running)
    metrics = active.metrics or {}
    floor = max(version_watermark(session, active), version_watermark(session, newest) if newest else 0)
    new = db.products_labelled_since(session, floor)
    source = str(metrics.get("backbone_source", "random"))
    backbone_products = int(metrics.get("backbone_products") or metrics.get("labelled_products") or 0)
    in_a_row = _heads_in_a_row(session)
    learnt = trainer.recipe_for(source) != "pretrained"  # every layer trained on the labels
    scratch = source == "random"
    how = "from scratch" if scratch else "from a catalogue trunk"
    fresh_from = "from scratch" if scratch else "from the configured trunk"
    if not learnt:
        kind, reason = "heads", f"the backbone is pretrained ({source}): heads-only retrains use new labels well"
    elif backbone_products and labelled >= policy.full_growth * backbone_products:
        kind = "full"
        reason = (
            f"labelled products grew {labelled / backbone_products:.2f}x since the backbone was trained "
            f"(a full training {fresh_from} at {policy.full_growth:g}x)"
        )
    elif in_a_row >= policy.full_after_heads:
        kind = "full"
        reason = f"{in_a_row} heads-only runs in a row (full retrain after {policy.full_after_heads})"
    else:
        kind = "heads"
        grown = f"{labelled / backbone_products:.2f}x so far" if backbone_products else "growth unknown"
        reason = f"backbone trained {how}: a full retrain once the labelled set grows {policy.full_growth:g}x ({grown})"
    # A backbone trained on the labels is retrained afresh (the measured kind that pays, see above).
    return PolicyState(enabled, kind, reason, new, policy.heads_after, wait, running, fresh=kind == "full")


def _an_admin(session: Session) -> db.User | None:
    admins = [u for u in db.list_users(session) if u.role == "admin"]
    return admins[0] if admins else None


class PolicyRunner:
    """A background thread that starts the run the policy asks for, checking every
    ``poll_seconds`` and at once when ``nudge`` is called (after a save)."""

    def __init__(self, policy: RetrainPolicy, sessions: sessionmaker[Session], models: ModelManager) -> None:
        self.policy = policy
        self.sessions = sessions
        self.models = models
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def state(self) -> PolicyState:
        with self.sessions.begin() as session:
            return decide(session, self.policy)

    def set_enabled(self, enabled: bool) -> PolicyState:
        with self.sessions.begin() as session:
            store_enabled(session, enabled)
        self.nudge()
        return self.state()

    def check(self) -> int | None:
        """Start the policy's run if one is due; returns its run id."""
        with self.sessions.begin() as session:
            state = decide(session, self.policy)
            admin = _an_admin(session)
        if not state.due or self.models.training or admin is None:
            return None
        try:
            run_id = self.models.start_training(state.kind, admin, trigger="policy", fresh=state.fresh)
        except db.RunInProgressError:  # another process (or the button) was first
            return None
        log.info("retrain policy started run %s (%s): %s", run_id, state.kind, state.reason)
        return run_id

    def nudge(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="retrain-policy", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # the policy must never take the app down; it tries again later
                log.exception("the retrain policy check failed")
            self._wake.wait(self.policy.poll_seconds)
            self._wake.clear()
