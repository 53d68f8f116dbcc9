"""The trunk a fresh full training starts from is the app's to configure (``--weights``,
``VT_WEIGHTS``): a shop that pretrained a trunk on its own catalogue (``python -m trainer
pretrain``) gets its fresh runs trained from it, with the catalogue recipe, recorded on the version."""

from __future__ import annotations

from pathlib import Path

import db
from tests.trainer.conftest import write_catalogue_trunk
from trainer import default_train_config, load_checkpoint
from webapp import services
from webapp.torchrun import Torchrun

from .conftest import App
from .test_policy import label_products

SOURCE = "pretrained: catalogue shop/catalogue.csv, columns articleType,baseColour, 6 epochs"


def test_a_fresh_full_run_trains_from_the_configured_catalogue_trunk(app: App, tmp_path: Path) -> None:
    trunk = write_catalogue_trunk(tmp_path / "trunk.pt", SOURCE, seed=5)
    app.ctx.models.weights = str(trunk)  # what open_context sets from --weights
    label_products(app, 12)
    run_id = services.start_training(app.ctx, app.admin, "full", fresh=True)["run_id"]
    app.ctx.models.wait(600)
    (run,) = services.training_runs(app.ctx, app.admin, limit=1)
    assert run["run_id"] == run_id and run["status"] in ("succeeded", "rejected"), run
    assert run["init"] is None  # fresh: not a fine-tune of the active version
    with app.ctx.sessions.begin() as session:
        version = db.get_version(session, run["version"])
        metrics, path = dict(version.metrics), version.path
    assert metrics["backbone_source"] == f"{SOURCE}; weights file {trunk}"
    ckpt = load_checkpoint(app.ctx.models.models_dir / path)
    assert ckpt.recipe == "catalogue" and ckpt.model_config.frozen_when_pretrained == ()
    assert ckpt.model_config.weights == str(trunk)
    assert ckpt.train_config["epochs"] == default_train_config("cpu", recipe="catalogue").epochs  # its schedule


def test_torchrun_passes_the_trunk_to_a_fresh_run_only(tmp_path: Path) -> None:
    command = Torchrun(1).command(tmp_path, tmp_path / "out", None, "trunk.pt")
    assert command[command.index("--weights") + 1] == "trunk.pt"
    warm = Torchrun(1).command(tmp_path, tmp_path / "out", tmp_path / "base.pt", "trunk.pt")
    assert "--weights" not in warm and warm[warm.index("--init") + 1] == str(tmp_path / "base.pt")
