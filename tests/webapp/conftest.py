"""A real SQLite file, a media folder, and a tiny real predictor trained once on generated photos.

The taxonomy is the generated one of tests/trainer (a "tee" is a square, a "mug" a disc); two
versions are registered from the one trained checkpoint, so a test can switch the active one.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

import db
from taxonomy import Taxonomy
from tests.trainer.conftest import TINY_MODEL, TINY_TRAIN, draw, make_examples, make_taxonomy
from trainer import TrainResult, train_full
from webapp.context import AppContext
from webapp.policy import PolicyRunner
from webapp.services import Viewer
from webapp.serving import ModelManager
from webapp.settings import Settings

PASSWORD = "a-long-password"


@pytest.fixture(scope="session")
def gen_taxonomy() -> Taxonomy:
    return make_taxonomy()


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory: pytest.TempPathFactory, gen_taxonomy: Taxonomy) -> TrainResult:
    """Trained once for the session on 40 generated photos (a few seconds on a CPU)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("webapp-train")
    examples = make_examples(root / "photos", 40, seed=3, prefix="w")
    return train_full(
        examples,
        taxonomy=gen_taxonomy,
        out_dir=root / "out",
        config=replace(TINY_TRAIN, epochs=2),
        model_config=TINY_MODEL,
        device="cpu",
        seed=0,
    )


@dataclass
class App:
    ctx: AppContext
    admin: Viewer
    alice: Viewer
    bob: Viewer
    photos: Path
    versions: tuple[str, str]

    def photo(self, name: str, category: str = "tee", color: str = "red", seed: int = 0) -> Path:
        second = "solid" if category == "tee" else "small"
        path = self.photos / f"{name}.png"
        draw(category, color, second, random.Random(seed)).save(path)
        return path


@pytest.fixture
def app(tmp_path: Path, gen_taxonomy: Taxonomy, tiny_trained: TrainResult) -> App:
    """A fresh app: SQLite file, users admin/alice/bob, versions v-one (active) and v-two."""
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    sessions = db.make_session_factory(engine)
    models_dir = tmp_path / "models"
    media = db.MediaStore(tmp_path / "media")
    versions = ("v-one", "v-two")
    with sessions.begin() as session:
        db.create_user(session, "admin", PASSWORD, role="admin")
        db.create_user(session, "alice", PASSWORD)
        db.create_user(session, "bob", PASSWORD)
        for version in versions:
            (models_dir / version).mkdir(parents=True)
            shutil.copy(tiny_trained.checkpoint_path, models_dir / version / "model.pt")
            db.register_version(
                session,
                version_id=version,
                path=f"{version}/model.pt",
                checksum=tiny_trained.sha256 or None,
                taxonomy_fingerprint=gen_taxonomy.fingerprint,
                kind="full",
                metrics=dict(tiny_trained.metrics),
            )
    manager = ModelManager(
        taxonomy=gen_taxonomy, sessions=sessions, media=media, models_dir=models_dir, cache_dir=tmp_path / "cache"
    )
    manager.activate(versions[0])
    ctx = AppContext(
        settings=settings,
        taxonomy=gen_taxonomy,
        engine=engine,
        sessions=sessions,
        media=media,
        models=manager,
        policy=PolicyRunner(settings.retrain_policy, sessions, manager),  # not started: tests call check()
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    yield App(ctx, Viewer("admin"), Viewer("alice"), Viewer("bob"), photos, versions)
    engine.dispose()
