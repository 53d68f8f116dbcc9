"""Crashes: SIGKILL in the middle of a retrain and of an import, and a checkpoint file changed
behind the registry's back. Order matters within this module: one data folder lives through
a first model, a killed retrain, a restart, a new retrain and a damaged checkpoint."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError
from sqlalchemy.exc import OperationalError

from tests.app._data import jpeg, make_learnable_dataset, photo
from tests.reliability.conftest import ROOT, client, launch, query, stop_app, wait_for


def runs(admin) -> list[dict]:
    return admin.predict(20, api_name="/runs")


def run_of(admin, run_id: int) -> dict:
    return next(r for r in runs(admin) if r["run_id"] == run_id)


def finished(admin, run_id: int) -> dict | None:
    run = run_of(admin, run_id)
    return run if run["status"] not in ("queued", "running") else None


def big_dataset(root: Path, n: int, size: int, prefix: str = "b") -> Path:
    """``n`` learnable photos of ``size`` px, ids ``<prefix>1..``, in the competition layout."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        category = "Men Tshirts" if i % 2 == 0 else "Kurtis"
        color = ("white", "black")[(i // 2) % 2] if category == "Men Tshirts" else ("red", "blue")[(i // 2) % 2]
        striped = (i // 4) % 2 == 1
        image = photo(category, color, striped, 30_000 + i, size)
        image.paste((i % 256, i * 37 % 256, i // 256 * 120), (0, 0, 8, 8))  # its own mark: no two alike
        (root / "images" / f"{prefix}{i}.jpg").write_bytes(jpeg(image))
        cells = [color, "", "printed" if striped else "solid", "", ""] if category == "Men Tshirts" else [color]
        rows.append([f"{prefix}{i}", category, str(5 if category == "Men Tshirts" else 9), *cells])
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "Category", "len", *(f"attr_{k}" for k in range(1, 11))])
        writer.writerows(row + [""] * (13 - len(row)) for row in rows)
    return root


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> dict:
    """One data folder with a first model trained and active; the app (re)started by the tests."""
    root = tmp_path_factory.mktemp("crash")
    app = launch(root / "data")
    admin = client(app, "admin")
    assert admin.predict(str(make_learnable_dataset(root / "first", n=48)), False, api_name="/import_data")["imported"]
    first = admin.predict("heads", api_name="/retrain")["run_id"]
    run = wait_for(lambda: finished(admin, first), 240, "the first retrain")
    assert run["status"] == "succeeded", run
    box = {"root": root, "app": app, "v1": run["version"]}
    yield box
    stop_app(box["app"])


def test_a_retrain_killed_midway_leaves_the_previous_model_active(state):
    app, v1 = state["app"], state["v1"]
    admin = client(app, "admin")
    more = big_dataset(state["root"] / "more", n=300, size=256)
    assert admin.predict(str(more), False, api_name="/import_data")["imported"] == 300
    run_id = admin.predict("heads", api_name="/retrain")["run_id"]
    wait_for(lambda: run_of(admin, run_id)["status"] == "running", 60, "the retrain starting", every=0.1)
    time.sleep(1.0)  # into its embedding of 300 new photos
    assert run_of(admin, run_id)["status"] == "running", "the retrain ended before it could be killed"
    app.process.send_signal(signal.SIGKILL)
    app.process.wait(30)

    state["app"] = app = launch(app.data_dir)
    admin = client(app, "admin")
    assert admin.predict(api_name="/model_status")["active"] == v1
    killed = run_of(admin, run_id)
    assert killed["status"] == "interrupted" and killed["version"] is None, killed
    versions = admin.predict(api_name="/versions")
    assert [v["version"] for v in versions] == [v1], versions  # nothing of the killed run was registered
    assert "interrupted by the last shutdown" in app.log.read_text()

    again = admin.predict("heads", api_name="/retrain")["run_id"]
    run = wait_for(lambda: finished(admin, again), 240, "the retrain after the restart")
    assert run["status"] in ("succeeded", "rejected") and run["version"], run  # finished; the gate decided
    state["v2"] = run["version"]
    state["v2_active"] = run["status"] == "succeeded"


def test_a_checkpoint_changed_on_disk_is_refused(state):
    app = state["app"]
    admin = client(app, "admin")
    active = admin.predict(api_name="/model_status")["active"]
    stop_app(app)
    (path,) = query(f"sqlite:///{app.db_file}", "SELECT path FROM model_versions WHERE id = :id", id=active)[0]
    checkpoint = app.data_dir / "models" / path
    with open(checkpoint, "ab") as handle:
        handle.write(b"\0")  # one byte more: the recorded sha256 no longer matches

    state["app"] = app = launch(app.data_dir)
    admin = client(app, "admin")
    assert admin.predict(api_name="/model_status")["active"] is None  # refused on load, not served
    log = app.log.read_text()
    assert "the active model cannot be used" in log and "changed or damaged" in log
    with pytest.raises(AppError, match="changed or damaged"):
        admin.predict(active, api_name="/activate")
    other = state["v1"] if active != state["v1"] else state["v2"]
    assert admin.predict(other, api_name="/activate")["active"] == other  # an intact version still loads
    assert admin.predict(api_name="/model_status")["active"] == other


def test_an_import_killed_midway_is_completed_by_running_it_again(tmp_path):
    dataset = big_dataset(tmp_path / "set", n=400, size=64, prefix="k")
    expected_events = sum(2 if i % 2 == 0 else 1 for i in range(400))  # T-shirts: colour, pattern; Kurtis: colour
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'visual_taxonomy.sqlite3'}"
    command = [
        sys.executable,
        str(ROOT / "app.py"),
        "import",
        str(dataset),
        "--data-dir",
        str(data),
        "--batch-size",
        "20",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def imported() -> int:
        try:
            return query(url, "SELECT count(*) FROM products")[0][0]
        except OperationalError:  # not created yet
            return 0

    wait_for(lambda: imported() > 0 or process.poll() is not None, 120, "the first batch", every=0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    partial = imported()
    assert 0 < partial < 400, f"{partial} products: the import was not caught midway"
    # Every product that made it has all of its labels: batches are transactions.
    counts = query(
        url,
        "SELECT p.external_id, count(e.id) FROM products p "
        "LEFT JOIN label_events e ON e.product_id = p.id GROUP BY p.external_id",
    )
    assert all(n == (2 if int(ext[1:]) % 2 == 0 else 1) for ext, n in counts), counts

    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{400 - partial} imported" in result.stdout and f"{partial} already present" in result.stdout
    assert query(url, "SELECT count(*) FROM products")[0][0] == 400
    assert query(url, "SELECT count(*) FROM label_events")[0][0] == expected_events
    print(f"\nimport killed after {partial} of 400 products; the second run imported the other {400 - partial}")
