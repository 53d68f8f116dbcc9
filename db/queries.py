"""Read-side summaries: labelled examples for training and export, and label counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taxonomy import NOT_APPLICABLE, LabeledExample, Taxonomy

from .labels import latest_values, restrict
from .media import MediaStore
from .products import image_path, visible_to
from .tables import CATEGORY_ATTRIBUTE, CONFIRMED_SOURCES, LabelEvent, Product, User

_SEP = "|"


def labeled_examples(
    session: Session,
    viewer: User,
    taxonomy: Taxonomy,
    media: MediaStore | None = None,
    *,
    require_image: bool = False,
) -> list[LabeledExample]:
    """Every product the viewer may see with its current labels, by product id.

    The id is the imported id when there is one, else the database id. ``image_path`` is the
    file in ``media`` (None for label-only products, which ``require_image`` leaves out).
    Values are canonical; ``NOT_APPLICABLE`` is kept as such (competition files write it empty).
    """
    if require_image and media is None:
        raise ValueError("require_image needs the media store that holds the images")
    where = visible_to(viewer)
    if require_image:
        where = where & Product.image_sha256.is_not(None)
    latest = latest_values(session, where)
    examples = []
    for product in session.scalars(select(Product).where(where).order_by(Product.id)):
        values = latest.get(product.id, (product.category, {}))[1]
        examples.append(
            LabeledExample(
                id=product.display_id,
                category=product.category,
                labels=restrict(taxonomy, product.category, values),
                image_path=image_path(media, product) if media is not None else None,
            )
        )
    return examples


@dataclass(frozen=True)
class LabelCounts:
    """Products with a current value (not missing, not 'not applicable')."""

    per_category: dict[str, int] = field(default_factory=dict)
    per_attribute: dict[tuple[str, str], int] = field(default_factory=dict)


def label_counts(session: Session, viewer: User, taxonomy: Taxonomy) -> LabelCounts:
    """How many of the viewer's products are labelled, per category and per (category, attribute)."""
    latest = (
        select(func.max(LabelEvent.id).label("id"))
        .join(Product, Product.id == LabelEvent.product_id)
        .where(visible_to(viewer))
        .group_by(LabelEvent.product_id, LabelEvent.attribute)
        .subquery()
    )
    # Only the attributes of each product's current category count. One IN list of
    # "category|attribute" keys keeps the plan simple on both backends (an OR of per-category
    # conditions made PostgreSQL pick nested loops on freshly loaded tables).
    pairs = [f"{cat.name}{_SEP}{attr}" for cat in taxonomy.categories for attr in cat.attribute_names]
    labelled = (
        select(LabelEvent.product_id, LabelEvent.attribute, Product.category)
        .join(latest, LabelEvent.id == latest.c.id)
        .join(Product, Product.id == LabelEvent.product_id)
        .where(
            LabelEvent.value.is_not(None),
            LabelEvent.value != NOT_APPLICABLE,
            (Product.category + _SEP + LabelEvent.attribute).in_(pairs),
        )
        .subquery()
    )
    per_attribute = {
        (cat, attr): n
        for cat, attr, n in session.execute(
            select(labelled.c.category, labelled.c.attribute, func.count()).group_by(
                labelled.c.category, labelled.c.attribute
            )
        )
    }
    per_category = {
        cat: n
        for cat, n in session.execute(
            select(labelled.c.category, func.count(func.distinct(labelled.c.product_id))).group_by(labelled.c.category)
        )
    }
    return LabelCounts(per_category=per_category, per_attribute=per_attribute)


def label_watermark(session: Session) -> int:
    """The id of the newest label event (0 when there is none): what a training run has seen.

    Label events are append-only with increasing ids, so "labelled after this run read its
    examples" is "an event id above the watermark it recorded", whatever the clocks say.
    """
    return int(session.scalar(select(func.max(LabelEvent.id))) or 0)


def products_labelled_since(session: Session, watermark: int) -> int:
    """Products with at least one label event (any source, a category change included) after
    ``watermark``."""
    query = select(func.count(func.distinct(LabelEvent.product_id))).where(LabelEvent.id > watermark)
    return int(session.scalar(query) or 0)


def labelled_products(session: Session) -> int:
    """Products with a photo and at least one label event."""
    query = (
        select(func.count(func.distinct(LabelEvent.product_id)))
        .join(Product, Product.id == LabelEvent.product_id)
        .where(Product.image_sha256.is_not(None))
    )
    return int(session.scalar(query) or 0)


CORRECTION_SOURCES = ("seller", "model_edited")


def corrections_between(session: Session, viewer: User, after: int, up_to: int | None) -> dict[str, int]:
    """Attribute -> how many of ``viewer``'s corrections (a value typed, or a suggestion changed)
    have event ids in ``(after, up_to]`` (no upper bound when ``up_to`` is None)."""
    where = (
        (LabelEvent.user_id == viewer.id)
        & LabelEvent.source.in_(CORRECTION_SOURCES)
        & (LabelEvent.id > after)
        & (LabelEvent.attribute != CATEGORY_ATTRIBUTE)
    )
    if up_to is not None:
        where = where & (LabelEvent.id <= up_to)
    query = select(LabelEvent.attribute, func.count()).where(where).group_by(LabelEvent.attribute)
    return {attribute: int(n) for attribute, n in session.execute(query)}


def photo_products(session: Session, viewer: User, *, confirmed_only: bool = False) -> list[tuple[int, str, str, str]]:
    """(id, category, photo sha256, photo suffix) of every product with a photo that the viewer may
    see, by id; with ``confirmed_only``, of those with a label a person confirmed."""
    query = select(Product.id, Product.category, Product.image_sha256, Product.image_ext).where(
        visible_to(viewer), Product.image_sha256.is_not(None), Product.image_ext.is_not(None)
    )
    if confirmed_only:
        confirmed = select(LabelEvent.product_id).where(LabelEvent.source.in_(CONFIRMED_SOURCES))
        query = query.where(Product.id.in_(confirmed))
    return [(pid, category, sha, ext) for pid, category, sha, ext in session.execute(query.order_by(Product.id))]
