"""The first run of a new user: the README's commands as written, a dataset with a taxonomy of its
own (built as a file, adopted by an import, kept across restarts), and the refusals that protect
a database that already holds products."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from sqlalchemy import create_engine, text

import db
from taxonomy import default_taxonomy, load_taxonomy, taxonomy_from_folder
from tests.app._data import OWN_LAYOUT, jpeg, make_learnable_dataset, make_own_taxonomy_dataset, photo
from tests.app.conftest import ROOT, start_app, stop_app
from webapp.cli import main
from webapp.form import model_line

SHARED = ROOT.parent / "shared" / "data"
README = ROOT / "README.md"


def readme_commands() -> list[str]:
    """The ``python app.py ...`` and ``python -m trainer ...`` lines of the README's "Other commands"
    block, comments cut off."""
    text_ = README.read_text("utf-8")
    start = text_.index("Other commands")
    block = re.search(r"```bash\n(.*?)```", text_[start:], re.S)
    assert block, "the README's 'Other commands' paragraph has no bash block"
    lines = [line.split(" #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith(("python app.py", "python -m trainer"))]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def stored(data_dir: Path):
    engine = db.make_engine(db.default_sqlite_url(data_dir))
    try:
        with db.make_session_factory(engine).begin() as session:
            return db.stored_taxonomy(session)
    finally:
        engine.dispose()


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, str(ROOT / "app.py"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for command in (
        "serve",
        "worker",
        "create-user",
        "import",
        "taxonomy",
        "export-labels",
        "export-predictions",
        "register-model",
        "score",
        "backup",
    ):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), (command, result.stdout)


@pytest.mark.skipif(not (SHARED / "myntra-dev").is_dir(), reason="../shared/data/myntra-dev is absent")
@pytest.mark.skipif(not (SHARED / "meesho-labels").is_dir(), reason="../shared/data/meesho-labels is absent")
def test_the_readme_commands_run_as_written_on_a_fresh_data_dir(tmp_path):
    commands = readme_commands()
    assert any("import" in c for c in commands) and any("export-labels" in c for c in commands), commands
    # A folder beside which ../shared is the real one, as from the project's root; the data dir is
    # the default one (./data), fresh.
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED.parent, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    for line in commands:
        argv = shlex.split(line)
        assert argv[:2] in (["python", "app.py"], ["python", "-m"]), line
        program = [str(ROOT / "app.py")] if argv[1] == "app.py" else ["-m", argv[2]]
        result = subprocess.run(
            [sys.executable, *program, *argv[len(program) + 1 :]],
            cwd=work,
            env={**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
            input="a-password-1\n",  # create-user asks for one; without a terminal it reads stdin
            capture_output=True,
            text=True,
            start_new_session=True,  # no controlling terminal, as in a script
            timeout=600,
        )
        assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        assert "skipped" not in line or "error" not in result.stderr
    imported = stored(work / "data")
    assert imported is not None and imported.fingerprint == taxonomy_from_folder(SHARED / "myntra-dev").fingerprint
    labels = (work / "labels.csv").read_text("utf-8").splitlines()
    assert len(labels) > 1000 and labels[0].startswith("id,Category,len,attr_1")


def test_from_data_writes_the_taxonomy_the_import_adopts(tmp_path, capsys):
    dataset = make_own_taxonomy_dataset(tmp_path / "own")
    out = tmp_path / "own.json"
    code, printed, err = run_cli(["taxonomy", "from-data", str(dataset), "--out", str(out)], capsys)
    assert code == 0, err
    assert "2 categories, 5 (category, attribute) pairs" in printed
    built = load_taxonomy(out)
    assert {c.name: list(c.attribute_names) for c in built.categories} == OWN_LAYOUT
    assert built.category("Caps").attribute("brim").values == ("flat", "curved")  # most common first

    data = tmp_path / "data"
    code, printed, err = run_cli(["import", str(dataset), "--adopt-taxonomy", "--data-dir", str(data)], capsys)
    assert code == 0, err
    assert "Adopted the taxonomy" in printed and "24 imported" in printed
    adopted = stored(data)
    assert adopted is not None and adopted.to_dict() == built.to_dict()


def test_an_import_refused_for_its_taxonomy_says_how_to_fix_it(tmp_path, capsys):
    dataset = make_own_taxonomy_dataset(tmp_path / "own")
    code, _, err = run_cli(["import", str(dataset), "--data-dir", str(tmp_path / "data")], capsys)
    assert code == 2
    assert "category_attributes.json disagrees with the taxonomy" in err
    assert "--adopt-taxonomy" in err and f"taxonomy from-data {dataset}" in err
    assert stored(tmp_path / "data") is None


def test_adopting_is_refused_once_the_database_has_products(tmp_path, capsys):
    data = tmp_path / "data"
    code, _, err = run_cli(
        ["import", str(make_learnable_dataset(tmp_path / "default", n=8)), "--data-dir", str(data)], capsys
    )
    assert code == 0, err
    own = make_own_taxonomy_dataset(tmp_path / "own")
    code, _, err = run_cli(["import", str(own), "--adopt-taxonomy", "--data-dir", str(data)], capsys)
    assert code == 2
    assert "the database holds 8 products" in err and "cannot change" in err
    assert "category 'Mugs' only in the second" in err  # the differences, not just "no"
    assert stored(data) is None  # nothing changed: the default taxonomy stays
    engine = create_engine(db.default_sqlite_url(data))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM products")).scalar() == 8
    engine.dispose()
    # The advice without the flag, on this database: a fresh data dir, since it cannot adopt.
    code, _, err = run_cli(["import", str(own), "--data-dir", str(data)], capsys)
    assert code == 2 and "holds 8 products" in err and "--data-dir NEW" in err


def test_a_taxonomy_file_that_contradicts_the_stored_one_is_refused_while_products_exist(tmp_path, capsys):
    data = tmp_path / "data"
    own = make_own_taxonomy_dataset(tmp_path / "own")
    assert run_cli(["import", str(own), "--adopt-taxonomy", "--data-dir", str(data)], capsys)[0] == 0
    default_file = ROOT / "taxonomy" / "data" / "meesho.json"
    code, _, err = run_cli(
        ["export-labels", str(tmp_path / "l.csv"), "--data-dir", str(data), "--taxonomy-file", str(default_file)],
        capsys,
    )
    assert code == 2
    assert "differs from the taxonomy stored in the database, which holds 24 products" in err
    assert "Drop --taxonomy-file" in err
    # The same file as the stored taxonomy is fine.
    own_file = tmp_path / "own.json"
    assert run_cli(["taxonomy", "from-data", str(own), "--out", str(own_file)], capsys)[0] == 0
    code, printed, err = run_cli(
        ["export-labels", str(tmp_path / "l.csv"), "--data-dir", str(data), "--taxonomy-file", str(own_file)], capsys
    )
    assert code == 0 and "wrote 24 rows" in printed, err


def test_the_running_app_adopts_a_taxonomy_and_keeps_it_across_a_restart(tmp_path):
    dataset = make_own_taxonomy_dataset(tmp_path / "own")
    data = tmp_path / "data"
    app = start_app(data, dataset)
    try:
        admin, alice = app.client("admin"), app.client("alice")
        with pytest.raises(AppError) as refused:
            admin.predict(str(dataset), False, api_name="/import_data")
        assert "disagrees with the taxonomy" in str(refused.value)
        assert "/adopt_taxonomy" in str(refused.value) and "taxonomy from-data" in str(refused.value)
        adopted = admin.predict(str(dataset), api_name="/adopt_taxonomy")
        assert adopted["adopted"] and adopted["categories"] == ["Mugs", "Caps"], adopted
        report = admin.predict(str(dataset), False, api_name="/import_data")
        assert report["imported"] == 24, report
        # No restart: a seller uploads into a category of the adopted taxonomy at once.
        path = tmp_path / "cap.jpg"
        path.write_bytes(jpeg(photo("Kurtis", "red", True, 9001)))
        cap = alice.predict(handle_file(str(path)), "Caps", api_name="/upload")
        assert cap["attributes"] == ["color", "pattern", "brim"]
    finally:
        stop_app(app)
    app = start_app(data, dataset)
    try:
        alice = app.client("alice")
        assert alice.predict(cap["product_id"], api_name="/product")["attributes"] == ["color", "pattern", "brim"]
        path = tmp_path / "kurti.jpg"
        path.write_bytes(jpeg(photo("Kurtis", "blue", False, 9002)))
        with pytest.raises(AppError, match="unknown category 'Kurtis'"):
            alice.predict(handle_file(str(path)), "Kurtis", api_name="/upload")
    finally:
        stop_app(app)
    adopted = stored(data)
    assert adopted is not None and adopted.fingerprint != default_taxonomy().fingerprint
    assert json.loads(json.dumps(adopted.to_dict())) == taxonomy_from_folder(dataset).to_dict()


def test_the_model_line_says_when_the_trunk_started_from_random_weights():
    assert model_line({"active": None}) == "no trained model yet"
    pretrained = model_line({"active": "v1", "backbone_source": "imagenet", "random_init": False})
    assert pretrained == "model `v1`"
    random_init = model_line({"active": "v1", "backbone_source": "random", "random_init": True})
    assert "random weights" in random_init and "weaker until it is trained on more labels" in random_init
