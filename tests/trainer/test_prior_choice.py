"""The prior correction chosen per attribute inside the run: on the early-stopping slice of the
training part (never the held-out products), stored in the checkpoint, applied by the predictor."""

from __future__ import annotations

import math
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
    load_checkpoint,
    retrain_heads,
    save_checkpoint,
    split_held_out,
    train_full,
)
from trainer.data import EARLY_STOP_SALT
from trainer.heads import HeadBank
from trainer.prior import choose_logit_adjustments

from .conftest import spy_on


def _skewed_case() -> tuple[HeadBank, torch.Tensor, list[LabeledExample], Taxonomy]:
    """A head whose logits are the features (identity head): 90 "round" and 10 "vee" necks, the
    logits carrying the prior plus a signal for "vee" too weak to win without a correction; the
    second attribute has only 5 labels in the slice."""
    taxonomy = Taxonomy(
        categories=(Category("tee", (Attribute("neck", ("round", "vee")), Attribute("sleeve", ("short", "long")))),)
    )
    heads = HeadBank(taxonomy, in_features=2, config=ModelConfig(weights="none", dropout=0.0))
    for h in range(2):
        heads.attribute_heads[h] = nn.Sequential(nn.Identity())
    heads.record_label_counts([torch.tensor([90.0, 10.0]), torch.tensor([50.0, 50.0])])
    heads.eval()
    vee = torch.tensor([i >= 90 for i in range(100)])
    features = torch.stack([torch.full((100,), math.log(0.9)), math.log(0.1) + 1.5 * vee.float()], dim=1)  # (100, 2)
    examples = [
        LabeledExample(
            id=f"p{i}",
            category="tee",
            labels={"neck": "vee" if vee[i] else "round", "sleeve": "short" if i < 5 else None},
        )
        for i in range(100)
    ]
    return heads, features, examples, taxonomy


def _necks(heads: HeadBank, features: torch.Tensor) -> list[str]:
    with torch.no_grad():
        out = heads(features, torch.zeros(len(features), dtype=torch.int64))
    neck = next(h for h in out.attributes if h.position == 0)
    return [("round", "vee")[int(i)] for i in neck.logits.argmax(dim=1)]


def test_the_choice_favours_a_rare_value_where_the_metric_asks_for_it() -> None:
    heads, features, examples, taxonomy = _skewed_case()
    config = TrainConfig(logit_adjustment=-0.15, tau_min_labels=20)
    heads.set_logit_adjustment(config.logit_adjustment)
    before = _necks(heads, features)
    assert before.count("vee") == 0  # the configured constant never suggests the rare neck

    chosen = choose_logit_adjustments(
        heads, lambda x, c: heads(x, c), features, examples, taxonomy=taxonomy, config=config
    )
    # 0.4 is the smallest tau of the grid that separates the two necks (0.3 does not: the signal
    # 1.5 must beat (1 - tau) * log 9); 0.5 scores the same and is farther from the constant.
    assert chosen == {"tee/neck": pytest.approx(0.4), "tee/sleeve": -0.15}  # 5 labels: the constant
    after = _necks(heads, features)
    assert after == [e.labels["neck"] for e in examples]
    assert float(heads.logit_adjustment) == pytest.approx(-0.15)  # the constant is kept as the fallback

    off = choose_logit_adjustments(
        heads,
        lambda x, c: heads(x, c),
        features,
        examples,
        taxonomy=taxonomy,
        config=replace(config, tau_grid=()),
    )
    assert set(off.values()) == {-0.15} and heads.head_logit_adjustment.tolist() == pytest.approx([-0.15] * 2)


def _memory_size(checkpoint_path) -> int:
    """How many products the checkpoint's neighbours' vote remembers (served at the weight its run chose)."""
    ckpt = load_checkpoint(checkpoint_path)
    chosen = ckpt.metrics["neighbour_weight"]["weight"]
    assert float(ckpt.state_dict["heads.neighbour_weight"]) == pytest.approx(chosen)
    return int(ckpt.state_dict["heads.memory_vectors"].shape[0])


def _head_taus(checkpoint_path) -> list[float]:
    return load_checkpoint(checkpoint_path).state_dict["heads.head_logit_adjustment"].tolist()


