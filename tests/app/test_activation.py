"""Exactly one active version, held by the database: two activations at the same moment on
PostgreSQL leave one active row, and the loser is told what happened (issue 11)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

import db
from tests.app._manager import CHECKPOINT, tiny_serving
from tests.db._data import postgres_database

POSTGRES_ENV = "VT_TEST_POSTGRES_URL"
pytestmark = pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"{POSTGRES_ENV} names no PostgreSQL server")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database(os.environ[POSTGRES_ENV]) as url:
        yield url


def test_concurrent_activations_leave_one_active_version(postgres_url: str, tmp_path: Path) -> None:
    serving = tiny_serving(tmp_path, postgres_url, photos=40)
    taxonomy, trained, engine, sessions, manager = (
        serving.taxonomy,
        serving.trained,
        serving.engine,
        serving.sessions,
        serving.manager,
    )
    with sessions.begin() as session:
        for vid in ("v0", "v1", "v2"):
            db.register_version(
                session,
                version_id=vid,
                path=CHECKPOINT,
                checksum=trained.sha256,
                taxonomy_fingerprint=taxonomy.fingerprint,
                kind="full",
            )
        db.activate_version(session, "v0")
    outcome: list[BaseException | str] = []

    def activate_v2() -> None:
        try:
            outcome.append(manager.activate("v2").version_id)
        except BaseException as exc:  # the test reports what the loser saw
            outcome.append(exc)

    try:
        with sessions.begin() as first:
            db.activate_version(first, "v1")  # written, not committed: v1 holds the one-active slot
            loser = threading.Thread(target=activate_v2)
            loser.start()
            # Commit only once the second activation is waiting on the first one's row locks.
            deadline = time.monotonic() + 60
            # Autocommit: within one transaction pg_stat_activity would show the same snapshot.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as probe:
                waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = :d"
                while not probe.scalar(text(waiting), {"d": make_url(postgres_url).database}):
                    assert time.monotonic() < deadline and not outcome, f"the second activation did not wait: {outcome}"
                    time.sleep(0.02)
        loser.join(60)
        with sessions.begin() as session:
            active = session.scalars(select(db.ModelVersion.id).where(db.ModelVersion.status == "active")).all()
            assert session.scalar(select(func.count()).select_from(db.ModelVersion)) == 3
        assert active == ["v1"]
        (error,) = outcome
        assert isinstance(error, db.RegistryError), error
        assert "another version was activated at the same moment" in str(error)
        assert manager.active is None  # the process did not switch to the version that lost
    finally:
        engine.dispose()
