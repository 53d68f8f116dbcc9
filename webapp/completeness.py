"""Completeness per seller: the share of their products' attributes confirmed, and ready products.

Per product it is ``ProductRow.completeness`` / ``ProductView.answered`` (``db.completeness``
says what counts as confirmed). A seller sees their own line, an admin one line per seller.
"""

from __future__ import annotations

from dataclasses import dataclass

import db

from .context import AppContext
from .form import percent
from .services import Viewer, user_of


@dataclass(frozen=True)
class SellerCompleteness:
    seller: str
    products: int
    ready: int
    answered: int  # attributes confirmed, over all their products
    required: int  # attributes of their products' categories, all together
    share: float  # answered / required (1.0 with nothing to answer)


def completeness(ctx: AppContext, viewer: Viewer) -> list[SellerCompleteness]:
    """The viewer's own line (a seller), or one line per owner of products (an admin), by name."""
    with ctx.transaction() as session:
        user = user_of(session, viewer)
        rows = db.owner_completeness(session, user, ctx.taxonomy)
        if not rows and not user.is_admin:
            return [SellerCompleteness(user.name, 0, 0, 0, 0, 1.0)]
    return [SellerCompleteness(r.owner, r.products, r.ready, r.answered, r.required, round(r.share, 4)) for r in rows]


def summary_line(ctx: AppContext, viewer: Viewer) -> str:
    """The My products header: "3 of 12 products ready · 58% of their attributes confirmed"."""
    rows = completeness(ctx, viewer)
    products = sum(r.products for r in rows)
    if not products:
        return "No products yet."
    ready = sum(r.ready for r in rows)
    answered, required = sum(r.answered for r in rows), sum(r.required for r in rows)
    share = answered / required if required else 1.0
    whose = "products" if len(rows) == 1 else f"products of {len(rows)} sellers"
    return f"**{ready} of {products} {whose} ready** · {percent(share)} of their attributes confirmed"
