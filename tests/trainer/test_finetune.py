"""A full retrain that fine-tunes a trained model (what the app's policy starts on new labels)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from trainer import DataError, load_checkpoint, train_full
from trainer.config import finetune_config

from .conftest import TINY_TRAIN, make_examples, make_taxonomy


def test_fine_tuning_keeps_the_base_model_and_records_where_it_started(trained, gen_data, gen_taxonomy, tmp_path):
    base = load_checkpoint(trained.checkpoint_path)
    result = train_full(
        gen_data["train"],
        taxonomy=gen_taxonomy,
        out_dir=tmp_path / "ft",
        init_checkpoint=trained.checkpoint_path,
        config=replace(TINY_TRAIN, epochs=2),
        device="cpu",
    )
    tuned = load_checkpoint(result.checkpoint_path)
    assert result.metrics["mode"] == "finetune" and tuned.parent_version == base.version_id
    assert tuned.model_config == base.model_config and tuned.preprocess == base.preprocess
    assert tuned.version_id != base.version_id
    # It starts from the base's weights: after two short epochs the trunk is still close to them,
    # far closer than a trunk trained from scratch for as long.
    fresh = train_full(
        gen_data["train"],
        taxonomy=gen_taxonomy,
        out_dir=tmp_path / "fresh",
        config=replace(TINY_TRAIN, epochs=2),
        model_config=base.model_config,
        device="cpu",
    )
    scratch = load_checkpoint(fresh.checkpoint_path)

    def distance(state) -> float:
        keys = [k for k, v in base.state_dict.items() if k.startswith("backbone.") and v.is_floating_point()]
        return sum(float((state[k] - base.state_dict[k]).norm()) for k in keys)

    near, far = distance(tuned.state_dict), distance(scratch.state_dict)
    assert near < 0.5 * far, (near, far)


def test_the_fine_tuning_schedule_is_shorter_and_gentler():
    tuned = finetune_config(replace(TINY_TRAIN, epochs=38, progressive_size=80, lr=1e-3))
    assert tuned.epochs == 11 and tuned.lr == pytest.approx(3e-4) and tuned.progressive_size == 0
    assert tuned.patience > tuned.epochs  # no early stop before the schedule has annealed


def test_fine_tuning_a_model_of_another_taxonomy_is_refused(trained, tmp_path):
    other = make_taxonomy()
    other = replace(other, categories=other.categories[:1])
    examples = [e for e in make_examples(tmp_path / "p", 12, seed=5) if e.category == "tee"]
    with pytest.raises(DataError, match="trained for another taxonomy"):
        train_full(examples, taxonomy=other, out_dir=tmp_path / "x", init_checkpoint=trained.checkpoint_path)
