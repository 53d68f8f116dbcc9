"""Small neutral records that db/ and trainer/ exchange without knowing each other."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabeledExample:
    """One product: its id, category, the path of its image (if any) and attribute -> value.

    A value of None is a missing label (unknown), never a class. Values are canonical
    (normalised and validated) when the example comes out of a reader of this package.
    """

    id: str
    category: str
    labels: dict[str, str | None] = field(default_factory=dict)
    image_path: str | None = None


@dataclass(frozen=True)
class AttributePrediction:
    value: str
    probability: float
    top_k: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ProductPrediction:
    """What a model says of one product: its category and, per attribute, the top value."""

    id: str
    category: str
    category_probability: float
    attributes: dict[str, AttributePrediction] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str | None]:
        return {name: p.value for name, p in self.attributes.items()}


@dataclass(frozen=True)
class RowError:
    """A row of an input file that was skipped, and why."""

    row: int  # 1-based line number in the file, header being line 1
    id: str | None
    reason: str
