"""Model versions (exactly one active at a time) and training runs (queued -> running -> done)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taxonomy import file_sha256

from .products import user_id
from .tables import (
    RUN_ACTIVE_STATUSES,
    RUN_STATUSES,
    RUN_TRIGGERS,
    VERSION_KINDS,
    ModelVersion,
    TrainingRun,
    User,
    utcnow,
)

FINAL_RUN_STATUSES = tuple(s for s in RUN_STATUSES if s not in RUN_ACTIVE_STATUSES)


class RegistryError(ValueError):
    """A model version or training run that does not exist or cannot make that move."""


class RunInProgressError(RegistryError):
    """Another training run is queued or running."""


# -- model versions ------------------------------------------------------------------------------


def register_version(
    session: Session,
    *,
    version_id: str,
    path: str | os.PathLike[str],
    taxonomy_fingerprint: str,
    kind: str,
    metrics: dict[str, Any] | None = None,
    checksum: str | None = None,
    parent_id: str | None = None,
    notes: str = "",
) -> ModelVersion:
    """Record a trained checkpoint as a candidate. Without ``checksum`` the file is hashed."""
    if kind not in VERSION_KINDS:
        raise RegistryError(f"unknown model kind {kind!r}; allowed: {', '.join(VERSION_KINDS)}")
    if session.get(ModelVersion, version_id) is not None:
        raise RegistryError(f"model version {version_id!r} already exists")
    if parent_id is not None and session.get(ModelVersion, parent_id) is None:
        raise RegistryError(f"parent model version {parent_id!r} does not exist")
    if checksum is None:
        if not Path(path).is_file():
            raise RegistryError(f"checkpoint file not found: {path}")
        checksum = file_sha256(path)
    version = ModelVersion(
        id=version_id,
        path=str(path),
        checksum=checksum,
        taxonomy_fingerprint=taxonomy_fingerprint,
        metrics=dict(metrics or {}),
        status="candidate",
        parent_id=parent_id,
        kind=kind,
        notes=notes,
    )
    session.add(version)
    session.flush()
    return version


def get_version(session: Session, version_id: str) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise RegistryError(f"model version {version_id!r} not found")
    return version


def list_versions(session: Session) -> list[ModelVersion]:
    """All versions, newest first."""
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id)))


def active_version(session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.status == "active"))


def activate_version(session: Session, version_id: str) -> ModelVersion:
    """Make ``version_id`` the one active version; the one active before becomes retired.

    Activating a retired version is how a rollback is done.
    """
    version = get_version(session, version_id)
    if version.status == "active":
        return version
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.status == "active", ModelVersion.id != version_id)
        .values(status="retired")
        .execution_options(synchronize_session="fetch")
    )
    version.status = "active"
    version.activated_at = utcnow()
    session.flush()
    return version


def prepend_version_note(session: Session, version_id: str, note: str) -> ModelVersion:
    """Put ``note`` before a version's notes (what happened to it last reads first)."""
    version = get_version(session, version_id)
    version.notes = note + (f" Before: {version.notes}" if version.notes else "")
    session.flush()
    return version


# -- training runs -------------------------------------------------------------------------------


def create_run(
    session: Session,
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    created_by: User | None = None,
    trigger: str = "admin",
) -> TrainingRun:
    """Queue a training run started by ``trigger`` (an admin's button, or the retrain policy).
    Raises RunInProgressError while another one is queued or running."""
    if kind not in VERSION_KINDS:
        raise RegistryError(f"unknown training kind {kind!r}; allowed: {', '.join(VERSION_KINDS)}")
    if trigger not in RUN_TRIGGERS:
        raise RegistryError(f"unknown run trigger {trigger!r}; allowed: {', '.join(RUN_TRIGGERS)}")
    busy = running_run(session)
    if busy is not None:
        raise RunInProgressError(f"training run {busy.id} is {busy.status}; wait for it to finish")
    run = TrainingRun(
        kind=kind,
        status="queued",
        progress=0.0,
        message="queued",
        params=dict(params or {}),
        created_by=user_id(created_by) if created_by is not None else None,
        trigger=trigger,
    )
    try:
        with session.begin_nested():  # a savepoint: the caller's transaction survives a refusal
            session.add(run)
    except IntegrityError:
        # Another process queued its run between the check above and this insert: the database's
        # one-active-run index (``uq_training_runs_one_active``) refused the second.
        busy = running_run(session)
        if busy is None:  # not that rule: some other constraint, which the caller should see
            raise
        raise RunInProgressError(f"training run {busy.id} is {busy.status}; wait for it to finish") from None
    return run


def get_run(session: Session, run_id: int) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise RegistryError(f"training run {run_id!r} not found")
    return run


def list_runs(session: Session, limit: int = 20) -> list[TrainingRun]:
    return list(session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)))


def running_run(session: Session) -> TrainingRun | None:
    """The run that is queued or running, if any."""
    query = select(TrainingRun).where(TrainingRun.status.in_(RUN_ACTIVE_STATUSES)).order_by(TrainingRun.id.desc())
    return session.scalar(query.limit(1))


