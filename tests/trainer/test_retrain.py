"""Heads-only retraining on cached embeddings, offline fallback, checkpoint comparison."""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest

from trainer import (
    EmbeddingCache,
    PretrainedWeightsUnavailable,
    build_model,
    evaluate_checkpoint,
    load_checkpoint,
    load_trunk_weights,
    majority_baseline,
    retrain_heads,
)
from trainer.embeddings import cache_key


def test_heads_retrain_reuses_backbone_and_cache(trained, gen_data, gen_taxonomy, tiny_train, tmp_path) -> None:
    cache = tmp_path / "cache"
    steps: list[tuple[float, str]] = []
    first = retrain_heads(
        gen_data["train"],
        taxonomy=gen_taxonomy,
        base_checkpoint=trained.checkpoint_path,
        out_dir=tmp_path / "v2",
        cache_dir=cache,
        config=tiny_train,
        progress=lambda f, m: steps.append((f, m)),
    )
    assert first.embeddings_computed == len(gen_data["train"])
    assert steps and steps[-1][0] == 1.0 and all(0 <= f <= 1 for f, _ in steps)
    base, new = load_checkpoint(trained.checkpoint_path), load_checkpoint(first.checkpoint_path)
    assert new.parent_version == base.version_id and new.version_id == first.version_id
    assert new.backbone_fingerprint == base.backbone_fingerprint
    backbone = [k for k in base.state_dict if k.startswith("backbone.")]
    assert all((base.state_dict[k] == new.state_dict[k]).all() for k in backbone)
    assert len(EmbeddingCache(cache, cache_key(base.backbone_fingerprint, base.preprocess))) == len(gen_data["train"])
    # The held-out ids are reported and the metric is on them alone.
    assert first.metrics["held_out_examples"] == len(first.held_out_ids) > 0

    second = retrain_heads(
        gen_data["train"],
        taxonomy=gen_taxonomy,
        base_checkpoint=first.checkpoint_path,
        out_dir=tmp_path / "v3",
        cache_dir=cache,
        config=tiny_train,
    )
    assert second.embeddings_computed == 0  # every photo came from the cache
    assert load_checkpoint(second.checkpoint_path).parent_version == first.version_id

    # Same rows, same numbers: the app compares candidate and active this way.
    held = [e for e in gen_data["test"]]
    active = evaluate_checkpoint(trained.checkpoint_path, held, cache_dir=cache)
    candidate = evaluate_checkpoint(second.checkpoint_path, held, cache_dir=cache)
    baseline = majority_baseline(gen_data["train"], held, gen_taxonomy).score
    assert candidate.score > baseline + 0.3 and active.score > baseline + 0.3


def test_offline_fallback_warns_once_and_trains(gen_data, gen_taxonomy, tiny_model, tiny_train, tmp_path) -> None:
    with pytest.warns(PretrainedWeightsUnavailable, match="could not be downloaded") as record:
        result = retrain_heads(
            gen_data["train"][:40],
            taxonomy=gen_taxonomy,
            base_checkpoint=None,
            out_dir=tmp_path / "out",
            cache_dir=tmp_path / "cache",
            config=replace(tiny_train, heads_epochs=3),
            model_config=replace(tiny_model, weights="imagenet"),
        )
    assert len([w for w in record if issubclass(w.category, PretrainedWeightsUnavailable)]) == 1
    ckpt = load_checkpoint(result.checkpoint_path)
    assert ckpt.backbone_source == "random" and ckpt.parent_version is None


def test_real_torchvision_download_path_fails_fast_offline(monkeypatch, tmp_path) -> None:
    """The default fetch, pointed at an empty cache with the download refused, falls back."""
    import torch.hub

    monkeypatch.undo()  # gives back the real torchvision_fetch that the autouse _no_network replaced
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    from trainer import weights

    assert weights.torchvision_fetch.__module__ == "trainer.weights"  # the real one runs, not the stand-in
    with pytest.warns(PretrainedWeightsUnavailable):
        state, source = load_trunk_weights("resnet18", "imagenet")
    assert state is None and source == "random"


def test_weights_none_and_missing_file(gen_taxonomy, tiny_model, tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, source = build_model(tiny_model, gen_taxonomy)  # "none": no warning
    assert source == "random"
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_model(replace(tiny_model, weights=str(tmp_path / "absent.pth")), gen_taxonomy)


def test_retrain_skips_unreadable_photos(gen_data, gen_taxonomy, trained, tiny_train, tmp_path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    bad = replace(gen_data["train"][0], id="broken", image_path=str(broken))
    result = retrain_heads(
        [*gen_data["train"][:40], bad],
        taxonomy=gen_taxonomy,
        base_checkpoint=trained.checkpoint_path,
        out_dir=tmp_path / "o",
        cache_dir=tmp_path / "c",
        config=replace(tiny_train, heads_epochs=2),
    )
    assert [s[0] for s in result.skipped] == ["broken"]
