"""From head outputs to labelled predictions and the competition metric."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from taxonomy import LabeledExample, MetricReport, Taxonomy, evaluate

from .heads import HeadLogits, HeadOutputs

Forward = Callable[[torch.Tensor, torch.Tensor | None], HeadOutputs]


def to_probabilities(out: HeadOutputs) -> HeadOutputs:
    return HeadOutputs(
        out.category_logits.float().softmax(dim=1),  # (B, K)
        out.routing,
        [HeadLogits(h.head, h.category, h.position, h.rows, h.logits.float().softmax(dim=1)) for h in out.attributes],
    )


def mean_of(outputs: Sequence[HeadOutputs]) -> HeadOutputs:
    """Mean of probability outputs routed the same way (views of the same photos: a photo and its
    mirror image, or the photo at several sizes)."""
    first, rest, n = outputs[0], outputs[1:], len(outputs)
    return HeadOutputs(
        sum((o.category_logits for o in rest), first.category_logits) / n,
        first.routing,
        [
            HeadLogits(
                h.head, h.category, h.position, h.rows, sum((o.attributes[j].logits for o in rest), h.logits) / n
            )
            for j, h in enumerate(first.attributes)
        ],
    )


def top_values(out: HeadOutputs, taxonomy: Taxonomy, n_rows: int) -> list[dict[str, str]]:
    """Row -> attribute -> most probable value."""
    rows: list[dict[str, str]] = [{} for _ in range(n_rows)]
    for h in out.attributes:
        attr = taxonomy.categories[h.category].attributes[h.position]
        best = h.logits.argmax(dim=1).tolist()  # (n,)
        for r, v in zip(h.rows.tolist(), best):
            rows[r][attr.name] = attr.values[v]
    return rows


@torch.inference_mode()
def predict_values(
    forward: Forward,
    inputs: torch.Tensor,
    categories: torch.Tensor,
    taxonomy: Taxonomy,
    *,
    batch_size: int = 256,
) -> list[dict[str, str]]:
    """Top value per attribute for every row of ``inputs``, routed by the known ``categories``.

    ``forward(batch, categories)`` returns probabilities (it does any flipping or moving itself).
    """
    out: list[dict[str, str]] = []
    for start in range(0, inputs.shape[0], batch_size):
        batch = inputs[start : start + batch_size]  # (b, ...)
        probs = forward(batch, categories[start : start + batch_size])
        out += top_values(probs, taxonomy, batch.shape[0])
    return out


def score(examples: Sequence[LabeledExample], predicted: dict[str, dict[str, str]], taxonomy: Taxonomy) -> MetricReport:
    """The competition metric; an example without a prediction counts as wrong."""
    return evaluate(((e.id, e.category, e.labels) for e in examples), predicted, taxonomy)


def majority_baseline(
    train: Sequence[LabeledExample], test: Sequence[LabeledExample], taxonomy: Taxonomy
) -> MetricReport:
    """The metric of predicting each attribute's most frequent training value."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for ex in train:
        for k, v in ex.labels.items():
            if v is not None:
                bucket = counts.setdefault((ex.category, k), {})
                bucket[v] = bucket.get(v, 0) + 1
    guess = {key: max(c, key=lambda v: (c[v], v)) for key, c in counts.items()}
    predicted = {
        ex.id: {
            a.name: guess[(ex.category, a.name)]
            for a in taxonomy.category(ex.category).attributes
            if (ex.category, a.name) in guess
        }
        for ex in test
    }
    return score(test, predicted, taxonomy)
