"""Similar products beside the form, near-duplicates on upload, and copying a similar product's labels.

Similarity is the cosine of the serving model's trunk embeddings (``embedding_index``): the ones
the app stores for each upload in the forward pass of its suggestion, and the ones a heads-only
retrain caches. A seller searches their own products, an admin everyone's (``db.visible_to``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

import db
from taxonomy import ImageError, decode_image

from .context import AppContext
from .embedding_index import EmbeddingIndex
from .services import ServiceError, Viewer, user_of
from .serving import Loaded

log = logging.getLogger(__name__)

SIMILAR_SHOWN = 4
KEY_VALUES = 3  # attribute values a tile shows
# A photo cropped a few pixels, resized and re-encoded as JPEG stays at or above this cosine of
# its original, while two different products stay below it, on the tests' trunk (copies >= 0.9969,
# other products <= 0.9942; bench/near_duplicates.py, bench/RESULTS.md "Near-duplicates"). A
# trunk that cannot tell its products apart (on a briefly trained myntra-dev model half of the
# products are at 0.9997 of another one) gets no embedding flag at all (``EmbeddingIndex.crowding``):
# only byte-identical photos are flagged then, rather than every upload.
DUPLICATE_SIMILARITY = 0.995
BACKFILL_LIMIT = 2000  # photos embedded per background pass (a trunk pass each, on a spare thread)
BACKFILL_BATCH = 8  # small batches: a seller's suggestion waits for one batch at most

Candidate = tuple[int, str, str, str]  # product id, category, photo sha256, photo suffix (db.photo_products)


def similarity_text(cosine: float) -> str:
    """A cosine as a percentage; near 1 with a decimal, so that a near-copy never reads as 100%."""
    return f"{min(cosine, 0.999):.1%}" if cosine >= 0.99 else f"{max(cosine, 0.0):.0%}"


@dataclass(frozen=True)
class SimilarProduct:
    product_id: int
    category: str
    similarity: float  # cosine, -1..1
    labels: dict[str, str]  # its current values, attributes in taxonomy order, set ones only

    def key_values(self, n: int = KEY_VALUES) -> list[str]:
        return list(self.labels.values())[:n]


@dataclass(frozen=True)
class Duplicate:
    """An existing product the photo looks like (``exact``: the very same bytes)."""

    product_id: int
    similarity: float
    exact: bool

    def describe(self) -> str:
        how = "the same photo" if self.exact else f"{similarity_text(self.similarity)} similar"
        return f"looks like product {self.product_id} ({how})"


@dataclass(frozen=True)
class SimilarPanel:
    product_id: int
    category: str
    model_version: str | None
    similar: tuple[SimilarProduct, ...]
    duplicate: Duplicate | None
    searched: int  # confirmed products with an embedding that were compared
    indexing: int  # confirmed products without one yet (embedded in the background)
    note: str


@dataclass(frozen=True)
class Copied:
    """A similar product's labels for the form; empty when its category is not the form's."""

    source_id: int
    category: str  # the source product's
    labels: dict[str, str]
    message: str


def _labels(ctx: AppContext, session: Session, user: db.User, ids: list[int]) -> dict[int, dict[str, str]]:
    found = db.current_labels_bulk(session, user, ctx.taxonomy, ids)
    return {pid: {a: v for a, v in found.get(pid, {}).items() if v is not None} for pid in ids}


def _query_vector(ctx: AppContext, index: EmbeddingIndex, product: db.Product) -> np.ndarray | None:
    """The product's embedding: stored at upload; else (a product older than this feature, or
    imported) computed now with a suggestion, one trunk pass, and stored."""
    vector = index.vector(product.image_sha256)
    if vector is None:
        image = decode_image(Path(db.image_path(ctx.media, product)))[0]
        ctx.models.suggest([image], [product.category], keys=[product.image_sha256])
        vector = index.vector(product.image_sha256)
    return vector


def _backfill(ctx: AppContext, loaded: Loaded, index: EmbeddingIndex, paths: list[tuple[str, str]]) -> None:
    """Embed (sha256, path) photos with ``loaded``'s trunk, a small batch at a time."""
    done = 0
    try:
        for start in range(0, len(paths), BACKFILL_BATCH):
            batch, images = [], []
            for sha, path in paths[start : start + BACKFILL_BATCH]:
                try:
                    images.append(decode_image(Path(path))[0])
                    batch.append(sha)
                except (OSError, ImageError) as exc:
                    log.warning("photo %s not embedded: %s", path, exc)
            if images:
                _, vectors = loaded.predictor.predict_with_embeddings(images, top_k=1)  # (b, C)
                index.store(batch, vectors)
                done += len(batch)
    except Exception:  # the next search starts it again for what is still missing
        log.exception("embedding products for similar-product search stopped after %d", done)


def _start_backfill(ctx: AppContext, loaded: Loaded, index: EmbeddingIndex, missing: list[Candidate]) -> None:
    """Embed, in one background thread per index, confirmed products that have no embedding yet
    (imported ones, or every one after a full retrain gave the trunk new weights)."""
    if not missing or (index.backfill is not None and index.backfill.is_alive()):
        return
    todo = [(sha, str(ctx.media.path_for(sha, ext))) for _, _, sha, ext in missing[:BACKFILL_LIMIT]]
    index.backfill = threading.Thread(
        target=_backfill, args=(ctx, loaded, index, todo), name="embed-similar", daemon=True
    )
    index.backfill.start()