def test_full_and_heads_runs_choose_on_the_early_stopping_slice_only(
    gen_data, gen_taxonomy, tiny_model, tiny_train, tmp_path, monkeypatch
) -> None:
    examples = gen_data["train"][:100]
    config = replace(tiny_train, epochs=2, tau_min_labels=3, heads_epochs=3, heads_min_steps=10)
    seen = spy_on(monkeypatch, trainer.train, "choose_logit_adjustments")
    full = train_full(
        examples, taxonomy=gen_taxonomy, out_dir=tmp_path / "full", config=config, model_config=tiny_model, device="cpu"
    )
    train = [e for e in examples if e.id not in set(full.held_out_ids)]
    _, stop = split_held_out(train, config.val_fraction, salt=EARLY_STOP_SALT)
    assert len(seen) == 1 and set(seen[0]) == {e.id for e in stop} and stop
    assert set(seen[0]).isdisjoint(full.held_out_ids)
    # The neighbours' vote remembers the rest of the training part: neither slice is in it.
    assert _memory_size(full.checkpoint_path) == len(train) - len(stop)

    # Stored in the checkpoint, reported in its metrics, applied by the predictor.
    chosen = full.metrics["logit_adjustment"]
    names = [f"{c.name}/{a.name}" for c in gen_taxonomy.categories for a in c.attributes]
    assert _head_taus(full.checkpoint_path) == pytest.approx([chosen[n] for n in names])
    assert load_checkpoint(full.checkpoint_path).metrics["logit_adjustment"] == chosen
    served = Predictor.load(full.checkpoint_path).model.heads.head_logit_adjustment.tolist()
    assert served == pytest.approx([chosen[n] for n in names])

    seen = spy_on(monkeypatch, trainer.retrain, "choose_logit_adjustments")
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
    assert _memory_size(heads.checkpoint_path) == len(train) - len(stop)
    assert _head_taus(heads.checkpoint_path) == pytest.approx([heads.metrics["logit_adjustment"][n] for n in names])


def test_predictor_applies_each_heads_own_correction(trained, gen_data, gen_taxonomy, tmp_path) -> None:
    ckpt = load_checkpoint(trained.checkpoint_path)
    model = ckpt.build_model()
    model.heads.set_neighbour_weight(0.0)  # the heads alone (the vote gets the correction too: test_neighbours)
    save_checkpoint(tmp_path / "p.pt", model, preprocess=ckpt.preprocess, train_config=ckpt.train_config, metrics={})
    taus = [2.0, 0.0, 0.0, 0.0]  # tee colour only
    model.heads.set_head_logit_adjustments(taus)
    save_checkpoint(tmp_path / "m.pt", model, preprocess=ckpt.preprocess, train_config=ckpt.train_config, metrics={})
    plain, adjusted = Predictor.load(tmp_path / "p.pt"), Predictor.load(tmp_path / "m.pt")
    tees = [e for e in gen_data["test"] if e.category == "tee"][:6]
    mugs = [e for e in gen_data["test"] if e.category == "mug"][:6]
    values = gen_taxonomy.categories[0].attributes[0].values
    k = len(values)
    heads = plain.model.heads
    for rows, cat, tau in ((tees, 0, 2.0), (mugs, 1, 0.0)):
        photos, cats = [e.image_path for e in rows], [e.category for e in rows]
        for b, a in zip(plain.predict(photos, cats, top_k=k), adjusted.predict(photos, cats, top_k=k)):
            p = torch.tensor([dict(b.attributes["color"].top_k)[v] for v in values])  # (V,)
            got = torch.tensor([dict(a.attributes["color"].top_k)[v] for v in values])  # (V,)
            h = heads.head_index[cat][0]
            # softmax((z - tau log prior) / T) from softmax(z / T): T is the calibration's, in both
            want = torch.softmax(p.log() - tau * heads.log_prior(h) / heads.head_temperature[h], dim=0)  # (V,)
            assert torch.allclose(got, want, atol=1e-4)


def test_checkpoint_from_before_the_per_attribute_choice_applies_its_constant(trained, gen_data, tmp_path) -> None:
    raw = torch.load(trained.checkpoint_path, weights_only=True)
    del raw["state_dict"]["heads.head_logit_adjustment"]
    raw["state_dict"]["heads.logit_adjustment"] = torch.tensor(-0.15)
    raw["preprocess"] = {"image_size": raw["preprocess"]["image_size"], "pad_to_square": True}
    for key in ("recipe", "tau_grid", "tau_min_labels", "trunk_lr_scale"):
        del raw["train_config"][key]
    torch.save(raw, tmp_path / "old.pt")
    old = Predictor.load(tmp_path / "old.pt")
    assert old.model.heads.head_logit_adjustment.tolist() == pytest.approx([-0.15] * 4)
    assert old.checkpoint.recipe == "unrecorded" and old.checkpoint.preprocess.crop == "pad"
    ckpt = load_checkpoint(trained.checkpoint_path)
    model = ckpt.build_model()
    model.heads.set_logit_adjustment(-0.15)
    save_checkpoint(tmp_path / "new.pt", model, preprocess=ckpt.preprocess, train_config=ckpt.train_config, metrics={})
    photos = [e.image_path for e in gen_data["test"][:6]]
    assert old.predict(photos) == Predictor.load(tmp_path / "new.pt").predict(photos)
