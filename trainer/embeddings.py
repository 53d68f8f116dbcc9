"""Pooled backbone embeddings, computed batched once per (image, backbone) and cached on disk.

The cache is one file per backbone fingerprint, ``<cache_dir>/<fingerprint>.pt``, holding the
sha256 of each image's bytes and its (C,) embedding. A new backbone gets a new file, so stale
embeddings are never mixed with fresh ones.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from taxonomy import ImageError, LabeledExample

from .checkpoint import atomic_save
from .model import Backbone
from .preprocess import Preprocess, open_image, prepare_image, to_model_input
from .runtime import autocast

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
_LOCK = threading.Lock()  # one writer per process; the file itself is replaced atomically


def image_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class EmbeddingCache:
    def __init__(self, cache_dir: str | os.PathLike, fingerprint: str) -> None:
        self.path = Path(cache_dir) / f"{fingerprint}.pt"
        self.fingerprint = fingerprint
        self._index: dict[str, int] = {}
        self._vectors: torch.Tensor | None = None
        if self.path.is_file():
            try:
                raw = torch.load(self.path, map_location="cpu", weights_only=True)
                self._index = {k: i for i, k in enumerate(raw["keys"])}
                self._vectors = raw["vectors"]
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                logger.warning("embedding cache %s unreadable (%s); it will be rebuilt", self.path, exc)
                self._index, self._vectors = {}, None

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def get(self, keys: Sequence[str]) -> torch.Tensor:
        rows = torch.tensor([self._index[k] for k in keys], dtype=torch.int64)
        return self._vectors.index_select(0, rows)  # (n, C)

    def add(self, keys: Sequence[str], vectors: torch.Tensor) -> None:
        new = [k for k in keys if k not in self._index]
        if not new:
            return
        keep = torch.tensor([i for i, k in enumerate(keys) if k not in self._index])
        vectors = vectors.index_select(0, keep).float().cpu()  # (m, C)
        base = len(self._index)
        self._vectors = vectors if self._vectors is None else torch.cat([self._vectors, vectors])  # (N, C)
        for i, k in enumerate(new):
            self._index[k] = base + i

    def save(self) -> None:
        with _LOCK:
            keys = sorted(self._index, key=self._index.get)
            atomic_save({"fingerprint": self.fingerprint, "keys": keys, "vectors": self._vectors}, self.path)


@dataclass
class Embedded:
    examples: list[LabeledExample]  # those whose photo could be read
    vectors: torch.Tensor  # (N, C)
    computed: int = 0  # how many were run through the backbone (not found in the cache)
    skipped: list[tuple[str, str]] = field(default_factory=list)


@torch.inference_mode()
def embed_examples(
    backbone: Backbone,
    examples: Sequence[LabeledExample],
    *,
    preprocess: Preprocess,
    cache_dir: str | os.PathLike | None,
    fingerprint: str,
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> Embedded:
    """Embeddings of every example's photo, from the cache where present, else computed batched."""
    cache = EmbeddingCache(cache_dir, fingerprint) if cache_dir is not None else None
    keys: list[str | None] = []
    skipped: list[tuple[str, str]] = []
    for ex in examples:
        try:
            if ex.image_path is None:
                raise ImageError("no image file")
            keys.append(image_sha256(ex.image_path))
        except (OSError, ImageError) as exc:
            keys.append(None)
            skipped.append((ex.id, str(exc)))
    fresh: dict[str, torch.Tensor] = {}
    todo = [(ex, k) for ex, k in zip(examples, keys) if k is not None and (cache is None or k not in cache)]
    todo = list({k: (ex, k) for ex, k in todo}.values())  # the same photo twice is embedded once
    backbone.eval().to(device)
    batch: list[torch.Tensor] = []
    batch_keys: list[str] = []

    def flush() -> None:
        raw = torch.stack(batch).to(device)  # (b, 3, S, S)
        with autocast(device, dtype):
            vec = backbone(to_model_input(raw, preprocess)).float().cpu()  # (b, C)
        fresh.update(zip(batch_keys, vec))
        batch.clear()
        batch_keys.clear()

    for i, (ex, key) in enumerate(todo):
        try:
            batch.append(prepare_image(open_image(ex.image_path), preprocess))  # (3, S, S)
            batch_keys.append(key)
        except ImageError as exc:
            skipped.append((ex.id, str(exc)))
            keys[examples.index(ex)] = None
        if len(batch) == batch_size:
            flush()
        if progress is not None and (i % batch_size == 0 or i == len(todo) - 1):
            progress((i + 1) / len(todo), f"embedding photos {i + 1}/{len(todo)}")
    if batch:
        flush()
    if cache is not None and fresh:
        cache.add(list(fresh), torch.stack(list(fresh.values())))
        cache.save()
    kept = [(ex, k) for ex, k in zip(examples, keys) if k is not None and (k in fresh or (cache and k in cache))]
    vectors = torch.empty((len(kept), backbone.out_features))  # (N, C)
    from_cache = [i for i, (_, k) in enumerate(kept) if k not in fresh]
    if from_cache:
        vectors[from_cache] = cache.get([kept[i][1] for i in from_cache])  # (n, C)
    for i, (_, k) in enumerate(kept):
        if k in fresh:
            vectors[i] = fresh[k]
    if skipped:
        logger.warning("%d of %d photos skipped (unreadable or absent)", len(skipped), len(examples))
    return Embedded([ex for ex, _ in kept], vectors, computed=len(fresh), skipped=skipped)
