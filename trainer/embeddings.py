"""Pooled backbone embeddings, computed batched once per (image, backbone) and cached on disk.

The cache is one file per backbone fingerprint and preprocessing,
``<cache_dir>/<fingerprint>-<size>-<crop>.pt`` (``cache_key``), holding the sha256 of each image's
bytes and its (C,) embedding. A new backbone, photo size or crop gets a new file, so stale
embeddings are never mixed with fresh ones (the same ImageNet trunk serves a 112-px scratch-sized
model and a 224-px pretrained-recipe one).

Beside it, ``<key>.log`` takes embeddings one at a time (``append``: the app stores the embedding
of each uploaded photo, computed in the forward pass of its suggestion): a fixed-size record per
photo, appended under a file lock, so an upload costs O(C) bytes written instead of a rewrite of
the whole (N, C) file. Opening the cache reads both; ``save`` folds the log into the file (under
the same lock, so no appended record is lost) and empties it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from taxonomy import ImageError, LabeledExample, file_sha256

from .checkpoint import atomic_save
from .fastpath import inference_backbone
from .model import Backbone
from .preprocess import Preprocess, open_image, prepare_image, to_model_input
from .runtime import autocast

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
_LOCK = threading.Lock()  # one writer per process; the file itself is replaced atomically
# The log's 24-byte header: this magic, the embedding width (little-endian uint64) and a random
# id of this log's generation (a save empties the log; a reader then starts again at the top).
_LOG_MAGIC = b"VTEMBLOG"
_LOG_HEADER = 24


def cache_key(fingerprint: str, preprocess: Preprocess) -> str:
    """The cache's name for embeddings of ``preprocess``-ed photos through backbone ``fingerprint``."""
    return f"{fingerprint}-{preprocess.image_size}-{preprocess.crop}"


