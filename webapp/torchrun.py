"""A full training run of the worker as ``torchrun --nproc-per-node N -m trainer train ...``
(``python app.py worker --train-nproc N``).

The worker stays what it is (it claims the run, beats its heartbeat, lets the gate judge the
result, finishes the run); only the training itself moves into N processes that torchrun starts
and DistributedDataParallel keeps in step (``trainer.distributed``). They learn what the run
trains on from files in the run's folder (``trainer.handoff``): the labelled examples as the
worker read them from the database, and the taxonomy. Rank 0 appends its progress to a file,
which this module relays to the run's row through the same reporter as an in-process run (so a
cancelled run is noticed at the next report and torchrun is stopped), and writes the
``TrainResult`` last. The checkpoint is then registered through the gate like any other.

torchrun is run as ``python -m torch.distributed.run`` of the worker's own interpreter (what the
``torchrun`` script runs), ``--standalone``: a rendezvous of its own on a free local port, so
several workers on one machine do not collide. Each process gets ``threads // N`` OpenMP
threads. A worker killed outright leaves its torchrun to finish on its own (its run is marked
interrupted by the next worker that looks, and nothing registers its checkpoint).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trainer
from taxonomy import LabeledExample, Taxonomy, save_taxonomy
from trainer import handoff

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent  # where ``-m trainer`` is importable from
POLL_S = 1.0  # how often the launcher relays progress and looks whether torchrun ended
STOP_GRACE_S = 30.0  # after SIGTERM, how long torchrun may take to stop its processes
ERROR_TAIL = 2000  # characters of torchrun's stderr kept in the run's error

Progress = Callable[[float, str], None]


class TorchrunFailed(RuntimeError):
    """torchrun ended with an error; the text holds its exit status and the tail of its stderr."""


@dataclass(frozen=True)
class Torchrun:
    """Trains like ``trainer.train_full`` (the arguments ``ModelManager.train_and_gate`` passes),
    in ``nproc`` processes under torchrun."""

    nproc: int
    threads: int = 1  # OpenMP threads of all the processes together
    config_file: Path | None = None  # ``trainer train --config``: a {"train": ..., "model": ...} JSON
    poll_s: float = POLL_S

    def __post_init__(self) -> None:
        if self.nproc < 1:
            raise ValueError(f"--train-nproc must be at least 1, got {self.nproc}")

    def command(
        self, folder: Path, out_dir: Path, init_checkpoint: Path | None, weights: str | None = None
    ) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(self.nproc),
            "--log-dir",  # each rank's stdout and stderr in files of their own (``_error``)
            str(folder / "ranks"),
            "--redirects",
            "3",
            "-m",
            "trainer",
            "train",
            "--examples",
            str(folder / "examples.json"),
            "--taxonomy",
            str(folder / "taxonomy.json"),
            "--out",
            str(out_dir),
            "--progress-file",
            str(folder / "progress.jsonl"),
            "--result-file",
            str(folder / "result.json"),
        ]
        if init_checkpoint is not None:
            args += ["--init", str(init_checkpoint)]
        elif weights:  # the trunk of a fresh run (a fine-tune keeps its base's)
            args += ["--weights", weights]
        if self.config_file is not None:
            args += ["--config", str(self.config_file)]
        return args

    def __call__(
        self,
        examples: list[LabeledExample],
        *,
        taxonomy: Taxonomy,
        out_dir: str | os.PathLike,
        progress: Progress | None = None,
        init_checkpoint: str | os.PathLike | None = None,
        weights: str | None = None,
    ) -> trainer.TrainResult:
        out = Path(out_dir)
        folder = out / "torchrun"  # the run's inputs and torchrun's output, beside its checkpoint
        folder.mkdir(parents=True, exist_ok=True)
        handoff.write_examples(examples, folder / "examples.json")
        save_taxonomy(taxonomy, folder / "taxonomy.json")
        init = Path(init_checkpoint) if init_checkpoint is not None else None
        command = self.command(folder, out, init, weights)
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(max(1, self.threads // self.nproc)),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
        log.info("training with torchrun, %d processes: %s", self.nproc, " ".join(command))
        with open(folder / "stdout.log", "wb") as stdout, open(folder / "stderr.log", "wb") as stderr:
            # A session of its own: a cancel stops torchrun and every process it started, together.
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
        try:
            status = self._follow(process, folder / "progress.jsonl", progress or (lambda f, m: None))
        except BaseException:  # cancelled (RunCancelled from the reporter), or the worker stopping
            _stop(process)
            raise
        if status != 0:
            raise TorchrunFailed(f"torchrun exited with status {status}: {_error(folder)}")
        return handoff.read_result(folder / "result.json")

    def _follow(self, process: subprocess.Popen, progress_file: Path, report: Progress) -> int:
        """Relay rank 0's progress until torchrun exits; its exit status."""
        offset = 0
        while True:
            try:
                status: int | None = process.wait(self.poll_s)
            except subprocess.TimeoutExpired:
                status = None
            reports, offset = handoff.read_progress(progress_file, offset)
            for fraction, message in reports:
                report(fraction, message)
            if status is not None:
                return status


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to torchrun's process group (it stops its ranks), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
    log.info("stopped torchrun (pid %s)", process.pid)


def _error(folder: Path) -> str:
    """What the ranks said on stderr (the tail of each, rank order), else torchrun's own tail.

    torchrun's own stderr ends in a summary of which rank failed with which exit code, but not
    why; the why is in the ranks' stderr (``--redirects 3``)."""
    said = []
    for path in sorted((folder / "ranks").glob("**/stderr.log"), key=lambda p: int(p.parent.name)):
        text = path.read_text("utf-8", errors="replace").strip()
        if text:
            said.append((path.parent.name, text))
    if not said:
        tail = (folder / "stderr.log").read_text("utf-8", errors="replace")[-ERROR_TAIL:].strip()
        return tail or "(no output on stderr)"
    share = ERROR_TAIL // len(said)
    return "\n".join(f"rank {rank}: {text[-share:]}" for rank, text in said)
