"""Model versions: exactly one active. Training runs: lifecycle."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import db
from taxonomy import file_sha256


def _register(session: Session, tmp_path: Path, version_id: str, parent: str | None = None) -> db.ModelVersion:
    path = tmp_path / f"{version_id}.pt"
    path.write_bytes(version_id.encode())
    return db.register_version(
        session,
        version_id=version_id,
        path=path,
        taxonomy_fingerprint="abc",
        kind="heads",
        metrics={"score": 0.5},
        parent_id=parent,
    )


def _actives(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(db.ModelVersion).where(db.ModelVersion.status == "active"))


def test_activation_keeps_exactly_one_active(session: Session, tmp_path: Path) -> None:
    v1 = _register(session, tmp_path, "v1")
    assert v1.status == "candidate" and v1.checksum == file_sha256(tmp_path / "v1.pt")
    assert db.active_version(session) is None
    _register(session, tmp_path, "v2", parent="v1")
    _register(session, tmp_path, "v3", parent="v2")
    for vid in ("v1", "v2", "v3"):
        db.activate_version(session, vid)
        assert db.active_version(session).id == vid and _actives(session) == 1
    assert {v.id: v.status for v in db.list_versions(session)} == {"v1": "retired", "v2": "retired", "v3": "active"}


def test_registry_refuses_bad_input(session: Session, tmp_path: Path) -> None:
    _register(session, tmp_path, "v1")
    with pytest.raises(db.RegistryError, match="already exists"):
        _register(session, tmp_path, "v1")
    with pytest.raises(db.RegistryError, match="parent"):
        _register(session, tmp_path, "v2", parent="nope")
    with pytest.raises(db.RegistryError, match="not found"):
        db.register_version(
            session, version_id="v9", path=tmp_path / "missing.pt", taxonomy_fingerprint="a", kind="heads"
        )
    with pytest.raises(db.RegistryError, match="kind"):
        db.register_version(session, version_id="v9", path="x", checksum="0" * 64, taxonomy_fingerprint="a", kind="big")
    with pytest.raises(db.RegistryError, match="not found"):
        db.activate_version(session, "nope")


def test_training_run_lifecycle(session: Session, admin: db.User, tmp_path: Path) -> None:
    run = db.create_run(session, kind="heads", params={"epochs": 3}, created_by=admin)
    assert (run.status, run.progress, run.created_by) == ("queued", 0.0, admin.id)
    with pytest.raises(db.RunInProgressError):
        db.create_run(session, kind="full")
    db.start_run(session, run.id)
    db.update_run(session, run.id, progress=0.5, message="epoch 2/3")
    with pytest.raises(ValueError, match="between 0 and 1"):
        db.update_run(session, run.id, progress=1.5)
    assert db.running_run(session).message == "epoch 2/3"
    _register(session, tmp_path, "v1")
    db.finish_run(session, run.id, status="succeeded", result_version_id="v1")
    done = db.get_run(session, run.id)
    assert (done.status, done.progress, done.result_version_id) == ("succeeded", 1.0, "v1")
    assert done.started_at <= done.finished_at
    assert db.running_run(session) is None
    with pytest.raises(db.RegistryError, match="already finished"):
        db.finish_run(session, run.id, status="failed")
    with pytest.raises(db.RegistryError, match="finishes as one of"):
        db.finish_run(session, db.create_run(session, kind="full").id, status="running")


def test_a_queued_run_is_claimed_once_and_a_dead_workers_run_is_interrupted(session_factory, admin: db.User) -> None:
    with session_factory.begin() as s:
        queued = db.create_run(s, kind="heads", created_by=admin).id
    with session_factory.begin() as s:
        run = db.claim_run(s, "host-a:11")
        assert run is not None and (run.id, run.status, run.worker) == (queued, "running", "host-a:11")
        assert run.started_at is not None and run.heartbeat_at is not None
    with session_factory.begin() as s:
        assert db.claim_run(s, "host-b:22") is None  # taken: nothing else is queued
        assert db.heartbeat_run(s, queued, "host-a:11") and not db.heartbeat_run(s, queued, "host-b:22")
    with session_factory.begin() as s:  # alive and beating: left alone
        assert db.interrupt_dead_runs(s, stale_after_s=60, gone=lambda worker: False) == []
    with session_factory.begin() as s:  # its process is gone: interrupted at once
        assert db.interrupt_dead_runs(s, stale_after_s=60, gone=lambda worker: worker == "host-a:11") == [queued]
    with session_factory() as s:
        run = db.get_run(s, queued)
        assert run.status == "interrupted" and run.finished_at is not None and "host-a:11" in run.message
        assert not db.heartbeat_run(s, queued, "host-a:11")  # the worker learns it lost the run
    with session_factory.begin() as s:  # silent longer than the timeout: interrupted too
        again = db.create_run(s, kind="heads", created_by=admin).id
        assert db.claim_run(s, "host-c:33").id == again
    with session_factory.begin() as s:
        assert db.interrupt_dead_runs(s, stale_after_s=0, gone=lambda worker: False) == [again]
        assert db.running_run(s) is None


def test_the_database_allows_one_queued_or_running_run_only(engine) -> None:
    """The rule holds for writers that skip ``create_run``'s check (another replica's code, a
    script): a second queued or running row is refused by the database itself."""
    from sqlalchemy import insert, update
    from sqlalchemy.exc import IntegrityError

    row = dict(kind="full", progress=0.0, message="", params={}, trigger="policy", created_at=db.tables.utcnow())
    with engine.begin() as conn:
        first = conn.execute(insert(db.TrainingRun).values(status="queued", **row)).inserted_primary_key[0]
        for status in ("succeeded", "failed", "interrupted", "succeeded"):  # finished ones: any number
            conn.execute(insert(db.TrainingRun).values(status=status, **row))
    for status in ("queued", "running"):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(db.TrainingRun).values(status=status, **row))
    with engine.begin() as conn:  # once the first has finished, the next may queue
        conn.execute(update(db.TrainingRun).where(db.TrainingRun.id == first).values(status="succeeded"))
        conn.execute(insert(db.TrainingRun).values(status="running", **row))
    with engine.connect() as conn:
        statuses = conn.scalars(select(db.TrainingRun.status).order_by(db.TrainingRun.id)).all()
    assert statuses == ["succeeded", "succeeded", "failed", "interrupted", "succeeded", "running"]


def test_two_replicas_queueing_at_once_get_one_run_and_a_clear_refusal(session_factory, admin: db.User) -> None:
    """Replica B's check sees no active run; replica A queues and commits before B writes (the
    race of two retrain policies deciding at the same moment): B gets RunInProgressError naming
    A's run, and B's own transaction stays usable."""
    from sqlalchemy import event

    with session_factory() as b:
        first: list[int] = []

        def replica_a_commits_first(session, flush_context, instances) -> None:
            if not first:
                with session_factory.begin() as a:
                    first.append(db.create_run(a, kind="heads", trigger="policy").id)

        event.listen(b, "before_flush", replica_a_commits_first)
        with pytest.raises(db.RunInProgressError, match=r"training run \d+ is queued"):
            db.create_run(b, kind="full", trigger="policy", created_by=admin)
        event.remove(b, "before_flush", replica_a_commits_first)
        assert first and db.running_run(b).id == first[0]
        b.commit()  # the refused insert was rolled back to its savepoint; the session still commits
    with session_factory() as s:
        runs = s.scalars(select(db.TrainingRun)).all()
        assert [(r.id, r.kind, r.status) for r in runs] == [(first[0], "heads", "queued")]
