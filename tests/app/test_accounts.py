"""Accounts: throttled sign-in, expiring sessions, loopback-only without authentication."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.app.conftest import ROOT, USERS
from webapp.auth import ExpiringTokens, LoginThrottle


def login(app, user: str, password: str) -> int:
    return httpx.post(app.url + "login", data={"username": user, "password": password}, timeout=10).status_code


def test_repeated_failures_lock_the_name_for_a_while(app):
    assert login(app, "carol", USERS["carol"][0]) == 200
    for _ in range(5):
        assert login(app, "carol", "guess") == 400
    # Even the right password is refused now; other users are not affected.
    assert login(app, "carol", USERS["carol"][0]) == 400
    assert login(app, "alice", USERS["alice"][0]) == 200


def test_throttle_window_passes():
    throttle = LoginThrottle(limit=3, window=60)
    for t in range(3):
        throttle.failed("x", now=100.0 + t)
    assert throttle.blocked_for("x", now=103.0) == pytest.approx(57.0)
    assert throttle.blocked_for("x", now=161.0) == 0.0
    throttle.failed("y", now=0.0)
    throttle.succeeded("y")
    assert throttle.blocked_for("y", now=1.0) == 0.0


def test_sessions_expire():
    now = [0.0]
    tokens = ExpiringTokens(max_age=3600, clock=lambda: now[0])
    tokens["t"] = "alice"
    assert tokens.get("t") == "alice" and "t" in tokens
    now[0] = 3599
    assert tokens.get("t") == "alice"
    now[0] = 3601
    assert tokens.get("t") is None and "t" not in tokens


def test_a_request_without_sign_in_is_refused(app):
    assert httpx.get(app.url + "gradio_api/info", timeout=10).status_code == 401
    response = httpx.post(app.url + "gradio_api/call/product", json={"data": [1]}, timeout=10)
    assert response.status_code in (401, 403)


def test_no_auth_is_refused_off_loopback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "serve", "--host", "0.0.0.0", "--no-auth", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "without authentication" in result.stderr
    assert not (tmp_path / "visual_taxonomy.sqlite3").exists()
