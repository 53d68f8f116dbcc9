"""The post-hoc prior correction (logit adjustment): counted on the training labels, stored in the
checkpoint, applied by the predictor, off for checkpoints written before it existed."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from trainer import Predictor, default_train_config, load_checkpoint, save_checkpoint, split_held_out, train_full
from trainer.data import EARLY_STOP_SALT
from trainer.labels import encode_labels, head_counts


def test_training_records_value_counts(trained, gen_data, gen_taxonomy) -> None:
    ckpt = load_checkpoint(trained.checkpoint_path)
    heads = ckpt.build_model().heads
    held = set(trained.held_out_ids)
    # Counted on what the weights were fitted on: neither the held-out products nor the
    # early-stopping slice of the training part.
    train = [e for e in gen_data["train"] if e.id not in held]
    fit_part, _ = split_held_out(train, ckpt.train_config["val_fraction"], salt=EARLY_STOP_SALT)
    expected = torch.cat(head_counts(encode_labels(fit_part, gen_taxonomy), gen_taxonomy))
    assert torch.equal(heads.value_counts, expected)
    assert float(heads.logit_adjustment) == ckpt.train_config["logit_adjustment"] == 0.0
    # the prior of each head sums to one
    for h in range(len(heads.attribute_heads)):
        assert torch.isclose(heads.log_prior(h).exp().sum(), torch.tensor(1.0), atol=0.02)


def _with_tau(trained, tau: float | None, path) -> Predictor:
    """The trained checkpoint's heads alone (the neighbours' vote off: ``test_neighbours`` tests
    its correction), with ``tau`` for every head (None: the taus it chose)."""
    ckpt = load_checkpoint(trained.checkpoint_path)
    model = ckpt.build_model()
    model.heads.set_neighbour_weight(0.0)
    if tau is not None:
        model.heads.set_logit_adjustment(tau)
    save_checkpoint(path, model, preprocess=ckpt.preprocess, train_config=ckpt.train_config, metrics=ckpt.metrics)
    return Predictor.load(path)


def test_predictor_applies_the_stored_correction(trained, gen_data, gen_taxonomy, tmp_path) -> None:
    tau = 1.5
    plain = _with_tau(trained, None, tmp_path / "plain.pt")
    adjusted = _with_tau(trained, tau, tmp_path / "adjusted.pt")
    assert float(adjusted.model.heads.logit_adjustment) == tau
    photos = [e.image_path for e in gen_data["test"][:12]]
    cats = [e.category for e in gen_data["test"][:12]]
    n_colors = len(gen_taxonomy.categories[0].attributes[0].values)
    before = plain.predict(photos, cats, top_k=n_colors)
    after = adjusted.predict(photos, cats, top_k=n_colors)
    heads = plain.model.heads
    for b, a, cat in zip(before, after, cats):
        c = gen_taxonomy.category_names.index(cat)
        head = heads.head_index[c][0]  # colour
        values = gen_taxonomy.categories[c].attributes[0].values
        p = torch.tensor([dict(b.attributes["color"].top_k)[v] for v in values])  # (V,)
        # softmax((z - tau log prior) / T) computed from the plain probabilities softmax(z / T)
        t = heads.head_temperature[head]  # the calibration's temperature, the same in both
        want = torch.softmax(p.log() - tau * heads.log_prior(head) / t, dim=0)  # (V,)
        got = torch.tensor([dict(a.attributes["color"].top_k)[v] for v in values])  # (V,)
        assert torch.allclose(got, want, atol=1e-4)
    # rare colours are suggested at least as often once the prior is divided out
    rare = values[int(heads.value_counts[heads.value_offsets[head] : heads.value_offsets[head + 1]].argmin())]
    assert sum(a.attributes["color"].value == rare for a in after) >= sum(
        b.attributes["color"].value == rare for b in before
    )


def test_checkpoint_without_the_correction_still_loads(trained, gen_data, tmp_path) -> None:
    raw = torch.load(trained.checkpoint_path, weights_only=True)
    gone = ("heads.value_counts", "heads.logit_adjustment", "heads.head_logit_adjustment")
    gone += ("heads.memory_vectors", "heads.memory_categories", "heads.memory_targets")  # nor the vote
    gone += ("heads.neighbour_weight", "heads.neighbour_balance")
    for key in gone:
        del raw["state_dict"][key]
    old = tmp_path / "old.pt"
    torch.save(raw, old)
    photos = [e.image_path for e in gen_data["test"][:4]]
    predictor = Predictor.load(old)
    assert float(predictor.model.heads.logit_adjustment) == 0.0
    assert predictor.predict(photos) == _with_tau(trained, None, tmp_path / "alone.pt").predict(photos)


def test_the_configured_correction_is_trained_into_the_checkpoint(
    gen_data, gen_taxonomy, tiny_model, tiny_train, tmp_path
) -> None:
    """What the CPU default sets (tau from cross-validation) is what its checkpoint applies."""
    tau = default_train_config("cpu").logit_adjustment
    assert tau < 0  # the cross-validated choice (bench/RESULTS.md); 0 would make this test vacuous
    config = replace(tiny_train, epochs=1, logit_adjustment=tau)
    result = train_full(
        gen_data["train"][:40],
        taxonomy=gen_taxonomy,
        out_dir=tmp_path,
        config=config,
        model_config=tiny_model,
        device="cpu",
    )
    ckpt = load_checkpoint(result.checkpoint_path)
    assert ckpt.train_config["logit_adjustment"] == tau
    assert float(Predictor.load(result.checkpoint_path).model.heads.logit_adjustment) == pytest.approx(tau)
