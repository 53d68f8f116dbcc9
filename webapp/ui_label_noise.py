"""The Admin tab's "Labels that look wrong" section, and the Label tab's once-asked question.

No ``from __future__ import annotations``: Gradio reads the handlers' annotations at run time.
"""

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from . import label_noise, second_look, services
from .auth import AccessDenied
from .context import AppContext
from .errors import friendly
from .services import Viewer

COLUMNS = ["rank", "product", "attribute", "saved", "model says", "its probability", "saved by", "how"]
THUMBNAILS = 24  # the first rows also shown as photos


def table(report: label_noise.SuspiciousReport) -> pd.DataFrame:
    rows = [
        [
            r.rank,
            f"#{r.product_id} {r.category}",
            r.attribute,
            r.saved,
            r.model_value,
            f"{r.model_probability:.0%}",
            r.saved_by or "(import)",
            r.source,
        ]
        for r in report.rows
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def status_markdown(report: label_noise.SuspiciousReport) -> str:
    if report.status == "idle":
        return "_No scan yet: press the button to rank every saved label by how likely it is wrong._"
    if report.status == "running":
        bar = "█" * int(report.progress * 20) + "░" * (20 - int(report.progress * 20))
        return (
            f"**Scanning** {report.products} products with `{report.version}`'s trunk: `{bar}` "
            f"{report.progress:.0%} · {html.escape(report.message)}  \n"
            "_Suggestions go on meanwhile: the scan runs in a process of its own._"
        )
    if report.status == "failed":
        return f"**The scan failed**: {html.escape(report.error or '')}"
    skipped = f"; {report.skipped} photos could not be read" if report.skipped else ""
    return (
        f"**{report.labels} labels of {report.products} products ranked** (finished {report.finished_at}, "
        f"model `{report.version}`, started by {html.escape(report.started_by or '')}){skipped}: "
        f"{report.issues} look wrong to heads that never saw them. Most suspicious first; labels changed "
        "since the scan are left out."
    )


def build_label_noise(ctx: AppContext) -> None:
    """Lay out the section inside the admin tab and wire its events."""
    with gr.Accordion("Labels that look wrong", open=False):
        gr.Markdown(
            "Every saved label is scored by heads trained on the other 4 of 5 folds of the labelled products "
            "(on the active model's trunk embeddings), so none is judged by heads that saw it; confident "
            "learning ranks them (Northcutt et al. 2021)."
        )
        scan_btn = gr.Button("Find labels that look wrong")
        scan_md = gr.Markdown(elem_id="vt-scan-status")
        scan_photos = gr.Gallery(columns=8, height=260, allow_preview=False, label="The most suspicious", visible=False)
        scan_table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), interactive=False, wrap=True, elem_id="vt-suspicious")
        shown_at = gr.State(None)  # the finished scan the table shows
        scan_timer = gr.Timer(2.0)

    def view(report: label_noise.SuspiciousReport, viewer: Viewer) -> dict[Any, Any]:
        pictures = [
            (
                services.product_image(ctx, viewer, r.product_id, thumbnail=True),
                f"#{r.product_id} {r.attribute}: {r.saved} → {r.model_value} ({r.model_probability:.0%})",
            )
            for r in report.rows[:THUMBNAILS]
        ]
        return {
            scan_md: status_markdown(report),
            scan_table: table(report),
            scan_photos: gr.update(value=pictures, visible=bool(pictures)),
            shown_at: report.finished_at,
        }

    outputs = [scan_md, scan_table, scan_photos, shown_at]

    @friendly
    def on_find_suspicious(request: gr.Request) -> dict[Any, Any]:
        viewer = Viewer.of(request)
        return view(label_noise.start_scan(ctx, viewer), viewer)

    def on_scan_tick(shown: str | None, request: gr.Request) -> dict[Any, Any]:
        """The progress line while a scan runs; the table once, when it has finished."""
        try:
            viewer = Viewer.of(request)
            report = label_noise.suspicious_labels(ctx, viewer, limit=0)
        except AccessDenied:
            return {}  # a seller: the tab is hidden, and nothing is theirs to see
        if report.status == "done" and report.finished_at != shown:
            return view(label_noise.suspicious_labels(ctx, viewer), viewer)
        return {scan_md: status_markdown(report)}

    scan_btn.click(on_find_suspicious, None, outputs, api_visibility="private")
    scan_timer.tick(on_scan_tick, [shown_at], outputs, api_visibility="private", show_progress="hidden")


@dataclass
class QuestionBox:
    """The Label tab's question after a suspicious save, and the seller's two answers."""

    row: gr.Row
    text: gr.Markdown
    pending: gr.State  # the questions not answered yet (second_look.Question), first shown

    def show(self, questions: list) -> dict[Any, Any]:
        if not questions:
            return {self.row: gr.update(visible=False), self.pending: []}
        return {
            self.row: gr.update(visible=True),
            self.text: f"**#{questions[0].product_id}**: {questions[0].text}",
            self.pending: list(questions),
        }


def build_question_box(ctx: AppContext) -> QuestionBox:
    """Lay out the question under the form's save buttons; returns it for the save events."""
    with gr.Row(visible=False, elem_id="vt-second-look") as row:
        text = gr.Markdown()
        keep_btn = gr.Button("Keep mine", scale=0, min_width=130, elem_id="vt-keep-mine")
        model_btn = gr.Button(
            "Use the model's value", variant="primary", scale=0, min_width=180, elem_id="vt-take-model"
        )
    box = QuestionBox(row, text, gr.State([]))

    def answered(questions: list, keep: bool, request: gr.Request) -> dict[Any, Any]:
        if not questions:
            return box.show([])
        q = questions[0]
        result = second_look.answer(ctx, Viewer.of(request), q.product_id, q.attribute, q.value, keep)
        if questions[1:]:
            return box.show(questions[1:])
        done = f"Kept “{q.value}”." if keep else f"Saved “{result.value}” instead of “{q.value}”."
        return {row: gr.update(visible=True), text: f"**#{q.product_id}** {q.attribute}: {done}", box.pending: []}

    @friendly
    def on_keep_mine(questions: list, request: gr.Request) -> dict[Any, Any]:
        return answered(questions, True, request)

    @friendly
    def on_take_model(questions: list, request: gr.Request) -> dict[Any, Any]:
        return answered(questions, False, request)

    outputs = [row, text, box.pending]
    keep_btn.click(on_keep_mine, [box.pending], outputs, api_visibility="private")
    model_btn.click(on_take_model, [box.pending], outputs, api_visibility="private")
    return box
