"""Accounts: the first admin, the users file, login with throttling, and who is asking."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from sqlalchemy import func, select

import db

from .context import AppContext

log = logging.getLogger(__name__)

INITIAL_ADMIN = "admin"
INITIAL_PASSWORD_FILE = "initial-admin-password.txt"


class AccessDenied(PermissionError):
    """The signed-in user may not do this (or nobody is signed in)."""


def ensure_initial_admin(ctx: AppContext) -> str | None:
    """With no admin at all (a fresh database, or sellers only, as after the README's
    ``create-user alice --role seller``), create ``admin`` with a random password written to a 0600 file.

    Returns the password file's path when one was created, so the caller can tell the operator.
    """
    with ctx.transaction() as session:
        admins = session.scalar(select(func.count()).select_from(db.User).where(db.User.role == "admin"))
        if admins or db.get_user_by_name(session, INITIAL_ADMIN) is not None:
            return None
        password = secrets.token_urlsafe(12)
        db.create_user(session, INITIAL_ADMIN, password, role="admin")
    path = ctx.settings.data_dir / INITIAL_PASSWORD_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{INITIAL_ADMIN}\n{password}\n")
    return str(path)


def load_users_file(ctx: AppContext, path: Path) -> int:
    """Create the users listed in a JSON file ``[{"name", "password", "role"}]`` that do not exist.

    Existing users are left as they are (their password may have been changed since).
    """
    try:
        entries = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise db.UserError(f"users file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise db.UserError(f"users file {path} is not valid JSON: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise db.UserError(f"users file {path} must hold a JSON list of {{name, password, role}} objects")
    created = 0
    with ctx.transaction() as session:
        for entry in entries:
            missing = {"name", "password"} - set(entry)
            if missing:
                raise db.UserError(f"users file {path}: an entry lacks {sorted(missing)}")
            if db.get_user_by_name(session, entry["name"]) is None:
                db.create_user(session, entry["name"], entry["password"], role=entry.get("role", "seller"))
                created += 1
    return created


class LoginThrottle:
    """At most ``limit`` failed logins per user name in ``window`` seconds, then a wait.

    Counted per name, so a guesser cannot lock everybody out by failing on one account, and
    a success clears the count.
    """

    def __init__(self, *, limit: int = 5, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked_for(self, name: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._failures[name]
            while recent and now - recent[0] > self.window:
                recent.popleft()
            if len(recent) < self.limit:
                return 0.0
            return self.window - (now - recent[0])

    def failed(self, name: str, now: float | None = None) -> None:
        with self._lock:
            self._failures[name].append(time.monotonic() if now is None else now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)


def make_authenticator(ctx: AppContext, throttle: LoginThrottle | None = None):
    """The ``auth`` callable for Gradio's login: checks the database, throttles guessing."""
    throttle = throttle or LoginThrottle()

    def authenticate(name: str, password: str) -> bool:
        name = (name or "").strip()
        if throttle.blocked_for(name):
            log.warning("login for %r refused: too many failed attempts", name)
            return False
        with ctx.transaction() as session:
            ok = db.authenticate(session, name, password or "") is not None
        if ok:
            throttle.succeeded(name)
        else:
            throttle.failed(name)
        return ok

    return authenticate


def require_admin(user: db.User) -> None:
    if not user.is_admin:
        raise AccessDenied(f"{user.name} is a seller; only an admin may do this")


class ExpiringTokens(dict):
    """Gradio's session-token table (token -> user name), where a token lapses after ``max_age``.

    Gradio keeps sign-in tokens forever; swapped in for its dict, this makes a session expire
    and its user sign in again.
    """

    def __init__(self, max_age: float, clock=time.monotonic) -> None:
        super().__init__()
        self.max_age = max_age
        self.clock = clock
        self._born: dict[str, float] = {}

    def __setitem__(self, token: str, user: str) -> None:
        self._born[token] = self.clock()
        super().__setitem__(token, user)

    def _expire(self, token: object) -> None:
        born = self._born.get(token)  # type: ignore[arg-type]
        if born is not None and self.clock() - born > self.max_age:
            self._born.pop(token, None)  # type: ignore[arg-type]
            super().pop(token, None)

    def get(self, token: object, default: object = None) -> object:
        self._expire(token)
        return super().get(token, default)

    def __getitem__(self, token: str) -> str:
        self._expire(token)
        return super().__getitem__(token)

    def __contains__(self, token: object) -> bool:
        self._expire(token)
        return super().__contains__(token)

    def __delitem__(self, token: str) -> None:
        self._born.pop(token, None)
        super().__delitem__(token)
