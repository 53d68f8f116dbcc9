"""Engines and sessions: one factory for any SQLAlchemy URL, SQLite tuned for a small server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_FILENAME = "visual_taxonomy.sqlite3"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_sqlite_url(data_dir: str | os.PathLike[str]) -> str:
    """The embedded default: a SQLite file in the app's data directory."""
    return f"sqlite:///{Path(data_dir).resolve() / SQLITE_FILENAME}"


def _set_sqlite_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
    # Every connection, not once per file: foreign_keys and busy_timeout are per connection.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # wait for a writer instead of failing
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable with WAL except on power loss
    finally:
        cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` (any SQLAlchemy URL). Nothing connects until the engine is used.

    For a SQLite file the parent directory is created, and every connection gets WAL,
    foreign keys, a busy timeout and ``synchronous=NORMAL``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for ``engine``. Objects stay readable after commit (a UI shows them afterwards)."""
    return sessionmaker(bind=engine, expire_on_commit=False)
