"""The Gradio layout: it only wires the handlers of ``services`` and ``form`` to components.

No ``from __future__ import annotations`` here: Gradio reads the handlers' annotations at run
time to find the ``gr.Request`` parameter.
"""

import functools
import html
import logging
from collections.abc import Callable

import gradio as gr
import pandas as pd

import db
from taxonomy import FormatError, ImageError, TaxonomyError

from . import services
from .auth import AccessDenied
from .context import AppContext
from .form import form_state, labels_from_slots, model_line, summary_markdown
from .models import ModelError
from .services import ServiceError

log = logging.getLogger(__name__)

USER_ERRORS = (
    AccessDenied,
    ServiceError,
    TaxonomyError,
    ImageError,
    FormatError,
    ModelError,
    db.NotFound,
    db.RegistryError,
    db.UserError,
    db.MediaError,
)
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


def friendly(fn: Callable) -> Callable:
    """Turn the errors a user can act on into Gradio errors (a toast in the UI, AppError in the API)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        except KeyError as exc:  # a missing field in an API payload
            raise gr.Error(f"missing field {exc}", print_exception=False) from exc

    return wrapper


def build(ctx: AppContext) -> gr.Blocks:
    # Handlers read ctx.taxonomy when they run, so an adopted taxonomy takes effect without a restart;
    # the competition layout's attr_1..attr_10 bound the slots a dataset's taxonomy can need.
    categories = list(ctx.taxonomy.category_names)
    n_slots = max(ctx.taxonomy.max_attributes, MIN_SLOTS)

    def render(payload: dict | None, category: str | None = None) -> list:
        """Updates for [photo, summary, category, form_attrs, current, *slots]."""
        if payload is None:
            empty = [gr.update(visible=False, value=None) for _ in range(n_slots)]
            return [None, "Upload a photo to start.", gr.update(value=None), [], None, *empty]
        form = form_state(ctx.taxonomy, payload, category)
        active = ctx.models.active
        updates = []
        for i in range(n_slots):
            if i < len(form["slots"]):
                s = form["slots"][i]
                updates.append(
                    gr.update(
                        visible=True,
                        label=s["label"],
                        choices=s["choices"],
                        value=s["value"],
                        info=s["info"],
                        elem_classes=["vt-low"] if s["low"] else [],
                    )
                )
            else:
                updates.append(gr.update(visible=False, value=None, choices=[], elem_classes=[]))
        return [
            gr.skip(),
            summary_markdown(payload, form, active.version_id if active else None),
            gr.update(value=form["category"], choices=list(ctx.taxonomy.category_names)),
            form["attributes"],
            payload["product_id"],
            *updates,
        ]

    def open_product(product_id: int | None, request: gr.Request) -> list:
        if product_id is None:
            return render(None)
        payload = services.get_product(ctx, request, product_id)
        image = services.product_image(ctx, request, product_id)
        out = render(payload)
        out[0] = image
        return out

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
                                category = gr.Dropdown(categories, label="Category", value=None)
                        slots = [gr.Dropdown(visible=False, interactive=True) for _ in range(n_slots)]
                        with gr.Row():
                            save_btn = gr.Button("Save", elem_id="vt-save")
                            next_btn = gr.Button(
                                "Save and next  (Ctrl+Enter)", variant="primary", elem_id="vt-save-next"
                            )
                        save_msg = gr.Markdown()
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
                from .ui_admin import build_admin

                build_admin(ctx)
        form_outputs = [photo, summary, category, form_attrs, current, *slots]

        # -- events: seller ------------------------------------------------------------------

        @friendly
        def on_load(request: gr.Request):
            with ctx.transaction() as session:
                user = services._user(session, request)
                role, name = user.role, user.name
            model = model_line(services.model_status(ctx))
            text = f"## Visual Taxonomy\nSigned in as **{html.escape(name)}** ({role}) · {model} · [Log out](/logout)"
            # The categories as of now: an adopted taxonomy shows without a restart.
            choices = [AUTO, *ctx.taxonomy.category_names]
            return text, gr.update(visible=role == "admin"), gr.update(choices=choices)

        demo.load(on_load, None, [header, admin_tab, upload_category], api_visibility="private")

        @friendly
        def on_upload(paths: list[str] | None, chosen: str, request: gr.Request):
            if not paths:
                raise ServiceError("choose one or more photos first")
            results = services.upload(ctx, request, list(paths), None if chosen == AUTO else chosen)
            ok = [r for r in results if "error" not in r]
            rows = [
                [
                    r.get("product_id", ""),
                    r["file"],
                    r.get("category", ""),
                    r["error"] if "error" in r else ("new" if r["created"] else "already uploaded"),
                ]
                for r in results
            ]
            failed = len(results) - len(ok)
            report = f"{len(ok)} photo(s) ready" + (f", {failed} refused (see the table)" if failed else "") + "."
            ids = [r["product_id"] for r in ok]
            first = open_product(ids[0], request) if ids else render(None)
            return [ids, report, pd.DataFrame(rows, columns=["product", "file", "category", "status"]), *first]

        upload_btn.click(
            on_upload,
            [files, upload_category],
            [batch, upload_report, batch_table, *form_outputs],
            api_visibility="private",
        )

        @friendly
        def on_category(new: str, product_id: int | None, request: gr.Request):
            if product_id is None or not new:
                return [gr.skip()] * len(form_outputs)
            out = render(services.get_product(ctx, request, product_id), new)
            return out

        category.input(on_category, [category, current], form_outputs, api_visibility="private")

        def do_save(data: dict, request: gr.Request) -> str:
            """Save the form; ``data`` maps the form's components to their values."""
            product_id = data[current]
            if product_id is None:
                raise ServiceError("nothing to save: upload a photo or open one from the review queue")
            values = [data[slot] for slot in slots]
            result = services.save_labels(
                ctx, request, product_id, data[category], labels_from_slots(data[form_attrs], values)
            )
            kinds = sorted(set(result["sources"].values()))
            return f"Saved product {result['product_id']}: {result['events']} change(s)" + (
                f" ({', '.join(kinds)})." if kinds else "."
            )

        form_inputs = {current, category, form_attrs, batch, *slots}

        @friendly
        def on_save(data: dict, request: gr.Request) -> str:
            return do_save(data, request)

        save_btn.click(on_save, form_inputs, [save_msg], api_visibility="private")

        @friendly
        def on_save_next(data: dict, request: gr.Request) -> list:
            message = do_save(data, request)
            product_id, ids = data[current], data[batch] or []
            following = ids[ids.index(product_id) + 1 :] if product_id in ids else []
            if not following:
                queued = [q["product_id"] for q in services.review_queue(ctx, request, limit=5)]
                following = [q for q in queued if q != product_id]
            if not following:
                return [message + " That was the last one: upload more photos.", *render(None)]
            return [message, *open_product(following[0], request)]

        next_btn.click(on_save_next, form_inputs, [save_msg, *form_outputs], api_visibility="private")

        @friendly
        def on_queue(request: gr.Request):
            items = services.review_queue(ctx, request, limit=60)
            pictures = []
            for item in items:
                image = services.product_image(ctx, request, item["product_id"], thumbnail=True)
                caption = f"#{item['product_id']} {item['category']} · {item['mean_confidence']:.0%}"
                pictures.append((image, caption))
            return pictures, [i["product_id"] for i in items]

        refresh_queue.click(on_queue, None, [gallery, queue_ids], api_visibility="private")

        @friendly
        def on_pick(ids: list[int], evt: gr.SelectData, request: gr.Request):
            return [*open_product(ids[evt.index], request), gr.Tabs(selected="label")]

        gallery.select(on_pick, [queue_ids], [*form_outputs, tabs], api_visibility="private")

        @friendly
        def on_products(request: gr.Request):
            return pd.DataFrame(services.my_products(ctx, request, limit=200))

        refresh_products.click(on_products, None, [products_table], api_visibility="private")

        @friendly
        def on_export_mine(request: gr.Request) -> str:
            return services.export_labels(ctx, request)

        export_mine.click(on_export_mine, None, [export_file], api_visibility="private")

        from .api import register_api

        register_api(ctx, friendly)
    return demo
