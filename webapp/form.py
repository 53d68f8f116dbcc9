"""The attribute form: how a product payload becomes field updates, and fields become labels.

Pure functions of plain values (no Gradio events here), so they are tested without a server.
The form has a fixed number of slots (the largest category's attribute count); a category
shows its attributes in the first slots, in taxonomy order, and hides the rest.
"""

from __future__ import annotations

import html

from taxonomy import NOT_APPLICABLE, Taxonomy

from .services import LOW_CONFIDENCE

NA_LABEL = "not applicable / can't tell"


def slot_choices(values: tuple[str, ...], suggestion: dict | None) -> list[tuple[str, str]]:
    """Dropdown choices (shown text, value): suggested alternatives first with their odds."""
    odds = {}
    if suggestion is not None:
        odds = {v: p for v, p in suggestion.get("alternatives", [])}
        odds.setdefault(suggestion["value"], suggestion["confidence"])
    ranked = sorted(values, key=lambda v: (-odds.get(v, -1.0), values.index(v)))
    choices = [(f"{v}  ({odds[v]:.0%})" if v in odds else v, v) for v in ranked]
    return [*choices, (NA_LABEL, NOT_APPLICABLE)]


def slot_state(taxonomy: Taxonomy, category: str, attribute: str, labels: dict, suggestion: dict | None) -> dict:
    """Everything one visible slot shows: label, choices, value, hint, and whether it is unsure."""
    attr = taxonomy.category(category).attribute(attribute)
    current = labels.get(attribute)
    value = current if current is not None else (suggestion["value"] if suggestion else None)
    label = attribute.replace("_", " ")
    info = "no suggestion: choose a value"
    low = False
    if suggestion is not None:
        low = suggestion["confidence"] < LOW_CONFIDENCE
        label += f" · {suggestion['confidence']:.0%}" + ("  ⚠ low confidence: please check" if low else "")
        others = [f"{v} {p:.0%}" for v, p in suggestion.get("alternatives", []) if v != suggestion["value"]]
        info = "suggested " + suggestion["value"] + (f"; alternatives: {', '.join(others)}" if others else "")
    if current is not None:
        info = "saved: " + current + ("" if suggestion is None else f" (model: {suggestion['value']})")
    return {
        "label": label,
        "choices": slot_choices(attr.values, suggestion),
        "value": value,
        "info": info,
        "low": low and current is None,
    }


def form_state(taxonomy: Taxonomy, payload: dict, category: str | None = None) -> dict:
    """The whole form for a product payload, optionally re-laid for another category."""
    category = taxonomy.category(category or payload["category"]).name
    suggestion = payload.get("suggestion")
    if suggestion is not None and suggestion["category"] != category:
        suggestion = None  # suggestions were made for another category
    labels = payload["labels"] if category == payload["category"] else {}
    attrs = taxonomy.category(category).attribute_names
    slots = [slot_state(taxonomy, category, a, labels, (suggestion or {}).get("attributes", {}).get(a)) for a in attrs]
    return {"category": category, "attributes": list(attrs), "slots": slots, "suggestion": suggestion}


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


def summary_markdown(payload: dict, form: dict, model_version: str | None) -> str:
    lines = [f"**Product {payload['product_id']}**"]
    suggestion = form["suggestion"]
    if suggestion is not None:
        lines.append(
            f"Category suggested: {html.escape(suggestion['category'])} ({suggestion['category_confidence']:.0%}). "
            f"Fields are prefilled by model `{html.escape(suggestion['model_version'])}`; "
            f"fields marked ⚠ are unsure."
        )
    elif model_version is None:
        lines.append("No trained model yet: fill in the form by hand. Suggestions appear once an admin trains one.")
    else:
        lines.append("No suggestion for this category: fill in the form by hand.")
    saved = sum(v is not None for v in payload["labels"].values())
    if saved:
        lines.append(f"{saved} of {len(payload['attributes'])} attributes saved before.")
    return "\n\n".join(lines)


def labels_from_slots(attributes: list[str], values: list[str | None]) -> dict[str, str | None]:
    """The form's values for the category's attributes (the hidden slots are ignored)."""
    return {attr: (values[i] or None) for i, attr in enumerate(attributes)}
