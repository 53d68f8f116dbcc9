"""The files through which a launcher (the app's worker) and a ``python -m trainer train`` process
(under ``torchrun``) talk: the labelled examples in, progress and the result out.

- examples: a JSON list of ``LabeledExample`` records (``--examples``), the app's view of the
  labels at the moment the run started, with each photo's path;
- progress: JSON lines ``{"fraction": 0..1, "message": "..."}`` appended by rank 0
  (``--progress-file``), which the launcher relays to the run's database row;
- result: one JSON object, the ``TrainResult`` of rank 0 (``--result-file``), written last and
  atomically, so a result file that exists is a finished run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taxonomy import LabeledExample

from .train import TrainResult


def write_examples(examples: list[LabeledExample], path: str | os.PathLike) -> None:
    rows = [{"id": e.id, "category": e.category, "labels": e.labels, "image_path": e.image_path} for e in examples]
    _write_json(rows, Path(path))


def read_examples(path: str | os.PathLike) -> list[LabeledExample]:
    """The examples of ``write_examples``; ValueError naming the file if it is not such a list."""
    try:
        rows = json.loads(Path(path).read_text("utf-8"))
        return [
            LabeledExample(
                id=str(r["id"]), category=str(r["category"]), labels=dict(r["labels"]), image_path=r["image_path"]
            )
            for r in rows
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read the examples file {path}: {exc!r}") from None


def progress_writer(path: str | os.PathLike) -> Callable[[float, str], None]:
    """A ``progress`` callback that appends each report to ``path`` as a JSON line."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)

    def report(fraction: float, message: str) -> None:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"fraction": float(fraction), "message": message}) + "\n")

    return report


def read_progress(path: str | os.PathLike, offset: int) -> tuple[list[tuple[float, str]], int]:
    """The complete progress lines after byte ``offset``, and the offset after them (a line still
    being written is left for the next read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1
    reports = []
    for line in chunk[:end].splitlines():
        item = json.loads(line)
        reports.append((float(item["fraction"]), str(item["message"])))
    return reports, offset + end


def write_result(result: TrainResult, path: str | os.PathLike) -> None:
    _write_json(
        {
            "checkpoint_path": str(result.checkpoint_path),
            "version_id": result.version_id,
            "metrics": result.metrics,
            "held_out_ids": list(result.held_out_ids),
            "sha256": result.sha256,
            "skipped": [list(s) for s in result.skipped],
            "seconds": result.seconds,
            "backbone_source": result.backbone_source,
            "last_state_sha256": result.last_state_sha256,
        },
        Path(path),
    )


def read_result(path: str | os.PathLike) -> TrainResult:
    raw: dict[str, Any] = json.loads(Path(path).read_text("utf-8"))
    return TrainResult(
        checkpoint_path=Path(raw["checkpoint_path"]),
        version_id=raw["version_id"],
        metrics=raw["metrics"],
        held_out_ids=tuple(raw["held_out_ids"]),
        sha256=raw["sha256"],
        skipped=tuple((str(a), str(b)) for a, b in raw["skipped"]),
        seconds=float(raw["seconds"]),
        backbone_source=raw["backbone_source"],
        last_state_sha256=raw["last_state_sha256"],
    )


def _write_json(data: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), "utf-8")
    os.replace(tmp, path)
