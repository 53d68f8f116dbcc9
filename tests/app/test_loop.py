"""The loop after a training run (issue 11): the gate scores candidate and active version alike on
the same held-out products, and re-scoring the review queues runs in the background, in short
batches, so a seller's save goes through while it runs. In process, on a real SQLite file, with a
tiny real model trained on generated photos."""

from __future__ import annotations

import io
import random
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import db
from tests.app._manager import CHECKPOINT, tiny_serving
from tests.trainer.conftest import draw
from trainer import default_train_config, evaluate_checkpoint, split_held_out
from webapp.serving import RESCORE_BATCH, ModelManager

QUEUED = 8 * RESCORE_BATCH


def photo(i: int) -> bytes:
    image = draw("tee" if i % 2 == 0 else "mug", "red", "solid" if i % 2 == 0 else "small", random.Random(i))
    image.putpixel((0, 0), (i % 256, i // 256, 7))  # every photo distinct
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def manager(tmp_path: Path) -> ModelManager:
    serving = tiny_serving(tmp_path, f"sqlite:///{tmp_path / 'app.sqlite3'}", photos=60)
    taxonomy, trained, engine, sessions, manager = (
        serving.taxonomy,
        serving.trained,
        serving.engine,
        serving.sessions,
        serving.manager,
    )
    with sessions.begin() as session:
        db.register_version(
            session,
            version_id=trained.version_id,
            path=CHECKPOINT,
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


def test_the_gate_scores_candidate_and_active_alike_on_the_same_held_out_products(manager: ModelManager) -> None:
    taxonomy, media = manager.taxonomy, manager.media
    rng = random.Random(5)
    with manager.sessions.begin() as session:
        admin = db.create_user(session, "admin", "admin-pass-1", role="admin")
        for i in range(60):
            category, color = ("tee", "solid") if i % 2 == 0 else ("mug", "small")
            color = rng.choice(["red", "green", "blue"])
            second = rng.choice(["solid", "striped"] if category == "tee" else ["small", "large"])
            buffer = io.BytesIO()
            draw(category, color, second, rng).save(buffer, format="PNG")
            product, _ = db.add_uploaded_product(session, taxonomy, media, admin, buffer.getvalue(), category)
            labels = {"color": color, ("pattern" if category == "tee" else "size"): second}
            db.record_labels(session, taxonomy, admin, product, labels)
        every = db.labeled_examples(session, admin, taxonomy, media, require_image=True)
        examples = [e for e in every if any(v is not None for v in e.labels.values())]  # what trains
        active_row = db.get_version(session, manager.active.version_id)
        active_path = manager.models_dir / active_row.path
    _, held = split_held_out(examples, default_train_config("cpu").val_fraction)
    assert held
    Path(held[0].image_path).write_bytes(b"not a photo any more")  # unreadable: wrong for both sides
    with manager.sessions.begin() as session:
        run_id = manager.start_training("heads", db.get_user(session, admin.id))
    manager.wait()
    manager.wait_rescore()
    with manager.sessions.begin() as session:
        run = db.list_runs(session, limit=1)[0]
        assert run.id == run_id and run.status in ("succeeded", "rejected"), (run.status, run.error)
        version = db.get_version(session, run.result_version_id)
        candidate_path, metrics, message = manager.models_dir / version.path, dict(version.metrics), run.message
    assert metrics["held_out"] == len(held)
    assert metrics["score"] == pytest.approx(evaluate_checkpoint(candidate_path, held).score)
    assert metrics["reference"] == pytest.approx(evaluate_checkpoint(active_path, held).score)
    assert f"on the same {len(held)} held-out products (" in message and held[0].id in message, message
