"""Keyboard-first labeling: the numbered chips under each attribute, the shortcut legend, the keys.

Each attribute of the form gets a row of chips (a ``gr.Radio``): the model's top alternatives with
their confidence, numbered 1-9, and "0 not applicable". Picking a chip sets the attribute's
dropdown in the browser (a JavaScript-only event, no round trip), so the value saved is the
dropdown's and provenance follows ``services.save_labels``' rules. The keys themselves live in
``static/keyboard.js``; the chips and the legend are built here, from plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

import db
from taxonomy import NOT_APPLICABLE, Taxonomy

from .context import AppContext
from .form import FormState
from .services import LOW_CONFIDENCE, AttributeSuggestion, Viewer, user_of

MAX_CHIPS = 9  # keys 1-9; 0 is "not applicable"
NA_CHIP = "0 not applicable"
SCRIPT = Path(__file__).with_name("static") / "keyboard.js"

# Element ids the script looks for: the i-th attribute's dropdown and chips, the buttons its keys press.
ATTR_ID = "vt-attr-{}"
SLOT_ID = "vt-slot-{}"
CHIPS_ID = "vt-chips-{}"
SKIP_ID = "vt-skip"
COPY_PREVIOUS_ID = "vt-copy-previous"

LEGEND = (
    '<div id="vt-keys" class="vt-keys">'
    "<b>Keys</b> "
    "<kbd>↑</kbd><kbd>↓</kbd>/<kbd>Tab</kbd> attribute · "
    "<kbd>1</kbd>–<kbd>9</kbd> pick · <kbd>0</kbd> not applicable · "
    "<kbd>/</kbd> search · "
    f"<kbd>Enter</kbd> accept all ≥ {LOW_CONFIDENCE:.0%} · "
    "<kbd>Ctrl+Enter</kbd> save and next · "
    "<kbd>c</kbd> copy previous · <kbd>m</kbd> copy similar · <kbd>s</kbd> skip"
    ' <span id="vt-kbd-status" aria-live="polite"></span>'
    "</div>"
)

CSS = """
.vt-keys { font-size: 13px; color: #374151; padding: 6px 10px; background: #f3f4f6; border-radius: 8px; }
.vt-keys kbd { font: 12px ui-monospace, monospace; padding: 0 5px; border: 1px solid #9ca3af;
  border-bottom-width: 2px; border-radius: 4px; background: #fff; }
#vt-kbd-status { margin-left: 6px; color: #166534; font-weight: 600; }
.vt-attr { gap: 6px !important; padding: 4px; border-radius: 10px; }
.vt-attr:not(:has(.vt-chips)) { display: none !important; }
.vt-chips { padding: 0 2px; }
.vt-chips .wrap { gap: 6px !important; }
.vt-chips label { border-radius: 999px !important; padding: 4px 12px !important; font-size: 14px !important;
  min-height: 0 !important; border: 1px solid #d1d5db !important; cursor: pointer; }
.vt-chips label input[type=radio] { display: none !important; }
.vt-chips label.selected { background: #ffedd5 !important; border-color: #ea580c !important; font-weight: 600; }
.vt-chips label:last-child { color: #6b7280; }
"""


def head() -> str:
    """The ``<script>`` for ``launch(head=...)``, read from its own file when the UI is built."""
    return "<script>\n" + SCRIPT.read_text(encoding="utf-8") + "\n</script>\n"


@dataclass(frozen=True)
class Chips:
    """One attribute's chips: (shown text, value) pairs, the selected value, whether the model is sure."""

    choices: list[tuple[str, str]]
    value: str | None
    sure: bool


def chips(values: tuple[str, ...], suggestion: AttributeSuggestion | None, current: str | None) -> Chips:
    """The numbered alternatives of one attribute, most likely first, then "not applicable".

    Without a suggestion a short list of values (at most nine) is numbered as it stands, so the keys
    work before any model is trained; a longer one is left to the dropdown's search ("/").
    """
    if suggestion is not None:
        odds = dict(suggestion.alternatives)
        odds.setdefault(suggestion.value, suggestion.confidence)
        ranked = sorted(odds.items(), key=lambda kv: -kv[1])
        ranked = [(v, p) for v, p in ranked if v != NOT_APPLICABLE][:MAX_CHIPS]
        shown = [(f"{n} {v} · {p:.0%}", v) for n, (v, p) in enumerate(ranked, start=1)]
    elif len(values) <= MAX_CHIPS:
        shown = [(f"{n} {v}", v) for n, v in enumerate(values, start=1)]
    else:
        shown = []
    choices = [*shown, (NA_CHIP, NOT_APPLICABLE)]
    value = current if current in {v for _, v in choices} else None
    return Chips(choices, value, suggestion is not None and suggestion.confidence >= LOW_CONFIDENCE)


def attribute_box(i: int) -> gr.Column:
    """The i-th attribute's card: its dropdown and its chips, outlined when it has the keys' focus.

    A card whose chips are hidden (past the category's attributes) is hidden by CSS, not by an
    update: Gradio leaves hidden components out of the page, so ``:has`` sees they are gone.
    """
    return gr.Column(elem_id=ATTR_ID.format(i), elem_classes=["vt-attr"])


def chip_box(i: int) -> gr.Radio:
    """The i-th slot's chip row, hidden until ``chip_updates`` fills it; built under its dropdown."""
    return gr.Radio(
        choices=[],
        visible=False,
        interactive=True,
        show_label=False,
        container=False,
        elem_id=CHIPS_ID.format(i),
        elem_classes=["vt-chips"],
    )


def chip_updates(taxonomy: Taxonomy, form: FormState, boxes: list[gr.Radio]) -> dict[Any, Any]:
    """Updates of every chip row for ``form`` (the rows past its attributes are hidden)."""
    category = taxonomy.category(form.category)
    suggested = form.suggestion.attributes if form.suggestion is not None else {}
    updates: dict[Any, Any] = {}
    for i, box in enumerate(boxes):
        if i >= len(form.slots):
            updates[box] = gr.update(visible=False, choices=[], value=None)
            continue
        attribute = form.attributes[i]
        c = chips(category.attribute(attribute).values, suggested.get(attribute), form.slots[i].value)
        updates[box] = gr.update(
            visible=True,
            choices=c.choices,
            value=c.value,
            elem_classes=["vt-chips", "vt-sure" if c.sure else "vt-unsure"],
        )
    return updates


def hidden_chips(boxes: list[gr.Radio]) -> dict[Any, Any]:
    return {box: gr.update(visible=False, choices=[], value=None) for box in boxes}


def wire(slots: list[gr.Dropdown], boxes: list[gr.Radio]) -> None:
    """A picked chip sets its dropdown, and a dropdown's value selects its chip, both in the browser."""
    for i, (slot, box) in enumerate(zip(slots, boxes)):
        box.input(None, [box], [slot], js="(v) => v", api_visibility="private")
        # Tells the keys' script the pick is in: Ctrl+Enter waits for it before saving.
        applied = f"(v) => {{ if (window.vtKeyboard) window.vtKeyboard.applied({i}); return v; }}"
        slot.change(None, [slot], [box], js=applied, api_visibility="private")


def copied_message(source_id: int | None, copied: int) -> str:
    if source_id is None:
        return "Nothing to copy: you have saved no other product of this category yet."
    return f"Copied {copied} value(s) from product {source_id}, saved before; check them and save."


@dataclass(frozen=True)
class Previous:
    """The labels of the seller's previous saved product of a category (None: there is none)."""

    product_id: int | None
    labels: dict[str, str]


def previous_labels(ctx: AppContext, viewer: Viewer, product_id: int | None, category: str) -> Previous:
    """What "c" copies: the known labels of the product of ``category`` the viewer saved last."""
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        cat = ctx.taxonomy.category(category)
        source = db.last_saved_product(session, user, cat.name, exclude=product_id)
        if source is None:
            return Previous(None, {})
        labels = db.current_labels(session, user, ctx.taxonomy, source)
        return Previous(source.id, {a: v for a, v in labels.items() if v is not None})
