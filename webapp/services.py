"""What sellers and admins can do, as plain functions of (context, viewer, inputs).

The Gradio layout and the API endpoints only wire these; they can be tested without a browser.
Every function opens one transaction, looks the user up in it, and goes through the ``db``
functions that filter by owner, so a seller reaches only their own products. Results are
frozen dataclasses; the API turns them into JSON with ``as_json`` at its edge.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import db
from taxonomy import (
    AttributePrediction,
    ImageError,
    ProductPrediction,
    TaxonomyError,
    decode_image,
    read_image_bytes,
)

from . import adoption, gate
from .auth import AccessDenied, require_admin
from .context import AppContext

log = logging.getLogger(__name__)

THUMBNAIL = (160, 160)
LOW_CONFIDENCE = 0.5


class ServiceError(ValueError):
    """A request that cannot be done as asked; the text tells the user what to do."""


@dataclass(frozen=True)
class Viewer:
    """Who is asking: the signed-in user's name, looked up afresh in each transaction."""

    name: str

    @classmethod
    def of(cls, request: object) -> Viewer:
        """The viewer of a Gradio request (its ``username``); AccessDenied when nobody is signed in."""
        name = getattr(request, "username", None) if request is not None else None
        if not isinstance(name, str) or not name:
            raise AccessDenied("sign in first")
        return cls(name)


def user_of(session: Session, viewer: Viewer) -> db.User:
    user = db.get_user_by_name(session, viewer.name)
    if user is None:
        raise AccessDenied(f"unknown user {viewer.name!r}; sign in again")
    return user


@dataclass(frozen=True)
class AttributeSuggestion:
    value: str
    confidence: float
    alternatives: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Suggestion:
    """What one model version suggested for one product."""

    model_version: str
    category: str
    category_confidence: float
    attributes: dict[str, AttributeSuggestion]

    @property
    def mean_confidence(self) -> float:
        """The mean of the category's and the attributes' confidences, as the review queue ranks by."""
        values = [self.category_confidence, *(a.confidence for a in self.attributes.values())]
        return round(sum(values) / len(values), 4)


@dataclass(frozen=True)
class ProductView:
    """What the form shows of one product."""

    product_id: int
    category: str
    attributes: list[str]
    labels: dict[str, str | None]
    suggestion: Suggestion | None
    has_image: bool


@dataclass(frozen=True)
class UploadResult:
    """A stored upload; ``photo`` is the decoded upright photo, kept so the form need not read it again."""

    view: ProductView
    created: bool
    photo: Image.Image | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class UploadOutcome:
    """One file of a batch upload: its result, or why it was refused."""

    file: str
    result: UploadResult | None = None
    error: str | None = None


@dataclass(frozen=True)
class SaveResult:
    product_id: int
    category: str
    events: int
    sources: dict[str, str]
    labels: dict[str, str | None]


@dataclass(frozen=True)
class QueueItem:
    product_id: int
    category: str
    mean_confidence: float
    min_confidence: float


@dataclass(frozen=True)
class Activation:
    active: str
    rescored: int


def as_json(value: Any) -> Any:
    """A service result as the API's JSON: dataclasses become objects (an upload: the view plus
    ``created``), lists stay lists."""
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, UploadResult):
        return {**dataclasses.asdict(value.view), "created": value.created}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


# Counts arrive as whatever JSON a client sent; product ids are checked by ``db.get_product``.
def count_of(raw: object, *, name: str, low: int, high: int) -> int:
    """A page size or offset from an API value, clamped to ``low..high``."""
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ServiceError(f"{name} must be a whole number, got {str(raw)[:40]!r}") from None
    return max(low, min(value, high))


# -- what a product looks like to the form -----------------------------------------------------


def _suggestion(stored: db.StoredPrediction | None) -> Suggestion | None:
    return None if stored is None else _suggestion_of(stored.model_version_id, stored.prediction)


def _suggestion_of(version: str, p: ProductPrediction) -> Suggestion:
    return Suggestion(
        model_version=version,
        category=p.category,
        category_confidence=round(p.category_probability, 4),
        attributes={
            name: AttributeSuggestion(
                value=a.value,
                confidence=round(a.probability, 4),
                alternatives=tuple((v, round(q, 4)) for v, q in a.top_k),
            )
            for name, a in p.attributes.items()
        },
    )


