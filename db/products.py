"""Products and who may see them: a seller sees only their own, an admin sees all.

Every function that reads products takes the viewer; a product the viewer may not see is
reported exactly like one that does not exist (``NotFound``), so ids reveal nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, inspect, select, true
from sqlalchemy.orm import Session

from taxonomy import Taxonomy, decode_image

from .media import MediaStore
from .tables import CATEGORY_ATTRIBUTE, LABEL_SOURCES, LabelEvent, Product, User, utcnow

MAX_PAGE = 1000
# Ids are INTEGER columns (32 bits on PostgreSQL): a larger number is no product, and is
# answered as such instead of with the driver's overflow error.
MAX_ID = 2**31 - 1


class NotFound(LookupError):
    """No such product, or one the viewer may not see (the two are not told apart)."""


def user_id(user: User | int) -> int:
    """The id of ``user`` (a User, attached or not, or an id)."""
    if isinstance(user, int):
        return user
    identity = inspect(user).identity
    if identity is None:
        raise ValueError(f"{user!r} has no id yet; add it to a session and flush first")
    return int(identity[0])


def visible_to(viewer: User) -> ColumnElement[bool]:
    """The WHERE clause restricting products to those ``viewer`` may see."""
    return true() if viewer.is_admin else Product.owner_id == user_id(viewer)


def can_see(viewer: User, product: Product) -> bool:
    return viewer.is_admin or product.owner_id == user_id(viewer)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def get_product(session: Session, viewer: User, product_id: int) -> Product:
    try:
        key = int(product_id)  # a UI may hand over "12" or 12.0
    except (TypeError, ValueError, OverflowError):
        raise NotFound(f"product {_shown(product_id)} not found") from None
    if not 0 < key <= MAX_ID:
        raise NotFound(f"product {_shown(product_id)} not found")
    product = session.get(Product, key)
    if product is None or not can_see(viewer, product):
        raise NotFound(f"product {product_id!r} not found")
    return product


def resolve_product(session: Session, viewer: User, product: Product | int) -> Product:
    """A Product (checked against the viewer) from a Product or an id."""
    if isinstance(product, Product):
        if not can_see(viewer, product):
            raise NotFound(f"product {product.id!r} not found")
        return product
    return get_product(session, viewer, product)


@dataclass(frozen=True)
class ProductFilter:
    """What a product list shows; None means any."""

    category: str | None = None
    source: str | None = None
    owner_id: int | None = None  # only narrows; never widens past what the viewer may see
    has_image: bool | None = None
    external_id: str | None = None


def _filtered(viewer: User, filters: ProductFilter | None) -> Select[tuple[Product]]:
    query = select(Product).where(visible_to(viewer))
    f = filters or ProductFilter()
    if f.category is not None:
        query = query.where(Product.category == f.category)
    if f.source is not None:
        query = query.where(Product.source == f.source)
    if f.owner_id is not None:
        query = query.where(Product.owner_id == f.owner_id)
    if f.has_image is not None:
        query = query.where(Product.image_sha256.is_not(None) if f.has_image else Product.image_sha256.is_(None))
    if f.external_id is not None:
        query = query.where(Product.external_id == f.external_id)
    return query


def list_products(
    session: Session, viewer: User, filters: ProductFilter | None = None, *, limit: int = 50, offset: int = 0
) -> list[Product]:
    """The viewer's products (an admin's: everyone's), newest first, one page."""
    limit = max(0, min(int(limit), MAX_PAGE))
    offset = max(0, min(int(offset), MAX_ID))
    query = _filtered(viewer, filters).order_by(Product.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


def count_products(session: Session, viewer: User, filters: ProductFilter | None = None) -> int:
    return session.scalar(select(func.count()).select_from(_filtered(viewer, filters).subquery())) or 0


def add_uploaded_product(
    session: Session, taxonomy: Taxonomy, media: MediaStore, owner: User, data: bytes, category: str
) -> tuple[Product, bool]:
    """Store an uploaded photo as ``owner``'s product; returns (product, created).

    The image is decoded first: an unreadable one raises ``taxonomy.ImageError`` and nothing is
    written. The same image from the same owner gives back the existing product (category kept).
    """
    _, info = decode_image(data)
    cat = taxonomy.category(category)
    owner_key = user_id(owner)
    existing = session.scalar(select(Product).where(Product.owner_id == owner_key, Product.image_sha256 == info.sha256))
    if existing is not None:
        return existing, False
    media.put(data, info)
    product = Product(
        owner_id=owner_key,
        category=cat.name,
        image_sha256=info.sha256,
        image_ext=info.suffix,
        image_size=info.size,
        width=info.width,
        height=info.height,
        source="upload",
    )
    session.add(product)
    session.flush()
    return product, True


def set_category(
    session: Session,
    taxonomy: Taxonomy,
    viewer: User,
    product_id: int,
    category: str,
    *,
    source: str = "seller",
    model_version_id: str | None = None,
    at: datetime | None = None,
    restores_id: int | None = None,
) -> Product:
    """Change a product's category; the change is kept in its label history.

    Labels of attributes the new category lacks stop being current (they stay in the history
    and return if the category changes back). ``at``: the time of the action it belongs to (a
    save's events share one, which is how an undo finds them).
    """
    product = get_product(session, viewer, product_id)
    cat = taxonomy.category(category)
    if source not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {source!r}; allowed: {', '.join(LABEL_SOURCES)}")
    if cat.name == product.category:
        return product
    replaced = product.category
    now = at or utcnow()
    product.category = cat.name
    product.updated_at = now
    session.add(
        LabelEvent(
            product_id=product.id,
            attribute=CATEGORY_ATTRIBUTE,
            value=cat.name,
            source=source,
            user_id=user_id(viewer),
            model_version_id=model_version_id,
            created_at=now,
            restores_id=restores_id,
            replaced=replaced,
        )
    )
    session.flush()
    return product


def image_path(media: MediaStore, product: Product) -> str | None:
    """The stored photo of ``product`` as a path string, or None for a label-only product."""
    if product.image_sha256 is None or product.image_ext is None:
        return None
    return str(media.path_for(product.image_sha256, product.image_ext))
