"""The competition's metric: per (category, attribute) the harmonic mean of micro- and macro-F1.

Only rows whose true value is present count. Macro-F1 averages over every label that appears in
the truth or in the predictions of those rows (as scikit-learn does). A category's score is the
unweighted mean over its attributes that have at least one true value; the final score is the
unweighted mean over categories that have any.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .schema import NOT_APPLICABLE, Taxonomy

# What a row without a prediction counts as: a label of its own, so it is always wrong.
_NO_PREDICTION = "\x00no prediction"


@dataclass(frozen=True)
class AttributeScore:
    category: str
    attribute: str
    support: int  # rows with a true value
    micro_f1: float
    macro_f1: float
    score: float


@dataclass(frozen=True)
class MetricReport:
    score: float
    per_category: dict[str, float] = field(default_factory=dict)
    per_attribute: list[AttributeScore] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "per_category": dict(self.per_category),
            "per_attribute": [vars(a) for a in self.per_attribute],
        }


def f1_scores(truth: list[str], pred: list[str]) -> tuple[float, float]:
    """(micro-F1, macro-F1) of single-label predictions; micro-F1 is then the accuracy."""
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} true values but {len(pred)} predictions")
    if not truth:
        raise ValueError("no rows to score")
    tp: Counter[str] = Counter()
    n_true = Counter(truth)
    n_pred = Counter(pred)
    for t, p in zip(truth, pred):
        if t == p:
            tp[t] += 1
    micro = sum(tp.values()) / len(truth)
    labels = set(n_true) | set(n_pred)
    macro = sum(2 * tp[lab] / (n_true[lab] + n_pred[lab]) for lab in labels) / len(labels)
    return micro, macro


def harmonic(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def score_attribute(category: str, attribute: str, truth: list[str], pred: list[str]) -> AttributeScore:
    micro, macro = f1_scores(truth, pred)
    return AttributeScore(category, attribute, len(truth), micro, macro, harmonic(micro, macro))


def evaluate(
    truth: Iterable[tuple[str, str, Mapping[str, str | None]]],
    predictions: Mapping[str, Mapping[str, str | None]],
    taxonomy: Taxonomy,
) -> MetricReport:
    """Score ``predictions`` (id -> attribute -> value) against ``truth`` rows (id, category, labels).

    True values that are missing or "not applicable" are left out, as the competition leaves
    out empty cells.
    """
    pairs: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for ident, category, labels in truth:
        cat = taxonomy.category(category)
        guessed = predictions.get(ident, {})
        for attr in cat.attributes:
            value = labels.get(attr.name)
            if value is None or value == NOT_APPLICABLE:
                continue
            t, p = pairs.setdefault((cat.name, attr.name), ([], []))
            t.append(value)
            p.append(guessed.get(attr.name) or _NO_PREDICTION)
    per_attribute = [
        score_attribute(cat.name, attr.name, *pairs[(cat.name, attr.name)])
        for cat in taxonomy.categories
        for attr in cat.attributes
        if (cat.name, attr.name) in pairs
    ]
    per_category: dict[str, float] = {}
    for cat in taxonomy.categories:
        scores = [a.score for a in per_attribute if a.category == cat.name]
        if scores:
            per_category[cat.name] = sum(scores) / len(scores)
    final = sum(per_category.values()) / len(per_category) if per_category else 0.0
    return MetricReport(score=final, per_category=per_category, per_attribute=per_attribute)
