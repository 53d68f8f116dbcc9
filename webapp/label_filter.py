"""The "attribute=value" filter of My products, checked against the taxonomy.

Pure functions of the taxonomy (no database): a typo is told apart from "no product matches"
by an error that names what is allowed.
"""

from __future__ import annotations

from taxonomy import (
    NOT_APPLICABLE,
    InvalidValueError,
    Taxonomy,
    TaxonomyError,
    UnknownAttributeError,
    normalize,
)

EXAMPLE = "color=red; pattern=striped"


def parse_label_filter(taxonomy: Taxonomy, text: str, category: str | None = None) -> tuple[tuple[str, str], ...]:
    """``"attribute=value; attribute=value"`` as validated (attribute, value) pairs (all must hold).

    The attribute must be one of ``category``'s (or of any category when none is chosen) and the
    value one it allows there (or ``not applicable``); otherwise ``TaxonomyError`` says what is.
    """
    pairs: list[tuple[str, str]] = []
    for part in (p.strip() for p in str(text or "").split(";")):
        if not part:
            continue
        if "=" not in part:
            raise TaxonomyError(f"write the label filter as attribute=value (for example {EXAMPLE}), got {part!r}")
        raw_attr, raw_value = (s.strip() for s in part.split("=", 1))
        cats = [taxonomy.category(category)] if category else list(taxonomy.categories)
        having = [c for c in cats if normalize(raw_attr) in c.attribute_names or raw_attr in c.attribute_names]
        if not having:
            names = sorted({a for c in cats for a in c.attribute_names})
            scope = f"category {cats[0].name!r}" if category else "any category"
            raise UnknownAttributeError(f"unknown attribute {raw_attr!r} for {scope}; allowed: {', '.join(names)}")
        attr = having[0].attribute(raw_attr).name
        value = normalize(raw_value)
        allowed = sorted({v for c in having for v in c.attribute(attr).values})
        if value != NOT_APPLICABLE and value not in allowed:
            raise InvalidValueError(
                f"invalid value {raw_value!r} for {attr!r}; allowed: {', '.join(allowed)} (or {NOT_APPLICABLE!r})"
            )
        pairs.append((attr, value))
    return tuple(pairs)
