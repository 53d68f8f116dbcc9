"""Focal loss, class weights and balancing against hand-computed values; masking of missing labels."""

from __future__ import annotations

import math

import pytest
import torch

from taxonomy import LabeledExample
from trainer import TaxonomyNet, class_weights, focal_loss, sample_weights
from trainer.heads import HeadBank
from trainer.labels import MISSING, encode_labels, head_counts
from trainer.losses import TaxonomyLoss


def test_focal_loss_matches_hand_computed_values() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    target = torch.tensor([0, 2])
    p0 = math.exp(2) / (math.exp(2) + 1 + math.exp(-1))
    expected = [-((1 - p0) ** 2) * math.log(p0), -((1 - 1 / 3) ** 2) * math.log(1 / 3)]
    got = focal_loss(logits, target, gamma=2.0)
    assert got.tolist() == pytest.approx(expected, rel=1e-5)
    weighted = focal_loss(logits, target, gamma=2.0, weight=torch.tensor([0.5, 1.0, 3.0]))
    assert weighted.tolist() == pytest.approx([0.5 * expected[0], 3.0 * expected[1]], rel=1e-5)
    # gamma 0 is plain cross-entropy
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert focal_loss(logits, target, gamma=0.0).tolist() == pytest.approx(ce.tolist(), rel=1e-5)


def test_class_weights_are_smoothed_inverse_frequency() -> None:
    counts = torch.tensor([99.0, 0.0, 24.0, 3.0])
    w = class_weights(counts, smoothing=1.0, power=0.5)
    raw = [1 / 10, 1 / 1, 1 / 5, 1 / 2]  # (n + 1) ** -0.5
    scale = 126 / (99 * raw[0] + 24 * raw[2] + 3 * raw[3])  # mean weight of a labelled example is 1
    assert w.tolist() == pytest.approx([r * scale for r in raw], rel=1e-5)
    assert float((w * counts).sum() / counts.sum()) == pytest.approx(1.0)
    assert class_weights(counts, power=0.0).tolist() == pytest.approx([1.0] * 4)


def test_sample_weights_favour_rare_values(gen_taxonomy) -> None:
    examples = [LabeledExample(f"a{i}", "tee", {"color": "red", "pattern": "solid"}) for i in range(9)]
    examples.append(LabeledExample("rare", "tee", {"color": "blue", "pattern": "solid"}))
    examples.append(LabeledExample("unlabelled", "tee", {"color": None, "pattern": None}))
    labels = encode_labels(examples, gen_taxonomy)
    model = HeadBank(gen_taxonomy, in_features=8, config=__import__("trainer").ModelConfig(arch="resnet18"))
    w = sample_weights(labels, head_counts(labels, gen_taxonomy), model.head_index, power=1.0)
    assert w[9] > 3 * w[0]
    assert w[10] == pytest.approx(w[10])  # defined (no division by zero)


def test_missing_labels_contribute_no_gradient(gen_taxonomy, tiny_model) -> None:
    torch.manual_seed(0)
    model = TaxonomyNet(tiny_model, gen_taxonomy)
    model.eval()  # no dropout: the check is exact
    examples = [
        LabeledExample("t1", "tee", {"color": "red", "pattern": None}),
        LabeledExample("t2", "tee", {"color": None, "pattern": None}),
        LabeledExample("m1", "mug", {"color": "blue", "size": "large"}),
    ]
    labels = encode_labels(examples, gen_taxonomy)
    assert labels.targets[1].tolist() == [MISSING, MISSING]
    loss_fn = TaxonomyLoss([torch.ones(4), torch.ones(2), torch.ones(4), torch.ones(2)], category_weight=0.0)
    features = torch.randn(3, model.backbone.out_features, requires_grad=True)
    out = model.heads(features, labels.categories)
    loss_fn(out, labels.categories, labels.targets).backward()
    pattern_head = model.heads.attribute_heads[model.heads.head_index[0][1]]
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in pattern_head.parameters())
    assert torch.count_nonzero(features.grad[1]) == 0  # the fully unlabelled row gets nothing
    assert torch.count_nonzero(features.grad[0]) > 0 and torch.count_nonzero(features.grad[2]) > 0


def test_loss_averages_over_labelled_cells_only(gen_taxonomy, tiny_model) -> None:
    model = TaxonomyNet(tiny_model, gen_taxonomy).eval()
    examples = [LabeledExample("t1", "tee", {"color": "red", "pattern": None})]
    labels = encode_labels(examples, gen_taxonomy)
    loss_fn = TaxonomyLoss([torch.ones(4), torch.ones(2), torch.ones(4), torch.ones(2)], gamma=2.0, category_weight=0.0)
    out = model.heads(torch.randn(1, model.backbone.out_features), labels.categories)
    color = next(h for h in out.attributes if h.position == 0)
    expected = focal_loss(color.logits, torch.tensor([0]), gamma=2.0).item()
    assert loss_fn(out, labels.categories, labels.targets).item() == pytest.approx(expected, rel=1e-5)
