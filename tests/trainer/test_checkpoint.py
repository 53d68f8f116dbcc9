"""Checkpoints: round trip, self-description, mismatch and damage refused, atomic writes."""

from __future__ import annotations

import shutil

import pytest
import torch

from taxonomy import Attribute, Category, Taxonomy, file_sha256
from trainer import (
    CheckpointError,
    Predictor,
    TaxonomyMismatchError,
    load_checkpoint,
    save_checkpoint,
)


def test_round_trip_gives_identical_predictions(trained, gen_data, tmp_path) -> None:
    ckpt = load_checkpoint(trained.checkpoint_path)
    copy = tmp_path / "copy.pt"
    save_checkpoint(
        copy,
        ckpt.build_model(),
        preprocess=ckpt.preprocess,
        train_config=ckpt.train_config,
        metrics=ckpt.metrics,
        backbone_source=ckpt.backbone_source,
    )
    photos = [e.image_path for e in gen_data["test"][:6]]
    first = Predictor.load(trained.checkpoint_path).predict(photos)
    again = Predictor.load(copy).predict(photos)
    assert first == again


def test_checkpoint_describes_itself(trained, gen_taxonomy) -> None:
    raw = torch.load(trained.checkpoint_path, weights_only=True)  # plain data only
    assert raw["taxonomy_fingerprint"] == gen_taxonomy.fingerprint
    assert raw["label_order"]["tee"]["pattern"] == ["solid", "striped"]
    assert raw["model_config"]["arch"] == "resnet18" and raw["preprocess"]["image_size"] == 48
    assert raw["train_config"]["focal_gamma"] == 2.0 and "score" in raw["metrics"]
    assert raw["version_id"] == trained.version_id and raw["parent_version"] is None
    assert trained.sha256 == file_sha256(trained.checkpoint_path)


def test_taxonomy_mismatch_says_what_differs(trained, gen_taxonomy) -> None:
    tee, mug = gen_taxonomy.categories
    grown = Attribute("pattern", ("solid", "striped", "checked"))
    other = Taxonomy(categories=(Category("tee", (tee.attributes[0], grown)), mug))
    with pytest.raises(TaxonomyMismatchError, match=r"'tee' / 'pattern': values differ.*checked"):
        load_checkpoint(trained.checkpoint_path, taxonomy=other)
    assert load_checkpoint(trained.checkpoint_path, taxonomy=gen_taxonomy).taxonomy == gen_taxonomy


def test_damaged_or_foreign_files_are_refused(trained, tmp_path) -> None:
    data = trained.checkpoint_path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path, text in ((truncated, "damaged"), (garbage, "damaged"), (foreign, "not a visual-taxonomy")):
        with pytest.raises(CheckpointError, match=text):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_checksum_mismatch_is_refused(trained, tmp_path) -> None:
    good = file_sha256(trained.checkpoint_path)
    assert load_checkpoint(trained.checkpoint_path, expected_sha256=good).version_id == trained.version_id
    changed = tmp_path / "changed.pt"
    shutil.copy(trained.checkpoint_path, changed)
    with open(changed, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(changed, expected_sha256=good)


def test_write_is_atomic(trained, tmp_path, monkeypatch) -> None:
    ckpt = load_checkpoint(trained.checkpoint_path)
    target = tmp_path / "model.pt"
    shutil.copy(trained.checkpoint_path, target)
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("trainer.checkpoint.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, ckpt.build_model(), preprocess=ckpt.preprocess, train_config={}, metrics={})
    assert target.read_bytes() == before  # the old file is whole, no temporary file is left behind
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
