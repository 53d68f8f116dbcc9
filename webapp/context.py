"""Everything a request handler needs, opened once per process.

Which taxonomy the app uses, first match wins:

1. ``--taxonomy-file`` (``VT_TAXONOMY_FILE``) when given. If the database stores another taxonomy
   and holds products, the app refuses to start (their labels belong to the stored one); if it
   holds none, the file replaces the stored taxonomy.
2. The taxonomy stored in the database (``python app.py import DIR --adopt-taxonomy``, or the
   Admin tab's "Adopt this dataset's taxonomy").
3. The competition's taxonomy (``taxonomy/data/meesho.json``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import db
import trainer
from taxonomy import Taxonomy, TaxonomyError, default_taxonomy, load_taxonomy

from .policy import PolicyRunner
from .scan_job import LabelScans
from .serving import ModelError, ModelManager
from .settings import Settings
from .worker import recover_dead_runs

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    settings: Settings
    taxonomy: Taxonomy
    engine: Engine
    sessions: sessionmaker[Session]
    media: db.MediaStore
    models: ModelManager
    policy: PolicyRunner
    scans: LabelScans = field(default_factory=LabelScans)  # the "Labels that look wrong" scan

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction per user action: committed on success, rolled back on any error."""
        with self.sessions.begin() as session:
            yield session

    def use_taxonomy(self, taxonomy: Taxonomy) -> None:
        """Switch the running app to ``taxonomy`` (already stored in the database by the caller)."""
        self.models.set_taxonomy(taxonomy)
        self.taxonomy = taxonomy


def resolve_taxonomy(settings: Settings, session: Session) -> Taxonomy:
    """The taxonomy to use, by the precedence in this module's docstring."""
    stored = db.stored_taxonomy(session)
    if settings.taxonomy_file is None:
        return stored if stored is not None else default_taxonomy()
    explicit = load_taxonomy(settings.taxonomy_file)
    if stored is None or stored.fingerprint == explicit.fingerprint:
        return explicit
    products = db.product_total(session)
    if products:
        raise TaxonomyError(
            f"--taxonomy-file {settings.taxonomy_file} differs from the taxonomy stored in the database, which holds "
            f"{products} products labelled under it (first = stored, second = file): "
            f"{db.describe_change(stored, explicit)}. Drop --taxonomy-file (and VT_TAXONOMY_FILE) to use the "
            "stored taxonomy, or use a fresh --data-dir for this one."
        )
    log.warning("the database holds no products: %s replaces its stored taxonomy", settings.taxonomy_file)
    db.store_taxonomy(session, explicit)
    return explicit


def open_context(settings: Settings, *, load_model: bool = True, recover_runs: bool = True) -> AppContext:
    """Open the database (upgrading its schema), the media store and the active model.

    ``recover_runs``: mark as interrupted the runs whose worker died (``worker.recover_dead_runs``:
    a run a live worker is doing is left alone). The manager only queues runs: a worker takes them."""
    if settings.taxonomy_file is not None:
        load_taxonomy(settings.taxonomy_file)  # a bad file is refused before the data directory is made
    trunk = settings.weights or None
    if trunk not in (None, "imagenet", "none"):  # a weights file asked for by name: refused now, not at the first run
        try:
            trainer.load_trunk_weights("resnet18", trunk)  # reads the file; the arch matters for "imagenet" only
        except ValueError as exc:
            raise ModelError(f"--weights (VT_WEIGHTS): {exc}") from None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    with sessions.begin() as session:
        taxonomy = resolve_taxonomy(settings, session)
    interrupted = recover_dead_runs(sessions) if recover_runs else []
    if interrupted:
        log.warning("%d training run(s) were interrupted by the last shutdown", len(interrupted))
    media = db.MediaStore(settings.media_dir)
    models = ModelManager(
        taxonomy=taxonomy,
        sessions=sessions,
        media=media,
        models_dir=settings.models_dir,
        cache_dir=settings.cache_dir,
        train_here=False,
    )
    models.weights = trunk
    if load_model:
        models.load_active()
    policy = PolicyRunner(settings.retrain_policy, sessions, models)  # started by the server only
    return AppContext(
        settings=settings,
        taxonomy=taxonomy,
        engine=engine,
        sessions=sessions,
        media=media,
        models=models,
        policy=policy,
    )
