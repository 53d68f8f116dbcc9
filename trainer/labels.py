"""Labels as tensors: category indices and one target column per attribute position.

Targets are (N, A) with A the taxonomy's most attributes per category; column j of a row holds
the value index of its category's j-th attribute, or -1 where the label is missing or "not
applicable" (masked out of the loss, never a class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from taxonomy import NOT_APPLICABLE, InvalidValueError, LabeledExample, Taxonomy

MISSING = -1


@dataclass(frozen=True)
class EncodedLabels:
    categories: torch.Tensor  # (N,) int64
    targets: torch.Tensor  # (N, A) int64, MISSING where unlabelled

    def __len__(self) -> int:
        return int(self.categories.shape[0])


def encode_labels(examples: Sequence[LabeledExample], taxonomy: Taxonomy) -> EncodedLabels:
    """Encode examples; an unknown category or value raises the taxonomy's error naming it."""
    width = taxonomy.max_attributes
    cats = torch.empty(len(examples), dtype=torch.int64)  # (N,)
    targets = torch.full((len(examples), width), MISSING, dtype=torch.int64)  # (N, A)
    order = {name: i for i, name in enumerate(taxonomy.category_names)}
    for i, ex in enumerate(examples):
        cat = taxonomy.category(ex.category)
        cats[i] = order[cat.name]
        for j, attr in enumerate(cat.attributes):
            value = ex.labels.get(attr.name)
            if value is None or value == NOT_APPLICABLE:
                continue
            if value not in attr.values:
                raise InvalidValueError(
                    f"example {ex.id!r}: value {value!r} of {cat.name!r} / {attr.name!r} is not in the "
                    f"taxonomy; retrain with a taxonomy that has it"
                )
            targets[i, j] = attr.values.index(value)
    return EncodedLabels(cats, targets)


def head_counts(labels: EncodedLabels, taxonomy: Taxonomy) -> list[torch.Tensor]:
    """Per attribute head (taxonomy order): how often each value is labelled, (V,) each."""
    counts = []
    for c, cat in enumerate(taxonomy.categories):
        in_cat = labels.targets[labels.categories == c]  # (n, A)
        for j, attr in enumerate(cat.attributes):
            column = in_cat[:, j]
            column = column[column >= 0]
            counts.append(torch.bincount(column, minlength=len(attr.values)).float())  # (V,)
    return counts


def decode_values(taxonomy: Taxonomy, category: int, position: int, indices: torch.Tensor) -> list[str]:
    values = taxonomy.categories[category].attributes[position].values
    return [values[i] for i in indices.tolist()]
