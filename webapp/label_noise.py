"""The admin's "Labels that look wrong": every saved label ranked by how likely it is wrong.

The ranking is ``trainer.noise`` (confident learning on out-of-fold probabilities of heads
trained on the active version's cached trunk embeddings, 5 folds): no label is scored by heads
that saw it. It runs on demand as a background job (``scan_job``); the view joins each ranked
label with who saved it, as of now, and leaves out those changed since the scan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import db

from . import gate
from .context import AppContext
from .scan_job import ScanAlreadyRunning, ScanState
from .services import ServiceError, Viewer, admin_of

FOLDS = 5
SEED = 0
MIN_PRODUCTS = 2 * FOLDS  # every fold's heads learn from at least 8 products
SHOWN = 100  # rows the view returns unless asked for another number


@dataclass(frozen=True)
class SuspiciousLabel:
    rank: int  # 1 = most likely wrong
    product_id: int
    category: str
    attribute: str
    saved: str  # the value the label holds
    model_value: str  # the out-of-fold heads' top value
    model_probability: float  # their probability of it
    saved_probability: float  # their probability of the saved value
    issue: bool  # confident learning's verdict: another value is above its own threshold
    source: str  # how the label was set: import, seller, model_accepted, model_edited
    saved_by: str | None  # who set it (None: an import with no user)


@dataclass(frozen=True)
class SuspiciousReport:
    status: str  # "idle", "running", "done", "failed"
    progress: float
    message: str
    version: str | None
    started_by: str | None
    started_at: str | None
    finished_at: str | None
    products: int  # products scanned
    labels: int  # labels ranked
    issues: int  # of those, confident learning's label issues
    skipped: int  # products whose photo could not be read
    error: str | None
    rows: list[SuspiciousLabel]


def _when(stamp: float | None) -> str | None:
    return None if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def start_scan(ctx: AppContext, viewer: Viewer) -> SuspiciousReport:
    """Start ranking every label of every product with a photo, with the active version's trunk."""
    with ctx.transaction() as session:
        admin = admin_of(session, viewer)
        examples = db.labelled_by_product(session, admin, ctx.taxonomy, ctx.media)
        name = admin.name
    base = gate.active_base(ctx.models)
    if base is None:
        raise ServiceError("there is no active model yet: train one first (the scan uses its trunk)")
    if len(examples) < MIN_PRODUCTS:
        raise ServiceError(
            f"only {len(examples)} labelled products with a photo; the scan needs at least {MIN_PRODUCTS}"
        )
    options = {
        "checkpoint_path": str(base.path),
        "expected_sha256": base.checksum,
        "cache_dir": str(ctx.models.cache_dir),
        "folds": FOLDS,
        "seed": SEED,
    }
    try:
        ctx.scans.start(examples, options, version=base.version_id, started_by=name)
    except ScanAlreadyRunning as exc:
        raise ServiceError(str(exc)) from None
    return suspicious_labels(ctx, viewer)


def suspicious_labels(ctx: AppContext, viewer: Viewer, limit: int = SHOWN) -> SuspiciousReport:
    """The latest scan's state and its ``limit`` most suspicious labels that still hold the value
    that was scanned, with who set them."""
    state: ScanState = ctx.scans.state
    with ctx.transaction() as session:
        admin = admin_of(session, viewer)
        ranked = list(state.scores)
        ids = sorted({int(s["example_id"]) for s in ranked})
        current = db.current_labels_bulk(session, admin, ctx.taxonomy, ids)
        authors = db.label_authors(session, admin, ids)
    rows: list[SuspiciousLabel] = []
    for rank, s in enumerate(ranked, start=1):
        if len(rows) >= limit:
            break
        pid = int(s["example_id"])
        if current.get(pid, {}).get(s["attribute"]) != s["label"]:
            continue  # changed (or the product gone) since the scan: nothing left to look at
        author = authors.get((pid, s["attribute"]))
        rows.append(
            SuspiciousLabel(
                rank=rank,
                product_id=pid,
                category=s["category"],
                attribute=s["attribute"],
                saved=s["label"],
                model_value=s["predicted"],
                model_probability=round(s["p_predicted"], 4),
                saved_probability=round(s["p_label"], 4),
                issue=bool(s["issue"]),
                source=author.source if author else "unknown",
                saved_by=author.user_name if author else None,
            )
        )
    return SuspiciousReport(
        status=state.status,
        progress=round(state.progress, 3),
        message=state.message,
        version=state.version,
        started_by=state.started_by,
        started_at=_when(state.started_at),
        finished_at=_when(state.finished_at),
        products=state.products,
        labels=len(ranked),
        issues=sum(bool(s["issue"]) for s in ranked),
        skipped=len(state.skipped),
        error=state.error,
        rows=rows,
    )
