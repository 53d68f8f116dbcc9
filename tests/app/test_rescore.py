"""Re-scoring the review queues after an activation runs in the background, in short batches: a
seller's save goes through while it runs (issue 11). In process, on a real SQLite file, with a
tiny real model trained on generated photos."""

from __future__ import annotations

import io
import random
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import db
from tests.trainer.conftest import TINY_MODEL, TINY_TRAIN, draw, make_examples, make_taxonomy
from trainer import train_full
from webapp.models import RESCORE_BATCH, ModelManager

QUEUED = 8 * RESCORE_BATCH


def photo(i: int) -> bytes:
    image = draw("tee" if i % 2 == 0 else "mug", "red", "solid" if i % 2 == 0 else "small", random.Random(i))
    image.putpixel((0, 0), (i % 256, i // 256, 7))  # every photo distinct
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def manager(tmp_path: Path) -> ModelManager:
    taxonomy = make_taxonomy()
    trained = train_full(
        make_examples(tmp_path / "train", 60, seed=1),
        taxonomy=taxonomy,
        out_dir=tmp_path / "models" / "run-00001",
        config=TINY_TRAIN,
        model_config=TINY_MODEL,
        device="cpu",
    )
    engine = db.make_engine(f"sqlite:///{tmp_path / 'app.sqlite3'}")
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    manager = ModelManager(
        taxonomy=taxonomy,
        sessions=sessions,
        media=db.MediaStore(tmp_path / "media"),
        models_dir=tmp_path / "models",
        cache_dir=tmp_path / "cache",
    )
    with sessions.begin() as session:
        db.register_version(
            session,
            version_id=trained.version_id,
            path="run-00001/model.pt",
            checksum=trained.sha256,
            taxonomy_fingerprint=taxonomy.fingerprint,
            kind="full",
        )
    manager.activate(trained.version_id)
    with sessions.begin() as session:
        seller = db.create_user(session, "alice", "alice-pass-1")
        for i in range(QUEUED):
            category = "tee" if i % 2 == 0 else "mug"
            product, _ = db.add_uploaded_product(session, taxonomy, manager.media, seller, photo(i), category)
            suggested = manager.suggest([manager.media.path_for(product.image_sha256, product.image_ext)], [category])
            assert suggested is not None
            db.save_prediction(session, product, suggested[0], suggested[1][0])
    yield manager
    manager.wait_rescore()
    engine.dispose()


def suggestions(session) -> int:
    return session.scalar(select(func.count(func.distinct(db.Prediction.group_id))))


def test_a_sellers_save_completes_while_the_queue_is_re_scored(manager: ModelManager) -> None:
    with manager.sessions.begin() as session:
        seller = db.get_user_by_name(session, "alice")
        first = session.scalars(select(db.Product).order_by(db.Product.id.desc())).first()
        assert suggestions(session) == QUEUED
    assert manager.start_rescore() == QUEUED  # returns at once: the work goes on in its thread
    deadline = time.monotonic() + 120
    with manager.sessions() as probe:
        while suggestions(probe) == QUEUED and time.monotonic() < deadline:
            probe.rollback()
            time.sleep(0.01)
    with manager.sessions.begin() as session:
        db.record_labels(session, manager.taxonomy, seller, first.id, {"color": "blue"})
        # The save holds the write lock now: re-scoring has written some batches, not all.
        assert QUEUED < suggestions(session) < 2 * QUEUED
    manager.wait_rescore()
    with manager.sessions.begin() as session:
        assert suggestions(session) == 2 * QUEUED  # every queued product re-scored in the end
        assert db.current_labels(session, seller, manager.taxonomy, first.id)["color"] == "blue"
