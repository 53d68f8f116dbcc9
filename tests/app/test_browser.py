"""A person in headless Chromium: signs in, uploads a photo, sees the form, saves."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.app._data import jpeg, photo
from tests.app.conftest import USERS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def sign_in(page, url: str, user: str) -> None:
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(USERS[user][0])
    page.get_by_role("button", name="Login").click()
    page.get_by_text(f"Signed in as {user}").wait_for(timeout=30_000)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the Gradio dropdown labelled ``label``, with the keyboard as a person would."""
    box = page.get_by_label(label, exact=False).first
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=False).first.click()


def test_sign_in_upload_see_the_form_and_save(app, browser, tmp_path):
    shots = Path(os.environ.get("VT_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, app.url, "alice")
    path = tmp_path / "kurti.jpg"
    path.write_bytes(jpeg(photo("Kurtis", "red", True, 4242, size=256)))
    page.locator("input[type=file]").first.set_input_files(str(path))
    choose(page, "Category of these photos", "Kurtis")
    page.get_by_role("button", name="Upload and suggest").click()
    page.get_by_text("1 photo(s) ready").wait_for(timeout=30_000)
    page.get_by_text("No trained model yet: fill in the form by hand").wait_for(timeout=10_000)
    page.screenshot(path=str(shots / "label-form.png"), full_page=True)
    choose(page, "color", "red")
    page.keyboard.press("Control+Enter")  # "Save and next" without the mouse
    page.get_by_text("Saved product").wait_for(timeout=30_000)
    engine = create_engine(f"sqlite:///{app.db_file}")
    with engine.connect() as conn:
        events = conn.execute(
            text(
                "SELECT e.attribute, e.value, e.source, u.name FROM label_events e JOIN users u ON u.id = e.user_id "
                "JOIN products p ON p.id = e.product_id WHERE p.category = 'Kurtis' ORDER BY e.id DESC LIMIT 1"
            )
        ).all()
    engine.dispose()
    assert [tuple(e) for e in events] == [("color", "red", "seller", "alice")]
    page.screenshot(path=str(shots / "saved.png"), full_page=True)
