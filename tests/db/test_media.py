"""The media store names files by content and never by a user-supplied string."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from db import MediaError, MediaStore
from taxonomy import decode_image

from ._data import image_bytes


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media")
    data = image_bytes(3, "PNG")
    _, info = decode_image(data)
    rel = store.put(data, info)
    assert rel == f"{info.sha256[:2]}/{info.sha256}.png"
    assert store.put(data, info) == rel
    assert store.read(info.sha256, ".png") == data
    with store.open(info.sha256, "png") as handle:
        assert handle.read() == data
    files = [p for p in (tmp_path / "media").rglob("*") if p.is_file()]
    assert files == [tmp_path / "media" / rel]  # no temporary files left behind


@pytest.mark.parametrize(
    "sha", ["../" + "a" * 61, "A" * 64, "a" * 63, "g" * 64, "a" * 64 + "/x", "", "..", "/etc/passwd"]
)
def test_paths_need_a_real_sha256(tmp_path: Path, sha: str) -> None:
    with pytest.raises(MediaError):
        MediaStore(tmp_path).path_for(sha, ".jpg")


def test_unknown_suffix_and_wrong_bytes_are_refused(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    with pytest.raises(MediaError, match="suffix"):
        store.path_for("a" * 64, ".exe")
    _, info = decode_image(image_bytes(1))
    with pytest.raises(MediaError, match="hash"):
        store.put(image_bytes(2), info)
    assert hashlib.sha256(image_bytes(1)).hexdigest() == info.sha256
    assert not any(tmp_path.rglob("*.jpg"))