class EmbeddingCache:
    def __init__(self, cache_dir: str | os.PathLike, fingerprint: str) -> None:
        self.path = Path(cache_dir) / f"{fingerprint}.pt"
        self.fingerprint = fingerprint
        self._index: dict[str, int] = {}
        # Rows 0..len(self) of a buffer that grows by doubling, so that adding one embedding at a
        # time (an upload) copies O(C) bytes on average, not the whole (N, C) matrix.
        self._buf: torch.Tensor | None = None
        if self.path.is_file():
            try:
                raw = torch.load(self.path, map_location="cpu", weights_only=True)
                self._index = {k: i for i, k in enumerate(raw["keys"])}
                self._buf = raw["vectors"]
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                logger.warning("embedding cache %s unreadable (%s); it will be rebuilt", self.path, exc)
                self._index, self._buf = {}, None
        self.log_path = self.path.with_suffix(".log")
        self.log_offset = 0  # bytes of the log read so far
        self._log_generation = b""
        self.read_log()

    @property
    def _vectors(self) -> torch.Tensor | None:
        return None if self._buf is None else self._buf[: len(self._index)]  # (N, C)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def get(self, keys: Sequence[str]) -> torch.Tensor:
        rows = torch.tensor([self._index[k] for k in keys], dtype=torch.int64)
        return self._vectors.index_select(0, rows)  # (n, C)

    def row(self, key: str) -> int:
        """The row of ``key`` in ``vectors()``, or -1 when it is not cached."""
        return self._index.get(key, -1)

    def add(self, keys: Sequence[str], vectors: torch.Tensor) -> None:
        new = [k for k in keys if k not in self._index]
        if not new:
            return
        keep = torch.tensor([i for i, k in enumerate(keys) if k not in self._index])
        vectors = vectors.index_select(0, keep).float().cpu()  # (m, C)
        base, m = len(self._index), len(new)
        if self._buf is None or self._buf.shape[0] < base + m:
            capacity = max(base + m, 2 * base, 64)
            grown = torch.empty((capacity, vectors.shape[1]))  # (capacity, C)
            if base:
                grown[:base] = self._buf[:base]
            self._buf = grown
        self._buf[base : base + m] = vectors
        for i, k in enumerate(new):
            self._index[k] = base + i

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The cache's file lock (``flock``: every process on this host, and on file systems that
        honour it, every host), for appending to the log and for folding it into the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK, open(self.path.with_suffix(".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read_log(self) -> int:
        """Take in the records appended to the log since the last read; returns how many were new."""
        try:
            with open(self.log_path, "rb") as handle:
                header = handle.read(_LOG_HEADER)
                if len(header) < _LOG_HEADER or header[:8] != _LOG_MAGIC:
                    return 0
                width = int.from_bytes(header[8:16], "little")
                if header[16:] != self._log_generation:  # a new log since the last read
                    self._log_generation, self.log_offset = header[16:], 0
                record = np.dtype([("key", "S64"), ("vector", "<f4", (width,))])
                start = max(self.log_offset, _LOG_HEADER)
                handle.seek(start)
                raw = handle.read()
        except FileNotFoundError:
            return 0
        whole = len(raw) // record.itemsize  # a record still being written is read next time
        self.log_offset = start + whole * record.itemsize
        if not whole:
            return 0
        rows = np.frombuffer(raw, dtype=record, count=whole)
        keys = [k.decode() for k in rows["key"]]
        before = len(self)
        self.add(keys, torch.from_numpy(rows["vector"].copy()))  # (n, C)
        return len(self) - before

    def append(self, keys: Sequence[str], vectors: torch.Tensor) -> None:
        """Add embeddings and append them to the log at once (O(n * C) bytes, whatever the cache's size)."""
        new = [i for i, k in enumerate(keys) if k not in self._index]
        if not new:
            return
        vectors = vectors.detach().float().cpu()  # (n, C)
        width = vectors.shape[1]
        record = np.dtype([("key", "S64"), ("vector", "<f4", (width,))])
        rows = np.zeros(len(new), dtype=record)
        rows["key"] = [keys[i].encode() for i in new]
        rows["vector"] = vectors[new].numpy()
        with self._locked():
            with open(self.log_path, "ab") as handle:
                if handle.tell() == 0:
                    handle.write(_LOG_MAGIC + width.to_bytes(8, "little") + os.urandom(8))
                elif self._vectors is not None and self._vectors.shape[1] != width:
                    raise ValueError(f"embeddings of width {width} for a cache of width {self._vectors.shape[1]}")
                handle.write(rows.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            self.read_log()  # ours, and whatever another process appended before them

    def keys(self) -> list[str]:
        """Every cached image sha256, in row order of ``vectors``."""
        return sorted(self._index, key=self._index.__getitem__)

    def vectors(self) -> torch.Tensor:
        """Every cached embedding, (N, C), rows in the order of ``keys`` (a view: read, do not keep)."""
        return self._vectors if self._vectors is not None else torch.empty((0, 0))

    def save(self) -> None:
        """Write every embedding to the cache file, the log's records included, and empty the log."""
        with self._locked():
            self.read_log()  # records appended by another process since this cache was opened
            keys = self.keys()
            # A copy of the rows: saving a view would save the whole grown buffer.
            vectors = self._vectors.clone() if self._vectors is not None else None
            atomic_save({"fingerprint": self.fingerprint, "keys": keys, "vectors": vectors}, self.path)
            if self.log_path.exists():
                os.truncate(self.log_path, 0)
            self.log_offset, self._log_generation = 0, b""


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
    fast: bool = False,
    decode_workers: int = 2,
) -> Embedded:
    """Embeddings of every example's photo, from the cache where present, else computed batched.

    Photos are decoded by ``decode_workers`` threads (PIL releases the GIL while it decodes and
    resizes), the next batch while the backbone runs on this one. ``fast`` runs the backbone through
    ``trainer.fastpath`` where it applies (a CPU, no autocast); it is off by default because at
    batch 64, folding cost included, it was no faster in ``bench/embed_throughput.py``.
    """
    cache = EmbeddingCache(cache_dir, cache_key(fingerprint, preprocess)) if cache_dir is not None else None
    keys: list[str | None] = []
    skipped: list[tuple[str, str]] = []
    for ex in examples:
        try:
            if ex.image_path is None:
                raise ImageError("no image file")
            keys.append(file_sha256(ex.image_path))
        except (OSError, ImageError) as exc:
            keys.append(None)
            skipped.append((ex.id, str(exc)))
    fresh: dict[str, torch.Tensor] = {}
    todo = [(ex, k) for ex, k in zip(examples, keys) if k is not None and (cache is None or k not in cache)]
    todo = list({k: (ex, k) for ex, k in todo}.values())  # the same photo twice is embedded once
    backbone.eval().to(device)
    net = inference_backbone(backbone, device, fast=fast and dtype is None)

    def decode(ex: LabeledExample) -> torch.Tensor | ImageError:
        try:
            return prepare_image(open_image(ex.image_path), preprocess)  # (3, S, S)
        except ImageError as exc:
            return exc

    chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    with ThreadPoolExecutor(max_workers=max(1, decode_workers)) as pool:
        pending = [pool.submit(decode, ex) for ex, _ in chunks[0]] if chunks else []
        done = 0
        for n, chunk in enumerate(chunks):
            decoded = [f.result() for f in pending]
            if n + 1 < len(chunks):  # decoded while the backbone runs on this batch
                pending = [pool.submit(decode, ex) for ex, _ in chunks[n + 1]]
            batch: list[torch.Tensor] = []
            batch_keys: list[str] = []
            for (ex, key), image in zip(chunk, decoded):
                if isinstance(image, ImageError):
                    skipped.append((ex.id, str(image)))
                    keys[examples.index(ex)] = None
                else:
                    batch.append(image)
                    batch_keys.append(key)
            if batch:
                raw = torch.stack(batch).to(device)  # (b, 3, S, S)
                with autocast(device, dtype):
                    vec = net(to_model_input(raw, preprocess)).float().cpu()  # (b, C)
                fresh.update(zip(batch_keys, vec))
            done += len(chunk)
            if progress is not None:
                progress(done / len(todo), f"embedding photos {done}/{len(todo)}")
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
