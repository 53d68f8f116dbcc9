"""Full training on generated photos beats the majority baseline; runs are seeded and resumable."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from trainer import DataError, evaluate_checkpoint, load_checkpoint, majority_baseline, train_full


def test_training_beats_the_majority_baseline(trained, gen_data, gen_taxonomy) -> None:
    baseline = majority_baseline(gen_data["train"], gen_data["test"], gen_taxonomy).score
    score = evaluate_checkpoint(trained.checkpoint_path, gen_data["test"]).score
    assert baseline < 0.35
    assert score > 0.75 and score > baseline + 0.35, (score, baseline)


def test_cutmix_on_every_batch_still_learns_the_attributes(gen_data, gen_taxonomy, tiny_model, tiny_train, tmp_path):
    """Every training photo carries a box of another photo of its category; the model learns from
    the area-weighted labels of both and is judged on whole photos."""
    config = replace(tiny_train, cutmix=1.0)
    run = train_full(
        gen_data["train"], taxonomy=gen_taxonomy, out_dir=tmp_path, config=config, model_config=tiny_model, device="cpu"
    )
    baseline = majority_baseline(gen_data["train"], gen_data["test"], gen_taxonomy).score
    score = evaluate_checkpoint(run.checkpoint_path, gen_data["test"]).score
    assert score > baseline + 0.3, (score, baseline)
    assert load_checkpoint(run.checkpoint_path).train_config["cutmix"] == 1.0


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


@pytest.mark.parametrize(
    ("progressive_size", "cutmix"),
    [(0, 0.0), (32, 0.0), (0, 1.0)],
    ids=["fixed-size", "progressive-resizing", "cutmix"],
)
def test_interrupted_run_resumes_to_the_same_weights(
    gen_data, gen_taxonomy, tiny_model, tiny_train, tmp_path, progressive_size, cutmix
) -> None:
    few = gen_data["train"][:48]
    # With progressive resizing the first epoch trains on 32-pixel photos and the second on 48;
    # with CutMix the boxes and partners are drawn from the run's seeded generator too.
    config = replace(tiny_train, epochs=2, batch_size=16, patience=99, progressive_size=progressive_size, cutmix=cutmix)
    kwargs = {"taxonomy": gen_taxonomy, "config": config, "model_config": tiny_model, "device": "cpu", "seed": 3}
    whole = train_full(few, out_dir=tmp_path / "whole", **kwargs)

    def stop_after_first_epoch(fraction: float, message: str) -> None:
        if message.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_full(few, out_dir=tmp_path / "cut", progress=stop_after_first_epoch, **kwargs)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 0
    resumed = train_full(few, out_dir=tmp_path / "cut", resume=True, **kwargs)
    history = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    a, b = load_checkpoint(whole.checkpoint_path).state_dict, load_checkpoint(resumed.checkpoint_path).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a), "seeded + resumed run differs from the uninterrupted one"


def test_empty_or_unlabelled_training_set_is_refused(gen_taxonomy, tmp_path) -> None:
    with pytest.raises(DataError, match="no training examples"):
        train_full([], taxonomy=gen_taxonomy, out_dir=tmp_path)
    from taxonomy import LabeledExample

    blank = [LabeledExample("x", "tee", {"color": None}, image_path=None)]
    with pytest.raises(DataError, match="labelled attribute"):
        train_full(blank, taxonomy=gen_taxonomy, out_dir=tmp_path)


def test_keep_last_runs_the_whole_schedule_and_keeps_its_last_epoch(
    gen_data, gen_taxonomy, tiny_model, tiny_train, tmp_path
) -> None:
    """The default recipes' way (``TrainConfig.keep_last``): an early-stopping slice whose score
    stops improving (a learning rate too small to change a prediction) ends a run after
    ``patience`` epochs and keeps its first epoch; with ``keep_last`` the schedule runs to its end
    and the model served is the last epoch's, while the slice still draws the curve."""
    few = gen_data["train"][:60]
    config = replace(tiny_train, epochs=4, batch_size=16, lr=1e-12, patience=1)
    kwargs = {"taxonomy": gen_taxonomy, "model_config": tiny_model, "device": "cpu", "seed": 0}
    stopped = train_full(few, out_dir=tmp_path / "stopped", config=config, **kwargs)
    assert stopped.metrics["epoch"] == 1
    assert len(torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)["history"]) == 2

    whole = train_full(few, out_dir=tmp_path / "whole", config=replace(config, keep_last=True), **kwargs)
    last = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    assert whole.metrics["epoch"] == 4 and [h["epoch"] for h in last["history"]] == [1, 2, 3, 4]
    assert all(h["val_score"] >= 0 for h in last["history"])  # the slice judged every epoch
    kept = load_checkpoint(whole.checkpoint_path).state_dict
    trunk = [k for k in last["model"] if k.startswith("backbone.") and "running" in k]
    assert trunk and all(torch.equal(kept[k], last["model"][k]) for k in trunk)
