"""What a taxonomy is: categories, their ordered attributes, and each attribute's allowed values."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

# The value a person records when an attribute does not apply to a product or cannot be told
# from the photo. It is a label of its own (kept in the history), but never a class to learn
# and never written to a competition file (there it is an empty cell).
NOT_APPLICABLE = "not applicable"

_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_VALUE_LENGTH = 200


class TaxonomyError(ValueError):
    """A category, attribute or value that the taxonomy does not allow."""


class UnknownCategoryError(TaxonomyError):
    pass


class UnknownAttributeError(TaxonomyError):
    pass


class InvalidValueError(TaxonomyError):
    pass


def normalize(raw: str) -> str:
    """Fold a raw cell into the canonical form that values are compared in.

    Surrounding white space and newlines go (the competition file holds ``"same as saree\\n"``),
    runs of inner white space become one space and case is folded.
    """
    return _WHITESPACE.sub(" ", raw).strip().casefold()


def _shown(text: str, limit: int = 60) -> str:
    """``repr(text)``, shortened: an error message should not echo a megabyte back."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 3]}... ({len(text)} characters)"


def _preview(items: tuple[str, ...], limit: int = 40) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


@dataclass(frozen=True)
class Attribute:
    name: str
    values: tuple[str, ...]
    # How often each value occurs in the data the taxonomy was built from (same order as
    # ``values``); informative only, so it is left out of equality and the fingerprint.
    counts: tuple[int, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.values:
            raise TaxonomyError(f"attribute {self.name!r} has no allowed values")
        if len(set(self.values)) != len(self.values):
            raise TaxonomyError(f"attribute {self.name!r} lists a value twice")
        if self.counts and len(self.counts) != len(self.values):
            raise TaxonomyError(f"attribute {self.name!r}: {len(self.counts)} counts for {len(self.values)} values")
        if NOT_APPLICABLE in self.values:
            raise TaxonomyError(f"attribute {self.name!r}: {NOT_APPLICABLE!r} is reserved, not a value")

    def index(self, value: str) -> int:
        return self.values.index(value)


@dataclass(frozen=True)
class Category:
    name: str
    attributes: tuple[Attribute, ...]

    def __post_init__(self) -> None:
        names = [a.name for a in self.attributes]
        if len(set(names)) != len(names):
            raise TaxonomyError(f"category {self.name!r} lists an attribute twice")

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    def attribute(self, name: str) -> Attribute:
        key = normalize(name) if isinstance(name, str) else name
        for attr in self.attributes:
            if attr.name == key or attr.name == name:
                return attr
        raise UnknownAttributeError(
            f"unknown attribute {_shown(name)} for category {self.name!r}; allowed: {_preview(self.attribute_names)}"
        )


@dataclass(frozen=True)
class Taxonomy:
    categories: tuple[Category, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.categories]
        if not names:
            raise TaxonomyError("a taxonomy needs at least one category")
        if len(set(names)) != len(names):
            raise TaxonomyError("a category is listed twice")

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    @property
    def max_attributes(self) -> int:
        return max(len(c.attributes) for c in self.categories)

    def category(self, name: str) -> Category:
        """The category called ``name``; matched exactly, then ignoring case and spacing."""
        if not isinstance(name, str):
            raise UnknownCategoryError(f"category must be text, got {type(name).__name__}")
        for cat in self.categories:
            if cat.name == name:
                return cat
        key = normalize(name)
        for cat in self.categories:
            if normalize(cat.name) == key:
                return cat
        raise UnknownCategoryError(f"unknown category {_shown(name)}; allowed: {_preview(self.category_names)}")

    def validate_value(self, category: str, attribute: str, raw: str | None) -> str | None:
        """Return the canonical value of ``raw``, or None for a missing cell.

        ``NOT_APPLICABLE`` is accepted for every attribute. Anything else must be one of the
        attribute's allowed values after normalisation, or ``InvalidValueError`` names them.
        """
        attr = self.category(category).attribute(attribute)
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise InvalidValueError(f"{attribute}: value must be text, got {type(raw).__name__}")
        if len(raw) > MAX_VALUE_LENGTH:
            raise InvalidValueError(
                f"{attribute}: value is {len(raw)} characters long; values are at most {MAX_VALUE_LENGTH}"
            )
        if _CONTROL.search(raw):
            raise InvalidValueError(f"{attribute}: value {raw!r} contains control characters")
        value = normalize(raw)
        if value == "":
            return None
        if value == NOT_APPLICABLE or value in attr.values:
            return value
        raise InvalidValueError(
            f"invalid value {raw!r} for {category!r} / {attr.name!r}; allowed: "
            f"{_preview(attr.values)} (or {NOT_APPLICABLE!r})"
        )

    def validate_labels(self, category: str, labels: dict[str, str | None]) -> dict[str, str | None]:
        """Validate a whole attribute -> value mapping for one product of ``category``.

        Attributes that are not given stay missing; all problems are reported together.
        """
        cat = self.category(category)
        clean: dict[str, str | None] = {}
        problems: list[str] = []
        for key, raw in labels.items():
            try:
                attr = cat.attribute(key)
                clean[attr.name] = self.validate_value(cat.name, attr.name, raw)
            except TaxonomyError as exc:
                problems.append(str(exc))
        if problems:
            raise InvalidValueError("; ".join(problems))
        return clean

    # -- identity ------------------------------------------------------------------------------

    def to_dict(self, *, with_counts: bool = True) -> dict[str, Any]:
        cats = []
        for cat in self.categories:
            attrs = []
            for attr in cat.attributes:
                entry: dict[str, Any] = {"name": attr.name, "values": list(attr.values)}
                if with_counts and attr.counts:
                    entry["counts"] = list(attr.counts)
                attrs.append(entry)
            cats.append({"name": cat.name, "attributes": attrs})
        return {"format": "visual-taxonomy/1", "categories": cats}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Taxonomy:
        if not isinstance(data, dict) or "categories" not in data:
            raise TaxonomyError("a taxonomy file needs a top-level 'categories' list")
        cats = []
        for c in data["categories"]:
            attrs = tuple(
                Attribute(
                    name=a["name"],
                    values=tuple(a["values"]),
                    counts=tuple(int(n) for n in a.get("counts", ())),
                )
                for a in c["attributes"]
            )
            cats.append(Category(name=c["name"], attributes=attrs))
        return cls(categories=tuple(cats))

    @property
    def fingerprint(self) -> str:
        """A stable hash of the structure (names, order, values): same taxonomy, same string."""
        canonical = json.dumps(self.to_dict(with_counts=False), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def differences(self, other: Taxonomy) -> list[str]:
        """Human-readable differences between two taxonomies (empty when they are equal)."""
        out: list[str] = []
        mine, theirs = set(self.category_names), set(other.category_names)
        out += [f"category {n!r} only in the first" for n in sorted(mine - theirs)]
        out += [f"category {n!r} only in the second" for n in sorted(theirs - mine)]
        for name in sorted(mine & theirs):
            a, b = self.category(name), other.category(name)
            if a.attribute_names != b.attribute_names:
                out.append(f"{name!r}: attributes {list(a.attribute_names)} vs {list(b.attribute_names)}")
                continue
            for x, y in zip(a.attributes, b.attributes):
                if x.values != y.values:
                    extra, missing = set(x.values) - set(y.values), set(y.values) - set(x.values)
                    detail = f"only in first {sorted(extra)}, only in second {sorted(missing)}"
                    if not extra and not missing:
                        detail = "same values in another order"
                    out.append(f"{name!r} / {x.name!r}: values differ ({detail})")
        if not out and self.category_names != other.category_names:
            out.append("same categories in another order")
        return out
