"""Adopting a dataset's taxonomy: while the database holds no products, an import may make the
dataset's categories, attributes and values the app's (stored in the database, used from then on,
in this process at once and by every later start)."""

from __future__ import annotations

import os
from pathlib import Path

import db
from taxonomy import Taxonomy, TaxonomyError, taxonomy_from_folder

from .context import AppContext

ADOPT_FLAG = "--adopt-taxonomy"
ADOPT_CHECKBOX = "Adopt this dataset's taxonomy"


def adopt_dataset_taxonomy(ctx: AppContext, data_dir: str | os.PathLike) -> Taxonomy | None:
    """Make the taxonomy of ``data_dir`` the app's; returns it, or None when it is the app's already.

    Refused (``db.TaxonomyChangeRefused``) while the database holds products, and (``TaxonomyError``)
    when ``--taxonomy-file`` names another taxonomy, which the next start would put back.
    """
    new = taxonomy_from_folder(data_dir)
    explicit = ctx.settings.taxonomy_file
    if explicit is not None and new.fingerprint != ctx.taxonomy.fingerprint:
        raise TaxonomyError(
            f"the app runs with --taxonomy-file {explicit} (or VT_TAXONOMY_FILE), which the dataset's taxonomy "
            f"would contradict on the next start; drop it to adopt the taxonomy of {data_dir}"
        )
    with ctx.transaction() as session:
        changed = db.change_taxonomy(session, ctx.taxonomy, new)
        if changed:
            ctx.use_taxonomy(new)  # inside the transaction: a refusal (a training run) stores nothing
    return new if changed else None


def adopted_summary(taxonomy: Taxonomy, data_dir: str | os.PathLike) -> str:
    pairs = sum(len(c.attributes) for c in taxonomy.categories)
    return (
        f"Adopted the taxonomy of {Path(data_dir)}: {len(taxonomy.categories)} categories "
        f"({', '.join(taxonomy.category_names)}), {pairs} (category, attribute) pairs; stored in the database "
        "and used from now on."
    )


def mismatch_advice(ctx: AppContext, data_dir: str | os.PathLike, *, in_ui: bool = False) -> str:
    """What to do when a dataset's layout disagrees with the app's taxonomy, for this database."""
    with ctx.transaction() as session:
        products = db.product_total(session)
    if products:
        return (
            f"The database holds {products} products under the current taxonomy, so it cannot adopt the dataset's; "
            f"import it into a fresh data directory (python app.py import {data_dir} {ADOPT_FLAG} --data-dir NEW), "
            f"or build its taxonomy file with: python app.py taxonomy from-data {data_dir} --out taxonomy.json"
        )
    how = (
        f"tick '{ADOPT_CHECKBOX}' (API: /adopt_taxonomy) and import again"
        if in_ui
        else f"run the import again with {ADOPT_FLAG}"
    )
    return (
        f"The database holds no products yet: to use the dataset's own taxonomy, {how}; or build a taxonomy file "
        f"with: python app.py taxonomy from-data {data_dir} --out taxonomy.json (then start with --taxonomy-file)."
    )
