"""Training workers apart from the web process (issue 13): ``python app.py worker`` processes
claim each queued run exactly once, a worker killed mid-run leaves its run interrupted and the
previous version serving, and the web process serves what a worker activated without a restart."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import db
from tests.app._data import make_learnable_dataset
from tests.app.conftest import start_app
from tests.reliability.conftest import ALL_USERS, ROOT, client, query, stop_app, wait_for
from tests.reliability.test_crashes import big_dataset, finished, run_of

RUNS = 40


def worker(data_dir: Path, log: Path, *args: str) -> subprocess.Popen:
    """``python app.py worker`` on ``data_dir``, its output in ``log``."""
    command = [sys.executable, str(ROOT / "app.py"), "worker", "--data-dir", str(data_dir), *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=log.open("a"), stderr=subprocess.STDOUT)


def test_two_workers_on_one_postgresql_database_never_take_the_same_run(postgres_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(postgres_url)
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    with sessions.begin() as session:
        admin_id = db.create_user(session, "admin", "admin-pass-1", role="admin").id
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    args = ("--database-url", postgres_url, "--poll-seconds", "0.05")
    workers = [worker(tmp_path / f"data-{i}", log, *args) for i, log in enumerate(logs)]
    try:
        wait_for(lambda: all("waiting for training runs" in log.read_text() for log in logs), 120, "both workers up")
        # One run queued at a time (the database allows no second: uq_training_runs_one_active),
        # both workers polling for it: each run is a race that exactly one of them must win. With
        # no labelled product each run fails at once: the workers do little else than race.
        for _ in range(RUNS):
            with sessions.begin() as session:
                db.create_run(session, kind="heads", created_by=session.get(db.User, admin_id))
            wait_for(
                lambda: not query(postgres_url, "SELECT id FROM training_runs WHERE status IN ('queued', 'running')"),
                60,
                "the run ending",
                every=0.02,
            )
    finally:
        for process in workers:
            process.terminate()
            process.wait(30)
        engine.dispose()
    claims = [
        (log.name, int(run_id)) for log in logs for run_id in re.findall(r"claimed training run (\d+)", log.read_text())
    ]
    claimed = sorted(run_id for _, run_id in claims)
    ids = [row[0] for row in query(postgres_url, "SELECT id FROM training_runs ORDER BY id")]
    assert claimed == ids, claims  # each run taken once, by one worker
    ended = query(postgres_url, "SELECT status, worker, error FROM training_runs")
    assert all(status == "failed" and worker and "at least 10 are needed" in error for status, worker, error in ended)
    holders = {worker for _, worker, _ in ended}
    assert len(holders) == 2, holders  # both raced: neither was idle while runs were queued
    print(f"\n{RUNS} runs, each claimed once; {len(holders)} workers took them: {sorted(holders)}")


def test_a_worker_killed_midway_leaves_the_previous_version_and_the_next_run_completes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # No embedded worker: the runs wait for the worker processes this test starts and kills.
    app = start_app(
        data, data, users=ALL_USERS, args=("--no-worker", "--model-poll-seconds", "1", "--auto-retrain", "off")
    )
    logs = tmp_path / "workers.log"
    try:
        admin = client(app, "admin")
        first_set = make_learnable_dataset(tmp_path / "first", n=48)
        assert admin.predict(str(first_set), False, api_name="/import_data")["imported"] == 48
        first = admin.predict("heads", api_name="/retrain")["run_id"]
        assert run_of(admin, first)["status"] == "queued"
        assert admin.predict(api_name="/model_status")["training"] is True  # queued counts: the buttons are off

        one = worker(data, logs)
        run = wait_for(lambda: finished(admin, first), 240, "the first run, done by the worker")
        assert run["status"] == "succeeded", run
        v1 = run["version"]
        # The web process was not restarted: it serves the version the worker activated.
        assert admin.predict(api_name="/model_status")["active"] == v1

        more = big_dataset(tmp_path / "more", n=300, size=256)
        assert admin.predict(str(more), False, api_name="/import_data")["imported"] == 300
        second = admin.predict("heads", api_name="/retrain")["run_id"]
        wait_for(lambda: run_of(admin, second)["status"] == "running", 60, "the worker taking the run", every=0.1)
        wait_for(lambda: run_of(admin, second)["progress"] > 0, 60, "the run reporting progress", every=0.1)
        assert run_of(admin, second)["status"] == "running", "the run ended before it could be killed"
        one.send_signal(signal.SIGKILL)
        one.wait(30)

        # The web process's own stale check (every --model-poll-seconds) ends the dead worker's run.
        killed = wait_for(lambda: finished(admin, second), 60, "the killed run being marked")
        assert killed["status"] == "interrupted" and killed["version"] is None, killed
        assert "stopped while this run was in progress" in killed["message"], killed
        status = admin.predict(api_name="/model_status")
        assert status["active"] == v1 and status["training"] is False
        assert [v["version"] for v in admin.predict(api_name="/versions")] == [v1]

        again = admin.predict("heads", api_name="/retrain")["run_id"]  # retried as a new run
        two = worker(data, logs, "--once")
        assert two.wait(300) == 0  # --once: one run, then it exits
        run = run_of(admin, again)
        assert run["status"] in ("succeeded", "rejected") and run["version"], run
        expected = run["version"] if run["status"] == "succeeded" else v1
        assert admin.predict(api_name="/model_status")["active"] == expected
        holders = query(f"sqlite:///{app.db_file}", "SELECT id, worker FROM training_runs ORDER BY id")
        assert holders[1][1] != holders[2][1] and all(w for _, w in holders), holders
    finally:
        stop_app(app)
