"""``python app.py score --missing|--all`` as a real subprocess, killed (SIGKILL) mid-way and run
again: every product ends with exactly one new prediction by the active version, none skipped,
none scored twice (issue 13)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.app._catalogue import install_active, make_catalogue
from tests.app.conftest import ROOT
from tests.trainer.conftest import TINY_MODEL, TINY_TRAIN, make_examples, make_taxonomy
from trainer import TrainResult, train_full

PRODUCTS = 300
VERSION = "v-active"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    root = tmp_path_factory.mktemp("score-model")
    return train_full(
        make_examples(root / "photos", 24, seed=4),
        taxonomy=make_taxonomy(),
        out_dir=root / "run",
        config=replace(TINY_TRAIN, epochs=1),
        model_config=TINY_MODEL,
        device="cpu",
    )


@pytest.fixture
def catalogue(tmp_path: Path, trained: TrainResult):
    taxonomy = make_taxonomy()
    catalogue = make_catalogue(tmp_path / "data", taxonomy, products=PRODUCTS, labelled=False)
    install_active(catalogue, Path(trained.checkpoint_path), VERSION, taxonomy)
    yield catalogue
    catalogue.engine.dispose()


def predictions_per_product(db_file: Path) -> dict[int, int]:
    """product id -> number of predictions (groups) by the active version."""
    engine = create_engine(f"sqlite:///{db_file}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT product_id, count(DISTINCT group_id) FROM predictions "
                    "WHERE model_version_id = :v GROUP BY product_id"
                ),
                {"v": VERSION},
            )
            return {int(pid): int(n) for pid, n in rows}
    finally:
        engine.dispose()


def score(catalogue, which: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "app.py"),
            "score",
            which,
            "--data-dir",
            str(catalogue.data_dir),
            "--batch-size",
            "2",
            "--decode-threads",
            "1",
            "--threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def kill_mid_way(catalogue, which: str, at_least: int) -> int:
    """Start ``score``, SIGKILL it once it stored more than ``at_least`` predictions of the
    version; returns how many products had at least one then."""
    db_file = catalogue.data_dir / "visual_taxonomy.sqlite3"
    process = score(catalogue, which)
    deadline = time.monotonic() + 300
    try:
        while sum(predictions_per_product(db_file).values()) <= at_least:
            assert process.poll() is None, f"score ended before it could be killed: {process.communicate()}"
            assert time.monotonic() < deadline, "score stored nothing in 300 s"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    return sum(predictions_per_product(db_file).values())


def run_to_the_end(catalogue, which: str) -> str:
    process = score(catalogue, which)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert re.search(r"^scored \d+/\d+ products \(\d+/s", err, re.M), err[-2000:]  # the progress line
    return out


def test_score_missing_killed_and_restarted_scores_each_product_exactly_once(catalogue):
    db_file = catalogue.data_dir / "visual_taxonomy.sqlite3"
    stored = kill_mid_way(catalogue, "--missing", at_least=20)
    assert 20 < stored < PRODUCTS, stored
    out = run_to_the_end(catalogue, "--missing")
    assert f"scored {PRODUCTS - stored} products with version {VERSION}" in out, out
    counts = predictions_per_product(db_file)
    assert set(counts) == set(catalogue.product_ids), "a product was skipped"
    assert set(counts.values()) == {1}, {pid: n for pid, n in counts.items() if n != 1}
    # Nothing left: a third run scores nothing.
    assert f"scored 0 products with version {VERSION}" in run_to_the_end(catalogue, "--missing")


def test_score_all_killed_and_restarted_scores_each_product_once_more(catalogue):
    db_file = catalogue.data_dir / "visual_taxonomy.sqlite3"
    run_to_the_end(catalogue, "--missing")
    assert set(predictions_per_product(db_file).values()) == {1}
    stored = kill_mid_way(catalogue, "--all", at_least=PRODUCTS + 20)
    assert PRODUCTS + 20 < stored < 2 * PRODUCTS, stored
    out = run_to_the_end(catalogue, "--all")
    assert "continuing an interrupted run after product" in out, out
    counts = predictions_per_product(db_file)
    assert set(counts) == set(catalogue.product_ids)
    assert set(counts.values()) == {2}, {pid: n for pid, n in counts.items() if n != 2}
    # Finished: the next --all starts from the first product again.
    out = run_to_the_end(catalogue, "--all")
    assert "continuing" not in out and f"scored {PRODUCTS} products" in out, out
