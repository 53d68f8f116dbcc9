"""The trunk embeddings of the serving model's photos, for similar-product search in the app.

One ``EmbeddingIndex`` per embedding cache key (``trainer.Predictor.embedding_key``: the trunk's
fingerprint and the preprocessing), so every version that shares a trunk (heads-only retrains)
shares one index, and a version with a new trunk starts its own. It reads the trainer's cache
(``trainer.EmbeddingCache``: the file the heads-only retrain writes, plus the log the app appends
each upload's embedding to), lazily at the first search, and then only what was appended since
(O(new rows) per search); a rewrite of the file by a retrain reloads it whole.

Search cost: for n candidate products of C dimensions, one gather of their rows, one (n, C) @ (C,)
matrix-vector product and their norms, all numpy: O(n * C) arithmetic (100,000 products of a
512-wide trunk: about 50 M multiply-adds, a few tens of ms on one core), plus the O(n) Python work
of reading the candidates' ids from the database and their rows from a dict (about a microsecond
each). Memory: N * C * 4 bytes (100,000 x 512: 200 MB) per trunk in use.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Match:
    """One candidate ranked by cosine similarity to the query."""

    position: int  # index into the candidate list given to ``search``
    similarity: float  # cosine, -1..1


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_mtime_ns, info.st_size


class EmbeddingIndex:
    """The cached embeddings of one trunk; safe to use from several request threads."""

    def __init__(self, cache_dir: str | os.PathLike, key: str, *, dims: int | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.key = key
        # The leading ``dims`` of each embedding are compared (the trunk's pooled features,
        # ``trainer.Backbone.trunk_features``); None: all of them.
        self.dims = dims
        self._lock = threading.Lock()
        self._cache: trainer.EmbeddingCache | None = None
        self._file: tuple[int, int] | None = None  # the cache file's (mtime, size) when it was read
        self.backfill: threading.Thread | None = None  # embedding products that have none (``similar``)
        self._crowding: tuple[int, float] | None = None  # (rows when measured, median nearest-other cosine)

    def _current(self) -> trainer.EmbeddingCache:
        """The cache, read afresh if a retrain rewrote its file, else with the log's new records.
        Called with the lock held."""
        path = self.cache_dir / f"{self.key}.pt"
        stamp = _stamp(path)
        cache = self._cache
        log_size = _stamp(path.with_suffix(".log"))
        shrunk = cache is not None and (log_size[1] if log_size else 0) < cache.log_offset
        if cache is None or stamp != self._file or shrunk:
            cache = trainer.EmbeddingCache(self.cache_dir, self.key)
            self._cache, self._file = cache, stamp
            log.info("embedding index %s: %d photos", self.key, len(cache))
        else:
            cache.read_log()
        return cache

    def __len__(self) -> int:
        with self._lock:
            return len(self._current())

    def has(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self._current()

    def vector(self, sha256: str) -> np.ndarray | None:
        """The embedding of the photo with this sha256, (C,), or None when it is not stored."""
        with self._lock:
            cache = self._current()
            row = cache.row(sha256)
            return None if row < 0 else cache.vectors()[row].numpy().copy()

    def store(self, sha256s: list[str], vectors: torch.Tensor) -> None:
        """Append embeddings (n, C) of photos by their sha256 (those stored already are skipped)."""
        with self._lock:
            self._current().append(sha256s, vectors)

    def missing(self, sha256s: list[str]) -> list[int]:
        """Positions of the photos among ``sha256s`` that have no stored embedding."""
        with self._lock:
            cache = self._current()
            return [i for i, sha in enumerate(sha256s) if sha not in cache]

    def search(self, query: np.ndarray, sha256s: list[str], *, limit: int) -> list[Match]:
        """The ``limit`` candidates (photos by sha256) most similar to ``query`` (C,) by cosine,
        best first; candidates without a stored embedding are left out."""
        with self._lock:
            cache = self._current()
            rows = np.fromiter((cache.row(s) for s in sha256s), dtype=np.int64, count=len(sha256s))  # (n,)
            present = np.flatnonzero(rows >= 0)  # (m,)
            if not len(present) or limit <= 0:
                return []
            matrix = cache.vectors().numpy()[rows[present], : self.dims]  # (m, C): a gathered copy
        q = np.asarray(query, dtype=np.float32)[: self.dims]  # (C,)
        norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(q)), 1e-12)  # (m,)
        sims = (matrix @ q) / np.maximum(norms, 1e-12)  # (m,)
        k = min(limit, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]  # (k,) unordered
        top = top[np.lexsort((present[top], -sims[top]))]  # best first; a tie: the earlier candidate
        return [Match(int(present[i]), float(sims[i])) for i in top]

    def crowding(self, *, sample: int = 512, minimum: int = 20) -> float | None:
        """The median, over up to ``sample`` stored photos, of the cosine to their nearest other
        stored photo; None below ``minimum`` photos. A trunk whose photos all sit at 0.9997 of
        each other (a briefly trained one, see bench/RESULTS.md) cannot tell a near-copy from
        another product. Measured again when the index grew by a tenth: O(sample * N * C)."""
        with self._lock:
            cache = self._current()
            n = len(cache)
            if n < minimum:
                return None
            if self._crowding is not None and n < self._crowding[0] * 1.1:
                return self._crowding[1]
            matrix = cache.vectors().numpy()[:, : self.dims].copy()  # (N, C)
        unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)  # (N, C)
        rows = np.random.default_rng(0).choice(n, size=min(sample, n), replace=False)  # (s,)
        sims = unit[rows] @ unit.T  # (s, N)
        sims[np.arange(len(rows)), rows] = -np.inf  # not the photo itself
        value = float(np.median(sims.max(axis=1)))
        self._crowding = (n, value)
        return value
