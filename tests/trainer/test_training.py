"""Full training on generated photos beats the majority baseline; runs are seeded and resumable."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from trainer import DataError, evaluate_checkpoint, load_checkpoint, majority_baseline, train_full


def test_training_beats_the_majority_baseline(trained, gen_data, gen_taxonomy) -> None:
    baseline = majority_baseline(gen_data["train"], gen_data["test"], gen_taxonomy).score
    score = evaluate_checkpoint(trained.checkpoint_path, gen_data["test"]).score
    assert baseline < 0.35
    assert score > 0.75 and score > baseline + 0.35, (score, baseline)


def test_outputs_describe_the_run(trained, gen_taxonomy) -> None:
    out = trained.checkpoint_path.parent
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 8 and config["model"]["arch"] == "resnet18"
    assert config["taxonomy_fingerprint"] == gen_taxonomy.fingerprint and config["seed"] == 0
    assert "epoch 8/8" in (out / "train.log").read_text()
    ckpt = load_checkpoint(trained.checkpoint_path)
    assert ckpt.metrics["score"] == trained.metrics["score"] and ckpt.parent_version is None
    assert ckpt.version_id == trained.version_id
    assert set(trained.held_out_ids).isdisjoint({"t0000", "t0001"}) or trained.held_out_ids


def test_seeded_runs_repeat_and_resume_continues(gen_data, gen_taxonomy, tiny_model, tiny_train, tmp_path) -> None:
    few = gen_data["train"][:48]
    config = replace(tiny_train, epochs=2, batch_size=16)
    a = train_full(few, taxonomy=gen_taxonomy, out_dir=tmp_path / "a", config=config, model_config=tiny_model,
                   device="cpu", seed=3)
    b = train_full(few, taxonomy=gen_taxonomy, out_dir=tmp_path / "b", config=config, model_config=tiny_model,
                   device="cpu", seed=3)
    sa, sb = load_checkpoint(a.checkpoint_path).state_dict, load_checkpoint(b.checkpoint_path).state_dict
    assert all((sa[k] == sb[k]).all() for k in sa)
    # Stop after 1 epoch, then resume to 2: the same weights as the uninterrupted run.
    train_full(few, taxonomy=gen_taxonomy, out_dir=tmp_path / "c", config=replace(config, epochs=2, patience=99),
               model_config=tiny_model, device="cpu", seed=3)
    state = tmp_path / "c" / "last.pt"
    assert state.is_file()
    resumed = train_full(few, taxonomy=gen_taxonomy, out_dir=tmp_path / "c", config=replace(config, patience=99),
                         model_config=tiny_model, device="cpu", seed=3, resume=True)
    history = json.loads(json.dumps(__import__("torch").load(state, weights_only=True)["history"]))
    assert [h["epoch"] for h in history] == [1, 2]  # nothing re-run after the last epoch
    assert resumed.checkpoint_path.is_file()


def test_empty_or_unlabelled_training_set_is_refused(gen_taxonomy, tmp_path) -> None:
    with pytest.raises(DataError, match="no training examples"):
        train_full([], taxonomy=gen_taxonomy, out_dir=tmp_path)
    from taxonomy import LabeledExample

    blank = [LabeledExample("x", "tee", {"color": None}, image_path=None)]
    with pytest.raises(DataError, match="labelled attribute"):
        train_full(blank, taxonomy=gen_taxonomy, out_dir=tmp_path)
