"""The app's public API (``gradio_client``, raw HTTP): one typed endpoint per service.

Each endpoint looks the signed-in user up from the request and goes through ``services``, so
the same owner checks hold here as in the UI. No ``from __future__ import annotations``:
``gr.api`` reads the type hints at run time.
"""

from collections.abc import Callable

import gradio as gr
from gradio import FileData

from . import services
from .context import AppContext


def register_api(ctx: AppContext, friendly: Callable) -> None:
    """Declare the endpoints inside the current ``gr.Blocks``."""

    def upload(photo: FileData, category: str, request: gr.Request) -> dict:
        """Upload one product photo; returns the product with the model's suggestion.

        ``category`` may be empty to let the model choose it.
        """
        path = photo["path"] if isinstance(photo, dict) else getattr(photo, "path", None)
        if not path:
            raise services.ServiceError("no photo received")
        return services.upload_one(ctx, request, path, category or None)

    def product(product_id: int, request: gr.Request) -> dict:
        """One of your products: category, current labels and the active model's suggestion."""
        return services.get_product(ctx, request, product_id)

    def save(product_id: int, category: str, labels: dict, request: gr.Request) -> dict:
        """Save labels (attribute -> value, or "not applicable", or null to clear) of one product."""
        return services.save_labels(ctx, request, product_id, category, labels)

    def queue(limit: int, request: gr.Request) -> list:
        """Your products waiting for review, least confident first."""
        return services.review_queue(ctx, request, limit=services.count_of(limit, name="limit", low=1, high=500))

    def products(limit: int, offset: int, request: gr.Request) -> list:
        """Your products (an admin's: everyone's), newest first."""
        return services.my_products(
            ctx,
            request,
            limit=services.count_of(limit, name="limit", low=1, high=500),
            offset=services.count_of(offset, name="offset", low=0, high=2**31),
        )

    def history(product_id: int, request: gr.Request) -> list:
        """Every label change of one product, oldest first, with its provenance."""
        return services.history(ctx, request, product_id)

    def export_labels(request: gr.Request) -> str:
        """Current labels of your products as CSV text in the competition's train.csv layout."""
        with open(services.export_labels(ctx, request), encoding="utf-8") as handle:
            return handle.read()

    def export_predictions(request: gr.Request) -> str:
        """Newest predictions of your products as CSV text in the competition's submission layout."""
        with open(services.export_predictions(ctx, request), encoding="utf-8") as handle:
            return handle.read()

    def counts(request: gr.Request) -> list:
        """Labelled products per category and attribute (yours; an admin's: all)."""
        return services.label_counts(ctx, request)

    def import_data(data_dir: str, labels_only: bool, request: gr.Request) -> dict:
        """Admin: import a competition-layout dataset from a folder on the server."""
        return services.import_data(ctx, request, data_dir, labels_only)

    def adopt_taxonomy(data_dir: str, request: gr.Request) -> dict:
        """Admin: while the database holds no products, make a dataset folder's taxonomy the app's."""
        return services.adopt_taxonomy(ctx, request, data_dir)

    def retrain(kind: str, request: gr.Request) -> dict:
        """Admin: start a training run in the background: kind "heads" (fast) or "full"."""
        return services.start_training(ctx, request, kind or "heads")

    def runs(limit: int, request: gr.Request) -> list:
        """Admin: the newest training runs with status and progress."""
        return services.training_runs(ctx, request, limit=services.count_of(limit, name="limit", low=1, high=100))

    def versions(request: gr.Request) -> list:
        """Admin: every model version with its metrics, newest first."""
        return services.versions(ctx, request)

    def activate(version_id: str, request: gr.Request) -> dict:
        """Admin: make a model version active (a rollback when it is an earlier one)."""
        return services.activate(ctx, request, version_id)

    def model_status(request: gr.Request) -> dict:
        """The active model version and whether a training run is going."""
        services.get_user_name(ctx, request)
        return services.model_status(ctx)

    for fn in (
        upload,
        product,
        save,
        queue,
        products,
        history,
        export_labels,
        export_predictions,
        counts,
        import_data,
        adopt_taxonomy,
        retrain,
        runs,
        versions,
        activate,
        model_status,
    ):
        gr.api(friendly(fn), api_name=fn.__name__, concurrency_limit=None if fn is not retrain else 1)
