"""Run the benchmarks of the performance issue one after another and collect their figures.

    python bench/run_all.py --out /tmp/bench            # full runs (about 20-30 min on 2 cores)
    python bench/run_all.py --smoke                     # each in its tiny CI configuration
    python bench/run_all.py --only suggest_latency embed_throughput

Each benchmark runs in its own process (so one's memory and threads do not colour the next), and
writes its JSON into ``--out``; this script prints a one-line status per benchmark and exits
non-zero if any failed. ``train_myntra.py`` is not part of it: it is a 15-minute training run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# name -> (full-run arguments, smoke arguments); "{json}" becomes the JSON path in --out
BENCHMARKS = {
    "suggest_latency": (["--json", "{json}"], ["--smoke"]),
    "embed_throughput": (["--json", "{json}"], ["--smoke"]),
    "retrain_speed": (["--json", "{json}"], ["--smoke"]),
    "app_memory": (["--json", "{json}"], ["--smoke"]),
    "import_labels": ([], ["--limit", "500"]),
    "score_throughput": (["--json", "{json}"], ["--smoke"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON and logs (default: a temp dir)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-"))
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in [n for n in BENCHMARKS if n in args.only]:
        full, smoke = BENCHMARKS[name]
        extra = [a.replace("{json}", str(out / f"{name}.json")) for a in (smoke if args.smoke else full)]
        t0 = time.perf_counter()
        with open(out / f"{name}.log", "w") as log:
            code = subprocess.run(
                [sys.executable, str(BENCH / f"{name}.py"), *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=BENCH.parent,
            ).returncode
        print(
            f"{name:18s} {'ok' if code == 0 else f'FAILED ({code})'}  {time.perf_counter() - t0:6.1f} s  "
            f"{out / f'{name}.log'}",
            flush=True,
        )
        if code != 0:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
