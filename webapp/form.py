"""The attribute form: how a product view becomes field updates, and fields become labels.

Pure functions of plain values (no Gradio here), tested in process in tests/webapp/test_form.py.
The form has a fixed number of slots (the largest category's attribute count); a category
shows its attributes in the first slots, in taxonomy order, and hides the rest.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from taxonomy import NOT_APPLICABLE, Taxonomy

from .services import LOW_CONFIDENCE, AttributeSuggestion, ProductView, Suggestion

NA_LABEL = "not applicable / can't tell"


def percent(p: float) -> str:
    """A confidence as the UI shows it everywhere (form, review queue), rounded one way."""
    return f"{p:.0%}"


@dataclass(frozen=True)
class Slot:
    """What one visible slot shows: label, choices, value, hint, and whether it is unsure."""

    label: str
    choices: list[tuple[str, str]]
    value: str | None
    info: str
    low: bool


@dataclass(frozen=True)
class FormState:
    category: str
    attributes: list[str]
    slots: list[Slot]
    suggestion: Suggestion | None


def slot_choices(values: tuple[str, ...], suggestion: AttributeSuggestion | None) -> list[tuple[str, str]]:
    """Dropdown choices (shown text, value): suggested alternatives first with their odds."""
    odds: dict[str, float] = {}
    if suggestion is not None:
        odds = dict(suggestion.alternatives)
        odds.setdefault(suggestion.value, suggestion.confidence)
    ranked = sorted(values, key=lambda v: (-odds.get(v, -1.0), values.index(v)))
    choices = [(f"{v}  ({odds[v]:.0%})" if v in odds else v, v) for v in ranked]
    return [*choices, (NA_LABEL, NOT_APPLICABLE)]


def slot_state(
    taxonomy: Taxonomy,
    category: str,
    attribute: str,
    labels: dict[str, str | None],
    suggestion: AttributeSuggestion | None,
) -> Slot:
    """Everything one visible slot shows: label, choices, value, hint, and whether it is unsure."""
    attr = taxonomy.category(category).attribute(attribute)
    current = labels.get(attribute)
    value = current if current is not None else (suggestion.value if suggestion else None)
    label = attribute.replace("_", " ")
    info = "no suggestion: choose a value"
    low = False
    if suggestion is not None:
        low = suggestion.confidence < LOW_CONFIDENCE
        label += f" · {suggestion.confidence:.0%}" + ("  ⚠ low confidence: please check" if low else "")
        others = [f"{v} {p:.0%}" for v, p in suggestion.alternatives if v != suggestion.value]
        info = "suggested " + suggestion.value + (f"; alternatives: {', '.join(others)}" if others else "")
    if current is not None:
        info = "saved: " + current + ("" if suggestion is None else f" (model: {suggestion.value})")
    return Slot(label, slot_choices(attr.values, suggestion), value, info, low and current is None)


def form_state(taxonomy: Taxonomy, view: ProductView, category: str | None = None) -> FormState:
    """The whole form for a product view, optionally re-laid for another category."""
    category = taxonomy.category(category or view.category).name
    suggestion = view.suggestion
    if suggestion is not None and suggestion.category != category:
        suggestion = None  # suggestions were made for another category
    labels = view.labels if category == view.category else {}
    attrs = taxonomy.category(category).attribute_names
    per_attribute = suggestion.attributes if suggestion is not None else {}
    slots = [slot_state(taxonomy, category, a, labels, per_attribute.get(a)) for a in attrs]
    return FormState(category, list(attrs), slots, suggestion)


RANDOM_INIT_NOTE = (
    "started from random weights, not from an ImageNet-pretrained trunk (none could be had): "
    "its suggestions are weaker until it is trained on more labels"
)


def model_line(status: dict) -> str:
    """The active model in one line (Markdown), saying when it started from random weights."""
    if not status.get("active"):
        return "no trained model yet"
    line = f"model `{html.escape(status['active'])}`"
    if status.get("random_init"):
        line += f" (⚠ {RANDOM_INIT_NOTE})"
    return line


def summary_markdown(view: ProductView, form: FormState, model_version: str | None) -> str:
    lines = [f"**Product {view.product_id}**"]
    suggestion = form.suggestion
    if suggestion is not None:
        # A category given to the model (chosen at upload, or corrected) comes back with
        # probability 1: then the model did not suggest it and the line would mislead.
        if suggestion.category_confidence < 1.0:
            lines.append(
                f"Category suggested: {html.escape(suggestion.category)} ({percent(suggestion.category_confidence)})."
            )
        lines.append(
            f"Fields are prefilled by model `{html.escape(suggestion.model_version)}` for "
            f"{html.escape(suggestion.category)} (average confidence {percent(suggestion.mean_confidence)}); "
            "fields marked ⚠ are unsure."
        )
    elif model_version is None:
        lines.append("No trained model yet: fill in the form by hand. Suggestions appear once an admin trains one.")
    else:
        lines.append("No suggestion for this category: fill in the form by hand.")
    lines.append(completeness_line(view))
    return "\n\n".join(lines)


def completeness_line(view: ProductView) -> str:
    """How much of the product a person has confirmed ("not applicable" counts as an answer)."""
    total = len(view.attributes)
    if view.ready:
        return f"**Ready**: all {total} attributes confirmed."
    share = view.answered / total if total else 1.0
    return f"Completeness: {view.answered} of {total} attributes confirmed ({percent(share)})."


def labels_from_slots(attributes: list[str], values: list[str | None]) -> dict[str, str | None]:
    """The form's values for the category's attributes (the hidden slots are ignored)."""
    return {attr: (values[i] or None) for i, attr in enumerate(attributes)}


@dataclass(frozen=True)
class BatchRow:
    """One file of the seller's upload batch as the batch table shows it."""

    product_id: int | None  # None: the file was refused
    file: str
    status: str  # "new", "already uploaded", "saved", "save undone" or "refused"


BATCH_COLUMNS = ["", "product", "file", "status"]
CURRENT_MARK = "▶"


def batch_rows(rows: list[BatchRow], current: int | None) -> list[list[object]]:
    """The batch table's cells, the product open in the form marked."""
    return [
        [
            CURRENT_MARK if r.product_id is not None and r.product_id == current else "",
            "" if r.product_id is None else r.product_id,
            r.file,
            r.status,
        ]
        for r in rows
    ]


def mark_saved(rows: list[BatchRow], product_id: int, status: str = "saved") -> list[BatchRow]:
    """The batch with ``product_id``'s row in ``status`` ("saved", or "save undone" after an undo)."""
    return [BatchRow(r.product_id, r.file, status) if r.product_id == product_id else r for r in rows]


def save_message(product_id: int, events: int, sources: dict[str, str]) -> str:
    """What the seller reads after a save; an empty form says what to do rather than "0 changes"."""
    if not events:  # nothing is written only when every field was empty and unknown before
        return (
            f"Nothing saved for product {product_id}: every field is empty. Choose a value for each "
            f"attribute (or '{NA_LABEL}') and save again."
        )
    return f"Saved product {product_id}: {events} change(s) ({', '.join(sorted(set(sources.values())))})."
