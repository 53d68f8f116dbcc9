"""Helpers the benchmarks share: where the data is, which device ran, percentiles."""

from __future__ import annotations

import argparse
import atexit
import csv
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
MYNTRA = ROOT.parent / "shared" / "data" / "myntra-dev"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    """The GPU's name, else the CPU's model name: recorded beside every figure."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def work_dir(out: Path | None, prefix: str) -> Path:
    """``out`` when the user named one (created, and kept with every checkpoint the run wrote), else
    a temporary folder removed when the benchmark exits: a run's checkpoints and resume states
    take hundreds of MB (a loop run about 1 GB), which would otherwise pile up in /tmp."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        return out
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between order statistics."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def add_common_args(parser: argparse.ArgumentParser, smoke_help: str = "a tiny configuration, for CI") -> None:
    """The options every myntra benchmark takes: --threads, --smoke, --json."""
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")


def ready(args: argparse.Namespace, data: Path = MYNTRA) -> bool:
    """Set torch's thread count; False (with a message) when the myntra-dev set is missing."""
    torch.set_num_threads(args.threads)
    return not myntra_missing(data)


def myntra_missing(data: Path = MYNTRA) -> bool:
    """True (and a message on stderr) when the myntra-dev set is not at ``data``."""
    if (data / "train.csv").is_file():
        return False
    print(f"myntra-dev not found at {data}", file=sys.stderr)
    return True


def emit(numbers: dict, json_path: Path | None) -> None:
    """Print the figures as JSON and, when asked, write them to ``json_path`` too."""
    text = json.dumps(numbers, indent=1)
    print(text)
    if json_path is not None:
        json_path.write_text(text + "\n")


def per_attribute_mean(report) -> dict[str, float]:
    """Attribute name -> its score averaged over the categories that have it (a ``MetricReport``)."""
    by_name: dict[str, list[float]] = {}
    for a in report.per_attribute:
        by_name.setdefault(a.attribute, []).append(a.score)
    return {k: round(sum(v) / len(v), 4) for k, v in by_name.items()}


def wait_for_app(process: subprocess.Popen, url: str, log: Path, timeout: float = 180) -> None:
    """Return once the app at ``url`` answers; RuntimeError with the log's tail when it exits or
    stays silent for ``timeout`` seconds (the caller stops it)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def write_subset(source: Path, ids: set[str], target: Path) -> None:
    """``target`` in the competition layout: the rows of ``ids`` from source's train.csv, photos linked."""
    (target / "images").mkdir(parents=True, exist_ok=True)
    with open(source / "train.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    with open(target / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(rows[0])
        writer.writerows(r for r in rows[1:] if r[0] in ids)
    for name in ("category_attributes.parquet", "category_attributes.json"):
        if (source / name).is_file():
            (target / name).write_bytes((source / name).read_bytes())
    for photo in (source / "images").iterdir():
        if photo.stem in ids:
            (target / "images" / photo.name).symlink_to(photo.resolve())


def read_split(data: Path, *, with_val: bool = True) -> tuple:
    """(taxonomy, train.csv examples, val.csv examples) of a competition-layout folder; the
    taxonomy is the data's own (``category_attributes.parquet`` and train.csv's values)."""
    from taxonomy import taxonomy_from_competition
    from trainer import read_dataset

    taxonomy = taxonomy_from_competition(data / "category_attributes.parquet", data / "train.csv")
    train, _ = read_dataset(data, taxonomy)
    val = read_dataset(data, taxonomy, csv_name="val.csv")[0] if with_val else []
    return taxonomy, train, val
