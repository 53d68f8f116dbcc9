"""The migrations build exactly the schema of the models; the engine sets SQLite's pragmas."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Engine, Integer, MetaData, Table, insert, text
from sqlalchemy.exc import IntegrityError

import db

ONE_ACTIVE_RUN = "uq_training_runs_one_active"


def _compared(obj, name, type_, reflected, compare_to) -> bool:
    # Alembic cannot compare the one-active-run index (an expression index: SQLite's cannot be
    # reflected, PostgreSQL's reads back in another spelling); it is checked by behaviour instead
    # (tests/db/test_registry.py) and against the models' SQL below.
    return not (type_ == "index" and name == ONE_ACTIVE_RUN)


def _diffs(engine: Engine, metadata: MetaData) -> list:
    with engine.connect() as conn, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*expression-based index '?{ONE_ACTIVE_RUN}")
        opts = {"compare_type": True, "include_object": _compared}
        return compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)


def test_upgrade_builds_the_models_schema(engine: Engine) -> None:
    assert _diffs(engine, db.Base.metadata) == []
    assert db.current_revision(engine) == db.head_revision()


def test_comparison_would_notice_a_difference(engine: Engine) -> None:
    # Guard against a comparison that is blind: a model the migrations lack must show up.
    extra = MetaData()
    for table in db.Base.metadata.sorted_tables:
        table.to_metadata(extra)
    Table("stray", extra, Column("id", Integer, primary_key=True))
    assert any(d[0] == "add_table" for d in _diffs(engine, extra))


def test_upgrade_twice_is_harmless(db_url: str) -> None:
    db.upgrade(db_url)
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    try:
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


def test_constraints_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as conn:  # foreign key (SQLite: PRAGMA foreign_keys)
        conn.execute(
            insert(db.Product).values(
                owner_id=999,
                category="Sarees",
                source="import",
                created_at=db.tables.utcnow(),
                updated_at=db.tables.utcnow(),
            )
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:  # CHECK on the role
        conn.execute(insert(db.User).values(name="x", password_hash="h", role="root", created_at=db.tables.utcnow()))


def test_sqlite_connections_get_the_pragmas(tmp_path: Path) -> None:
    url = db.default_sqlite_url(tmp_path / "nested" / "data")
    assert url.endswith("nested/data/visual_taxonomy.sqlite3")
    engine = db.make_engine(url)
    assert not (tmp_path / "nested" / "data" / "visual_taxonomy.sqlite3").exists()  # nothing connects yet
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30_000, "synchronous": 1}
    finally:
        engine.dispose()


def test_timestamps_come_back_timezone_aware(session, alice: db.User) -> None:
    user = session.get(db.User, alice.id)
    session.expire(user)
    assert user.created_at.tzinfo is not None and user.created_at.utcoffset().total_seconds() == 0


def test_the_database_allows_one_active_version_only(engine: Engine) -> None:
    now = db.tables.utcnow()
    row = dict(path="p", checksum="c", taxonomy_fingerprint="f", metrics={}, kind="heads", notes="", created_at=now)
    with engine.begin() as conn:
        conn.execute(insert(db.ModelVersion).values(id="a", status="active", **row))
        conn.execute(insert(db.ModelVersion).values(id="b", status="retired", **row))
        conn.execute(insert(db.ModelVersion).values(id="c", status="retired", **row))  # many retired: fine
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(db.ModelVersion).values(id="d", status="active", **row))


def test_downgrade_to_the_first_revision_and_back(db_url: str) -> None:
    from alembic import command

    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    try:
        with engine.begin() as connection:
            config = db.alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
        assert db.current_revision(engine) == "0001"
        db.upgrade(engine)
        assert _diffs(engine, db.Base.metadata) == []
    finally:
        engine.dispose()


def test_the_one_active_run_index_is_the_models_and_older_duplicates_are_interrupted(tmp_path: Path) -> None:
    """The expression index that Alembic cannot compare: the migration builds the models' index
    (same SQL in SQLite's schema), and a database of revision 0005 holding two active runs (possible
    before the rule) is upgraded with the older one interrupted, not left to block the index."""
    built = db.make_engine(f"sqlite:///{tmp_path / 'models.sqlite3'}")
    db.Base.metadata.create_all(built)
    engine = db.make_engine(f"sqlite:///{tmp_path / 'migrated.sqlite3'}")
    try:
        db.upgrade(engine, "0005")
        row = 'kind, progress, message, params, "trigger", created_at'
        values = "'full', 0, 'queued', '{}', 'policy', '2026-12-01 00:00:00'"
        with engine.begin() as conn:
            conn.execute(text(f"INSERT INTO training_runs (id, status, {row}) VALUES (1, 'running', {values})"))
            conn.execute(text(f"INSERT INTO training_runs (id, status, {row}) VALUES (2, 'queued', {values})"))
            conn.execute(text(f"INSERT INTO training_runs (id, status, {row}) VALUES (3, 'failed', {values})"))
        db.upgrade(engine)
        with engine.connect() as conn:
            runs = conn.execute(text("SELECT id, status, message FROM training_runs ORDER BY id")).all()
        assert [(r.id, r.status) for r in runs] == [(1, "interrupted"), (2, "queued"), (3, "failed")]
        assert "second run" in runs[0].message
        index_sql = f"SELECT sql FROM sqlite_master WHERE name = '{ONE_ACTIVE_RUN}'"
        with engine.connect() as a, built.connect() as b:
            migrated, modelled = a.scalar(text(index_sql)), b.scalar(text(index_sql))
        assert migrated is not None and modelled is not None
        assert " ".join(migrated.split()) == " ".join(modelled.split())
    finally:
        engine.dispose()
        built.dispose()
