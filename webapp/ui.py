"""The Gradio layout: it only wires the handlers of ``services`` and ``form`` to components.

No ``from __future__ import annotations`` here: Gradio reads the handlers' annotations at run
time to find the ``gr.Request`` parameter.
"""

import html
import logging
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from . import completeness, keyboard, learning, second_look, services, similar
from .api import register_api
from .context import AppContext
from .errors import USER_ERRORS, friendly
from .form import (
    BATCH_COLUMNS,
    BatchRow,
    batch_rows,
    form_state,
    labels_from_slots,
    mark_saved,
    model_line,
    percent,
    save_message,
    summary_markdown,
)
from .services import ProductView, ServiceError, Suggestion, Viewer
from .ui_admin import build_admin
from .ui_label_noise import build_question_box
from .undo import undo_last_save

log = logging.getLogger(__name__)

AUTO = "(let the model decide)"
ANY = "(any)"
HISTORY_COLUMNS = ["when", "who", "attribute", "value", "how", "suggested by"]
MIN_SLOTS = 10

CSS = (
    """
.vt-low { border: 2px solid #e8590c !important; border-radius: 8px; background: #fff4e6 !important; }
.vt-low label span { color: #c2410c; font-weight: 600; }
#vt-save-next { min-height: 48px; }
#vt-signed-out { position: fixed; top: 0; left: 0; right: 0; z-index: 10000; padding: 14px; text-align: center;
  font-size: 17px; background: #fff4e6; border-bottom: 3px solid #e8590c; color: #7c2d12; }
#vt-logout { max-width: 120px; }
#vt-similar-note p { margin: 4px 0; }
#vt-similar .caption-label { white-space: normal; max-width: none; left: var(--block-label-margin); font-size: 12px; }
"""
    + keyboard.CSS
)

# The keys of keyboard-first labeling (Ctrl+Enter is "Save and next") are in static/keyboard.js.
# A request refused because the sign-in is gone (logged out in another tab, or lapsed) says so in
# a banner with a way back, instead of Gradio's bare "Error".
HEAD = """
<script>
(() => {
  const original = window.fetch;
  window.fetch = async (...args) => {
    const response = await original(...args);
    if (response.status === 401 && document.body && !document.getElementById('vt-signed-out')) {
      const banner = document.createElement('div');
      banner.id = 'vt-signed-out';
      banner.setAttribute('role', 'alert');
      banner.innerHTML = 'Signed out: <a href="./">sign in again</a>. What you did after that was not saved.';
      document.body.appendChild(banner);
    }
    return response;
  };
})();
</script>
""" + keyboard.head()


def discard_sent(path: str | None) -> None:
    """After an export was handed to Gradio (which keeps its own copy), remove its folder."""
    if path:
        services.discard_export(path)


