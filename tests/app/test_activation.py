"""Exactly one active version, held by the database: two activations at the same moment on
PostgreSQL leave one active row, and the loser is told what happened (issue 11)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

import db
from tests.trainer.conftest import TINY_MODEL, TINY_TRAIN, make_examples, make_taxonomy
from trainer import train_full
from webapp.serving import ModelManager

POSTGRES_ENV = "VT_TEST_POSTGRES_URL"
pytestmark = pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"{POSTGRES_ENV} names no PostgreSQL server")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    server = make_url(os.environ[POSTGRES_ENV])
    name = f"vt_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def test_concurrent_activations_leave_one_active_version(postgres_url: str, tmp_path: Path) -> None:
    taxonomy = make_taxonomy()
    trained = train_full(
        make_examples(tmp_path / "train", 40, seed=1),
        taxonomy=taxonomy,
        out_dir=tmp_path / "models" / "run-00001",
        config=TINY_TRAIN,
        model_config=TINY_MODEL,
        device="cpu",
    )
    engine = db.make_engine(postgres_url)
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    manager = ModelManager(
        taxonomy=taxonomy,
        sessions=sessions,
        media=db.MediaStore(tmp_path / "media"),
        models_dir=tmp_path / "models",
        cache_dir=tmp_path / "cache",
    )
    with sessions.begin() as session:
        for vid in ("v0", "v1", "v2"):
            db.register_version(
                session,
                version_id=vid,
                path="run-00001/model.pt",
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
