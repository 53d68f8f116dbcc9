"""The label scan as a background job: one at a time per web process, in a spawned child.

The scan trains K sets of heads (``trainer.noise``), about as much work as K heads-only
retrains. A training run never shares the web process (a worker takes it), and neither does
this: the child runs on one intra-op thread, outside the web process's GIL, so suggestions go on
while it runs; a thread of the web process only waits for the child and records its progress.
The latest result is kept in memory (a restart, or another replica, scans again).
"""

from __future__ import annotations

import logging
import multiprocessing
import queue as queues
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from taxonomy import LabeledExample
from trainer.noise import scan_in_child

log = logging.getLogger(__name__)

POLL_S = 0.5


@dataclass(frozen=True)
class ScanState:
    status: str = "idle"  # "idle" (never run here), "running", "done", "failed"
    progress: float = 0.0
    message: str = ""
    version: str | None = None  # the model version whose trunk embedded the photos
    started_by: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    products: int = 0  # products scanned (with a photo and a label)
    scores: tuple[dict[str, Any], ...] = field(default=(), repr=False)  # trainer.noise.LabelScore as dicts
    skipped: tuple[tuple[str, str], ...] = ()
    error: str | None = None


class ScanAlreadyRunning(RuntimeError):
    pass


class LabelScans:
    """The scan job of one web process; ``state`` is safe to read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = ScanState()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> ScanState:
        return self._state

    def start(
        self,
        examples: list[LabeledExample],
        options: dict[str, Any],
        *,
        version: str,
        started_by: str,
    ) -> ScanState:
        """Start a scan of ``examples`` (``trainer.noise.scan_checkpoint``'s ``options``);
        ScanAlreadyRunning while one is going."""
        with self._lock:
            if self._state.status == "running":
                raise ScanAlreadyRunning("a scan is already running; wait for it to finish")
            self._state = ScanState(
                status="running",
                message="starting",
                version=version,
                started_by=started_by,
                started_at=time.time(),
                products=len(examples),
            )
            self._thread = threading.Thread(target=self._run, args=(examples, options), name="label-scan", daemon=True)
            self._thread.start()
            return self._state

    def wait(self, timeout: float | None = None) -> ScanState:
        if self._thread is not None:
            self._thread.join(timeout)
        return self._state

    def _set(self, **changes: Any) -> None:
        self._state = replace(self._state, **changes)

    def _run(self, examples: list[LabeledExample], options: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or locks of ours
        results = context.Queue()
        child = context.Process(target=scan_in_child, args=(results, examples, options), daemon=True)
        child.start()
        outcome: tuple | None = None
        try:
            while outcome is None:
                try:
                    message = results.get(timeout=POLL_S)
                except queues.Empty:
                    if not child.is_alive():
                        outcome = ("error", f"the scan process stopped (exit code {child.exitcode})")
                    continue
                if message[0] == "progress":
                    self._set(progress=message[1], message=message[2])
                else:
                    outcome = message
            if outcome[0] == "done":
                self._set(
                    status="done",
                    progress=1.0,
                    message=f"{len(outcome[1])} labels of {self._state.products} products ranked",
                    scores=tuple(outcome[1]),
                    skipped=tuple(tuple(s) for s in outcome[2]),
                    finished_at=time.time(),
                )
            else:
                self._set(status="failed", error=outcome[1], message="failed", finished_at=time.time())
        finally:
            child.join(10)
            if child.is_alive():
                child.kill()
        log.info("label scan %s: %s", self._state.status, self._state.message if outcome[0] == "done" else outcome[1])
