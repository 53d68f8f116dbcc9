"""Suggestions for many products at once: the whole catalogue (``python app.py score``) and the
review queues after an activation (``ModelManager._rescore``).

Photos are decoded in a thread pool while the model runs on the batch before (PIL releases the
GIL while it decodes and resizes); each batch's predictions are written in one short transaction
of their own, so a seller's save waits for one batch at most. Which products are left is read
from the database, never kept in memory between runs, so a killed run continues where it stopped:
``missing_only`` takes the products with no prediction by the model version yet; a re-score of
all products keeps its cursor (the last product id stored) in the transaction of each batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from sqlalchemy.orm import Session, sessionmaker

import db
import trainer
from taxonomy import ImageError, ProductPrediction

log = logging.getLogger(__name__)

BATCH = 64  # photos per forward pass and per write transaction
DECODE_THREADS = 2
SUGGESTION_TOP_K = 5  # alternatives kept per attribute: the form shows them as chips, keys 1-5

Progress = Callable[[int, int, float], None]  # (done, total, seconds so far)


@dataclass(frozen=True)
class ScoreReport:
    version_id: str
    scored: int  # products whose prediction was stored
    unreadable: int  # products whose photo could not be read (they keep what they had)
    total: int  # products this run set out to score
    seconds: float
    resumed_after: int | None  # ``score --all``: the product id an interrupted run had reached


def _prepare(predictor: trainer.Predictor, item: db.ToScore) -> torch.Tensor | None:
    try:
        return predictor.prepare(item.image_path)
    except (ImageError, OSError) as exc:
        log.warning("product %s not scored: its photo cannot be read (%s)", item.product_id, exc)
        return None


def decode(
    predictor: trainer.Predictor, items: Sequence[db.ToScore], pool: ThreadPoolExecutor | None = None
) -> Iterable[torch.Tensor | None]:
    """The photos of ``items`` for ``predictor`` (None for an unreadable one), in order. With a
    pool the work starts at once and this returns before it is done (consume it to wait)."""
    return (pool.map if pool is not None else map)(lambda item: _prepare(predictor, item), items)


def predict(
    predictor: trainer.Predictor, items: Sequence[db.ToScore], photos: Iterable[torch.Tensor | None]
) -> list[tuple[int, ProductPrediction]]:
    """(product id, prediction) of every item whose photo could be read, routed by its category."""
    kept = [(item, photo) for item, photo in zip(items, photos) if photo is not None]
    if not kept:
        return []
    raw = torch.stack([photo for _, photo in kept])  # (b, 3, S, S) uint8
    predictions = predictor.predict_prepared(
        raw, [item.category for item, _ in kept], top_k=SUGGESTION_TOP_K, ids=[str(item.product_id) for item, _ in kept]
    )
    return [(item.product_id, prediction) for (item, _), prediction in zip(kept, predictions)]


def score_catalogue(
    sessions: sessionmaker[Session],
    media: db.MediaStore,
    version_id: str,
    predictor: trainer.Predictor,
    *,
    missing_only: bool,
    batch_size: int = BATCH,
    decode_threads: int = DECODE_THREADS,
    progress: Progress | None = None,
) -> ScoreReport:
    """Store a prediction by ``version_id`` for every product with a photo (``missing_only``: every
    one that has none by this version yet). Resumable: run it again after a kill and each product
    ends with exactly one new prediction; none is skipped."""
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, got {batch_size}")
    t0 = time.perf_counter()
    with sessions.begin() as session:
        resumed = None if missing_only else db.scoring_cursor(session, version_id)
        after = resumed or 0
        total = db.count_to_score(session, model_version_id=version_id, after_id=after, missing_only=missing_only)

    def fetch(after_id: int) -> list[db.ToScore]:
        with sessions.begin() as session:  # a short read: the products, not their photos
            return db.products_to_score(
                session,
                media,
                model_version_id=version_id,
                after_id=after_id,
                limit=batch_size,
                missing_only=missing_only,
            )

    scored = unreadable = 0
    if progress is not None:
        progress(0, total, 0.0)
    with ThreadPoolExecutor(max(1, decode_threads), thread_name_prefix="decode") as pool:
        batch = fetch(after)
        photos = decode(predictor, batch, pool)
        while batch:
            # The next batch decodes in the pool while the model runs on this one.
            following = fetch(batch[-1].product_id)
            following_photos = decode(predictor, following, pool)
            results = predict(predictor, batch, photos)
            with sessions.begin() as session:
                stored = db.save_predictions(session, version_id, results, once=missing_only)
                if not missing_only:
                    db.set_scoring_cursor(session, version_id, batch[-1].product_id)
            scored += stored
            unreadable += len(batch) - len(results)
            if progress is not None:
                progress(scored + unreadable, total, time.perf_counter() - t0)
            batch, photos = following, following_photos
    if not missing_only:
        with sessions.begin() as session:
            db.set_scoring_cursor(session, version_id, None)
    return ScoreReport(version_id, scored, unreadable, total, time.perf_counter() - t0, resumed)
