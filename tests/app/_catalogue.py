"""A data directory as ``python app.py`` makes it (SQLite file, media, models) holding the generated
taxonomy of tests/trainer and products with generated photos, for the register-model and score
commands, which are run on it in process or as real subprocesses."""

from __future__ import annotations

import io
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from sqlalchemy import Engine

import db
from taxonomy import Taxonomy, file_sha256
from tests.trainer.conftest import TINY_MODEL, draw
from trainer import Preprocess, build_model, save_checkpoint
from webapp.settings import Settings

ADMIN_PASSWORD = "admin-pass-1"


@dataclass(frozen=True)
class Catalogue:
    settings: Settings
    engine: Engine
    product_ids: tuple[int, ...]

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def sessions(self):
        return db.make_session_factory(self.engine)


def photo(category: str, color: str, second: str, rng: random.Random, index: int) -> bytes:
    image = draw(category, color, second, rng)
    image.putpixel((0, 0), (index % 256, index // 256 % 256, 7))  # every photo distinct
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_catalogue(data_dir: Path, taxonomy: Taxonomy, *, products: int, labelled: bool, seed: int = 5) -> Catalogue:
    """``products`` products of the admin with photos (tees and mugs in turn), labelled when asked."""
    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True)
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    media = db.MediaStore(settings.media_dir)
    rng = random.Random(seed)
    ids = []
    with db.make_session_factory(engine).begin() as session:
        db.store_taxonomy(session, taxonomy)
        admin = db.create_user(session, "admin", ADMIN_PASSWORD, role="admin")
        for i in range(products):
            category = "tee" if i % 2 == 0 else "mug"
            color = rng.choices(["red", "green", "blue", "yellow"], weights=[5, 3, 2, 1])[0]
            second = rng.choice(["solid", "striped"] if category == "tee" else ["small", "large"])
            product, _ = db.add_uploaded_product(
                session, taxonomy, media, admin, photo(category, color, second, rng, i), category
            )
            if labelled:
                labels = {"color": color, ("pattern" if category == "tee" else "size"): second}
                db.record_labels(session, taxonomy, admin, product, labels)
            ids.append(product.id)
    return Catalogue(settings, engine, tuple(ids))


def untrained_checkpoint(path: Path, taxonomy: Taxonomy, *, seed: int) -> Path:
    """A real checkpoint of a model that learned nothing (random trunk and heads)."""
    torch.manual_seed(seed)
    model, source = build_model(TINY_MODEL, taxonomy)
    save_checkpoint(
        path,
        model,
        preprocess=Preprocess(TINY_MODEL.image_size),
        train_config={},
        metrics={"mode": "full"},
        backbone_source=source,
    )
    return path


def install_active(catalogue: Catalogue, checkpoint: Path, version_id: str, taxonomy: Taxonomy) -> None:
    """Copy ``checkpoint`` into the models folder and make it the active version."""
    target = catalogue.settings.models_dir / version_id / "model.pt"
    target.parent.mkdir(parents=True)
    shutil.copy(checkpoint, target)
    with catalogue.sessions().begin() as session:
        db.register_version(
            session,
            version_id=version_id,
            path=f"{version_id}/model.pt",
            taxonomy_fingerprint=taxonomy.fingerprint,
            kind="full",
            checksum=file_sha256(target),
        )
        db.activate_version(session, version_id)