def _duplicate(
    index: EmbeddingIndex, query: np.ndarray, product: db.Product, candidates: list[Candidate]
) -> Duplicate | None:
    """The most similar other product the viewer may see, if it is a near-copy (or the same photo)."""
    others = [c for c in candidates if c[0] != product.id]
    same = next((pid for pid, _, sha, _ in others if sha == product.image_sha256), None)
    if same is not None:  # an admin's view: another owner uploaded these very bytes
        return Duplicate(same, 1.0, exact=True)
    crowding = index.crowding()
    if crowding is not None and crowding >= DUPLICATE_SIMILARITY:
        return None  # this trunk puts most products this close to another: a flag would mean nothing
    best = index.search(query, [c[2] for c in others], limit=1)
    if best and best[0].similarity >= DUPLICATE_SIMILARITY:
        return Duplicate(others[best[0].position][0], round(best[0].similarity, 4), exact=False)
    return None


def similar_products(ctx: AppContext, viewer: Viewer, product_id: int, limit: int = SIMILAR_SHOWN) -> SimilarPanel:
    """The ``limit`` confirmed products most similar to this one (a seller's own; an admin's: anyone's),
    and the existing product it is a near-duplicate of, if any."""
    limit = max(1, min(int(limit), 24))
    loaded = ctx.models.active
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        product = db.get_product(session, user, product_id)
        empty = SimilarPanel(product.id, product.category, None, (), None, 0, 0, "")
        if loaded is None:
            return _with_note(empty, "No trained model yet: similar products appear once one is active.")
        if product.image_sha256 is None:
            return _with_note(empty, "This product has no photo to compare.")
        candidates = db.photo_products(session, user)  # every photo the viewer may see
        confirmed = {c[0] for c in db.photo_products(session, user, confirmed_only=True)}
    index = ctx.models.embedding_index(loaded)
    query = _query_vector(ctx, index, product)
    if query is None:
        return _with_note(empty, "Could not embed this photo; similar products are unavailable.")
    pool = [c for c in candidates if c[0] in confirmed and c[0] != product.id]
    shas = [c[2] for c in pool]
    missing = [pool[i] for i in index.missing(shas)]
    _start_backfill(ctx, loaded, index, missing)
    matches = index.search(query, shas, limit=limit)
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        labels = _labels(ctx, session, user, [pool[m.position][0] for m in matches])
    similar = tuple(
        SimilarProduct(pool[m.position][0], pool[m.position][1], round(m.similarity, 4), labels[pool[m.position][0]])
        for m in matches
    )
    duplicate = _duplicate(index, query, product, candidates)
    if similar:
        note = f"The {len(similar)} most similar of {len(pool) - len(missing)} confirmed products."
    else:
        note = "No confirmed product to compare with yet: save labels and they appear here."
    if missing:
        note += f" {len(missing)} more are being indexed."
    return SimilarPanel(
        product.id,
        product.category,
        loaded.version_id,
        similar,
        duplicate,
        len(pool) - len(missing),
        len(missing),
        note,
    )


def _with_note(panel: SimilarPanel, note: str) -> SimilarPanel:
    return SimilarPanel(
        panel.product_id, panel.category, panel.model_version, (), None, panel.searched, panel.indexing, note
    )


def copy_attributes(ctx: AppContext, viewer: Viewer, source_id: int, category: str) -> Copied:
    """The current labels of product ``source_id``, to fill a form of ``category`` with; none,
    with the reason, when the source is of another category (its attributes are not this one's)."""
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        source = db.get_product(session, user, source_id)
        cat = ctx.taxonomy.category(category).name
        labels = _labels(ctx, session, user, [source.id])[source.id]
    if source.category != cat:
        return Copied(
            source.id,
            source.category,
            {},
            f"Product {source.id} is a {source.category}, this form a {cat}: its attributes do not apply. "
            "Change the category first to copy them.",
        )
    if not labels:
        raise ServiceError(f"product {source.id} has no labels to copy")
    return Copied(
        source.id,
        source.category,
        labels,
        f"Copied {len(labels)} attribute(s) of product {source.id}: check them and save.",
    )


def upload_notes(ctx: AppContext, viewer: Viewer, product_ids: list[tuple[int, bool]]) -> list[str]:
    """For an upload report: one line per uploaded product that looks like an existing one
    (``(product id, created)`` pairs; a photo uploaded before is that product again)."""
    lines = []
    for product_id, created in product_ids:
        if not created:
            lines.append(f"Product {product_id}: this photo was uploaded before; it is that product.")
            continue
        duplicate = similar_products(ctx, viewer, product_id).duplicate
        if duplicate is not None:
            lines.append(f"Product {product_id} {duplicate.describe()}.")
    return lines


def tile_caption(item: SimilarProduct) -> str:
    """A similar product's tile: its id, similarity and first attribute values."""
    values = ", ".join(item.key_values()) or "no values"
    return f"#{item.product_id} · {similarity_text(item.similarity)} · {values}"


def panel_markdown(panel: SimilarPanel) -> str:
    """The panel's text: the near-duplicate flag first, then what was searched."""
    lines = []
    if panel.duplicate is not None:
        lines.append(f"⚠ **This photo {panel.duplicate.describe()}.** Open it to check before labelling twice.")
    lines.append(panel.note + (" Click one to copy its attributes into the form." if panel.similar else ""))
    return "\n\n".join(lines)
