"""The real app for the reliability suites: more sellers, raw HTTP beside ``gradio_client``,
fingerprints of the database, and a fresh PostgreSQL database when a server is given."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, create_engine, func, select, text
from sqlalchemy.engine import make_url

from tests.app.conftest import ROOT, USERS, RunningApp, start_app, stop_app

SELLERS = {f"seller{i}": (f"seller{i}-pass-1", "seller") for i in range(1, 9)}
ALL_USERS = {**USERS, **SELLERS}
LABEL_TABLES = ("label_events", "predictions", "products")
POSTGRES_ENV = "VT_TEST_POSTGRES_URL"


def client(app: RunningApp, user: str):
    from gradio_client import Client

    return Client(app.url, auth=(user, ALL_USERS[user][0]), verbose=False)


def db_url(app: RunningApp) -> str:
    return getattr(app, "database_url", None) or f"sqlite:///{app.db_file}"


def launch(data_dir: Path, dataset: Path | None = None, database_url: str | None = None) -> RunningApp:
    args = ("--database-url", database_url) if database_url else ()
    running = start_app(data_dir, dataset or data_dir, users=ALL_USERS, args=args)
    running.database_url = database_url  # type: ignore[attr-defined]
    return running


# -- what the database holds ---------------------------------------------------------------------


def query(url: str, sql: str, **params) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def snapshot(url: str) -> dict[str, object]:
    """Row counts of every table and a sha256 over the sorted rows of the label tables."""
    engine = create_engine(url)
    metadata = MetaData()
    try:
        metadata.reflect(engine)
        out: dict[str, object] = {}
        with engine.connect() as conn:
            for name, table in sorted(metadata.tables.items()):
                if name == "alembic_version":
                    continue
                out[f"{name}.rows"] = conn.scalar(select(func.count()).select_from(table))
                if name in LABEL_TABLES:
                    rows = sorted(repr(tuple(map(str, row))) for row in conn.execute(select(table)))
                    out[f"{name}.sha256"] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        return out
    finally:
        engine.dispose()


# -- raw HTTP, the way any program can call the API ----------------------------------------------


class RawClient:
    """Signs in through ``POST /login`` and calls ``/gradio_api/call/<endpoint>`` with its cookie."""

    def __init__(self, app: RunningApp, user: str | None) -> None:
        self.http = httpx.Client(base_url=app.url.rstrip("/"), timeout=120)
        if user is not None:
            response = self.http.post("/login", data={"username": user, "password": ALL_USERS[user][0]})
            assert response.status_code == 200, response.text

    def upload(self, name: str, data: bytes) -> httpx.Response:
        return self.http.post("/gradio_api/upload", files=[("files", (name, data, "application/octet-stream"))])

    def file(self, name: str, data: bytes) -> dict:
        response = self.upload(name, data)
        assert response.status_code == 200, response.text
        return {"path": response.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}

    def call(self, endpoint: str, *data) -> tuple[str, object]:
        """("complete", output) or ("error", message); ("http <status>", body) when refused earlier."""
        response = self.http.post(f"/gradio_api/call/{endpoint}", json={"data": list(data)})
        if response.status_code != 200:
            return f"http {response.status_code}", response.text
        event_id = response.json()["event_id"]
        kind, payload = "", None
        with self.http.stream("GET", f"/gradio_api/call/{endpoint}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:].strip()
                elif line.startswith("data: ") and kind in ("complete", "error"):
                    payload = json.loads(line[6:])
                    break
        if kind == "error":
            return "error", (payload or {}).get("error") if isinstance(payload, dict) else payload
        return kind, payload[0] if isinstance(payload, list) and len(payload) == 1 else payload

    def close(self) -> None:
        self.http.close()


def serving(app: RunningApp) -> bool:
    """The app answers a signed-in call (after whatever was thrown at it)."""
    raw = RawClient(app, "carol")
    try:
        kind, status = raw.call("model_status")
        return kind == "complete" and "active" in status
    finally:
        raw.close()


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python app.py ...`` or, with a first argument "-m", ``python -m ...``, from the repository root."""
    command = [sys.executable, *args] if args[0] == "-m" else [sys.executable, str(ROOT / "app.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def wait_for(check, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {timeout} s")


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the server named by VT_TEST_POSTGRES_URL."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run starts a PostgreSQL server)")
    name = f"vt_rel_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


__all__ = ["ROOT", "RunningApp", "launch", "stop_app"]