def product_view(
    ctx: AppContext, session: Session, user: db.User, product: db.Product, *, made_by: str | None = None
) -> ProductView:
    """What the form shows; ``made_by`` is the version that has just made a suggestion for this
    request, shown even if a retrain activated another version in the meantime."""
    active = ctx.models.active
    stored = db.latest_prediction(session, user, product.id)
    current = {active.version_id if active else None, made_by} - {None}
    if stored is not None and stored.model_version_id not in current:
        # A suggestion from a model that is no longer active is history, not advice.
        stored = db.latest_prediction(session, user, product.id, model_version_id=active.version_id) if active else None
        if stored is None and active is not None and product.image_sha256 is not None:
            # Not re-scored yet (it came in while the queue was being re-scored): ask the active
            # model now, so the form and the provenance of the next save agree on one version.
            image = decode_image(Path(db.image_path(ctx.media, product)))[0]
            suggested = _predict(ctx, image, product.category)
            if suggested is not None:
                db.save_prediction(session, product, *suggested)
                stored = db.latest_prediction(session, user, product.id, model_version_id=suggested[0])
    return ProductView(
        product_id=product.id,
        category=product.category,
        attributes=list(ctx.taxonomy.category(product.category).attribute_names),
        labels=db.current_labels(session, user, ctx.taxonomy, product),
        suggestion=_suggestion(stored),
        has_image=product.image_sha256 is not None,
    )


# -- sellers -----------------------------------------------------------------------------------


def _read_upload(ctx: AppContext, path: Path) -> bytes:
    limit = ctx.settings.max_upload_mb * 2**20
    try:
        size = path.stat().st_size
    except OSError:
        raise ImageError("the uploaded file could not be found; upload it again") from None
    if size > limit:
        raise ImageError(f"the file is {size / 2**20:.1f} MB; the limit is {ctx.settings.max_upload_mb} MB")
    return read_image_bytes(path, max_bytes=limit)


def _predict(ctx: AppContext, image: Image.Image, category: str | None) -> tuple[str, ProductPrediction] | None:
    suggested = ctx.models.suggest([image], [category])
    if suggested is None:
        return None
    version, (prediction,) = suggested
    return version, prediction


def upload_one(ctx: AppContext, viewer: Viewer, path: str | os.PathLike, category: str | None = None) -> UploadResult:
    """Store one photo as a product of the user, with the active model's suggestion if any."""
    path = Path(path)
    data = _read_upload(ctx, path)
    image, _ = decode_image(data, max_bytes=len(data))
    if category:
        category = ctx.taxonomy.category(category).name
    suggested = _predict(ctx, image, category or None)
    if not category:
        if suggested is None:
            raise ServiceError("choose the category: there is no trained model yet to recognise it")
        category = suggested[1].category
    try:
        return _store_upload(ctx, viewer, data, image, category, suggested)
    except IntegrityError:
        # The same photo was stored by a concurrent request of the same owner: it is that product.
        return _store_upload(ctx, viewer, data, image, category, suggested)


def _store_upload(
    ctx: AppContext,
    viewer: Viewer,
    data: bytes,
    image: Image.Image,
    category: str,
    suggested: tuple[str, ProductPrediction] | None,
) -> UploadResult:
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        product, created = db.add_uploaded_product(session, ctx.taxonomy, ctx.media, user, data, category)
        made_by = None
        if suggested is not None:
            version, prediction = suggested
            if prediction.category != product.category:
                # The photo was known already under another category: suggest for that one.
                version, prediction = _predict(ctx, image, product.category) or suggested
            db.save_prediction(session, product, version, prediction)
            made_by = version
        view = product_view(ctx, session, user, product, made_by=made_by)
    return UploadResult(view, created, image)


def upload(ctx: AppContext, viewer: Viewer, paths: list[str], category: str | None = None) -> list[UploadOutcome]:
    """Store several photos; each one that fails says why and the others go on."""
    results = []
    for raw in paths:
        name = Path(raw).name
        try:
            results.append(UploadOutcome(name, result=upload_one(ctx, viewer, raw, category)))
        except (ImageError, ServiceError, db.UserError, db.MediaError, TaxonomyError) as exc:
            results.append(UploadOutcome(name, error=str(exc)))
    return results


def get_product(ctx: AppContext, viewer: Viewer, product_id: int) -> ProductView:
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        return product_view(ctx, session, user, db.get_product(session, user, product_id))


