"""Calibrated confidence: a temperature per attribute head, fitted on the early-stopping slice of
the training part after the prior correction, stored in the checkpoint, applied by the predictor
without ever changing its top-1 suggestion."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

import trainer.retrain
import trainer.train
from taxonomy import Attribute, Category, LabeledExample, Taxonomy
from trainer import (
    ModelConfig,
    Predictor,
    TrainConfig,
    calibrate_heads,
    calibration_note,
    expected_calibration_error,
    load_checkpoint,
    retrain_heads,
    save_checkpoint,
    split_held_out,
    train_full,
)
from trainer.calibration import temper
from trainer.data import EARLY_STOP_SALT
from trainer.heads import HeadBank

VALUES = ("round", "vee", "polo", "henley")


def _overconfident_case(n: int = 600, sharpen: float = 4.0, seed: int = 0):
    """An identity head (its logits are the features) whose true values are drawn from
    softmax(z) while it says softmax(4 z): right as often as softmax(z) says, but far surer.
    The head also carries a prior correction (tau 0.3) that calibration must come after."""
    taxonomy = Taxonomy(categories=(Category("tee", (Attribute("neck", VALUES),)),))
    heads = HeadBank(taxonomy, in_features=len(VALUES), config=ModelConfig(weights="none", dropout=0.0))
    heads.attribute_heads[0] = nn.Sequential(nn.Identity())
    heads.record_label_counts([torch.tensor([400.0, 100.0, 60.0, 40.0])])
    heads.set_head_logit_adjustments([0.3])
    heads.eval()
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(VALUES), generator=g) * 1.2  # (n, V) honest logits: the truth follows softmax(z)
    truth = torch.multinomial(z.softmax(dim=1), 1, generator=g).squeeze(1)  # (n,)
    # The head serves features - tau * log prior, i.e. 4 z: the right top-1, 4x too sure.
    features = sharpen * z + 0.3 * heads.log_prior(0)  # (n, V)
    examples = [
        LabeledExample(id=f"p{i}", category="tee", labels={"neck": VALUES[int(t)]}) for i, t in enumerate(truth)
    ]
    return heads, features, examples, taxonomy, truth


def _served_probs(heads: HeadBank, features: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        (out,) = heads(features, torch.zeros(len(features), dtype=torch.int64)).attributes
    return out.logits.softmax(dim=1)  # (n, V) prior-corrected, untempered


def test_ece_of_a_hand_made_case() -> None:
    # bin of 0.9: 1 of 2 right, |0.5 - 0.9| * 2/4; bin of 0.6: 2 of 2 right, |1 - 0.6| * 2/4
    conf, right = torch.tensor([0.9, 0.9, 0.6, 0.6]), torch.tensor([True, False, True, True])
    assert expected_calibration_error(conf, right) == pytest.approx(0.4)
    assert expected_calibration_error(torch.tensor([1.0, 0.0]), torch.tensor([True, False])) == pytest.approx(0.0)


def test_temperatures_fitted_on_an_overconfident_head_reduce_ece_and_nll() -> None:
    heads, features, examples, taxonomy, truth = _overconfident_case()
    before = _served_probs(heads, features)
    report = calibrate_heads(
        heads, lambda x, c: heads(x, c), features, examples, taxonomy=taxonomy, config=TrainConfig()
    )
    assert report["status"] == "calibrated" and report["fields"] == len(examples) and report["bins"] == 15
    # The head was made 4x too sure; the fitted temperature undoes most of it.
    (t,) = heads.head_temperature.tolist()
    assert 3.0 < t < 5.0 and report["temperatures"] == {"tee/neck": pytest.approx(t, abs=1e-3)}
    assert report["ece_after"] < 0.5 * report["ece_before"] and report["ece_before"] > 0.15
    assert report["nll_after"] < report["nll_before"] - 0.3
    assert report["per_attribute"]["neck"]["ece_after"] == report["ece_after"]
    # The prior correction still decides the top-1; only the confidence moved.
    after = temper(before, t)
    assert torch.equal(after.argmax(dim=1), before.argmax(dim=1))
    assert after.max(dim=1).values.mean() < before.max(dim=1).values.mean() - 0.1
    # The numbers the report gives are those of the probabilities themselves.
    right = before.argmax(dim=1) == truth
    assert expected_calibration_error(before.max(dim=1).values, right) == pytest.approx(report["ece_before"], abs=1e-4)
    assert expected_calibration_error(after.max(dim=1).values, right) == pytest.approx(report["ece_after"], abs=1e-4)


def test_too_few_labels_leave_the_heads_uncalibrated() -> None:
    heads, features, examples, taxonomy, _ = _overconfident_case(n=10)
    heads.set_temperatures([2.5])  # e.g. a warm start's, fitted to other heads
    report = calibrate_heads(
        heads, lambda x, c: heads(x, c), features, examples, taxonomy=taxonomy, config=TrainConfig(tau_min_labels=20)
    )
    assert report["status"] == "uncalibrated" and heads.head_temperature.tolist() == [1.0]
    assert calibration_note({"calibration": report}) == "uncalibrated"


def _spy(monkeypatch: pytest.MonkeyPatch, module) -> list[list[str]]:
    """Record the ids each real call of ``calibrate_heads`` in ``module`` is given."""
    seen: list[list[str]] = []
    real = module.calibrate_heads

    def spy(heads, forward, inputs, examples, **kwargs):
        seen.append([e.id for e in examples])
        return real(heads, forward, inputs, examples, **kwargs)

    monkeypatch.setattr(module, "calibrate_heads", spy)
    return seen


def _temperatures(checkpoint_path) -> list[float]:
    return load_checkpoint(checkpoint_path).state_dict["heads.head_temperature"].tolist()


def test_full_and_heads_runs_calibrate_on_the_early_stopping_slice_only(
    gen_data, gen_taxonomy, tiny_model, tiny_train, tmp_path, monkeypatch
) -> None:
    examples = gen_data["train"][:100]
    config = replace(tiny_train, epochs=2, tau_min_labels=3, heads_epochs=3, heads_min_steps=10)
    names = [f"{c.name}/{a.name}" for c in gen_taxonomy.categories for a in c.attributes]
    seen = _spy(monkeypatch, trainer.train)
    full = train_full(
        examples, taxonomy=gen_taxonomy, out_dir=tmp_path / "full", config=config, model_config=tiny_model, device="cpu"
    )
    train = [e for e in examples if e.id not in set(full.held_out_ids)]
    _, stop = split_held_out(train, config.val_fraction, salt=EARLY_STOP_SALT)
    assert len(seen) == 1 and set(seen[0]) == {e.id for e in stop} and stop
    assert set(seen[0]).isdisjoint(full.held_out_ids)
    calibration = full.metrics["calibration"]
    assert calibration["status"] == "calibrated" and calibration["examples"] == len(stop)
    assert _temperatures(full.checkpoint_path) == pytest.approx([calibration["temperatures"][n] for n in names], 1e-3)
    ckpt = load_checkpoint(full.checkpoint_path)
    assert ckpt.calibrated and ckpt.metrics["calibration"] == calibration
    assert calibration_note(ckpt.metrics).startswith("calibrated (ECE ")

    seen = _spy(monkeypatch, trainer.retrain)
    heads = retrain_heads(
        examples,
        taxonomy=gen_taxonomy,
        base_checkpoint=full.checkpoint_path,
        out_dir=tmp_path / "heads",
        cache_dir=tmp_path / "cache",
        config=config,
    )
    train = [e for e in examples if e.id not in set(heads.held_out_ids)]
    _, stop = split_held_out(train, config.val_fraction, salt=EARLY_STOP_SALT)
    assert len(seen) == 1 and set(seen[0]) == {e.id for e in stop}
    assert set(seen[0]).isdisjoint(heads.held_out_ids)
    assert heads.metrics["calibration"]["status"] == "calibrated"
    assert _temperatures(heads.checkpoint_path) == pytest.approx(
        [heads.metrics["calibration"]["temperatures"][n] for n in names], 1e-3
    )
    assert load_checkpoint(heads.checkpoint_path).calibrated


def _with_temperatures(trained, temperatures: list[float] | None, path) -> Predictor:
    """The trained checkpoint with other temperatures; None writes it as a checkpoint from
    before calibration existed (no temperatures, no calibration entry)."""
    ckpt = load_checkpoint(trained.checkpoint_path)
    model = ckpt.build_model()
    metrics = {k: v for k, v in ckpt.metrics.items() if k != "calibration"}
    if temperatures is not None:
        model.heads.set_temperatures(temperatures)
        metrics["calibration"] = {**ckpt.metrics["calibration"], "status": "calibrated"}
    save_checkpoint(path, model, preprocess=ckpt.preprocess, train_config=ckpt.train_config, metrics=metrics)
    if temperatures is None:
        raw = torch.load(path, weights_only=True)
        del raw["state_dict"]["heads.head_temperature"]
        torch.save(raw, path)
    return Predictor.load(path)


def test_the_checkpoint_round_trips_its_temperatures(trained, tmp_path) -> None:
    temps = [2.0, 0.7, 1.3, 3.1]
    predictor = _with_temperatures(trained, temps, tmp_path / "t.pt")
    assert predictor.model.heads.head_temperature.tolist() == pytest.approx(temps)
    assert predictor.calibrated and predictor.checkpoint.calibrated


def test_an_old_checkpoint_without_temperatures_loads_uncalibrated(trained, gen_data, tmp_path) -> None:
    old = _with_temperatures(trained, None, tmp_path / "old.pt")
    assert old.model.heads.head_temperature.tolist() == [1.0] * 4
    assert not old.calibrated and calibration_note(old.metrics) == "uncalibrated"
    ones = _with_temperatures(trained, [1.0] * 4, tmp_path / "ones.pt")
    photos = [e.image_path for e in gen_data["test"][:6]]
    assert old.predict(photos) == ones.predict(photos)  # what an old checkpoint served before


def test_the_predictor_keeps_its_top1_and_tempers_its_confidences(trained, gen_data, gen_taxonomy, tmp_path) -> None:
    fitted = Predictor.load(trained.checkpoint_path)
    assert fitted.calibrated and trained.metrics["calibration"]["status"] == "calibrated"
    temps = fitted.model.heads.head_temperature.tolist()
    assert any(abs(t - 1.0) > 0.05 for t in temps), temps  # the tiny model is mis-calibrated
    plain = _with_temperatures(trained, [1.0] * 4, tmp_path / "plain.pt")
    rows = gen_data["test"][:24]
    photos, cats = [e.image_path for e in rows], [e.category for e in rows]
    k = len(gen_taxonomy.categories[0].attributes[0].values)
    changed = 0
    for b, a, cat in zip(plain.predict(photos, cats, top_k=k), fitted.predict(photos, cats, top_k=k), cats):
        c = gen_taxonomy.category_names.index(cat)
        assert b.attributes.keys() == a.attributes.keys()
        for position, attr in enumerate(gen_taxonomy.categories[c].attributes):
            before, after = b.attributes[attr.name], a.attributes[attr.name]
            assert after.value == before.value  # the suggestion itself never moves
            assert [v for v, _ in after.top_k] == [v for v, _ in before.top_k]
            t = temps[fitted.model.heads.head_index[c][position]]
            p = torch.tensor([dict(before.top_k)[v] for v in attr.values])  # (V,)
            want = temper(p.unsqueeze(0), t)[0]  # (V,)
            got = torch.tensor([dict(after.top_k)[v] for v in attr.values])  # (V,)
            assert torch.allclose(got, want, atol=1e-4)
            changed += abs(after.probability - before.probability) > 1e-3
    assert changed >= len(rows)  # at least one field of every product shows another confidence