def start_run(session: Session, run_id: int) -> TrainingRun:
    run = get_run(session, run_id)
    if run.status != "queued":
        raise RegistryError(f"training run {run_id} is {run.status}, not queued")
    run.status = "running"
    run.started_at = utcnow()
    run.message = "running"
    session.flush()
    return run


def update_run(
    session: Session, run_id: int, *, progress: float | None = None, message: str | None = None
) -> TrainingRun:
    """Record progress (0..1) and a status line of a queued or running run."""
    run = get_run(session, run_id)
    if run.status not in RUN_ACTIVE_STATUSES:
        raise RegistryError(f"training run {run_id} is already {run.status}")
    if progress is not None:
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be between 0 and 1, got {progress}")
        run.progress = float(progress)
    if message is not None:
        run.message = message
    run.heartbeat_at = utcnow()  # a run that reports progress is alive
    session.flush()
    return run


def finish_run(
    session: Session,
    run_id: int,
    *,
    status: str,
    message: str | None = None,
    error: str | None = None,
    result_version_id: str | None = None,
) -> TrainingRun:
    """End a run as succeeded, failed, interrupted or rejected (a model worse than the active one)."""
    if status not in FINAL_RUN_STATUSES:
        raise RegistryError(f"a run finishes as one of {', '.join(FINAL_RUN_STATUSES)}, not {status!r}")
    run = get_run(session, run_id)
    if run.status not in RUN_ACTIVE_STATUSES:
        raise RegistryError(f"training run {run_id} already finished as {run.status}")
    if result_version_id is not None:
        get_version(session, result_version_id)
    run.status = status
    run.finished_at = utcnow()
    if status == "succeeded":
        run.progress = 1.0
    run.error = error
    run.result_version_id = result_version_id
    run.message = message if message is not None else status
    session.flush()
    return run


def cancel_run(session: Session, run_id: int, by: User | None = None) -> TrainingRun:
    """End a queued or running run as cancelled. The run's worker notices at its next progress
    report (``update_run`` refuses a finished run) and registers nothing."""
    run = get_run(session, run_id)
    if run.status not in RUN_ACTIVE_STATUSES:
        raise RegistryError(f"training run {run_id} already finished as {run.status}; nothing to cancel")
    who = f" by {by.name}" if by is not None else ""
    return finish_run(session, run_id, status="cancelled", message=f"cancelled{who}")


def run_is_active(session: Session, run_id: int) -> bool:
    return get_run(session, run_id).status in RUN_ACTIVE_STATUSES


def claim_run(session: Session, worker: str) -> TrainingRun | None:
    """Take the oldest queued run for ``worker`` (it becomes running, held by ``worker``), or None.

    Atomic, so two workers never take the same run: on PostgreSQL the chosen row is locked and
    every other worker skips it (``FOR UPDATE SKIP LOCKED``); on SQLite the choice and the claim
    are one conditional ``UPDATE``, which only one writer at a time can make."""
    oldest = select(TrainingRun.id).where(TrainingRun.status == "queued").order_by(TrainingRun.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        oldest = oldest.with_for_update(skip_locked=True)
    now = utcnow()
    claimed = session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == oldest.scalar_subquery(), TrainingRun.status == "queued")
        .values(status="running", worker=worker, started_at=now, heartbeat_at=now, message=f"running on {worker}")
        .returning(TrainingRun.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if claimed is None:
        return None
    return session.get(TrainingRun, claimed, populate_existing=True)


def heartbeat_run(session: Session, run_id: int, worker: str) -> bool:
    """Say that ``worker`` is still running ``run_id``; False once the run is no longer its own
    (cancelled, or marked interrupted by a stale check)."""
    beat = session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id, TrainingRun.status == "running", TrainingRun.worker == worker)
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(beat, "rowcount", 0) == 1)


def interrupt_dead_runs(session: Session, *, stale_after_s: float, gone: Callable[[str], bool]) -> list[int]:
    """Mark as interrupted every running run whose worker died: no heartbeat for ``stale_after_s``
    seconds, or ``gone(worker)`` (for example a process of this host that no longer exists).

    Each run is ended by a conditional ``UPDATE`` on the heartbeat that was read, so a worker that
    beats in between keeps its run. Queued runs stay queued for the next worker."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    interrupted = []
    for run in session.scalars(select(TrainingRun).where(TrainingRun.status == "running")).all():
        beat = run.heartbeat_at or run.started_at or run.created_at
        dead = beat < cutoff or (run.worker is not None and gone(run.worker))
        if not dead:
            continue
        who = f"its worker {run.worker}" if run.worker else "its worker"
        ended = session.execute(
            update(TrainingRun)
            .where(
                TrainingRun.id == run.id,
                TrainingRun.status == "running",
                TrainingRun.heartbeat_at.is_(None) if run.heartbeat_at is None else TrainingRun.heartbeat_at == beat,
            )
            .values(
                status="interrupted",
                finished_at=utcnow(),
                message=f"interrupted: {who} stopped while this run was in progress; start a new run to retry",
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(ended, "rowcount", 0) == 1:
            interrupted.append(run.id)
    session.expire_all()
    return interrupted
