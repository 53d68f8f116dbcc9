"""Database fixtures: a fresh SQLite file per test, and a fresh PostgreSQL database per test when
``VT_TEST_POSTGRES_URL`` names a server (``.ci/postgres.sh`` starts one)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import db
from db.users import hash_password

from ._data import postgres_database

POSTGRES_ENV = "VT_TEST_POSTGRES_URL"
PASSWORD = "correct horse battery"


def _backends() -> list:
    params = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get(POSTGRES_ENV):
        params.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres))
    return params


@pytest.fixture(params=_backends())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a uniquely named PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'test.sqlite3'}"
        return
    with postgres_database(os.environ[POSTGRES_ENV]) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return db.make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is rolled back at the end (tests that need commits use the factory)."""
    with session_factory() as session:
        yield session
        session.rollback()


@pytest.fixture(scope="session")
def password_hash() -> str:
    # One real scrypt hash for all fixture users: hashing is slow on purpose (tests of it use create_user).
    return hash_password(PASSWORD)


@pytest.fixture
def make_user(session_factory: sessionmaker[Session], password_hash: str) -> Callable[..., db.User]:
    """Commit a user and return it (detached, readable)."""

    def make(name: str, role: str = "seller") -> db.User:
        with session_factory.begin() as s:
            user = db.User(name=name, password_hash=password_hash, role=role)
            s.add(user)
        return user

    return make


@pytest.fixture
def alice(make_user: Callable[..., db.User]) -> db.User:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., db.User]) -> db.User:
    return make_user("bob")


@pytest.fixture
def admin(make_user: Callable[..., db.User]) -> db.User:
    return make_user("root", role="admin")


@pytest.fixture
def media(tmp_path: Path) -> db.MediaStore:
    return db.MediaStore(tmp_path / "media")


@pytest.fixture
def version_id(session_factory: sessionmaker[Session], tmp_path: Path) -> str:
    """A registered (candidate) model version, for predictions and model-sourced labels."""
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    with session_factory.begin() as s:
        db.register_version(s, version_id="v1", path=checkpoint, taxonomy_fingerprint="f" * 16, kind="heads")
    return "v1"
