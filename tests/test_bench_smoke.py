"""Every benchmark runs once in a tiny configuration, so none of them rots. Times are not judged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.trainer.conftest import write_catalogue_trunk

ROOT = Path(__file__).resolve().parent.parent

SMOKE = {
    "import_labels.py": ["--limit", "500"],
    "train_myntra.py": ["--smoke"],
    "cv.py": ["--smoke"],
    "cv_average.py": ["--smoke"],
    "cv_taus.py": ["--smoke"],
    "cv_sizes.py": ["--smoke"],
    "retrain_speed.py": ["--smoke"],
    "suggest_latency.py": ["--smoke"],
    "embed_throughput.py": ["--smoke"],
    "app_memory.py": ["--smoke"],
    "score_throughput.py": ["--smoke"],
    "run_all.py": ["--smoke", "--only", "import_labels"],
    "loop.py": ["--smoke"],
    "quantized.py": ["--smoke"],
    "calibration.py": ["--smoke"],
    "keyboard.py": ["--smoke"],
    "label_noise.py": ["--smoke"],
    "near_duplicates.py": ["--smoke"],
    "versus_plain.py": ["--smoke"],
    "vote_cost.py": ["--smoke"],
    "device_check.py": ["--smoke", "--steps", "gpu-default,cv-cpu-colour"],  # both scripts it drives
}


def test_every_benchmark_has_a_smoke_run():
    scripts = [p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_")]  # _common.py: helpers
    assert sorted(scripts) == sorted(SMOKE)


@pytest.fixture
def short_tmp():
    """An empty folder directly under the system's temporary folder, removed afterwards. Not under
    pytest's tmp_path: Chromium puts its profile (and that profile's socket, whose path may not
    exceed 107 bytes) in TMPDIR, and fails to start from pytest's longer paths."""
    path = Path(tempfile.mkdtemp(prefix="vt-smoke-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_smoke(script, shared_data, short_tmp):
    # The benchmark's temporary folders go to a folder of this test's own, so what it leaves
    # behind can be seen: its checkpoints are hundreds of MB on a full run.
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *SMOKE[script]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "TMPDIR": str(short_tmp)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    # Only run_all keeps its folder of logs (it prints their paths); a benchmark's own working
    # folder is removed unless --out names one. Libraries' caches (torch's compiled kernels,
    # Gradio's uploads) are theirs to keep.
    kept = ("torchinductor_", "gradio", *(("bench-",) if script == "run_all.py" else ()))
    left = sorted(p.name for p in short_tmp.iterdir() if not p.name.startswith(kept))
    assert left == [], f"{script} left {left} in its temporary folder"


@pytest.mark.slow
def test_train_bench_plans_a_catalogue_trunk_as_the_trainer_does(shared_data, short_tmp):
    """``--weights`` with a ``trainer pretrain`` file: the run takes the catalogue recipe (scratch
    schedule, nothing frozen) from the file, as ``python -m trainer train --weights`` does."""
    source = "pretrained: catalogue shop.csv, columns articleType, 6 epochs"
    trunk = write_catalogue_trunk(short_tmp / "trunk.pt", source)
    figures = short_tmp / "figures.json"
    script = [sys.executable, str(ROOT / "bench" / "train_myntra.py"), "--smoke", "--weights", str(trunk)]
    result = subprocess.run([*script, "--json", str(figures)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    numbers = json.loads(figures.read_text())
    assert numbers["recipe"] == "catalogue" and numbers["trunk"] == f"{source}; weights file {trunk}"
    assert numbers["model"]["frozen_when_pretrained"] == [] and numbers["train"]["recipe"] == "catalogue"
    assert numbers["train"]["trunk_lr_scale"] == 1.0 and 0 <= numbers["val_score"] <= 1
