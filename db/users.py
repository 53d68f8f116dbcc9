"""Users and passwords. Passwords are stored as self-describing scrypt hashes, never as text."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from .tables import ROLES, User

# scrypt cost: 2**14 x 8 x 1 uses 16 MiB and tens of milliseconds per check (OWASP's minimum).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_MAX_N = 2**20  # refuse stored parameters that would let a tampered hash exhaust memory
SALT_BYTES, KEY_BYTES = 16, 32
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 64


class UserError(ValueError):
    """A user name, password or role that cannot be used; the text says why."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=KEY_BYTES
    )


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt_b64$hash_b64`` with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; a malformed stored hash never matches."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        n_, r_, p_ = int(n), int(r), int(p)
        salt_b, key_b = base64.b64decode(salt, validate=True), base64.b64decode(key, validate=True)
    except ValueError:
        return False
    if scheme != "scrypt" or not (2 <= n_ <= _MAX_N and 1 <= r_ <= 32 and 1 <= p_ <= 16):
        return False
    return hmac.compare_digest(_scrypt(password, salt_b, n_, r_, p_), key_b)


def _check_name(name: str) -> str:
    clean = name.strip() if isinstance(name, str) else ""
    if not clean:
        raise UserError("a user name cannot be empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise UserError(f"a user name has at most {MAX_NAME_LENGTH} characters; got {len(clean)}")
    if any(not ch.isprintable() for ch in clean):
        raise UserError(f"user name {clean!r} contains control characters")
    return clean


def create_user(session: Session, name: str, password: str, *, role: str = "seller") -> User:
    """Add a user. Raises UserError for a taken name, a short password or an unknown role."""
    name = _check_name(name)
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; allowed: {', '.join(ROLES)}")
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if get_user_by_name(session, name) is not None:
        raise UserError(f"the user name {name!r} is taken; choose another")
    user = User(name=name, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def get_user_by_name(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name.strip()))


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The user whose name and password match, else None (the same work either way)."""
    user = get_user_by_name(session, name) if isinstance(name, str) else None
    if user is None:
        # Spend the same time as a real check so that response time does not reveal names.
        verify_password(password or "", _dummy_hash())
        return None
    return user if verify_password(password or "", user.password_hash) else None


def set_password(session: Session, user: User, password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    user.password_hash = hash_password(password)
    session.flush()


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))