def suggest_for(ctx: AppContext, viewer: Viewer, product_id: int, category: str) -> ProductView:
    """The product laid out for ``category``, with the active model's suggestion for that category.

    For the product's own category this is its view; for another one (the seller is correcting
    the category) the active model is asked for that category's attributes. Nothing is stored:
    the suggestion becomes the product's when the form is saved under that category.
    """
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        product = db.get_product(session, user, product_id)
        cat = ctx.taxonomy.category(category)
        if cat.name == product.category:
            return product_view(ctx, session, user, product)
        path = db.image_path(ctx.media, product)
    suggested = _predict(ctx, decode_image(Path(path))[0], cat.name) if path is not None else None
    return ProductView(
        product_id=product_id,
        category=cat.name,
        attributes=list(cat.attribute_names),
        labels=dict.fromkeys(cat.attribute_names),
        suggestion=_suggestion_of(*suggested) if suggested is not None else None,
        has_image=path is not None,
    )


def _prediction_of(product: db.Product, suggestion: Suggestion) -> ProductPrediction:
    """A shown suggestion back as the model's prediction, to store it with the product."""
    return ProductPrediction(
        id=product.display_id,
        category=suggestion.category,
        category_probability=suggestion.category_confidence,
        attributes={
            name: AttributePrediction(value=a.value, probability=a.confidence, top_k=a.alternatives)
            for name, a in suggestion.attributes.items()
        },
    )


def product_image(ctx: AppContext, viewer: Viewer, product_id: int, *, thumbnail: bool = False) -> Image.Image | None:
    """The product's photo (upright RGB) if the user may see it; None for a label-only product."""
    with ctx.transaction() as session:
        product = db.get_product(session, user_of(session, viewer), product_id)
        path = db.image_path(ctx.media, product)
    if path is None:
        return None
    image = decode_image(Path(path))[0]
    if thumbnail:
        image.thumbnail(THUMBNAIL)
    return image


def _provenance(value: str, suggested: AttributeSuggestion | None) -> str:
    if suggested is None:
        return "seller"
    return "model_accepted" if suggested.value == value else "model_edited"


class _Served:
    """``save_labels``' default for ``shown``: the suggestion the product's view serves now."""

    def __repr__(self) -> str:
        return "SERVED"


SERVED = _Served()


def save_labels(
    ctx: AppContext,
    viewer: Viewer,
    product_id: int,
    category: str,
    labels: dict,
    *,
    shown: Suggestion | _Served | None = SERVED,
) -> SaveResult:
    """Record the form: one event per attribute that has a value or was cleared, with provenance.

    ``shown`` is the suggestion the seller saw (None: none was shown), as the form keeps it; an API
    caller that read ``/product`` saw the one served now (the default). A value equal to the shown
    suggestion is 'model_accepted', another value where one was shown 'model_edited', and a value
    without one 'seller': a value that equals a suggestion the seller never saw is the seller's.
    """
    if not isinstance(labels, dict):
        raise ServiceError("labels must be an object of attribute -> value")
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        product = db.get_product(session, user, product_id)
        cat = ctx.taxonomy.category(category)
        clean = ctx.taxonomy.validate_labels(cat.name, labels)  # all problems at once, nothing written
        before = product_view(ctx, session, user, product)
        seen = before.suggestion if isinstance(shown, _Served) else shown
        if seen is not None and seen.category != cat.name:
            seen = None  # a suggestion for another category says nothing of this one's attributes
        if cat.name != product.category:
            # The category field itself was prefilled with the product's category; the model's
            # own guess is the stored suggestion's.
            guess = before.suggestion
            source = "seller"
            if guess is not None:
                source = "model_accepted" if guess.category == cat.name else "model_edited"
            db.set_category(
                session,
                ctx.taxonomy,
                user,
                product.id,
                cat.name,
                source=source,
                model_version_id=guess.model_version if guess is not None else None,
            )
            current = db.current_labels(session, user, ctx.taxonomy, product)
            if seen is not None and not isinstance(shown, _Served):
                # The form showed the model's suggestion for the new category: keep it as the
                # product's, so that reopening the product shows what was saved against.
                db.save_prediction(session, product, seen.model_version, _prediction_of(product, seen))
        else:
            current = before.labels
        suggested = seen.attributes if seen is not None else {}
        writes, sources = {}, {}
        for attr, value in clean.items():
            if value is None and current.get(attr) is None:
                continue  # left empty and unknown before: nothing to record
            writes[attr] = value
            sources[attr] = "seller" if value is None else _provenance(value, suggested.get(attr))
        version = seen.model_version if seen is not None else None
        if writes:
            db.record_labels(
                session,
                ctx.taxonomy,
                user,
                product,
                writes,
                source=sources,
                model_version_id=version if any(s != "seller" for s in sources.values()) else None,
            )
        after = db.current_labels(session, user, ctx.taxonomy, product)
    if writes:
        ctx.policy.nudge()  # the retrain policy looks at the new labels now, not at its next poll
    return SaveResult(product.id, cat.name, len(writes), sources, after)


