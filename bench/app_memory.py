"""Peak resident memory of the app serving suggestions with a model loaded.

    python bench/app_memory.py            # 30 suggestions
    python bench/app_memory.py --smoke    # 3 suggestions, no restart, for CI

Starts ``python app.py serve`` in a subprocess on a temporary data directory, imports generated
photos through the admin API, runs a heads retrain (which registers and activates the first
model), then restarts the app so that it loads that model as it would in production, and sends
suggestions (``/upload`` of myntra-dev photos) through ``gradio_client``. The server's peak
resident set is read from ``/proc/<pid>/status`` (``VmHWM``): once for the first process
(import + retrain + serving) and once for the restarted one (model loaded + serving).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MYNTRA, ROOT, device_name, emit, pick_device, wait_for_app, work_dir

from tests.app._data import make_learnable_dataset

USERS = {"admin": ("admin-pass-1", "admin"), "alice": ("alice-pass-1", "seller")}


def status_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak resident) and VmRSS of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


class App:
    def __init__(self, data_dir: Path, users_file: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        self.log = data_dir.parent / f"app-{port}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        self.process = subprocess.Popen(
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
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_app(self.process, self.url, self.log)
        except RuntimeError:
            self.stop()
            raise

    def client(self, user: str):
        from gradio_client import Client

        return Client(self.url, auth=(user, USERS[user][0]), verbose=False)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def suggest(app: App, photos: list[Path]) -> int:
    from gradio_client import handle_file

    alice = app.client("alice")
    made = 0
    for photo in photos:
        item = alice.predict(handle_file(str(photo)), "", api_name="/upload")
        made += item.get("suggestion") is not None
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suggestions", type=int, default=30)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    images = sorted((MYNTRA / "images").glob("*.jpg"))
    if not images:
        print(f"myntra-dev photos not found under {MYNTRA}", file=sys.stderr)
        return 2
    n = 3 if args.smoke else args.suggestions
    root = work_dir(None, "app-memory-")
    dataset = make_learnable_dataset(root / "dataset", n=48)
    users_file = root / "users.json"
    users_file.write_text(json.dumps([{"name": k, "password": p, "role": r} for k, (p, r) in USERS.items()]))

    app = App(root / "data", users_file)
    try:
        admin = app.client("admin")
        admin.predict(str(dataset), False, api_name="/import_data")
        run_id = admin.predict("heads", api_name="/retrain")["run_id"]
        deadline = time.monotonic() + 600
        while True:
            run = next(r for r in admin.predict(10, api_name="/runs") if r["run_id"] == run_id)
            if run["status"] not in ("queued", "running"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"retrain {run_id} did not finish in 600 s")
            time.sleep(1)
        active = [v for v in admin.predict(api_name="/versions") if v["status"] == "active"]
        if not active:
            raise RuntimeError(f"no model became active: {run}")
        made_first = suggest(app, images[:n])
        first = status_kb(app.process.pid)
    finally:
        app.stop()

    loaded = serving = {"VmRSS": 0, "VmHWM": 0}
    made = 0
    if not args.smoke:  # CI checks the path above; the restart doubles the start-up time
        app = App(root / "data", users_file)  # a restart: the active model is loaded from its file
        try:
            loaded = status_kb(app.process.pid)
            made = suggest(app, images[n : 2 * n])
            serving = status_kb(app.process.pid)
        finally:
            app.stop()
    numbers = {
        "device": device_name(pick_device()),
        "torch": torch.__version__,
        "model": active[0]["version"],
        "suggestions": n,
        "suggestions_with_a_model_answer": made,
        "first_process_suggestions": made_first,
        "import_retrain_and_serving_peak_mb": round(first["VmHWM"] / 1024, 1),
        "restarted_model_loaded_rss_mb": round(loaded["VmRSS"] / 1024, 1),
        "restarted_serving_peak_mb": round(serving["VmHWM"] / 1024, 1),
        "target_mb": 1536,
    }
    emit(numbers, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
