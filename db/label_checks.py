"""Second looks at labels: the append-only answers to "keep your value?", who set each current
label, and the confirmed values of a seller's products that a new save is compared with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taxonomy import NOT_APPLICABLE, LabeledExample, Taxonomy

from .labels import _CHUNK
from .media import MediaStore
from .products import user_id, visible_to
from .queries import labeled_examples
from .tables import CHECK_ANSWERS, CONFIRMED_SOURCES, LabelCheck, LabelEvent, Product, User


@dataclass(frozen=True)
class ConfirmedValue:
    """A product whose current value of one attribute a person saved."""

    product_id: int
    image_sha256: str
    image_ext: str
    value: str


@dataclass(frozen=True)
class LabelAuthor:
    source: str
    user_name: str | None


def record_check(
    session: Session,
    user: User,
    product_id: int,
    *,
    attribute: str,
    value: str,
    model_value: str,
    model_confidence: float,
    model_version_id: str | None,
    similar: int,
    agreeing: int,
    answer: str,
) -> LabelCheck:
    """Append one row: the question ("asked") or its answer ("keep", "model")."""
    if answer not in CHECK_ANSWERS:
        raise ValueError(f"unknown answer {answer!r}; allowed: {', '.join(CHECK_ANSWERS)}")
    row = LabelCheck(
        product_id=product_id,
        attribute=attribute,
        value=value,
        model_value=model_value,
        model_confidence=float(model_confidence),
        model_version_id=model_version_id,
        similar=similar,
        agreeing=agreeing,
        answer=answer,
        user_id=user_id(user),
    )
    session.add(row)
    session.flush()
    return row


def checks_of(session: Session, product_id: int, attribute: str, value: str) -> list[LabelCheck]:
    """Every row about this product, attribute and saved value, oldest first."""
    query = (
        select(LabelCheck)
        .where(LabelCheck.product_id == product_id, LabelCheck.attribute == attribute, LabelCheck.value == value)
        .order_by(LabelCheck.id)
    )
    return list(session.scalars(query))


def label_authors(session: Session, viewer: User, product_ids: Iterable[int]) -> dict[tuple[int, str], LabelAuthor]:
    """(product id, attribute) -> the source and user of its latest event, for the products the
    viewer may see."""
    ids = sorted(set(product_ids))
    out: dict[tuple[int, str], LabelAuthor] = {}
    for start in range(0, len(ids), _CHUNK):
        latest = (
            select(func.max(LabelEvent.id).label("id"))
            .join(Product, Product.id == LabelEvent.product_id)
            .where(LabelEvent.product_id.in_(ids[start : start + _CHUNK]), visible_to(viewer))
            .group_by(LabelEvent.product_id, LabelEvent.attribute)
            .subquery()
        )
        rows = session.execute(
            select(LabelEvent.product_id, LabelEvent.attribute, LabelEvent.source, User.name)
            .join(latest, LabelEvent.id == latest.c.id)
            .outerjoin(User, User.id == LabelEvent.user_id)
        )
        for pid, attribute, source, name in rows:
            out[(pid, attribute)] = LabelAuthor(source, name)
    return out


def confirmed_values(
    session: Session, viewer: User, category: str, attribute: str, *, exclude: int, limit: int
) -> list[ConfirmedValue]:
    """The newest ``limit`` products the viewer may see, of ``category`` and with a photo, whose
    current value of ``attribute`` a person saved (not an import), ``exclude`` left out."""
    latest = (
        select(func.max(LabelEvent.id).label("id"))
        .join(Product, Product.id == LabelEvent.product_id)
        .where(visible_to(viewer), Product.category == category, LabelEvent.attribute == attribute)
        .where(Product.id != exclude, Product.image_sha256.is_not(None))
        .group_by(LabelEvent.product_id)
        .subquery()
    )
    rows = session.execute(
        select(Product.id, Product.image_sha256, Product.image_ext, LabelEvent.value)
        .join(latest, LabelEvent.id == latest.c.id)
        .join(Product, Product.id == LabelEvent.product_id)
        .where(LabelEvent.source.in_(CONFIRMED_SOURCES), LabelEvent.value.is_not(None))
        .where(LabelEvent.value != NOT_APPLICABLE)
        .order_by(LabelEvent.id.desc())
        .limit(limit)
    )
    return [ConfirmedValue(pid, sha, ext, value) for pid, sha, ext, value in rows]


def labelled_by_product(session: Session, viewer: User, taxonomy: Taxonomy, media: MediaStore) -> list[LabeledExample]:
    """Every product with a photo and at least one current label that the viewer may see, as an
    example whose id is the product's database id (``labeled_examples`` uses the imported id)."""
    where = visible_to(viewer) & Product.image_sha256.is_not(None)
    ids = list(session.scalars(select(Product.id).where(where).order_by(Product.id)))
    examples = labeled_examples(session, viewer, taxonomy, media, require_image=True)  # the same order
    return [
        LabeledExample(str(pid), e.category, e.labels, e.image_path)
        for pid, e in zip(ids, examples, strict=True)
        if any(v is not None and v != NOT_APPLICABLE for v in e.labels.values())
    ]
