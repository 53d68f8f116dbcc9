"""Content-addressed storage of product photos: ``<root>/ab/abcdef....jpg`` named by sha256.

A path is only ever built from a validated sha256 and a known suffix, never from a name a
user supplied. Writes are atomic (temporary file in the same directory, fsync, rename) and
idempotent: storing the same bytes twice leaves one file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from taxonomy import ImageInfo
from taxonomy.images import FORMAT_SUFFIX

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SUFFIXES = frozenset(FORMAT_SUFFIX.values())


class MediaError(ValueError):
    """A hash or suffix that cannot name a stored file, or bytes that do not match their hash."""


def _check(sha256: str, ext: str) -> tuple[str, str]:
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise MediaError(f"not a sha256 hex digest (64 lowercase hex characters): {sha256!r}")
    suffix = ext if ext.startswith(".") else f".{ext}"
    if suffix not in SUFFIXES:
        raise MediaError(f"unknown image suffix {ext!r}; expected one of {sorted(SUFFIXES)}")
    return sha256, suffix


def relative_path(sha256: str, ext: str) -> str:
    """``ab/abcdef....jpg``: the first two hex digits shard the directory."""
    sha256, suffix = _check(sha256, ext)
    return f"{sha256[:2]}/{sha256}{suffix}"


class MediaStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"MediaStore({str(self.root)!r})"

    def path_for(self, sha256: str, ext: str) -> Path:
        return self.root / relative_path(sha256, ext)

    def exists(self, sha256: str, ext: str) -> bool:
        return self.path_for(sha256, ext).is_file()

    def put(self, data: bytes, info: ImageInfo) -> str:
        """Store ``data`` (already decoded and described by ``info``); returns the relative path."""
        digest = hashlib.sha256(data).hexdigest()
        if digest != info.sha256:
            raise MediaError(f"the bytes hash to {digest}, not to {info.sha256} as their ImageInfo says")
        rel = relative_path(info.sha256, info.suffix)
        target = self.root / rel
        if target.is_file() and target.stat().st_size == len(data):
            return rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=info.suffix)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return rel

    def open(self, sha256: str, ext: str) -> BinaryIO:
        """The stored file, opened for reading in binary mode."""
        return open(self.path_for(sha256, ext), "rb")

    def read(self, sha256: str, ext: str) -> bytes:
        return self.path_for(sha256, ext).read_bytes()
