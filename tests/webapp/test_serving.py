"""webapp.serving's ModelManager: a damaged checkpoint is refused and the active one stays."""

from __future__ import annotations

import pytest

import db
from webapp import services
from webapp.serving import ModelError

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
