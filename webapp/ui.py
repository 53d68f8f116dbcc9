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

from . import learning, services
from .api import register_api
from .context import AppContext
from .errors import USER_ERRORS, friendly
from .form import form_state, labels_from_slots, model_line, summary_markdown
from .services import ProductView, ServiceError, Viewer
from .ui_admin import build_admin

log = logging.getLogger(__name__)

AUTO = "(let the model decide)"
MIN_SLOTS = 10

CSS = """
.vt-low { border: 2px solid #e8590c !important; border-radius: 8px; background: #fff4e6 !important; }
.vt-low label span { color: #c2410c; font-weight: 600; }
#vt-save-next { min-height: 48px; }
"""

# Ctrl+Enter (Cmd+Enter) anywhere in the form is "Save and next": the hands stay on the keyboard.
HEAD = """
<script>
document.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
    const button = document.querySelector('#vt-save-next');
    if (button) { e.preventDefault(); button.click(); }
  }
});
</script>
"""


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
        """Updates of the form (the photo is left as it is, except for an empty form)."""
        if view is None:
            return {
                photo: None,
                summary: "Upload a photo to start.",
                category_box: gr.update(value=None),
                form_attrs: [],
                current: None,
                **{slot: gr.update(visible=False, value=None) for slot in slots},
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
            **updates,
        }

    def show(view: ProductView, image: Image.Image | None) -> dict[Any, Any]:
        return {**render(view), photo: image}

    def open_product(viewer: Viewer, product_id: int | None) -> dict[Any, Any]:
        if product_id is None:
            return render(None)
        view = services.get_product(ctx, viewer, product_id)
        return show(view, services.product_image(ctx, viewer, product_id))

    # Gradio keeps uploads and the photos it shows in its cache under unguessable names; clearing
    # files older than an hour keeps them from lingering there.
    with gr.Blocks(title="Visual Taxonomy", delete_cache=(1800, 3600)) as demo:
        header = gr.Markdown("Visual Taxonomy")
        batch = gr.State([])
        queue_ids = gr.State([])
        form_attrs = gr.State([])
        current = gr.State(None)
        with gr.Tabs() as tabs:
            with gr.Tab("Label", id="label"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=280):
                        files = gr.File(
                            label="Product photos (one or many)",
                            file_count="multiple",
                            file_types=["image"],
                            type="filepath",
                        )
                        upload_category = gr.Dropdown([AUTO, *categories], value=AUTO, label="Category of these photos")
                        upload_btn = gr.Button("Upload and suggest", variant="primary")
                        upload_report = gr.Markdown()
                        batch_table = gr.Dataframe(
                            headers=["product", "file", "category", "status"],
                            interactive=False,
                            wrap=True,
                            label="This batch",
                        )
                    with gr.Column(scale=2):
                        with gr.Row():
                            photo = gr.Image(label="Photo", interactive=False, height=300, type="pil")
                            with gr.Column():
                                summary = gr.Markdown("Upload a photo to start.")
                                category_box = gr.Dropdown(categories, label="Category", value=None)
                        slots = [gr.Dropdown(visible=False, interactive=True) for _ in range(n_slots)]
                        with gr.Row():
                            save_btn = gr.Button("Save", elem_id="vt-save")
                            next_btn = gr.Button(
                                "Save and next  (Ctrl+Enter)", variant="primary", elem_id="vt-save-next"
                            )
                        save_msg = gr.Markdown()
                        learning_md = gr.Markdown(elem_id="vt-learning")
            with gr.Tab("Review queue", id="queue"):
                gr.Markdown(
                    "Your products with suggestions but no confirmed labels, least confident first. "
                    "Choose one to open it in the form."
                )
                refresh_queue = gr.Button("Refresh")
                gallery = gr.Gallery(
                    columns=8, height=480, object_fit="contain", allow_preview=False, label="Waiting for review"
                )
            with gr.Tab("My products", id="products"):
                refresh_products = gr.Button("Refresh")
                products_table = gr.Dataframe(interactive=False, label="Products")
                with gr.Row():
                    export_mine = gr.Button("Export my labels (train.csv layout)")
                    export_file = gr.File(label="Download", interactive=False)
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                build_admin(ctx)
        form_outputs = [photo, summary, category_box, form_attrs, current, *slots]

        # -- events: seller ------------------------------------------------------------------

        @friendly
        def on_load(request: gr.Request) -> dict[Any, Any]:
            name, role = services.signed_in(ctx, Viewer.of(request))
            model = model_line(services.model_status(ctx))
            text = f"## Visual Taxonomy\nSigned in as **{html.escape(name)}** ({role}) · {model} · [Log out](/logout)"
            # The categories as of now: an adopted taxonomy shows without a restart.
            choices = [AUTO, *ctx.taxonomy.category_names]
            return {
                header: text,
                admin_tab: gr.update(visible=role == "admin"),
                upload_category: gr.update(choices=choices),
            }

        demo.load(on_load, None, [header, admin_tab, upload_category], api_visibility="private")

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
                [
                    o.result.view.product_id,
                    o.file,
                    o.result.view.category,
                    "new" if o.result.created else "already uploaded",
                ]
                if o.result is not None
                else ["", o.file, "", o.error]
                for o in outcomes
            ]
            failed = len(outcomes) - len(ok)
            report = f"{len(ok)} photo(s) ready" + (f", {failed} refused (see the table)" if failed else "") + "."
            first = show(ok[0].view, ok[0].photo) if ok else render(None)
            return {
                batch: [r.view.product_id for r in ok],
                upload_report: report,
                batch_table: pd.DataFrame(rows, columns=["product", "file", "category", "status"]),
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
            return render(services.get_product(ctx, Viewer.of(request), product_id), new)

        category_box.input(on_category, [category_box, current], form_outputs, api_visibility="private")

        def do_save(data: dict[Any, Any], viewer: Viewer) -> str:
            """Save the form; ``data`` maps the form's components to their values."""
            product_id = data[current]
            if product_id is None:
                raise ServiceError("nothing to save: upload a photo or open one from the review queue")
            values = [data[slot] for slot in slots]
            result = services.save_labels(
                ctx, viewer, product_id, data[category_box], labels_from_slots(data[form_attrs], values)
            )
            kinds = sorted(set(result.sources.values()))
            return f"Saved product {result.product_id}: {result.events} change(s)" + (
                f" ({', '.join(kinds)})." if kinds else "."
            )

        form_inputs = {current, category_box, form_attrs, batch, *slots}

        @friendly
        def on_save(data: dict[Any, Any], request: gr.Request) -> str:
            return do_save(data, Viewer.of(request))

        save_btn.click(on_save, form_inputs, [save_msg], api_visibility="private").then(
            on_learning, None, [learning_md], api_visibility="private"
        )

        @friendly
        def on_save_next(data: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
            viewer = Viewer.of(request)
            message = do_save(data, viewer)
            product_id, ids = data[current], data[batch] or []
            following = ids[ids.index(product_id) + 1 :] if product_id in ids else []
            if not following:
                queued = [q.product_id for q in services.review_queue(ctx, viewer, limit=5)]
                following = [q for q in queued if q != product_id]
            if not following:
                return {save_msg: message + " That was the last one: upload more photos.", **render(None)}
            return {save_msg: message, **open_product(viewer, following[0])}

        next_btn.click(on_save_next, form_inputs, [save_msg, *form_outputs], api_visibility="private").then(
            on_learning, None, [learning_md], api_visibility="private"
        )

        @friendly
        def on_queue(request: gr.Request) -> dict[Any, Any]:
            viewer = Viewer.of(request)
            items = services.review_queue(ctx, viewer, limit=60)
            pictures = []
            for item in items:
                image = services.product_image(ctx, viewer, item.product_id, thumbnail=True)
                caption = f"#{item.product_id} {item.category} · {item.mean_confidence:.0%}"
                pictures.append((image, caption))
            return {gallery: pictures, queue_ids: [i.product_id for i in items]}

        refresh_queue.click(on_queue, None, [gallery, queue_ids], api_visibility="private")

        @friendly
        def on_pick(ids: list[int], evt: gr.SelectData, request: gr.Request) -> dict[Any, Any]:
            return {**open_product(Viewer.of(request), ids[evt.index]), tabs: gr.Tabs(selected="label")}

        gallery.select(on_pick, [queue_ids], [*form_outputs, tabs], api_visibility="private")

        @friendly
        def on_products(request: gr.Request) -> pd.DataFrame:
            return pd.DataFrame(services.my_products(ctx, Viewer.of(request), limit=200))

        refresh_products.click(on_products, None, [products_table], api_visibility="private")

        @friendly
        def on_export_mine(request: gr.Request) -> dict[Any, Any]:
            path = services.export_labels(ctx, Viewer.of(request))
            return {export_file: path, sent_export: path}

        # Gradio copies the file into its own cache when it sends it; the export's folder then goes.
        sent_export = gr.State(None)
        export_mine.click(on_export_mine, None, [export_file, sent_export], api_visibility="private").then(
            discard_sent, [sent_export], None, api_visibility="private"
        )

        register_api(ctx, friendly)
    return demo
