"""``python app.py worker``: takes the queued training runs, one at a time, out of the web process.

The ``training_runs`` rows are the queue. A worker claims the oldest queued run atomically
(``db.claim_run``), beats its heartbeat while it trains (a thread, and every progress report),
trains and gates it exactly as the app always did (``ModelManager.train_and_gate``), re-scores the
review queues after an activation, and looks for the next run. A run whose worker died, because
its heartbeat is older than ``STALE_AFTER_S`` or because its process on this host is gone, is
marked interrupted by whichever worker or web process looks next (``recover_dead_runs``); an
admin retries it by starting a new run. Every web process serves the new version by itself
(``ModelManager.follow_database``).

``python app.py serve`` starts one worker as a child process (``cli.spawn_worker``), which exits
when its parent does (``Worker.watch_parent``); several machines run as many
``python app.py worker`` as they like against one PostgreSQL database.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

import db
import trainer
from taxonomy import Taxonomy

from .gate import RunCancelled


class Models(Protocol):
    """What a worker uses of ``serving.ModelManager`` (named here, not imported: serving starts
    a worker in a thread when it trains in its own process)."""

    taxonomy: Taxonomy
    sessions: sessionmaker[Session]
    models_dir: Path

    @property
    def active(self) -> object | None: ...

    def follow_taxonomy(self, taxonomy: Taxonomy) -> None: ...

    def follow_database(self) -> bool: ...

    def train_and_gate(
        self, run_id: int, kind: str, user_id: int, trigger: str, warm: bool, out_dir: Path
    ) -> tuple[str, str, str | None]: ...

    def queued_for_rescore(self) -> list[tuple[int, int, str, str | None]]: ...

    def rescore(self, queued: list[tuple[int, int, str, str | None]]) -> int: ...


log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0  # how often a worker says it is alive while it runs
STALE_AFTER_S = 60.0  # a run silent for this long is given up as dead, wherever its worker was
POLL_S = 2.0  # how often an idle worker looks for a queued run
PARENT_POLL_S = 0.5  # how often an embedded worker checks that its web process is still there


def worker_name() -> str:
    """``host:pid`` of this process: what a run records as its worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_gone(worker: str) -> bool:
    """Whether ``worker`` (``host:pid``) is a process of this host that no longer exists; a worker
    of another host is judged by its heartbeat only."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by another user
        return False
    return False


def recover_dead_runs(sessions: sessionmaker[Session]) -> list[int]:
    """Mark as interrupted the runs whose worker died; returns their ids."""
    with sessions.begin() as session:
        dead = db.interrupt_dead_runs(session, stale_after_s=STALE_AFTER_S, gone=is_gone)
    for run_id in dead:
        log.warning("training run %s was interrupted: its worker stopped while it was in progress", run_id)
    return dead


class Worker:
    """Runs queued training runs through ``models``, one at a time."""

    def __init__(
        self,
        models: Models,
        *,
        name: str | None = None,
        threads: int | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.models = models
        self.name = name or worker_name()
        # One core stays free by default for the suggestions that sellers wait for beside it.
        self.threads = threads or max(1, (os.cpu_count() or 1) - 1)
        self.heartbeat_s = heartbeat_s
        self.current: int | None = None  # the run in progress

    def run_next(self) -> int | None:
        """Claim the oldest queued run and run it to its end; returns its id, or None if none was queued."""
        recover_dead_runs(self.models.sessions)
        self._follow_database()
        with self.models.sessions.begin() as session:
            run = db.claim_run(session, self.name)
            if run is None:
                return None
            run_id, kind, trigger, params, user_id = run.id, run.kind, run.trigger, dict(run.params), run.created_by
        log.info("worker %s claimed training run %s (%s)", self.name, run_id, kind)
        self.current = run_id
        try:
            self._execute(run_id, kind, trigger, params, user_id)
        finally:
            self.current = None
        return run_id

    def serve(self, *, poll_s: float = POLL_S, once: bool = False) -> None:
        """Run queued runs until stopped (``once``: at most one, then return)."""
        log.info("worker %s waiting for training runs", self.name)
        while True:
            try:
                ran = self.run_next()
            except Exception:  # a database hiccup: the worker stays up and tries again
                log.exception("worker %s could not take a run", self.name)
                ran = None
            if once:
                return
            if ran is None:
                time.sleep(poll_s)

    def watch_parent(self, parent_pid: int) -> None:
        """Exit as soon as the process ``parent_pid`` (the web process that started this one) is
        gone. The run in progress is left to the stale check of the next start, which sees that
        this process is gone too: one path for a stop, a kill and a crash alike."""

        def loop() -> None:
            while os.getppid() == parent_pid:
                time.sleep(PARENT_POLL_S)
            log.warning("worker %s: the web process %s stopped; stopping too", self.name, parent_pid)
            os._exit(0)  # the training thread cannot be stopped in the middle of a step

        threading.Thread(target=loop, name="watch-parent", daemon=True).start()

    def _follow_database(self) -> None:
        """Between runs: the taxonomy and the active version of the database, which the web
        processes may have changed (the active version is the warm start and the gate's base)."""
        models = self.models
        with models.sessions.begin() as session:
            stored = db.stored_taxonomy(session)
        if stored is not None and stored.fingerprint != models.taxonomy.fingerprint:
            log.info("worker %s: using the taxonomy the app adopted", self.name)
            models.follow_taxonomy(stored)
        models.follow_database()

    def _beat(self, run_id: int, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                with self.models.sessions.begin() as session:
                    if not db.heartbeat_run(session, run_id, self.name):
                        return  # cancelled or given up: the next progress report stops the run
            except Exception:  # a missed beat is no failure; the timeout is many beats long
                log.exception("heartbeat of training run %s failed", run_id)

    def _execute(self, run_id: int, kind: str, trigger: str, params: dict, user_id: int | None) -> None:
        models = self.models
        out_dir = models.models_dir / f"run-{run_id:05d}"
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(run_id, stop), name=f"heartbeat-{run_id}", daemon=True)
        beat.start()
        try:
            if user_id is None:
                raise db.RegistryError(f"training run {run_id} names no admin whose view of the labels to train on")
            warm = kind == "full" and not params.get("fresh") and models.active is not None
            # This thread's intra-op threads only (OpenMP counts are per thread).
            with trainer.intra_op_threads(self.threads):
                status, message, version_id = models.train_and_gate(run_id, kind, user_id, trigger, warm, out_dir)
            queued = models.queued_for_rescore() if status == "succeeded" else []
            if queued:
                message += f"; re-scoring {len(queued)} queued products in the background"
            with models.sessions.begin() as session:
                db.finish_run(session, run_id, status=status, message=message, result_version_id=version_id)
            log.info("training run %s %s: %s", run_id, status, message)
            if queued:
                models.rescore(queued)
        except RunCancelled:
            log.info("training run %s stopped: cancelled", run_id)
            shutil.rmtree(out_dir, ignore_errors=True)  # nothing was registered from it
        except Exception as exc:  # a failed run must say why and leave the active model in place
            log.exception("training run %s failed", run_id)
            try:
                with models.sessions.begin() as session:
                    db.finish_run(
                        session, run_id, status="failed", message="failed", error=f"{type(exc).__name__}: {exc}"
                    )
            except db.RegistryError:  # cancelled meanwhile: it stays cancelled
                log.warning("training run %s had already ended when it failed", run_id)
        finally:
            stop.set()
            beat.join()