def unsaved(ctx: AppContext, viewer: Viewer, product_ids: list[int]) -> list[int]:
    """The ids, in their order, of the products nobody has saved labels for yet."""
    with ctx.transaction() as session:
        done = db.confirmed_products(session, user_of(session, viewer), product_ids)
    return [i for i in product_ids if i not in done]


def review_queue(ctx: AppContext, viewer: Viewer, limit: int = 50) -> list[QueueItem]:
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        return [
            QueueItem(
                item.product.id,
                item.product.category,
                round(item.mean_confidence, 4),
                round(item.min_confidence, 4),
            )
            for item in db.review_queue(session, user, limit=limit)
        ]


@dataclass(frozen=True)
class ProductRow:
    """One product as the "My products" list shows it."""

    product_id: int
    category: str
    status: str  # "new" (no suggestion yet), "suggested" (not saved by a person), "confirmed"
    labelled: int  # attributes of its category with a current value
    attributes: int
    source: str  # "upload" or "import"

    @property
    def completeness(self) -> float:
        return self.labelled / self.attributes if self.attributes else 1.0


@dataclass(frozen=True)
class ProductPage:
    rows: list[ProductRow]
    total: int  # products matching the filters
    page: int  # 1-based
    pages: int


PRODUCT_STATUSES = ("new", "suggested", "confirmed")
SEARCHED_PRODUCTS = 1000  # the newest ones a search looks at


def _product_rows(ctx: AppContext, session: Session, user: db.User, products: list[db.Product]) -> list[ProductRow]:
    ids = [p.id for p in products]
    labels = db.current_labels_bulk(session, user, ctx.taxonomy, ids)
    confirmed = db.confirmed_products(session, user, ids)
    predicted = db.predicted_products(session, user, ids)
    return [
        ProductRow(
            product_id=p.id,
            category=p.category,
            status="confirmed" if p.id in confirmed else "suggested" if p.id in predicted else "new",
            labelled=sum(v is not None for v in labels.get(p.id, {}).values()),
            attributes=len(ctx.taxonomy.category(p.category).attributes),
            source=p.source,
        )
        for p in products
    ]


def my_products(ctx: AppContext, viewer: Viewer, limit: int = 50, offset: int = 0) -> list[ProductRow]:
    """The user's products (an admin's: everyone's), newest first, one page."""
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        return _product_rows(ctx, session, user, db.list_products(session, user, limit=limit, offset=offset))


