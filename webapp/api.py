"""The app's public API (``gradio_client``, raw HTTP): one typed endpoint per service.

Each endpoint looks the signed-in user up from the request and goes through ``services``, so
the same owner checks hold here as in the UI. The services' dataclasses become JSON here
(``services.as_json``) and nowhere else. No ``from __future__ import annotations``:
``gr.api`` reads the type hints at run time.
"""

from collections.abc import Callable

import gradio as gr
from gradio import FileData

from . import label_noise, learning, second_look, services, similar
from .completeness import completeness as completeness_of
from .context import AppContext
from .services import Viewer, as_json
from .undo import undo_last_save


def _read_and_discard(path: str) -> str:
    """The text of an export, whose folder goes once it is read."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    finally:
        services.discard_export(path)


def register_api(ctx: AppContext, friendly: Callable) -> None:
    """Declare the endpoints inside the current ``gr.Blocks``."""

    def upload(photo: FileData, category: str, request: gr.Request) -> dict:
        """Upload one product photo; returns the product with the model's suggestion.

        ``category`` may be empty to let the model choose it.
        """
        path = photo["path"] if isinstance(photo, dict) else getattr(photo, "path", None)
        if not path:
            raise services.ServiceError("no photo received")
        return as_json(services.upload_one(ctx, Viewer.of(request), path, category or None))

    def product(product_id: int, request: gr.Request) -> dict:
        """One of your products: category, current labels and the active model's suggestion."""
        return as_json(services.get_product(ctx, Viewer.of(request), product_id))

    def save(product_id: int, category: str, labels: dict, request: gr.Request) -> dict:
        """Save labels (attribute -> value, or "not applicable", or null to clear) of one product."""
        checked = second_look.save_and_ask(ctx, Viewer.of(request), product_id, category, labels)
        # "questions": asked once where a sure model and similar confirmed products disagree.
        return {**as_json(checked.saved), "questions": as_json(list(checked.questions))}

    def undo_save(product_id: int, request: gr.Request) -> dict:
        """Undo the last save of one of your products (an admin: of any): its labels go back to what
        they were before it, as new "undo" events; a second undo undoes the save before."""
        return as_json(undo_last_save(ctx, Viewer.of(request), product_id))

    def completeness(request: gr.Request) -> list:
        """Per seller (yours; an admin: every seller): products, ready products (every attribute
        confirmed) and the share of their attributes confirmed."""
        return as_json(completeness_of(ctx, Viewer.of(request)))

    def queue(limit: int, request: gr.Request) -> list:
        """Your products waiting for review, least confident first."""
        return as_json(
            services.review_queue(
                ctx, Viewer.of(request), limit=services.count_of(limit, name="limit", low=1, high=500)
            )
        )

    def products(limit: int, offset: int, request: gr.Request) -> list:
        """Your products (an admin's: everyone's), newest first."""
        return as_json(
            services.my_products(
                ctx,
                Viewer.of(request),
                limit=services.count_of(limit, name="limit", low=1, high=500),
                offset=services.count_of(offset, name="offset", low=0, high=2**31),
            )
        )

    def similar_products(product_id: int, request: gr.Request) -> dict:
        """The confirmed products most similar to one of yours (an admin's: anyone's), by the
        cosine of the active model's trunk embeddings, and the product it looks like a copy of."""
        return as_json(similar.similar_products(ctx, Viewer.of(request), product_id))

    def history(product_id: int, request: gr.Request) -> list:
        """Every label change of one product, oldest first, with its provenance."""
        return services.history(ctx, Viewer.of(request), product_id)

    def export_labels(request: gr.Request) -> str:
        """Current labels of your products as CSV text in the competition's train.csv layout."""
        return _read_and_discard(services.export_labels(ctx, Viewer.of(request)))

    def export_predictions(request: gr.Request) -> str:
        """Newest predictions of your products as CSV text in the competition's submission layout."""
        return _read_and_discard(services.export_predictions(ctx, Viewer.of(request)))

    def counts(request: gr.Request) -> list:
        """Labelled products per category and attribute (yours; an admin's: all)."""
        return services.label_counts(ctx, Viewer.of(request))

    def import_data(data_dir: str, labels_only: bool, request: gr.Request) -> dict:
        """Admin: import a competition-layout dataset from a folder on the server."""
        return services.import_data(ctx, Viewer.of(request), data_dir, labels_only)

    def adopt_taxonomy(data_dir: str, request: gr.Request) -> dict:
        """Admin: while the database holds no products, make a dataset folder's taxonomy the app's."""
        return services.adopt_taxonomy(ctx, Viewer.of(request), data_dir)

    def retrain(kind: str, request: gr.Request) -> dict:
        """Admin: start a training run in the background: kind "heads" (fast), "full" (fine-tunes the
        active version, or trains the first one) or "full-scratch" (from the configured trunk)."""
        kind = kind or "heads"
        fresh = kind == "full-scratch"
        return services.start_training(ctx, Viewer.of(request), "full" if fresh else kind, fresh=fresh)

    def cancel_run(run_id: int, request: gr.Request) -> dict:
        """Admin: cancel a queued or running training run (0: the one that is going); nothing is registered."""
        cancelled = learning.cancel_run(ctx, Viewer.of(request), int(run_id) or None)
        return {"cancelled": cancelled}

    def retrain_policy(request: gr.Request) -> dict:
        """Admin: the retrain policy's state: on or off, the next kind of run, labelled products until it starts."""
        state = learning.policy_state(ctx, Viewer.of(request))
        return {**as_json(state), "remaining": state.remaining, "due": state.due, "text": state.describe()}

    def set_auto_retrain(enabled: bool, request: gr.Request) -> dict:
        """Admin: switch automatic retraining on or off (kept in the database)."""
        state = learning.set_auto_retrain(ctx, Viewer.of(request), enabled)
        return {**as_json(state), "remaining": state.remaining, "due": state.due, "text": state.describe()}

    def version_change(version_id: str, request: gr.Request) -> dict:
        """Admin: per attribute, a version (empty: the active one) against the version it was judged against."""
        change = learning.version_change(ctx, Viewer.of(request), version_id or None)
        return as_json(change) if change is not None else {}

    def my_corrections(request: gr.Request) -> dict:
        """What your corrections did for the model now serving, in one line."""
        return {"text": learning.my_corrections_line(ctx, Viewer.of(request))}

    def runs(limit: int, request: gr.Request) -> list:
        """Admin: the newest training runs with status and progress."""
        return services.training_runs(
            ctx, Viewer.of(request), limit=services.count_of(limit, name="limit", low=1, high=100)
        )

    def versions(request: gr.Request) -> list:
        """Admin: every model version with its metrics, newest first."""
        return services.versions(ctx, Viewer.of(request))

    def activate(version_id: str, request: gr.Request) -> dict:
        """Admin: make a model version active (a rollback when it is an earlier one)."""
        return as_json(services.activate(ctx, Viewer.of(request), version_id))

    def register_model(checkpoint_path: str, force: bool, request: gr.Request) -> dict:
        """Admin: register a checkpoint file on the server trained elsewhere (python -m trainer train):
        judged by the gate on the held-out products, activated only if it passes (or force)."""
        return as_json(services.register_model(ctx, Viewer.of(request), checkpoint_path, force))

    def model_status(request: gr.Request) -> dict:
        """The active model version and whether a training run is going."""
        services.get_user_name(ctx, Viewer.of(request))
        return services.model_status(ctx)

    def answer_check(product_id: int, attribute: str, value: str, keep: bool, request: gr.Request) -> dict:
        """Answer the question a save asked ("the model and similar products say X; keep yours?"):
        keep the saved value, or (keep false) take the model's value."""
        return as_json(second_look.answer(ctx, Viewer.of(request), product_id, attribute, value, bool(keep)))

    def find_suspicious_labels(request: gr.Request) -> dict:
        """Admin: start ranking every saved label by how likely it is wrong (a background job)."""
        return as_json(label_noise.start_scan(ctx, Viewer.of(request)))

    def suspicious_labels(limit: int, request: gr.Request) -> dict:
        """Admin: the latest label scan's state and its most suspicious labels, most suspicious first."""
        shown = services.count_of(limit, name="limit", low=0, high=10_000)
        return as_json(label_noise.suspicious_labels(ctx, Viewer.of(request), limit=shown))

    for fn in (
        upload,
        product,
        save,
        undo_save,
        completeness,
        queue,
        products,
        history,
        similar_products,
        export_labels,
        export_predictions,
        counts,
        import_data,
        adopt_taxonomy,
        retrain,
        cancel_run,
        retrain_policy,
        set_auto_retrain,
        version_change,
        my_corrections,
        runs,
        versions,
        activate,
        register_model,
        model_status,
        answer_check,
        find_suspicious_labels,
        suspicious_labels,
    ):
        gr.api(friendly(fn), api_name=fn.__name__, concurrency_limit=1 if fn in (retrain, register_model) else None)
