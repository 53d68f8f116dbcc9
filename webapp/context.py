"""Everything a request handler needs, opened once per process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import db
from taxonomy import Taxonomy, default_taxonomy, load_taxonomy

from .serving import ModelManager
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    settings: Settings
    taxonomy: Taxonomy
    engine: Engine
    sessions: sessionmaker[Session]
    media: db.MediaStore
    models: ModelManager

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction per user action: committed on success, rolled back on any error."""
        with self.sessions.begin() as session:
            yield session


def open_context(settings: Settings, *, load_model: bool = True) -> AppContext:
    """Open the database (upgrading its schema), the media store and the active model."""
    taxonomy = load_taxonomy(settings.taxonomy_file) if settings.taxonomy_file else default_taxonomy()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    with sessions.begin() as session:
        interrupted = db.mark_interrupted_runs(session)
    if interrupted:
        log.warning("%d training run(s) were interrupted by the last shutdown", interrupted)
    media = db.MediaStore(settings.media_dir)
    models = ModelManager(
        taxonomy=taxonomy,
        sessions=sessions,
        media=media,
        models_dir=settings.models_dir,
        cache_dir=settings.cache_dir,
    )
    if load_model:
        models.load_active()
    return AppContext(
        settings=settings, taxonomy=taxonomy, engine=engine, sessions=sessions, media=media, models=models
    )
