"""The Admin tab on a fresh app, in headless Chromium: a refused import says why in the Import
report (not only in a toast that vanishes), and on an empty database it offers to adopt the
dataset's taxonomy, after which the import goes through."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.app._data import make_own_taxonomy_dataset
from tests.app.conftest import RunningApp, start_app, stop_app
from tests.app.test_browser import browser, choose, sign_in  # noqa: F401 (the browser fixture)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    root = tmp_path_factory.mktemp("first-run")
    running = start_app(root / "data", make_own_taxonomy_dataset(root / "own"))
    yield running
    stop_app(running)


def test_import_report_shows_the_refusal_and_offers_adopting(fresh_app, browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, fresh_app.url, "admin")
    page.get_by_role("tab", name="Admin").click()
    folder = page.get_by_label("Dataset folder on the server")
    report = page.get_by_label("Import report")
    import_button = page.get_by_role("button", name="Import", exact=True)

    folder.fill(str(tmp_path / "nowhere"))
    import_button.click()
    expect(report).to_have_value(re.compile(r"^Import refused: no directory .*nowhere"), timeout=30_000)
    expect(page.get_by_label("Adopt this dataset's taxonomy")).to_have_count(0)  # not a taxonomy problem

    folder.fill(str(fresh_app.dataset))
    import_button.click()
    expect(report).to_have_value(re.compile(r"category_attributes.json disagrees with the taxonomy"), timeout=30_000)
    assert "tick 'Adopt this dataset's taxonomy'" in report.input_value()
    adopt = page.get_by_label("Adopt this dataset's taxonomy")
    adopt.check()
    import_button.click()
    expect(report).to_have_value(re.compile(r"^Adopted the taxonomy .*24 imported", re.S), timeout=60_000)
    # The same server, no restart: after a reload the Label tab offers the adopted categories.
    page.reload()
    page.get_by_text("Signed in as admin").wait_for(timeout=30_000)
    choose(page, "Category of these photos", "Caps")
    page.close()
