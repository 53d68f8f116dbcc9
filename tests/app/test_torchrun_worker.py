"""``python app.py worker --train-nproc 2``: a full run is trained by ``torchrun`` (2 gloo processes
on the CPU, a tiny model), its progress reaches the run's row while it trains, its checkpoint goes
through the gate and is registered; a torchrun that fails marks the run failed with its stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

import db
from tests.app._data import make_learnable_dataset
from webapp.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "train": {"epochs": 6, "batch_size": 16, "lr": 2e-3, "progressive_size": 0, "tta_flip": False},
    "model": {"arch": "resnet18", "weights": "none", "image_size": 48, "head_hidden": 64, "complex_hidden": [64, 32]},
}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """48 labelled products in a fresh data folder, an admin, and the run that admin queued."""
    folder = tmp_path / "data"
    assert main(["import", str(make_learnable_dataset(tmp_path / "set", 48)), "--data-dir", str(folder)]) == 0
    return folder


def queue_full_run(folder: Path) -> tuple[db.Engine, int]:
    engine = db.make_engine(db.default_sqlite_url(folder))
    with db.make_session_factory(engine).begin() as session:
        admin = db.get_user_by_name(session, "admin") or db.create_user(session, "admin", "admin-pass-1", role="admin")
        run = db.TrainingRun(kind="full", status="queued", message="queued", created_by=admin.id)
        session.add(run)
        session.flush()
        return engine, run.id


def run_worker(folder: Path, config: dict, engine: db.Engine, run_id: int) -> tuple[str, list[tuple[float, str]]]:
    """``python app.py worker --once --train-nproc 2`` to its end; its output, and every distinct
    (progress, message) of the run's row seen while it ran."""
    (folder / "tiny.json").write_text(json.dumps(config))
    command = [sys.executable, str(ROOT / "app.py"), "worker", "--data-dir", str(folder), "--once"]
    command += ["--train-nproc", "2", "--train-config", str(folder / "tiny.json"), "--threads", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = folder / "worker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    seen: list[tuple[float, str]] = []
    sessions = db.make_session_factory(engine)
    deadline = time.monotonic() + 540
    while process.poll() is None and time.monotonic() < deadline:
        with sessions.begin() as session:
            run = db.get_run(session, run_id)
            if (run.progress, run.message) not in seen:
                seen.append((run.progress, run.message))
        time.sleep(0.2)
    if process.poll() is None:
        process.kill()
    assert process.wait() == 0, log.read_text()[-3000:]
    return log.read_text(), seen


def test_a_full_run_trains_under_torchrun_and_passes_the_gate(data: Path) -> None:
    engine, run_id = queue_full_run(data)
    output, seen = run_worker(data, TINY, engine, run_id)
    assert "training with torchrun, 2 processes" in output, output[-3000:]
    # Rank 0's reports reached the row while the two processes trained.
    epochs = [m for p, m in seen if m.startswith("epoch ") and 0.0 < p < 1.0]
    assert epochs and all("/6: validation" in m for m in epochs), seen
    with db.make_session_factory(engine).begin() as session:
        run = db.get_run(session, run_id)
        assert run.status in ("succeeded", "rejected"), (run.status, run.error)  # judged either way
        version = session.scalars(select(db.ModelVersion).where(db.ModelVersion.id == run.result_version_id)).one()
        assert "the same" in version.notes and "held-out products" in version.notes  # the gate's verdict
        assert version.path == f"run-{run_id:05d}/model.pt"
        assert (run.status == "succeeded") == (version.status == "active")
    out = data / "models" / f"run-{run_id:05d}"
    assert sorted(p.name for p in out.glob("*.pt")) == ["last.pt", "model.pt"]  # rank 0 alone wrote
    assert (out / "train.log").read_text().count("epoch 6/6 ") == 1
    assert json.loads((out / "torchrun" / "result.json").read_text())["version_id"] == version.id
    engine.dispose()


def test_a_failed_torchrun_fails_the_run_with_its_stderr(data: Path) -> None:
    engine, run_id = queue_full_run(data)
    output, _ = run_worker(data, {"train": {"epochs": 0}}, engine, run_id)
    with db.make_session_factory(engine).begin() as session:
        run = db.get_run(session, run_id)
        assert run.status == "failed", output[-3000:]
        assert run.error.startswith("TorchrunFailed: torchrun exited with status 1"), run.error
        assert "epochs and heads_epochs must be at least 1" in run.error  # what the trainer said
        assert run.result_version_id is None
        assert not list(session.scalars(select(db.ModelVersion)))  # nothing registered
    engine.dispose()
