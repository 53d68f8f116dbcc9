"""The first run, walked in headless Chromium from a fresh data dir (tests/app/first_run_walk.py):
import of real myntra-dev products by adopting their taxonomy, the first model trained in the
Admin tab, three real photos labelled with the keyboard alone, one reopened from My products and
its save undone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.conftest import RunningApp, start_app, stop_app
from tests.app.first_run_walk import myntra_subset, walk
from tests.app.test_browser import browser  # noqa: F401 (the browser fixture)
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.browser
MYNTRA = SHARED_DATA / "myntra-dev"


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[RunningApp, list[Path]]]:
    if not (MYNTRA / "train.csv").is_file():
        pytest.skip(f"myntra-dev not found at {MYNTRA}")
    dataset, photos = myntra_subset(MYNTRA, tmp_path / "myntra-subset")
    app = start_app(tmp_path / "data", dataset)
    try:
        yield app, photos
    finally:
        stop_app(app)


def test_a_new_team_walks_the_first_run(fresh, browser, tmp_path: Path) -> None:  # noqa: F811
    app, photos = fresh
    shots = Path(os.environ.get("VT_SCREENSHOT_DIR", tmp_path / "shots"))
    walked = walk(browser, app, app.dataset, photos, shots)
    assert len(set(walked.products)) == 3
    assert all(path.stat().st_size > 10_000 for path in walked.shots)  # a page, not a blank
