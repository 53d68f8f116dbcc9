"""The real app in a subprocess on loopback, with a real SQLite file, driven through its API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.app._data import make_learnable_dataset

ROOT = Path(__file__).resolve().parents[2]
USERS = {
    "admin": ("admin-pass-1", "admin"),
    "alice": ("alice-pass-1", "seller"),
    "bob": ("bob-pass-1", "seller"),
    "carol": ("carol-pass-1", "seller"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    url: str
    data_dir: Path
    dataset: Path
    process: subprocess.Popen
    log: Path

    def client(self, user: str):
        from gradio_client import Client

        return Client(self.url, auth=(user, USERS[user][0]), verbose=False)

    @property
    def db_file(self) -> Path:
        return self.data_dir / "visual_taxonomy.sqlite3"


def start_app(
    data_dir: Path,
    dataset: Path,
    extra_env: dict | None = None,
    *,
    users: dict[str, tuple[str, str]] | None = None,
    args: tuple[str, ...] = (),
) -> RunningApp:
    """Start ``app.py serve`` on a free loopback port; ``users`` (name -> (password, role))
    go into its users file, ``args`` onto its command line (``--database-url ...``)."""
    users_file = data_dir.parent / "users.json"
    entries = (users or USERS).items()
    users_file.write_text(json.dumps([{"name": n, "password": p, "role": r} for n, (p, r) in entries]))
    port = free_port()
    log = data_dir.parent / f"app-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False", **(extra_env or {})}
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "app.py"),
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--users-file",
            str(users_file),
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        process.kill()
        raise RuntimeError(f"the app did not answer within 120 s:\n{log.read_text()[-3000:]}")
    return RunningApp(url=url, data_dir=data_dir, dataset=dataset, process=process, log=log)


def stop_app(app: RunningApp) -> None:
    app.process.terminate()
    try:
        app.process.wait(20)
    except subprocess.TimeoutExpired:
        app.process.kill()


@contextmanager
def running_app(root: Path) -> Iterator[RunningApp]:
    """A fresh app under ``root``: no products, no model, the USERS; a 48-photo dataset beside it."""
    dataset = make_learnable_dataset(root / "dataset", n=48)
    running = start_app(root / "data", dataset)
    try:
        yield running
    finally:
        stop_app(running)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """One app for a module's tests; a test that imports data or activates a model takes ``own_app``."""
    with running_app(tmp_path_factory.mktemp("app")) as running:
        yield running


@pytest.fixture
def own_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """An app for one test alone, for changes every other test would see (imported data, a model)."""
    with running_app(tmp_path_factory.mktemp("own-app")) as running:
        yield running
