"""The loop benchmark: the real app, a seller streaming labels in rounds, the retrain policy retraining.

    python bench/loop.py --data ../shared/data/myntra-dev --out /tmp/loop-myntra
    python bench/loop.py --data ../shared/data/flixstock-dev --out /tmp/loop-flixstock
    python bench/loop.py --smoke                  # 36 products, 2 rounds, for CI

What it does, through the running app only (a subprocess, a fresh data dir, HTTP via gradio_client):
the dataset's taxonomy is built by ``app.py taxonomy from-data`` and given with --taxonomy-file; the
admin switches the retrain policy off, imports the first share of ``train.csv`` (shuffled, seed 0),
and switches it on: the policy trains the first model. Then the other products come as a seller's
uploads, in rounds: each photo is uploaded with its category, the fields whose prefilled value
equals the truth are counted, and the truth is saved as the seller's correction. The policy is set
to retrain after one round's products (``VT_RETRAIN_AFTER``) with no minimum interval; the benchmark
never presses a training button, it waits for the run the policy starts. While a run goes, a second
user uploads val.csv photos and the suggestion latency is recorded (``--busy`` adds a second torch
process spinning on the machine meanwhile).

Per round: fields right (%), the val.csv metric of the version that served the round, the run's
kind (heads, or full fine-tuning the active version), seconds, the gate's decision with its numbers,
and the val.csv metric of the candidate (activated or not: a rejected candidate that is better on
val.csv is reported). At the end, a model trained offline (``trainer.train_full``, the same
from-scratch recipe as the app's first model) on the same labels is scored on val.csv beside the
loop's active model. val.csv is read for scoring only; nothing in the app sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MYNTRA, ROOT, percentile, wait_for_app, work_dir, write_subset

from taxonomy import LabeledExample, Taxonomy, load_taxonomy
from trainer import evaluate_checkpoint, read_dataset, train_full

USERS = {
    "admin": ("admin-loop-pass", "admin"),
    "seller": ("seller-loop-pass", "seller"),
    "probe": ("probe-pass-1", "seller"),
}
BUSY_CODE = "import torch\ntorch.set_num_threads(1)\nx = torch.randn(512, 512)\nwhile True:\n    x = (x @ x).tanh()\n"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    def __init__(self, data_dir: Path, taxonomy_file: Path, env: dict[str, str]) -> None:
        users = data_dir.parent / "users.json"
        users.write_text(json.dumps([{"name": n, "password": p, "role": r} for n, (p, r) in USERS.items()]))
        self.port = free_port()
        self.log = data_dir.parent / "app.log"
        self.data_dir = data_dir
        command = [sys.executable, str(ROOT / "app.py"), "serve", "--data-dir", str(data_dir)]
        command += ["--port", str(self.port), "--users-file", str(users), "--taxonomy-file", str(taxonomy_file)]
        full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **env}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=self.log.open("a"), stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{self.port}/"
        try:
            wait_for_app(self.process, self.url, self.log)
        except RuntimeError:
            self.stop()
            raise

    def client(self, user: str):
        from gradio_client import Client

        return Client(self.url, auth=(user, USERS[user][0]), verbose=False)

    def checkpoint(self, version_id: str) -> Path:
        engine = create_engine(f"sqlite:///{self.data_dir / 'visual_taxonomy.sqlite3'}")
        try:
            with engine.connect() as conn:
                path = conn.execute(
                    text("SELECT path FROM model_versions WHERE id = :v"), {"v": version_id}
                ).scalar_one()
        finally:
            engine.dispose()
        return Path(path) if Path(path).is_absolute() else self.data_dir / "models" / path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_run(
    admin, after: int, probe=None, probe_photos: list[LabeledExample] = (), timeout: float = 7200
) -> tuple[dict, list[float]]:
    """The first run newer than ``after`` (the policy's), once finished; with ``probe``, suggestion
    latencies (s) of uploads made while it ran."""
    from gradio_client import handle_file

    latencies: list[float] = []
    deadline, i = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        runs = [r for r in admin.predict(20, api_name="/runs") if r["run_id"] > after]
        run = runs[-1] if runs else None
        if run is not None and run["status"] not in ("queued", "running"):
            return run, latencies
        if run is not None and probe is not None and probe_photos:
            example = probe_photos[i % len(probe_photos)]
            t0 = time.perf_counter()
            probe.predict(handle_file(example.image_path), example.category, api_name="/upload")
            latencies.append(time.perf_counter() - t0)
            i += 1
        else:
            time.sleep(1.0)
    raise TimeoutError(f"no finished run after {after} within {timeout} s")


def val_score(app: App, version_id: str, val: list[LabeledExample], cache: Path) -> float:
    return round(evaluate_checkpoint(app.checkpoint(version_id), val, cache_dir=cache).score, 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=MYNTRA)
    parser.add_argument(
        "--out", type=Path, default=None, help="working folder (default: a temporary one, removed at the end)"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--first-share", type=float, default=0.5, help="share of train.csv imported before the stream")
    parser.add_argument("--limit", type=int, default=0, help="use only this many products of train.csv (0: all)")
    parser.add_argument("--val-limit", type=int, default=0, help="score on this many val.csv products (0: all)")
    parser.add_argument("--busy", action="store_true", help="a second torch process spins while runs go")
    parser.add_argument("--no-offline", action="store_true", help="skip the model trained offline for comparison")
    parser.add_argument("--smoke", action="store_true", help="36 products, 2 rounds, 12 val photos: for CI")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        args.limit, args.rounds, args.val_limit, args.first_share = 36, 2, 12, 0.5
    if not (args.data / "train.csv").is_file():
        print(f"no train.csv in {args.data}", file=sys.stderr)
        return 2
    work = work_dir(args.out, "loop-")
    taxonomy_file = work / "taxonomy.json"
    subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "taxonomy", "from-data", str(args.data), "--out", str(taxonomy_file)],
        check=True,
        cwd=ROOT,
    )
    taxonomy: Taxonomy = load_taxonomy(taxonomy_file)
    examples, _ = read_dataset(args.data, taxonomy)
    examples = [e for e in examples if e.image_path]
    random.Random(0).shuffle(examples)
    if args.limit:
        examples = examples[: args.limit]
    val, _ = read_dataset(args.data, taxonomy, csv_name="val.csv")
    val = [e for e in val if e.image_path][: args.val_limit or None]
    n_first = round(len(examples) * args.first_share)
    first, rest = examples[:n_first], examples[n_first:]
    # The stream holds products with at least one label (a save with nothing to say writes no
    # label event, and the policy counts labelled products), in rounds of equal size, so that
    # each round's last save is the one that starts the policy's run; the remainder joins the
    # first share.
    # One product per photo too: an identical photo uploaded again is the same product (the app
    # answers "already uploaded"), and a round would then hold one labelled product fewer.
    from taxonomy import file_sha256

    seen = {file_sha256(e.image_path) for e in first if e.image_path}
    labelled = []
    for e in rest:
        digest = file_sha256(e.image_path)
        if digest not in seen and any(v is not None for v in e.labels.values()):
            seen.add(digest)
            labelled.append(e)
    round_size = len(labelled) // args.rounds
    stream = labelled[: round_size * args.rounds]
    first += [e for e in rest if e not in stream]
    write_subset(args.data, {e.id for e in first}, work / "first")
    env = {
        "VT_AUTO_RETRAIN": "on",
        "VT_RETRAIN_AFTER": str(round_size),
        "VT_RETRAIN_MIN_MINUTES": "0",
        "VT_RETRAIN_POLL_SECONDS": "2",
    }
    cache = work / "bench-cache"
    app = App(work / "data", taxonomy_file, env)
    busy = None
    results: dict = {"data": str(args.data), "first": len(first), "stream": len(stream), "rounds": [], "val": len(val)}
    try:
        admin, seller, probe = app.client("admin"), app.client("seller"), app.client("probe")
        admin.predict(False, api_name="/set_auto_retrain")
        t0 = time.perf_counter()
        report = admin.predict(str(work / "first"), False, api_name="/import_data")
        results["import_seconds"] = round(time.perf_counter() - t0, 1)
        results["imported"] = report["imported"]
        admin.predict(True, api_name="/set_auto_retrain")
        run, _ = wait_run(admin, 0)
        results["first_model"] = summary(run, app, val, cache)
        print(json.dumps(results["first_model"]), flush=True)
        last_run = run["run_id"]
        from gradio_client import handle_file

        for r in range(args.rounds):
            part = stream[r * round_size : (r + 1) * round_size]
            if not part:
                break
            serving = admin.predict(api_name="/model_status")["active"]
            right = total = 0
            upload_s = []
            for example in part:
                t1 = time.perf_counter()
                up = seller.predict(handle_file(example.image_path), example.category, api_name="/upload")
                upload_s.append(time.perf_counter() - t1)
                suggested = (up.get("suggestion") or {}).get("attributes") or {}
                truth = {k: v for k, v in example.labels.items() if v is not None}
                right += sum(1 for k, v in truth.items() if (suggested.get(k) or {}).get("value") == v)
                total += len(truth)
                seller.predict(up["product_id"], example.category, truth, api_name="/save")
            if args.busy:
                busy = subprocess.Popen([sys.executable, "-c", BUSY_CODE])
            run, latencies = wait_run(admin, last_run, probe, val[:20])
            if busy is not None:
                busy.kill()
                busy = None
            last_run = run["run_id"]
            entry = {
                "round": r + 1,
                "products": len(part),
                "fields_right": round(right / max(1, total), 4),
                "served_by": serving,
                "served_val": val_score(app, serving, val, cache) if serving else None,
                "upload_p50_s": round(percentile(upload_s, 50), 3),
                "run": summary(run, app, val, cache),
                "suggest_during_run_p95_s": round(percentile(latencies, 95), 3) if latencies else None,
                "suggest_during_run_n": len(latencies),
            }
            entry["active_after"] = admin.predict(api_name="/model_status")["active"]
            results["rounds"].append(entry)
            print(json.dumps(entry), flush=True)
        final = admin.predict(api_name="/model_status")["active"]
        results["final_active"] = final
        results["final_val"] = val_score(app, final, val, cache)
    finally:
        if busy is not None:
            busy.kill()
        app.stop()
    if not args.no_offline:
        t0 = time.perf_counter()
        offline = train_full(examples, taxonomy=taxonomy, out_dir=work / "offline")
        score = evaluate_checkpoint(offline.checkpoint_path, val, cache_dir=cache).score
        results["offline"] = {"val": round(score, 4), "seconds": round(time.perf_counter() - t0, 1)}
        results["loop_minus_offline"] = round(results["final_val"] - score, 4)
    text_out = json.dumps(results, indent=1)
    print(text_out)
    if args.json:
        args.json.write_text(text_out + "\n")
    return 0


def summary(run: dict, app: App, val: list[LabeledExample], cache: Path) -> dict:
    """A finished run as the benchmark reports it, with its candidate's val.csv metric."""
    from datetime import datetime

    seconds = None
    if run.get("started") and run.get("finished"):
        seconds = (datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])).total_seconds()
    return {
        "run": run["run_id"],
        "kind": run["kind"] if not run.get("init") else "full (fine-tune)",
        "trigger": run.get("trigger"),
        "status": run["status"],
        "seconds": seconds,
        "gate": run["message"],
        "candidate": run["version"],
        "candidate_val": val_score(app, run["version"], val, cache) if run["version"] else None,
        "error": run.get("error"),
    }


if __name__ == "__main__":
    sys.exit(main())
