"""``python -m trainer`` on competition-layout folders, and its errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from taxonomy import write_train_csv
from trainer.cli import main


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, gen_data, gen_taxonomy) -> Path:
    """A competition-layout folder: train.csv, test.csv, images/, category_attributes.json."""
    root = tmp_path_factory.mktemp("competition")
    (root / "images").mkdir()
    rows = gen_data["test"][:20]
    for e in rows:
        shutil.copy(e.image_path, root / "images" / f"{e.id}.jpg")
    (root / "images" / f"{rows[0].id}.jpg").write_bytes(b"\xff\xd8 broken")  # one unreadable photo
    write_train_csv(rows, root / "train.csv", gen_taxonomy)
    with open(root / "test.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["id", "Category"])
        w.writerows([e.id, e.category] for e in rows)
    layout = {c.name: list(c.attribute_names) for c in gen_taxonomy.categories}
    (root / "category_attributes.json").write_text(json.dumps(layout))
    return root


def test_eval_writes_metric_json_and_table(trained, data_dir, tmp_path, capsys) -> None:
    assert (
        main(["eval", "--checkpoint", str(trained.checkpoint_path), "--data", str(data_dir), "--out", str(tmp_path)])
        == 0
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.5 < metrics["score"] <= 1.0
    table = list(csv.DictReader(open(tmp_path / "per_attribute.csv")))
    assert {(r["category"], r["attribute"]) for r in table} == {
        ("tee", "color"),
        ("tee", "pattern"),
        ("mug", "color"),
        ("mug", "size"),
    }
    assert "score" in capsys.readouterr().out


def test_predict_writes_a_submission_and_counts_skipped(trained, data_dir, tmp_path, capsys) -> None:
    out = tmp_path / "submission.csv"
    assert (
        main(["predict", "--checkpoint", str(trained.checkpoint_path), "--data", str(data_dir), "--out", str(out)]) == 0
    )
    rows = list(csv.reader(open(out)))
    assert rows[0][:4] == ["id", "Category", "len", "attr_1"] and len(rows) == 21
    printed = capsys.readouterr().out
    assert "skipped 1 unreadable" in printed and "wrote 20 rows" in printed


def test_embed_fills_the_cache_once(trained, data_dir, tmp_path, capsys) -> None:
    args = ["embed", "--checkpoint", str(trained.checkpoint_path), "--data", str(data_dir), "--cache", str(tmp_path)]
    assert main(args) == 0
    assert "19 embeddings" in capsys.readouterr().out
    assert main(args) == 0
    assert "(0 computed, 19 already cached)" in capsys.readouterr().out


def test_train_heads_from_the_command_line(trained, data_dir, tmp_path, capsys) -> None:
    assert (
        main(
            [
                "train",
                "--data",
                str(data_dir),
                "--mode",
                "heads",
                "--base",
                str(trained.checkpoint_path),
                "--epochs",
                "3",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "model.pt").is_file()
    assert "skipped 1 unreadable" in capsys.readouterr().out


def test_clear_errors(trained, data_dir, tmp_path, capsys) -> None:
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "data folder not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.csv").write_text("id,Category,len,attr_1,attr_2\n")
    (empty / "category_attributes.json").write_text(json.dumps({"tee": ["color", "pattern"]}))
    assert (
        main(
            [
                "train",
                "--data",
                str(empty),
                "--out",
                str(tmp_path / "o"),
                "--taxonomy",
                str(_taxonomy_file(trained, tmp_path)),
            ]
        )
        == 2
    )
    assert "no training examples" in capsys.readouterr().err
    unknown = tmp_path / "unknown"
    shutil.copytree(data_dir, unknown)
    (unknown / "test.csv").write_text("id,Category\nv0000,sofa\n")
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(trained.checkpoint_path),
                "--data",
                str(unknown),
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        == 2
    )
    assert "unknown category 'sofa'" in capsys.readouterr().err
    assert (
        main(["eval", "--checkpoint", str(tmp_path / "absent.pt"), "--data", str(data_dir), "--out", str(tmp_path)])
        == 2
    )
    assert "checkpoint not found" in capsys.readouterr().err


def _taxonomy_file(trained, tmp_path: Path) -> Path:
    from taxonomy import save_taxonomy
    from trainer import load_checkpoint

    path = tmp_path / "taxonomy.json"
    save_taxonomy(load_checkpoint(trained.checkpoint_path).taxonomy, path)
    return path
