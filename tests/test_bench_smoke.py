"""Every benchmark runs once in a tiny configuration, so none of them rots. Times are not judged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMOKE = {
    "import_labels.py": ["--limit", "500"],
    "train_myntra.py": ["--smoke"],
    "cv.py": ["--smoke"],
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
}


def test_every_benchmark_has_a_smoke_run():
    scripts = [p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_")]  # _common.py: helpers
    assert sorted(scripts) == sorted(SMOKE)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_smoke(script, shared_data):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *SMOKE[script]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