def product_page(
    ctx: AppContext,
    viewer: Viewer,
    *,
    category: str | None = None,
    status: str | None = None,
    search: str = "",
    page: int = 1,
    per_page: int = 24,
) -> ProductPage:
    """A page of the user's products, newest first, filtered by category, status and a search
    text (a product id, or part of any current label value). The newest 1,000 are searched."""
    if status is not None and status not in PRODUCT_STATUSES:
        raise ServiceError(f"unknown status {status!r}; choose one of {', '.join(PRODUCT_STATUSES)}")
    needle = search.strip().lower()
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        filters = db.ProductFilter(category=ctx.taxonomy.category(category).name if category else None)
        products = db.list_products(session, user, filters, limit=SEARCHED_PRODUCTS)
        if needle:
            labels = db.current_labels_bulk(session, user, ctx.taxonomy, [p.id for p in products])
            products = [
                p
                for p in products
                if needle == str(p.id) or any(v and needle in v.lower() for v in labels.get(p.id, {}).values())
            ]
        rows = _product_rows(ctx, session, user, products)
    if status is not None:
        rows = [r for r in rows if r.status == status]
    pages = max(1, -(-len(rows) // per_page))
    page = max(1, min(int(page), pages))
    return ProductPage(rows[(page - 1) * per_page : page * per_page], len(rows), page, pages)


def history(ctx: AppContext, viewer: Viewer, product_id: int) -> list[dict]:
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        return [
            {
                "attribute": e.attribute,
                "value": e.value,
                "source": e.source,
                "user": e.user_name,
                "model_version": e.model_version_id,
                "at": e.created_at.isoformat(timespec="seconds"),
            }
            for e in db.label_history(session, user, product_id)
        ]


def _export_path(kind: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="vt-export-"))
    return folder / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.csv"


def discard_export(path: str | os.PathLike) -> None:
    """Remove an export's folder once the file has been handed over (read, or copied by Gradio)."""
    folder = Path(path).resolve().parent
    # Only a folder that ``_export_path`` made: nothing else is ever removed from here.
    if folder.name.startswith("vt-export-") and folder.parent == Path(tempfile.gettempdir()).resolve():
        shutil.rmtree(folder, ignore_errors=True)


def export_labels(ctx: AppContext, viewer: Viewer) -> str:
    """Current labels of the products the user may see, in the competition's train.csv layout."""
    out = _export_path("labels")
    with ctx.transaction() as session:
        db.export_labels(session, user_of(session, viewer), ctx.taxonomy, out)
    return str(out)


def export_predictions(ctx: AppContext, viewer: Viewer) -> str:
    """Newest predictions of the products the user may see, in the submission layout."""
    out = _export_path("predictions")
    with ctx.transaction() as session:
        db.export_predictions(session, user_of(session, viewer), ctx.taxonomy, out)
    return str(out)


# -- admins ------------------------------------------------------------------------------------


def admin_of(session: Session, viewer: Viewer) -> db.User:
    user = user_of(session, viewer)
    require_admin(user)
    return user


def _dataset_folder(data_dir: str) -> Path:
    folder = Path(str(data_dir).strip()).expanduser()
    if not folder.is_dir():
        raise ServiceError(f"no directory {folder} on the server; give the folder that holds train.csv")
    return folder


def adopt_taxonomy(ctx: AppContext, viewer: Viewer, data_dir: str) -> dict:
    """Make the taxonomy of a dataset folder on the server the app's; refused once products exist."""
    with ctx.transaction() as session:
        admin_of(session, viewer)
    folder = _dataset_folder(data_dir)
    adopted = adoption.adopt_dataset_taxonomy(ctx, folder)
    summary = "The app uses this taxonomy already." if adopted is None else adoption.adopted_summary(adopted, folder)
    return {
        "adopted": adopted is not None,
        "summary": summary,
        "categories": list(ctx.taxonomy.category_names),
    }


def import_data(
    ctx: AppContext, viewer: Viewer, data_dir: str, labels_only: bool = False, adopt_taxonomy: bool = False
) -> dict:
    """Import a competition-layout dataset from a directory on the server, as the admin's products.

    ``adopt_taxonomy``: while the database holds no products, make the dataset's taxonomy the app's.
    """
    with ctx.transaction() as session:
        admin = admin_of(session, viewer)
    folder = _dataset_folder(data_dir)
    adopted = adoption.adopt_dataset_taxonomy(ctx, folder) if adopt_taxonomy else None
    try:
        report = db.import_dataset(ctx.sessions, ctx.taxonomy, ctx.media, folder, owner=admin, labels_only=labels_only)
    except db.LayoutMismatchError as exc:
        raise db.LayoutMismatchError(f"{exc}. {adoption.mismatch_advice(ctx, folder, in_ui=True)}") from None
    summary = report.summary()
    return {
        "summary": summary if adopted is None else adoption.adopted_summary(adopted, folder) + "\n" + summary,
        "adopted_taxonomy": adopted is not None,
        "imported": report.imported,
        "already_present": report.already_present,
        "skipped": dict(report.skipped),
        "labels": report.labels,
    }


def has_products(ctx: AppContext) -> bool:
    """Whether the database holds any product (of any owner): then its taxonomy is fixed."""
    with ctx.transaction() as session:
        return db.product_total(session) > 0


def label_counts(ctx: AppContext, viewer: Viewer) -> list[dict]:
    with ctx.transaction() as session:
        counts = db.label_counts(session, user_of(session, viewer), ctx.taxonomy)
    rows = []
    for cat in ctx.taxonomy.categories:
        for attr in cat.attributes:
            rows.append(
                {
                    "category": cat.name,
                    "attribute": attr.name,
                    "products": counts.per_category.get(cat.name, 0),
                    "labelled": counts.per_attribute.get((cat.name, attr.name), 0),
                }
            )
    return rows


def versions(ctx: AppContext, viewer: Viewer) -> list[dict]:
    with ctx.transaction() as session:
        admin_of(session, viewer)
        return [
            {
                "version": v.id,
                "status": v.status,
                "kind": v.kind,
                "parent": v.parent_id,
                "created": v.created_at.isoformat(timespec="seconds"),
                "score": (v.metrics or {}).get("score"),
                "notes": v.notes,
                "per_attribute": (v.metrics or {}).get("per_attribute", []),
            }
            for v in db.list_versions(session)
        ]


def activate(ctx: AppContext, viewer: Viewer, version_id: str) -> Activation:
    """Make a version active by hand; its notes then say so first (not only what the gate said)."""
    with ctx.transaction() as session:
        name = admin_of(session, viewer).name
    before = ctx.models.active
    loaded = ctx.models.activate(str(version_id))
    if before is None or before.version_id != loaded.version_id:
        with ctx.transaction() as session:
            stamp = time.strftime("%Y-%m-%d %H:%M")
            db.prepend_version_note(session, loaded.version_id, f"Activated by hand by {name} on {stamp}.")
    # Re-scored in the background; the form suggests on demand for products not reached yet.
    rescored = ctx.models.start_rescore()
    return Activation(loaded.version_id, rescored)


@dataclass(frozen=True)
class Registration:
    version_id: str
    passed: bool  # not worse than the active version (or the baseline) on the held-out products
    activated: bool  # passed, or forced
    score: float
    reference: float
    message: str
    rescored: int  # queued products re-scored in the background after the activation


def register_model(ctx: AppContext, viewer: Viewer, checkpoint_path: str, force: bool = False) -> Registration:
    """Judge a checkpoint file on the server, trained outside the app, by the gate; it is copied
    into the models folder and activated only if it passes (or ``force``, which is recorded)."""
    with ctx.transaction() as session:
        admin_id = admin_of(session, viewer).id
    path = Path(str(checkpoint_path).strip()).expanduser()
    verdict = gate.register_checkpoint(ctx.models, path, user_id=admin_id, force=bool(force))
    rescored = ctx.models.start_rescore() if verdict.activated else 0
    return Registration(
        verdict.version_id,
        verdict.passed,
        verdict.activated,
        verdict.score,
        verdict.reference,
        verdict.message,
        rescored,
    )


def start_training(ctx: AppContext, viewer: Viewer, kind: str = "heads", fresh: bool = False) -> dict:
    """An admin's run: heads-only, or full (fine-tuning the active version, or ``fresh`` from the
    configured trunk)."""
    with ctx.transaction() as session:
        admin = admin_of(session, viewer)
    run_id = ctx.models.start_training(kind, admin, fresh=bool(fresh))
    return {"run_id": run_id, "kind": kind}


def training_runs(ctx: AppContext, viewer: Viewer, limit: int = 10) -> list[dict]:
    with ctx.transaction() as session:
        admin_of(session, viewer)
        return [
            {
                "run_id": r.id,
                "kind": r.kind,
                "trigger": r.trigger,
                "init": (r.params or {}).get("init"),
                "status": r.status,
                "progress": round(r.progress, 3),
                "message": r.message,
                "error": r.error,
                "version": r.result_version_id,
                "started": r.started_at.isoformat(timespec="seconds") if r.started_at else None,
                "finished": r.finished_at.isoformat(timespec="seconds") if r.finished_at else None,
            }
            for r in db.list_runs(session, limit=limit)
        ]


def model_status(ctx: AppContext) -> dict:
    # A worker may have activated a version since the last poll: whoever asks sees it at once.
    ctx.models.follow_database()
    active = ctx.models.active
    if active is None:
        return {"active": None, "training": ctx.models.training}
    source = active.predictor.checkpoint.backbone_source  # "imagenet", a weights file, or "random"
    return {
        "active": active.version_id,
        "score": active.metrics.get("score"),
        "training": ctx.models.training,
        "backbone_source": source,
        "random_init": source == "random",
    }


def get_user_name(ctx: AppContext, viewer: Viewer) -> str:
    """The signed-in user's name; raises AccessDenied when nobody is signed in."""
    return signed_in(ctx, viewer)[0]


def signed_in(ctx: AppContext, viewer: Viewer) -> tuple[str, str]:
    """The signed-in user's (name, role); raises AccessDenied for an unknown user."""
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        return user.name, user.role
