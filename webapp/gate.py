"""The gate every new model version passes before it serves: trained in the app or elsewhere.

A candidate is scored by one function (``trainer.evaluate_checkpoint``) on the products whose id
hashes into the held-out buckets, and so is the active version (or, for the first model, the
most-common-value baseline); it is registered either way and activated only when it is not
worse. ``register_checkpoint`` brings a checkpoint trained outside the app (``python -m trainer
train``, another machine) through the same gate, after checking its file and its taxonomy.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

import db
import trainer
from taxonomy import LabeledExample, Taxonomy, file_sha256

log = logging.getLogger(__name__)

REGISTERED_DIR = "registered"  # under the models folder: one folder per registered checkpoint


class _Serving(Protocol):
    version_id: str


class Models(Protocol):
    """What the gate uses of ``serving.ModelManager`` (named here, not imported: serving imports
    this module)."""

    taxonomy: Taxonomy
    sessions: sessionmaker[Session]
    models_dir: Path
    cache_dir: Path

    @property
    def active(self) -> _Serving | None: ...

    def activate(self, version_id: str) -> object: ...

    def _path(self, version: db.ModelVersion) -> Path: ...

    def _examples(self, user_id: int) -> tuple[list[LabeledExample], int]: ...


class GateError(RuntimeError):
    """A checkpoint that cannot be judged or registered; the text says why and what to do."""


class RunCancelled(Exception):
    """An admin cancelled the run (its row says so); it stops and registers nothing."""


@dataclass(frozen=True)
class Base:
    """The active version as the gate compares against it: its file checked against its record."""

    version_id: str
    path: Path
    checksum: str


@dataclass(frozen=True)
class Candidate:
    version_id: str
    path: Path  # inside the models folder
    sha256: str | None
    kind: str
    metrics: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    notes: str = ""  # said before the verdict in the version's notes


@dataclass(frozen=True)
class Verdict:
    version_id: str
    passed: bool
    activated: bool  # passed, or forced
    score: float
    reference: float
    message: str


def active_base(manager: Models) -> Base | None:
    """The version that is serving, its file checked again: it must still be the one recorded, or
    a damaged or replaced file would be the next version's backbone or the gate's reference."""
    active = manager.active
    if active is None:
        return None
    with manager.sessions.begin() as session:
        row = db.get_version(session, active.version_id)
        path, checksum = manager._path(row), row.checksum
    if not path.is_file() or file_sha256(path) != checksum:
        raise GateError(
            f"the active model's file {path} was changed or removed since it was recorded; "
            "activate another version first"
        )
    return Base(active.version_id, path, checksum)


def judge(
    manager: Models,
    candidate: Candidate,
    examples: Sequence[LabeledExample],
    *,
    base: Base | None,
    held_out_ids: Collection[str] | None = None,
    force: bool = False,
    run_id: int | None = None,
) -> Verdict:
    """Score ``candidate`` and ``base`` (or the baseline) on the same held-out products, register
    the candidate, and activate it when it is not worse (or when ``force``, which its notes and
    metrics record). ``held_out_ids`` defaults to the products the hash holds out. With
    ``run_id``, the run must still be going when the version is registered (RunCancelled if an
    admin cancelled it), and it records the version: from then on it can no longer be cancelled.

    Both sides' per-attribute numbers are kept in the version's metrics (``per_attribute`` and
    ``before``), on the same products, for the Admin tab's before/after table."""
    if held_out_ids is None:
        _, held = trainer.split_held_out(examples, trainer.default_train_config("cpu").val_fraction)
        held_out_ids = [e.id for e in held]
    held_out = set(held_out_ids)
    # One scoring function and one set of products for both sides: the products whose id
    # hashes into the held-out buckets (the same for every version), an unreadable photo
    # counting as wrong for the candidate and the active version alike.
    judged = [e for e in examples if e.id in held_out]
    if not judged:
        raise GateError("no held-out products to judge the new model on; label more products")
    cache = manager.cache_dir
    report = trainer.evaluate_checkpoint(candidate.path, judged, cache_dir=cache, expected_sha256=candidate.sha256)
    if base is not None:
        before = trainer.evaluate_checkpoint(base.path, judged, cache_dir=cache, expected_sha256=base.checksum)
        against = f"active version {base.version_id}"
    else:
        trained_on = [e for e in examples if e.id not in held_out]
        before = trainer.majority_baseline(trained_on, judged, manager.taxonomy)
        against = "the most-common-value baseline"
    score, reference = report.score, before.score
    passed = score >= reference
    activated = passed or force
    verdict = "activated" if passed else ("activated by --force although worse" if force else "kept as a candidate")
    shown = ", ".join(sorted(held_out)[:5]) + (", ..." if len(held_out) > 5 else "")
    message = (
        f"{verdict}: metric {score:.4f} vs {reference:.4f} for {against} "
        f"on the same {len(judged)} held-out products ({shown})"
    )
    metrics = {
        **candidate.metrics,
        **report.as_dict(),  # the gate's numbers, on the same products as ``before``
        "reference": reference,
        "before": {"against": against, **before.as_dict()},
        "held_out": len(judged),
    }
    if force:
        metrics["forced"] = True
    with manager.sessions.begin() as session:
        run = db.get_run(session, run_id) if run_id is not None else None
        if run is not None and run.status not in db.RUN_ACTIVE_STATUSES:  # cancelled while being judged
            raise RunCancelled(f"training run {run_id} was cancelled")
        db.register_version(
            session,
            version_id=candidate.version_id,
            path=str(candidate.path.resolve().relative_to(manager.models_dir.resolve())),
            checksum=candidate.sha256,
            taxonomy_fingerprint=manager.taxonomy.fingerprint,
            kind=candidate.kind,
            metrics=metrics,
            parent_id=candidate.parent_id,
            notes=f"{candidate.notes}; {message}" if candidate.notes else message,
        )
        if run is not None:
            run.result_version_id = candidate.version_id
    if activated:
        manager.activate(candidate.version_id)
    return Verdict(candidate.version_id, passed, activated, score, reference, message)


