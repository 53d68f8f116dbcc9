"""``python app.py register-model PATH``: a checkpoint trained outside the app (issue 13) is
checked (checksum, taxonomy), copied into the models folder and judged by the gate on the same
held-out products as a candidate trained in the app; a foreign taxonomy and a damaged file are
refused with what is wrong. Real checkpoints trained here on generated photos, a real SQLite file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

import db
from taxonomy import Attribute, Category, Taxonomy, file_sha256
from tests.app._catalogue import install_active, make_catalogue, untrained_checkpoint
from tests.trainer.conftest import TINY_MODEL, TINY_TRAIN, make_examples, make_taxonomy
from trainer import TrainResult, evaluate_checkpoint, split_held_out, train_full
from webapp.cli import main


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return make_taxonomy()


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy) -> TrainResult:
    """A model trained outside the app, as ``python -m trainer train`` trains one."""
    root = tmp_path_factory.mktemp("elsewhere")
    # Enough photos and epochs that the tiny model learns the generated attributes whatever the
    # random streams (48 photos and 8 epochs sometimes learnt nothing: flaky).
    return train_full(
        make_examples(root / "photos", 120, seed=1),
        taxonomy=taxonomy,
        out_dir=root / "run",
        config=replace(TINY_TRAIN, epochs=14),
        model_config=TINY_MODEL,
        device="cpu",
    )


@pytest.fixture
def catalogue(tmp_path: Path, taxonomy: Taxonomy):
    """60 labelled products; active: a model that learned nothing."""
    catalogue = make_catalogue(tmp_path / "data", taxonomy, products=60, labelled=True)
    install_active(catalogue, untrained_checkpoint(tmp_path / "weak.pt", taxonomy, seed=0), "weak", taxonomy)
    yield catalogue
    catalogue.engine.dispose()


def register(catalogue, path: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["register-model", str(path), "--data-dir", str(catalogue.data_dir), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def versions(catalogue) -> dict[str, db.ModelVersion]:
    with catalogue.sessions().begin() as session:
        rows = list(session.scalars(select(db.ModelVersion)))
        for row in rows:
            session.expunge(row)
    return {row.id: row for row in rows}


def test_a_better_checkpoint_is_copied_judged_and_activated(catalogue, elsewhere, taxonomy, capsys, tmp_path):
    original = tmp_path / "from-the-gpu-box.pt"
    original.write_bytes(Path(elsewhere.checkpoint_path).read_bytes())
    code, out, err = register(catalogue, original, capsys)
    assert code == 0, err
    assert f"registered version {elsewhere.version_id}: activated: metric" in out, out
    version = versions(catalogue)[elsewhere.version_id]
    assert version.status == "active" and versions(catalogue)["weak"].status == "retired"
    assert version.checksum == file_sha256(original)
    copy = catalogue.settings.models_dir / version.path
    assert copy.is_file() and copy.resolve() != original.resolve()  # a copy, never the file given
    assert f"registered from {original.resolve()}" in version.notes and "active version weak" in version.notes
    # Judged on the products the hash holds out, as every candidate of the app is.
    with catalogue.sessions().begin() as session:
        admin = db.get_user_by_name(session, "admin")
        media = db.MediaStore(catalogue.settings.media_dir)
        examples = db.labeled_examples(session, admin, taxonomy, media, require_image=True)
    _, held = split_held_out(examples, 0.15)
    assert version.metrics["held_out"] == len(held) > 0
    assert version.metrics["score"] == pytest.approx(evaluate_checkpoint(copy, held).score)
    assert version.metrics["score"] > version.metrics["reference"], version.metrics
    # The original may go: the app serves its own copy.
    original.unlink()
    assert main(["score", "--missing", "--data-dir", str(catalogue.data_dir)]) == 0
    assert "scored 60 products with version " + elsewhere.version_id in capsys.readouterr().out
    # The same file twice is one version.
    again = tmp_path / "again.pt"
    again.write_bytes(copy.read_bytes())
    code, _, err = register(catalogue, again, capsys)
    assert code == 2 and f"registered already, as version {elsewhere.version_id} (active)" in err, err


def test_a_worse_checkpoint_is_kept_as_a_candidate_unless_forced(catalogue, elsewhere, taxonomy, capsys, tmp_path):
    assert register(catalogue, Path(elsewhere.checkpoint_path), capsys)[0] == 0
    worse = untrained_checkpoint(tmp_path / "worse.pt", taxonomy, seed=1)
    code, out, err = register(catalogue, worse, capsys)
    assert code == 0, err
    assert "kept as a candidate: metric" in out and "it is the active version" not in out, out
    assert versions(catalogue)[elsewhere.version_id].status == "active"
    forced = untrained_checkpoint(tmp_path / "forced.pt", taxonomy, seed=2)
    code, out, err = register(catalogue, forced, capsys, "--force")
    assert code == 0, err
    assert "activated by --force although worse" in out, out
    (version,) = [v for v in versions(catalogue).values() if v.status == "active"]
    assert version.metrics["forced"] is True and "with --force" in version.notes
    assert version.metrics["score"] < version.metrics["reference"]


def test_a_checkpoint_for_another_taxonomy_is_refused_naming_what_differs(catalogue, taxonomy, capsys, tmp_path):
    tee, mug = taxonomy.categories
    colors = Attribute("color", (*tee.attribute("color").values, "purple"))
    foreign = Taxonomy(categories=(Category("tee", (colors, tee.attribute("pattern"))), mug))
    trained = train_full(
        make_examples(tmp_path / "photos", 24, seed=2),
        taxonomy=foreign,
        out_dir=tmp_path / "foreign",
        config=replace(TINY_TRAIN, epochs=1),
        model_config=TINY_MODEL,
        device="cpu",
    )
    code, out, err = register(catalogue, Path(trained.checkpoint_path), capsys)
    assert code == 2, out
    assert "was trained for another taxonomy" in err and "purple" in err, err
    assert set(versions(catalogue)) == {"weak"}
    assert not (catalogue.settings.models_dir / "registered").exists()


# Not tested: one byte changed inside a weight tensor reads as a valid checkpoint (torch does not
# check the zip's CRCs, and a checkpoint carries no checksum of its own); the gate then judges it.
@pytest.mark.parametrize("damage", ["truncated", "empty", "not a checkpoint", "missing"])
def test_a_damaged_file_is_refused(catalogue, elsewhere, capsys, tmp_path, damage):
    data = Path(elsewhere.checkpoint_path).read_bytes()
    path = tmp_path / "model.pt"
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not a checkpoint":
        path.write_text("id,Category\n1,tee\n")
    code, out, err = register(catalogue, path, capsys)
    assert code == 2, out
    expected = f"no checkpoint file {path}" if damage == "missing" else "refused model.pt: cannot read checkpoint"
    assert expected in err and ("damaged or not a checkpoint" in err or damage == "missing"), err
    assert set(versions(catalogue)) == {"weak"} and versions(catalogue)["weak"].status == "active"
    assert not (catalogue.settings.models_dir / "registered").exists()
