"""The benchmarks a borrowed GPU machine should run, in order of worth, as one prepared command.

    python bench/device_check.py --data .devdata/myntra-dev --out "$OUT" --threads 8   # on the device machine
    python bench/device_check.py --smoke                                                # here, for CI: tiny steps

A session that is lent an accelerator (the ``device`` tool: about 15 minutes in all, the machine's
start included) copies myntra-dev into a folder of the repository that git ignores
(``.devdata/``, named in the run's ``carry``: 20 MB) and runs this once. Each step is one of the
project's benchmarks, run as a subprocess with its own time limit; a step that fails or runs out
of time is recorded and the next one runs. Every step's JSON lands in ``--out`` (what the device
tool brings back), and a summary is printed and written there too.

1. ``gpu-default``: ``train_myntra.py --device cuda``, the GPU default recipe (SE-ResNet50 at
   224 px, 30 epochs, bf16) from scratch on train.csv, scored on val.csv: it has never run on a GPU.
2. ``cv-cpu-recipe``: ``cv.py --recipe-of cpu --val-fraction 0 --flip``, the CPU default's 3-fold
   cross-validation (the protocol its schedule was chosen by) in fp32 on the GPU: checks that the
   GPU reproduces the CPU's out-of-fold 0.556, which makes the next arms' numbers comparable.
3. ``cv-cpu-colour``: the same with the colour histogram (``--colour-bins 6``): the arm that
   fold 0 alone rejected on the CPU (bench/RESULTS.md), on all three folds.
4. ``cv-cpu-in-run-tau``: the CPU recipe as the app trains it (15% early-stopping slice, a prior
   correction chosen per attribute on it) against step 2's fixed tau on all the photos.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import MYNTRA, ROOT, work_dir

STEPS: dict[str, list[str]] = {
    "gpu-default": ["train_myntra.py", "--device", "cuda"],
    "cv-cpu-recipe": ["cv.py", "--recipe-of", "cpu", "--val-fraction", "0", "--flip"],
    "cv-cpu-colour": ["cv.py", "--recipe-of", "cpu", "--val-fraction", "0", "--flip", "--colour-bins", "6"],
    "cv-cpu-in-run-tau": ["cv.py", "--recipe-of", "cpu", "--flip"],
}
# The figures each step's JSON is read for, in the summary.
KEYS = ("machine", "device", "val_score", "val_per_attribute_mean", "wall_minutes")
KEYS += ("out_of_fold_score", "per_fold_score", "minutes_per_fold", "chosen_taus_per_fold")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MYNTRA, help="myntra-dev (train.csv, val.csv, images/)")
    parser.add_argument(
        "--out", type=Path, default=None, help="each step's JSON and log, and the summary (default: a temporary folder)"
    )
    parser.add_argument(
        "--steps", default=",".join(STEPS), help=f"comma-separated, in order (default: {','.join(STEPS)})"
    )
    parser.add_argument("--step-minutes", type=float, default=3.0, help="time limit of each step")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each step (the device machine has 16)")
    parser.add_argument("--smoke", action="store_true", help="every step in its tiny configuration, on this machine")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.steps.split(",") if n.strip()]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}; the steps are {', '.join(STEPS)}")
    args.out = work_dir(args.out, "device-check-")
    summary: dict[str, dict] = {}
    for name in names:
        script, *options = STEPS[name]
        if args.smoke and "--device" in options:  # the GPU default's code path, on this machine's device
            options = [o for o in options if o not in ("--device", "cuda")]
        command = [sys.executable, str(ROOT / "bench" / script), "--data", str(args.data), *options]
        command += ["--threads", str(args.threads), "--json", str(args.out / f"{name}.json")]
        command += ["--smoke"] if args.smoke else []
        t0 = time.perf_counter()
        with open(args.out / f"{name}.log", "w") as log:
            try:
                rc = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, timeout=args.step_minutes * 60
                ).returncode
            except subprocess.TimeoutExpired:
                rc = None
        result: dict = {"rc": rc, "minutes": round((time.perf_counter() - t0) / 60, 2)}
        if rc == 0:
            figures = json.loads((args.out / f"{name}.json").read_text())
            result.update({k: figures[k] for k in KEYS if k in figures})
        else:
            result["error"] = "ran out of time" if rc is None else f"exit status {rc}: see {name}.log"
        summary[name] = result
        print(json.dumps({name: result}), flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if all(r["rc"] == 0 for r in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