def register_checkpoint(manager: Models, source: str | os.PathLike, *, user_id: int, force: bool = False) -> Verdict:
    """Register a checkpoint trained outside the app: its file is checked (readable, weights that
    fit, this app's taxonomy), copied into the models folder (never used in place, so moving or
    overwriting the original changes nothing) and judged by ``judge``."""
    source = Path(source).expanduser()
    if not source.is_file():
        raise GateError(f"no checkpoint file {source}")
    sha256 = file_sha256(source)
    try:
        # The checksum is taken first and checked on reading, so the file judged is the file hashed.
        ckpt = trainer.load_checkpoint(source, expected_sha256=sha256, taxonomy=manager.taxonomy)
        ckpt.build_model("cpu")  # weights that do not fit their own model are refused here, not at serving
    except trainer.TaxonomyMismatchError as exc:
        raise GateError(f"refused {source.name}: {exc}") from None
    except trainer.CheckpointError as exc:
        raise GateError(f"refused {source.name}: {exc}") from None
    with manager.sessions.begin() as session:
        known = {v.id: v for v in db.list_versions(session)}
    same_file = next((v for v in known.values() if v.checksum == sha256), None)
    if same_file is not None:
        raise GateError(f"{source.name} is registered already, as version {same_file.id} ({same_file.status})")
    if ckpt.version_id in known:
        raise GateError(
            f"{source.name} carries version id {ckpt.version_id}, which another checkpoint file already has; "
            "a checkpoint written by 'python -m trainer train' gets a fresh id"
        )
    examples, watermark = manager._examples(user_id)
    base = active_base(manager)
    target = manager.models_dir / REGISTERED_DIR / ckpt.version_id / "model.pt"
    _copy(source, target, sha256)
    mode = ckpt.metrics.get("mode")
    candidate = Candidate(
        version_id=ckpt.version_id,
        path=target,
        sha256=sha256,
        kind=mode if mode in db.VERSION_KINDS else "full",
        metrics={
            **{k: v for k, v in ckpt.metrics.items() if k != "per_attribute"},
            "trained_score": ckpt.metrics.get("score"),  # on the set it was trained with, not the gate's
            "registered_from": str(source.resolve()),
            # What the retrain policy reads: the labels it was judged at, and its trunk's origin.
            "label_watermark": watermark,
            "labelled_products": len(examples),
            "backbone_products": ckpt.metrics.get("train_examples") or len(examples),
            "backbone_source": ckpt.backbone_source,
            "trigger": "admin",
        },
        parent_id=ckpt.parent_version if ckpt.parent_version in known else None,
        notes=f"registered from {source.resolve()} (sha256 {sha256[:12]}...)" + (" with --force" if force else ""),
    )
    try:
        return judge(manager, candidate, examples, base=base, force=force)
    except BaseException:
        with manager.sessions.begin() as session:
            registered = session.get(db.ModelVersion, ckpt.version_id) is not None
        if not registered:  # nothing registered: no stray copy either
            shutil.rmtree(target.parent, ignore_errors=True)
        raise


def _copy(source: Path, target: Path, sha256: str) -> None:
    """Copy to a temporary name beside ``target``, check the copy's checksum, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copyfile(source, tmp)
        if file_sha256(tmp) != sha256:
            raise GateError(f"the copy of {source} differs from the original (was it being written?); try again")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
