"""Passwords are stored as salted scrypt hashes and checked in constant time."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

import db
from db.users import hash_password, verify_password


def test_hash_is_self_describing_and_salted() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    scheme, n, r, p, _salt, _key = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert first != second  # a fresh salt each time
    assert "s3cret-pass" not in first
    assert verify_password("s3cret-pass", first) and verify_password("s3cret-pass", second)
    assert not verify_password("s3cret-pasS", first)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain",
        "scrypt$x$8$1$AA==$AA==",
        "bcrypt$16384$8$1$AA==$AA==",
        "scrypt$1073741824$8$1$AA==$AA==",
        "scrypt$16384$8$1$not base64$AA==",
    ],
)
def test_malformed_stored_hash_never_matches(stored: str) -> None:
    assert verify_password("anything", stored) is False


def test_create_and_authenticate(session: Session) -> None:
    user = db.create_user(session, "  Priya ", "long enough", role="seller")
    assert user.name == "Priya" and user.role == "seller" and not user.is_admin
    assert db.authenticate(session, "Priya", "long enough") is user
    assert db.authenticate(session, "Priya", "wrong password") is None
    assert db.authenticate(session, "nobody", "long enough") is None
    assert [u.name for u in db.list_users(session)] == ["Priya"]
    db.set_password(session, user, "another one")
    assert db.authenticate(session, "Priya", "another one") is user


def test_create_user_refuses_bad_input(session: Session) -> None:
    db.create_user(session, "amir", "long enough")
    with pytest.raises(db.UserError, match="taken"):
        db.create_user(session, "amir", "long enough")
    with pytest.raises(db.UserError, match="at least 8"):
        db.create_user(session, "sam", "short")
    with pytest.raises(db.UserError, match="unknown role"):
        db.create_user(session, "sam", "long enough", role="root")
    with pytest.raises(db.UserError, match="empty"):
        db.create_user(session, "   ", "long enough")
