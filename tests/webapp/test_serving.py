"""webapp.serving's ModelManager: a damaged checkpoint is refused and the active one stays."""

from __future__ import annotations

import dataclasses

import pytest

import db
from webapp import services
from webapp.serving import ModelError, ModelManager

from .conftest import App


def test_a_damaged_checkpoint_is_refused_and_the_active_version_keeps_serving(app: App) -> None:
    with app.ctx.transaction() as session:
        path = app.ctx.models._path(db.get_version(session, "v-two"))
    path.write_bytes(path.read_bytes()[:-100] + b"x" * 100)
    with pytest.raises(ModelError, match="v-two"):
        services.activate(app.ctx, app.admin, "v-two")
    assert app.ctx.models.active.version_id == "v-one"
    view = services.upload_one(app.ctx, app.alice, app.photo("a"), "tee").view
    assert view.suggestion.model_version == "v-one"


def test_a_version_activated_by_another_process_is_served_without_a_restart(app: App) -> None:
    other = ModelManager(
        taxonomy=app.ctx.taxonomy,
        sessions=app.ctx.sessions,
        media=app.ctx.media,
        models_dir=app.ctx.models.models_dir,
        cache_dir=app.ctx.models.cache_dir,
    )
    other.load_active()
    assert other.active.version_id == "v-one"
    app.ctx.models.activate("v-two")  # another web replica, or a worker
    assert other.follow_database() and other.active.version_id == "v-two"
    assert not other.follow_database()  # nothing new
    replica = dataclasses.replace(app.ctx, models=other)  # the second web process's suggestions
    view = services.upload_one(replica, app.alice, app.photo("x"), "tee").view
    assert view.suggestion.model_version == "v-two"
