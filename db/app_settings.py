"""Small values the app keeps in its database (``app_settings``): the taxonomy it adopted.

The taxonomy is stored in the database, not in a file beside it, so every process on the
database (the server, ``python app.py import``, a second server on PostgreSQL) uses the same one
and a backup carries it.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taxonomy import Taxonomy, TaxonomyError

from .tables import AppSetting, Product

TAXONOMY_KEY = "taxonomy"
MAX_DIFFERENCES_SHOWN = 8


class TaxonomyChangeRefused(TaxonomyError):
    """The database holds products written under another taxonomy; the text names how many and the differences."""


def stored_taxonomy(session: Session) -> Taxonomy | None:
    """The taxonomy stored in the database, or None when none was ever stored."""
    row = session.get(AppSetting, TAXONOMY_KEY)
    if row is None:
        return None
    try:
        return Taxonomy.from_dict(row.value)
    except (KeyError, TypeError) as exc:
        raise TaxonomyError(f"the taxonomy stored in the database is malformed: missing or wrong field {exc}") from None


def store_taxonomy(session: Session, taxonomy: Taxonomy) -> None:
    """Store ``taxonomy`` as the database's (replacing any stored one); the caller commits."""
    row = session.get(AppSetting, TAXONOMY_KEY)
    if row is None:
        session.add(AppSetting(key=TAXONOMY_KEY, value=taxonomy.to_dict()))
    else:
        row.value = taxonomy.to_dict()
    session.flush()


def product_total(session: Session) -> int:
    """Products of every owner: the ones a taxonomy change would strand."""
    return session.scalar(select(func.count()).select_from(Product)) or 0


def describe_change(current: Taxonomy, new: Taxonomy) -> str:
    """The first few differences between two taxonomies, as one line."""
    differences = current.differences(new)
    shown = "; ".join(differences[:MAX_DIFFERENCES_SHOWN])
    more = len(differences) - MAX_DIFFERENCES_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")


def change_taxonomy(session: Session, current: Taxonomy, new: Taxonomy) -> bool:
    """Store ``new`` as the database's taxonomy in place of ``current``; returns whether it changed.

    Refused with ``TaxonomyChangeRefused`` while the database holds products: their labels were
    validated against ``current`` and would no longer fit. The products are counted in the same
    transaction that stores the taxonomy.
    """
    stored = stored_taxonomy(session)
    if new.fingerprint == current.fingerprint and stored is not None and stored.fingerprint == new.fingerprint:
        return False
    if new.fingerprint != current.fingerprint:
        products = product_total(session)
        if products:
            raise TaxonomyChangeRefused(
                f"the database holds {products} products labelled under the current taxonomy, so it cannot "
                f"change (first = current, second = new): {describe_change(current, new)}. "
                "Use a fresh --data-dir (or database) for a dataset with another taxonomy."
            )
    store_taxonomy(session, new)
    return new.fingerprint != current.fingerprint
