"""A ModelManager on a real database with one tiny real model trained on generated photos, for
in-process tests of the serving side (gate, activation, re-scoring)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import db
from taxonomy import Taxonomy
from tests.trainer.conftest import TINY_MODEL, TINY_TRAIN, make_examples, make_taxonomy
from trainer import TrainResult, train_full
from webapp.serving import ModelManager

CHECKPOINT = "base/model.pt"  # the trained model, relative to the manager's models folder


@dataclass(frozen=True)
class TinyServing:
    taxonomy: Taxonomy
    trained: TrainResult
    engine: Engine
    sessions: sessionmaker[Session]
    manager: ModelManager


def tiny_serving(tmp_path: Path, db_url: str, *, photos: int) -> TinyServing:
    """Train on ``photos`` generated photos, upgrade the database at ``db_url`` and build a manager
    over it; nothing is registered yet (the checkpoint is at ``CHECKPOINT``)."""
    taxonomy = make_taxonomy()
    trained = train_full(
        make_examples(tmp_path / "train", photos, seed=1),
        taxonomy=taxonomy,
        out_dir=tmp_path / "models" / Path(CHECKPOINT).parent,
        config=TINY_TRAIN,
        model_config=TINY_MODEL,
        device="cpu",
    )
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    manager = ModelManager(
        taxonomy=taxonomy,
        sessions=sessions,
        media=db.MediaStore(tmp_path / "media"),
        models_dir=tmp_path / "models",
        cache_dir=tmp_path / "cache",
    )
    return TinyServing(taxonomy, trained, engine, sessions, manager)