def build(ctx: AppContext) -> gr.Blocks:
    # Handlers read ctx.taxonomy when they run, so an adopted taxonomy takes effect without a restart;
    # the competition layout's attr_1..attr_10 bound the slots a dataset's taxonomy can need.
    categories = list(ctx.taxonomy.category_names)
    n_slots = max(ctx.taxonomy.max_attributes, MIN_SLOTS)

    def render(view: ProductView | None, category: str | None = None) -> dict[Any, Any]:
        """Updates of the form (the photo is left as it is, except for an empty form); the last
        save's message goes, and ``shown`` keeps the suggestion the form shows, for provenance."""
        if view is None:
            return {
                photo: None,
                summary: "Upload a photo to start.",
                category_box: gr.update(value=None),
                form_attrs: [],
                current: None,
                shown: None,
                save_msg: "",
                history_table: pd.DataFrame(columns=HISTORY_COLUMNS),
                **{slot: gr.update(visible=False, value=None) for slot in slots},
                **keyboard.hidden_chips(chips),
            }
        form = form_state(ctx.taxonomy, view, category)
        active = ctx.models.active
        updates: dict[Any, Any] = {}
        for i, slot in enumerate(slots):
            if i < len(form.slots):
                s = form.slots[i]
                updates[slot] = gr.update(
                    visible=True,
                    label=s.label,
                    choices=s.choices,
                    value=s.value,
                    info=s.info,
                    elem_classes=["vt-low"] if s.low else [],
                )
            else:
                updates[slot] = gr.update(visible=False, value=None, choices=[], elem_classes=[])
        return {
            summary: summary_markdown(view, form, active.version_id if active else None),
            category_box: gr.update(value=form.category, choices=list(ctx.taxonomy.category_names)),
            form_attrs: form.attributes,
            current: view.product_id,
            shown: form.suggestion,
            save_msg: "",
            history_table: pd.DataFrame(columns=HISTORY_COLUMNS),
            **updates,
            **keyboard.chip_updates(ctx.taxonomy, form, chips),
        }

    def show(view: ProductView, image: Image.Image | None) -> dict[Any, Any]:
        return {**render(view), photo: image}

    def open_product(viewer: Viewer, product_id: int | None) -> dict[Any, Any]:
        if product_id is None:
            return render(None)
        view = services.get_product(ctx, viewer, product_id)
        return {
            **show(view, services.product_image(ctx, viewer, product_id)),
            history_table: history_frame(viewer, product_id),
        }

    def history_frame(viewer: Viewer, product_id: int) -> pd.DataFrame:
        """Who changed what, when, and from which suggestion; newest first."""
        rows = [
            [e["at"].replace("T", " ")[:16], e["user"], e["attribute"], e["value"], e["source"], e["model_version"]]
            for e in reversed(services.history(ctx, viewer, product_id))
        ]
        return pd.DataFrame(rows, columns=HISTORY_COLUMNS)

    def batch_view(rows: list[BatchRow], product_id: int | None) -> pd.DataFrame:
        return pd.DataFrame(batch_rows(rows, product_id), columns=BATCH_COLUMNS)

    # Gradio keeps uploads and the photos it shows in its cache under unguessable names; clearing
    # files older than an hour keeps them from lingering there.
    with gr.Blocks(title="Visual Taxonomy", delete_cache=(1800, 3600)) as demo:
        with gr.Row():
            header = gr.Markdown("Visual Taxonomy", elem_id="vt-header")
            # In place, not a link: Gradio's Markdown opens links in a new tab, leaving this one
            # "signed in" until its next action fails.
            logout_btn = gr.Button("Log out", size="sm", scale=0, min_width=100, elem_id="vt-logout")
        batch = gr.State([])
        queue_ids = gr.State([])
        form_attrs = gr.State([])
        current = gr.State(None)
        shown = gr.State(None)  # the suggestion the form shows (a services.Suggestion), for provenance
        skipped = gr.State([])  # products skipped ("s") in this session: not offered again
        header_timer = gr.Timer(5.0)
        with gr.Tabs() as tabs:
            with gr.Tab("Label", id="label"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=320):
                        files = gr.File(
                            label="Product photos (one or many)",
                            file_count="multiple",
                            file_types=["image"],
                            type="filepath",
                        )
                        upload_category = gr.Dropdown([AUTO, *categories], value=AUTO, label="Category of these photos")
                        upload_btn = gr.Button("Upload and suggest", variant="primary")
                        upload_report = gr.Markdown(elem_id="vt-upload-report")
                        batch_table = gr.Dataframe(
                            pd.DataFrame(columns=BATCH_COLUMNS),
                            interactive=False,
                            wrap=True,
                            column_widths=["8%", "24%", "40%", "28%"],  # "product" on one line
                            label="This batch (click a row to open it)",
                            elem_id="vt-batch",
                        )
                    with gr.Column(scale=2):
                        with gr.Row():
                            photo = gr.Image(label="Photo", interactive=False, height=300, type="pil")
                            with gr.Column():
                                summary = gr.Markdown("Upload a photo to start.", elem_id="vt-summary")
                                category_box = gr.Dropdown(
                                    categories, label="Category", value=None, elem_id="vt-category"
                                )
                        gr.HTML(keyboard.LEGEND)
                        slots, chips = [], []
                        for i in range(n_slots):  # each attribute's dropdown, its numbered chips below
                            with keyboard.attribute_box(i):
                                slots.append(
                                    gr.Dropdown(visible=False, interactive=True, elem_id=keyboard.SLOT_ID.format(i))
                                )
                                chips.append(keyboard.chip_box(i))
                        with gr.Row():
                            save_btn = gr.Button("Save", elem_id="vt-save")
                            undo_btn = gr.Button("Undo last save", elem_id="vt-undo")
                            skip_btn = gr.Button("Skip  (s)", elem_id=keyboard.SKIP_ID, size="md")
                            copy_previous_btn = gr.Button(
                                "Copy previous  (c)", elem_id=keyboard.COPY_PREVIOUS_ID, size="md"
                            )
                            next_btn = gr.Button(
                                "Save and next  (Ctrl+Enter)", variant="primary", elem_id="vt-save-next", scale=2
                            )
                        save_msg = gr.Markdown(elem_id="vt-save-msg")
                        question_box = build_question_box(ctx)  # asked once after a suspicious save
                        learning_md = gr.Markdown(elem_id="vt-learning")
                        with gr.Accordion("History of this product", open=False):
                            history_table = gr.Dataframe(
                                pd.DataFrame(columns=HISTORY_COLUMNS),
                                interactive=False,
                                wrap=True,
                                elem_id="vt-history",
                            )
                    with gr.Column(scale=1, min_width=260, elem_id="vt-similar-panel"):
                        # Similar confirmed products (webapp/similar.py); filled when a product opens.
                        similar_note = gr.Markdown(elem_id="vt-similar-note")
                        duplicate_btn = gr.Button("Open it", visible=False, size="sm", elem_id="vt-open-duplicate")
                        similar_gallery = gr.Gallery(
                            label="Similar products you confirmed",
                            columns=2,
                            height=390,
                            object_fit="contain",
                            allow_preview=False,
                            elem_id="vt-similar",
                        )
                        copy_similar_btn = gr.Button(
                            "Copy attributes of the most similar", size="md", elem_id="vt-copy-similar"
                        )
                        similar_ids = gr.State([])
                        duplicate_id = gr.State(None)
                        # product id -> {attribute: value} copied into its form, for provenance. Keyed by
                        # product: a copy made right after a product opened cannot be wiped by a reset
                        # that arrives late, and a copy into another product's form never counts.
                        copied = gr.State({})
            with gr.Tab("Review queue", id="queue") as queue_tab:
                gr.Markdown(
                    "Your products with suggestions but no confirmed labels, least confident first "
                    "(the percentage is the suggestion's average confidence). Choose one to open it in the form."
                )
                refresh_queue = gr.Button("Refresh")
                queue_note = gr.Markdown(elem_id="vt-queue-note")
                gallery = gr.Gallery(
                    columns=8, height=480, object_fit="contain", allow_preview=False, label="Waiting for review"
                )
            with gr.Tab("My products", id="products") as products_tab:
                with gr.Row():
                    products_category = gr.Dropdown([ANY, *categories], value=ANY, label="Category")
                    products_status = gr.Dropdown(
                        [ANY, *services.STATUS_FILTERS], value=ANY, label="Status", elem_id="vt-products-status"
                    )
                    products_search = gr.Textbox(label="Search: product id or a label value", scale=2)
                with gr.Row():
                    products_labels = gr.Textbox(
                        label="Labels (attribute=value; ...)",
                        placeholder="color=red; pattern=striped",
                        scale=2,
                        elem_id="vt-products-labels",
                    )
                    products_below = gr.Number(
                        0,
                        label="Suggestion confidence below (%)",
                        info="a field of the newest suggestion below this; 0: any",
                        minimum=0,
                        maximum=100,
                        elem_id="vt-products-below",
                    )
                    refresh_products = gr.Button("Search", scale=0, min_width=100, elem_id="vt-products-search")
                products_note = gr.Markdown(elem_id="vt-products-note")
                products_gallery = gr.Gallery(
                    columns=6,
                    height=560,
                    object_fit="contain",
                    allow_preview=False,
                    label="Your products (click one to open it in the form)",
                    elem_id="vt-products",
                )
                with gr.Row():
                    prev_page = gr.Button("← Previous page", scale=0, min_width=160)
                    next_page = gr.Button("Next page →", scale=0, min_width=160)
                products_page = gr.State(1)
                products_ids = gr.State([])
                with gr.Row():
                    export_mine = gr.Button("Export my labels (train.csv layout)")
                    export_file = gr.File(label="Download", interactive=False)
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                build_admin(ctx)
        form_outputs = [
            *[photo, summary, category_box, form_attrs, current, shown, save_msg, history_table],
            *slots,
            *chips,
        ]
        keyboard.wire(slots, chips)

        # -- events: seller ------------------------------------------------------------------

        logout_btn.click(None, None, None, js="() => { window.location.assign('logout'); }")

        def header_text(request: gr.Request) -> str:
            name, role = services.signed_in(ctx, Viewer.of(request))
            model = model_line(services.model_status(ctx))
            return f"## Visual Taxonomy\nSigned in as **{html.escape(name)}** ({role}) · {model}"

        @friendly
        def on_load(request: gr.Request) -> dict[Any, Any]:
            _, role = services.signed_in(ctx, Viewer.of(request))
            # The categories as of now: an adopted taxonomy shows without a restart.
            choices = [AUTO, *ctx.taxonomy.category_names]
            return {
                header: header_text(request),
                admin_tab: gr.update(visible=role == "admin"),
                upload_category: gr.update(choices=choices),
            }

        demo.load(on_load, None, [header, admin_tab, upload_category], api_visibility="private")
        # The active model changes under everyone's feet (an admin activates another): keep it current.
        header_timer.tick(friendly(header_text), None, [header], api_visibility="private", show_progress="hidden")

        def on_learning(request: gr.Request) -> str:
            """What the seller's own corrections did (or wait for): shown on load and after saves."""
            try:
                return learning.my_corrections_line(ctx, Viewer.of(request))
            except USER_ERRORS:  # signed out: the save's own message says so
                return ""

        demo.load(on_learning, None, [learning_md], api_visibility="private")

        @friendly
        def on_upload(paths: list[str] | None, chosen: str, request: gr.Request) -> dict[Any, Any]:
            if not paths:
                raise ServiceError("choose one or more photos first")
            outcomes = services.upload(ctx, Viewer.of(request), list(paths), None if chosen == AUTO else chosen)
            ok = [o.result for o in outcomes if o.result is not None]
            rows = [
                BatchRow(o.result.view.product_id, o.file, "new" if o.result.created else "already uploaded")
                if o.result is not None
                else BatchRow(None, o.file, "refused")
                for o in outcomes
            ]
            refused = [
                f"- **{html.escape(o.file)}** refused: {html.escape(o.error or '')}" for o in outcomes if o.error
            ]
            looks_like = similar.upload_notes(ctx, Viewer.of(request), [(r.view.product_id, r.created) for r in ok])
            report = "\n".join(
                [
                    f"{len(ok)} photo(s) ready" + (f", {len(refused)} refused:" if refused else "."),
                    *refused,
                    *(f"- ⚠ {html.escape(line)}" for line in looks_like),
                ]
            )
            first = show(ok[0].view, ok[0].photo) if ok else render(None)
            return {
                batch: rows,
                upload_report: report,
                batch_table: batch_view(rows, ok[0].view.product_id if ok else None),
                **first,
            }

        upload_btn.click(
            on_upload,
            [files, upload_category],
            [batch, upload_report, batch_table, *form_outputs],
            api_visibility="private",
        )

        @friendly
        def on_category(new: str, product_id: int | None, request: gr.Request) -> dict[Any, Any]:
            if product_id is None or not new:
                return {}
            # The model suggests for any category: ask it for the corrected one and prefill again.
            return render(services.suggest_for(ctx, Viewer.of(request), product_id, new))

        category_box.input(on_category, [category_box, current], form_outputs, api_visibility="private")

        def do_save(data: dict[Any, Any], viewer: Viewer) -> tuple[str, list[BatchRow], dict[Any, Any]]:
            """Save the form; ``data`` maps the form's components to their values. Returns the
            message, the batch with the product marked saved and the question box's updates."""
            product_id = data[current]
            if product_id is None:
                raise ServiceError("nothing to save: upload a photo or open one from the review queue")
            values = [data[slot] for slot in slots]
            seen: Suggestion | None = data[shown]
            labels = labels_from_slots(data[form_attrs], values)
            checked = second_look.save_and_ask(
                ctx,
                viewer,
                product_id,
                data[category_box],
                labels,
                shown=seen,
                copied=(data[copied] or {}).get(product_id),
            )
            result = checked.saved
            rows = data[batch] or []
            if result.events:
                rows = mark_saved(rows, product_id)
            return (
                save_message(result.product_id, result.events, result.sources),
                rows,
                question_box.show(list(checked.questions)),
            )

        form_inputs = {current, category_box, form_attrs, batch, shown, skipped, copied, *slots}

        @friendly
        def on_save(data: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
            viewer = Viewer.of(request)
            message, rows, asked = do_save(data, viewer)
            return {
                **asked,
                save_msg: message,
                batch: rows,
                batch_table: batch_view(rows, data[current]),
                history_table: history_frame(viewer, data[current]),
            }

        asked_outputs = [question_box.row, question_box.text, question_box.pending]
        save_btn.click(
            on_save,
            form_inputs,
            [save_msg, batch, batch_table, history_table, *asked_outputs],
            api_visibility="private",
        ).then(on_learning, None, [learning_md], api_visibility="private")

        def following_ids(viewer: Viewer, rows: list[BatchRow], product_id: int | None, passed: list[int]) -> list[int]:
            """The products to open after ``product_id``: the batch's later unsaved ones, else the
            review queue's, leaving out the ones ``passed`` (skipped) in this session."""
            ids = [r.product_id for r in rows if r.product_id is not None]
            later = ids[ids.index(product_id) + 1 :] if product_id in ids else []
            # Only products nobody has saved yet: one saved with "Save" earlier is not shown again.
            found = [i for i in services.unsaved(ctx, viewer, later) if i not in passed]
            if not found:
                queued = [q.product_id for q in services.review_queue(ctx, viewer, limit=5 + len(passed))]
                found = [q for q in queued if q != product_id and q not in passed]
            return found

        @friendly
        def on_save_next(data: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
            viewer = Viewer.of(request)
            message, rows, asked = do_save(data, viewer)
            product_id = data[current]
            following = following_ids(viewer, rows, product_id, data[skipped] or [])
            if not following:
                done = render(None)
                return {
                    **done,
                    **asked,
                    save_msg: message + " That was the last one: upload more photos.",
                    batch: rows,
                    batch_table: batch_view(rows, None),
                }
            return {
                **open_product(viewer, following[0]),
                **asked,
                save_msg: message,
                batch: rows,
                batch_table: batch_view(rows, following[0]),
            }

        @friendly
        def on_undo(product_id: int | None, rows: list[BatchRow], request: gr.Request) -> dict[Any, Any]:
            if product_id is None:
                raise ServiceError("nothing to undo: open a product first (upload one, or pick it in My products)")
            viewer = Viewer.of(request)
            undone = undo_last_save(ctx, viewer, product_id)
            rows = mark_saved(rows or [], product_id, "save undone")  # the batch table no longer says "saved"
            return {
                **open_product(viewer, product_id),
                save_msg: undone.message,
                batch: rows,
                batch_table: batch_view(rows, product_id),
            }

        undo_btn.click(on_undo, [current, batch], [batch, batch_table, *form_outputs], api_visibility="private").then(
            on_learning, None, [learning_md], api_visibility="private"
        )

        next_btn.click(
            on_save_next, form_inputs, [batch, batch_table, *form_outputs, *asked_outputs], api_visibility="private"
        ).then(on_learning, None, [learning_md], api_visibility="private")

        @friendly
        def on_skip(
            rows: list[BatchRow], product_id: int | None, passed: list[int], request: gr.Request
        ) -> dict[Any, Any]:
            """The next product without saving this one (which the queue then leaves out this session)."""
            if product_id is None:
                return {}
            viewer = Viewer.of(request)
            passed = [*(passed or []), product_id]
            after = following_ids(viewer, rows or [], product_id, passed)
            if not after:
                return {save_msg: f"Skipped product {product_id}; nothing else is waiting.", skipped: passed}
            return {
                **open_product(viewer, after[0]),
                save_msg: f"Skipped product {product_id} without saving.",
                skipped: passed,
                batch_table: batch_view(rows or [], after[0]),
            }

        skip_btn.click(
            on_skip, [batch, current, skipped], [skipped, batch_table, *form_outputs], api_visibility="private"
        )

        @friendly
        def on_copy_previous(data: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
            """The labels of the seller's previous saved product of this category, into the form."""
            if data[current] is None or not data[category_box]:
                return {}
            previous = keyboard.previous_labels(ctx, Viewer.of(request), data[current], data[category_box])
            attrs = data[form_attrs] or []
            # Copied values are the seller's choice (provenance 'seller'), as with a similar product's.
            taken = {a: previous.labels[a] for a in attrs if a in previous.labels}
            fills = {slots[i]: taken[a] for i, a in enumerate(attrs) if a in taken}
            return {
                **fills,
                copied: {data[current]: taken},
                save_msg: keyboard.copied_message(previous.product_id, len(fills)),
            }

        copy_previous_btn.click(
            on_copy_previous, {current, category_box, form_attrs}, [save_msg, copied, *slots], api_visibility="private"
        )

        @friendly
        def on_batch_pick(rows: list[BatchRow], evt: gr.SelectData, request: gr.Request) -> dict[Any, Any]:
            row = rows[evt.index[0]] if evt.index and evt.index[0] < len(rows) else None
            if row is None or row.product_id is None:
                return {}  # a refused file: nothing to open (the report says why)
            return {**open_product(Viewer.of(request), row.product_id), batch_table: batch_view(rows, row.product_id)}

        batch_table.select(on_batch_pick, [batch], [batch_table, *form_outputs], api_visibility="private")

        @friendly
        def on_queue(request: gr.Request) -> dict[Any, Any]:
            viewer = Viewer.of(request)
            items = services.review_queue(ctx, viewer, limit=60)
            pictures = []
            for item in items:
                image = services.product_image(ctx, viewer, item.product_id, thumbnail=True)
                caption = f"#{item.product_id} {item.category} · {percent(item.mean_confidence)}"
                pictures.append((image, caption))
            note = (
                f"{len(items)} product(s) waiting."
                if items
                else "Nothing is waiting for review: every product with a suggestion has saved labels. "
                "Upload more photos in the Label tab."
            )
            return {
                gallery: gr.update(value=pictures, visible=bool(items)),
                queue_ids: [i.product_id for i in items],
                queue_note: note,
            }

        refresh_queue.click(on_queue, None, [gallery, queue_ids, queue_note], api_visibility="private")
        queue_tab.select(on_queue, None, [gallery, queue_ids, queue_note], api_visibility="private")

        @friendly
        def on_pick(ids: list[int], evt: gr.SelectData, request: gr.Request) -> dict[Any, Any]:
            return {**open_product(Viewer.of(request), ids[evt.index]), tabs: gr.Tabs(selected="label")}

        gallery.select(on_pick, [queue_ids], [*form_outputs, tabs], api_visibility="private")

        def list_products(
            category: str, status: str, search: str, labels: str, below: float | None, page: int, request: gr.Request
        ) -> dict[Any, Any]:
            viewer = Viewer.of(request)
            found = services.product_page(
                ctx,
                viewer,
                category=None if category in (ANY, None) else category,
                status=None if status in (ANY, None) else status,
                search=search or "",
                labels=labels or "",
                confidence_below=below,
                page=page,
            )
            pictures = [
                (
                    services.product_image(ctx, viewer, r.product_id, thumbnail=True),
                    f"#{r.product_id} {r.category} · {r.status} · "
                    + ("ready" if r.ready else f"{r.labelled}/{r.attributes} confirmed ({percent(r.completeness)})"),
                )
                for r in found.rows
            ]
            note = (
                f"{found.total} product(s); page {found.page} of {found.pages}."
                if found.total
                else "No product matches: change the filters, or upload photos in the Label tab."
            )
            note = completeness.summary_line(ctx, viewer) + "\n\n" + note
            return {
                products_gallery: gr.update(value=pictures, visible=bool(pictures)),
                products_ids: [r.product_id for r in found.rows],
                products_page: found.page,
                products_note: note,
            }

        product_filters = [products_category, products_status, products_search, products_labels, products_below]
        product_outputs = [products_gallery, products_ids, products_page, products_note]

        @friendly
        def on_products(
            cat: str, status: str, text: str, labels: str, below: float | None, request: gr.Request
        ) -> dict:
            return list_products(cat, status, text, labels, below, 1, request)

        @friendly
        def on_prev_page(
            cat: str, status: str, text: str, labels: str, below: float | None, page: int, request: gr.Request
        ) -> dict:
            return list_products(cat, status, text, labels, below, page - 1, request)

        @friendly
        def on_next_page(
            cat: str, status: str, text: str, labels: str, below: float | None, page: int, request: gr.Request
        ) -> dict:
            return list_products(cat, status, text, labels, below, page + 1, request)

        for trigger in (
            refresh_products.click,
            products_search.submit,
            products_labels.submit,
            products_below.submit,
            products_tab.select,
        ):
            trigger(on_products, product_filters, product_outputs, api_visibility="private")
        for control in (products_category, products_status):
            control.input(on_products, product_filters, product_outputs, api_visibility="private")
        paged = [*product_filters, products_page]
        prev_page.click(on_prev_page, paged, product_outputs, api_visibility="private")
        next_page.click(on_next_page, paged, product_outputs, api_visibility="private")

        @friendly
        def on_open_product(ids: list[int], evt: gr.SelectData, request: gr.Request) -> dict[Any, Any]:
            return {**open_product(Viewer.of(request), ids[evt.index]), tabs: gr.Tabs(selected="label")}

        products_gallery.select(on_open_product, [products_ids], [*form_outputs, tabs], api_visibility="private")

        @friendly
        def on_export_mine(request: gr.Request) -> dict[Any, Any]:
            path = services.export_labels(ctx, Viewer.of(request))
            return {export_file: path, sent_export: path}

        # Gradio copies the file into its own cache when it sends it; the export's folder then goes.
        sent_export = gr.State(None)
        export_mine.click(on_export_mine, None, [export_file, sent_export], api_visibility="private").then(
            discard_sent, [sent_export], None, api_visibility="private"
        )

        # -- events: similar products (webapp/similar.py) -----------------------------------

        @friendly
        def on_similar(product_id: int | None, text: str, request: gr.Request) -> dict[Any, Any]:
            """The panel of the product just opened; a near-duplicate is also said in the summary."""
            cleared = {similar_gallery: None, similar_ids: [], duplicate_id: None}
            if product_id is None:
                return {**cleared, similar_note: "", duplicate_btn: gr.update(visible=False)}
            viewer = Viewer.of(request)
            try:
                panel = similar.similar_products(ctx, viewer, product_id)
            except USER_ERRORS as exc:  # signed out, or the product is gone: the form says so already
                return {**cleared, similar_note: html.escape(str(exc)), duplicate_btn: gr.update(visible=False)}
            tiles = [
                (services.product_image(ctx, viewer, item.product_id, thumbnail=True), similar.tile_caption(item))
                for item in panel.similar
            ]
            dup = panel.duplicate
            return {
                **cleared,
                similar_gallery: tiles,
                similar_ids: [item.product_id for item in panel.similar],
                similar_note: similar.panel_markdown(panel),
                duplicate_id: dup.product_id if dup else None,
                duplicate_btn: gr.update(
                    visible=dup is not None, value=f"Open product {dup.product_id}" if dup else ""
                ),
                summary: f"{text}\n\n⚠ {dup.describe().capitalize()}." if dup and text else gr.update(),
            }

        current.change(
            on_similar,
            [current, summary],
            [similar_gallery, similar_ids, similar_note, duplicate_id, duplicate_btn, summary],
            api_visibility="private",
        )

        def copy_into_form(
            source_id: int | None, product_id: int | None, attrs: list[str], category: str | None, request: gr.Request
        ) -> dict[Any, Any]:
            if source_id is None:
                return {save_msg: "No similar confirmed product to copy from yet."}
            if product_id is None or not attrs or not category:
                return {save_msg: "Open a product first."}
            got = similar.copy_attributes(ctx, Viewer.of(request), source_id, category)
            fills = {slots[i]: gr.update(value=got.labels[a]) for i, a in enumerate(attrs) if a in got.labels}
            return {**fills, copied: {product_id: dict(got.labels)}, save_msg: got.message}

        copy_outputs = [*slots, copied, save_msg]

        @friendly
        def on_copy_similar(
            ids: list[int], product_id: int | None, attrs: list[str], category: str | None, request: gr.Request
        ) -> dict[Any, Any]:
            return copy_into_form(ids[0] if ids else None, product_id, attrs, category, request)

        copy_similar_btn.click(
            on_copy_similar, [similar_ids, current, form_attrs, category_box], copy_outputs, api_visibility="private"
        )

        @friendly
        def on_copy_pick(
            ids: list[int],
            product_id: int | None,
            attrs: list[str],
            category: str | None,
            evt: gr.SelectData,
            request: gr.Request,
        ) -> dict[Any, Any]:
            pick = ids[evt.index] if isinstance(evt.index, int) and evt.index < len(ids) else None
            return copy_into_form(pick, product_id, attrs, category, request)

        similar_gallery.select(
            on_copy_pick, [similar_ids, current, form_attrs, category_box], copy_outputs, api_visibility="private"
        )

        @friendly
        def on_open_duplicate(product_id: int | None, request: gr.Request) -> dict[Any, Any]:
            return open_product(Viewer.of(request), product_id) if product_id is not None else {}

        duplicate_btn.click(on_open_duplicate, [duplicate_id], form_outputs, api_visibility="private")

        def on_forget_copied() -> dict[Any, Any]:
            return {copied: {}}  # the form was laid out again: nothing in it is copied any more

        category_box.input(on_forget_copied, None, [copied], api_visibility="private")

        register_api(ctx, friendly)
    return demo
