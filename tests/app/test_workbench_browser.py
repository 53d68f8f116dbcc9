"""What a new user tripped on (issue 12, section 2), in headless Chromium against the real UI.

The server runs in this process (``webapp.cli.launch``, as ``app.py serve`` starts it) on the
context of tests/webapp: a real SQLite file and the tiny real model trained on generated photos
(a "tee" is a square, a "mug" a disc), so the form has real suggestions to show.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import db
from tests.app.conftest import free_port
from tests.app.test_browser import browser, choose  # noqa: F401 (the browser fixture)
from tests.webapp.conftest import PASSWORD, App, app, gen_taxonomy, tiny_trained  # noqa: F401 (fixtures)
from webapp import services
from webapp.cli import launch
from webapp.serving import ModelManager

pytestmark = pytest.mark.browser


@dataclasses.dataclass
class Served:
    url: str
    app: App


def _serve(app: App, ctx) -> Iterator[Served]:  # noqa: F811
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, port=free_port()))
    demo = launch(ctx)
    try:
        yield Served(f"http://127.0.0.1:{ctx.settings.port}/", dataclasses.replace(app, ctx=ctx))
    finally:
        demo.close()


@pytest.fixture
def served(app: App) -> Iterator[Served]:  # noqa: F811
    """The UI with version v-one active."""
    yield from _serve(app, app.ctx)


@pytest.fixture
def served_without_model(app: App, tmp_path: Path) -> Iterator[Served]:  # noqa: F811
    """The UI of an app with no active model: the form starts empty."""
    manager = ModelManager(
        taxonomy=app.ctx.taxonomy,
        sessions=app.ctx.sessions,
        media=app.ctx.media,
        models_dir=tmp_path / "no-models",
        cache_dir=tmp_path / "no-cache",
    )
    yield from _serve(app, dataclasses.replace(app.ctx, models=manager))


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("VT_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sign_in(page, url: str, user: str) -> None:
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.get_by_text(f"Signed in as {user}").wait_for(timeout=30_000)


def upload(page, paths: list[Path], category: str | None = None) -> None:
    page.locator("input[type=file]").first.set_input_files([str(p) for p in paths])
    if category:
        choose(page, "Category of these photos", category)
    page.get_by_role("button", name="Upload and suggest").click()
    page.get_by_text("photo(s) ready").wait_for(timeout=60_000)


def pick(page, elem_id: str, option: str) -> None:
    """Choose ``option`` in the dropdown with that element id, typing as a person would."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=False).first.click()


def _events(served: Served, product_id: int) -> list[dict]:
    return services.history(served.app.ctx, served.app.admin, product_id)


def _newest_product(served: Served) -> int:
    return services.my_products(served.app.ctx, served.app.alice, limit=1)[0].product_id


def test_a_corrected_category_gets_the_models_suggestion_for_it(served: Served, browser, tmp_path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, served.url, "alice")
    upload(page, [served.app.photo("tee")], "tee")
    summary = page.locator("#vt-summary")
    expect(summary).to_contain_text("prefilled by model", timeout=10_000)
    pick(page, "vt-category", "mug")
    # The model suggests for any category: the mug's fields are prefilled with their confidences.
    expect(summary).to_contain_text("prefilled by model v-one for mug", timeout=30_000)
    expect(page.get_by_label(re.compile(r"^size · \d+%"))).to_be_visible()
    page.screenshot(path=str(shots(tmp_path) / "category-corrected.png"), full_page=True)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#vt-save-msg")).to_contain_text("Saved product", timeout=30_000)
    product_id = _newest_product(served)
    events = {e["attribute"]: e for e in _events(served, product_id)}
    assert events[db.CATEGORY_ATTRIBUTE]["value"] == "mug"
    # Both mug fields were left as the model prefilled them, for the mug: accepted, with its version.
    assert (events["size"]["source"], events["size"]["model_version"]) == ("model_accepted", "v-one")
    assert events["color"]["source"] == "model_accepted"
    # Reopened, the product shows the suggestion it was saved against, not "no suggestion".
    view = services.get_product(served.app.ctx, served.app.alice, product_id)
    assert view.suggestion is not None and view.suggestion.category == "mug"
    page.close()


def test_log_out_in_place_and_a_signed_out_tab_says_so(served: Served, browser, tmp_path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    old_tab = context.new_page()
    sign_in(old_tab, served.url, "alice")
    tab = context.new_page()
    tab.goto(served.url)
    tab.get_by_text("Signed in as alice").wait_for(timeout=30_000)
    tab.get_by_role("button", name="Log out").click()
    # In place: this tab shows the sign-in form, and no new tab was opened.
    expect(tab.get_by_role("button", name="Login")).to_be_visible(timeout=30_000)
    assert len(context.pages) == 2
    # The other tab still shows the app; its next action says it is signed out, not a bare "Error".
    old_tab.get_by_role("tab", name="Review queue").click()
    old_tab.get_by_role("button", name="Refresh").first.click()
    banner = old_tab.locator("#vt-signed-out")
    expect(banner).to_contain_text("Signed out: sign in again", timeout=30_000)
    old_tab.screenshot(path=str(shots(tmp_path) / "signed-out.png"))
    banner.get_by_role("link", name="sign in again").click()
    expect(old_tab.get_by_role("button", name="Login")).to_be_visible(timeout=30_000)
    context.close()


def test_the_batch_table_is_current_clickable_and_says_why_a_photo_was_refused(
    served: Served,
    browser,  # noqa: F811
    tmp_path,
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, served.url, "alice")
    broken = tmp_path / "broken-photo-with-a-long-name.jpg"
    broken.write_bytes(b"not a photo at all")
    photos = [served.app.photo(f"tee{i}", seed=i) for i in range(3)]
    upload(page, [*photos, broken], "tee")
    report = page.locator("#vt-upload-report")
    expect(report).to_contain_text("3 photo(s) ready, 1 refused")
    # The reason in full, not cut off in a narrow table cell.
    reason = services.upload(served.app.ctx, served.app.alice, [str(broken)], "tee")[0].error
    expect(report).to_contain_text(f"broken-photo-with-a-long-name.jpg refused: {reason}")
    table = page.locator("#vt-batch")
    expect(table.locator("[role=row].virtual-row")).to_have_count(4)

    def cell(row: int, col: int):
        return table.locator(f"[data-testid='cell-{row}-{col}']")

    ids = [int(cell(i, 1).inner_text()) for i in range(3)]
    expect(cell(0, 0)).to_have_text("▶")  # the product open in the form
    summary = page.locator("#vt-summary")
    # Click the second row: it opens in the form; save it with "Save" (not "Save and next").
    cell(1, 2).click()
    expect(summary).to_contain_text(f"Product {ids[1]}", timeout=30_000)
    expect(cell(1, 0)).to_have_text("▶")
    page.get_by_role("button", name="Save", exact=True).click()
    save_msg = page.locator("#vt-save-msg")
    expect(save_msg).to_contain_text(f"Saved product {ids[1]}", timeout=30_000)
    expect(cell(1, 3)).to_have_text("saved")
    page.screenshot(path=str(shots(tmp_path) / "batch.png"), full_page=True)
    # Back to the first: the old message goes; "Save and next" skips the one saved already.
    cell(0, 2).click()
    expect(summary).to_contain_text(f"Product {ids[0]}", timeout=30_000)
    expect(save_msg).to_have_text("")
    page.get_by_role("button", name="Save and next").click()
    expect(summary).to_contain_text(f"Product {ids[2]}", timeout=30_000)
    expect(cell(0, 3)).to_have_text("saved")
    expect(cell(2, 0)).to_have_text("▶")
    page.close()


def test_an_empty_form_and_an_empty_queue_say_what_to_do(
    served_without_model: Served,
    browser,  # noqa: F811
    tmp_path,
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, served_without_model.url, "alice")
    page.get_by_role("tab", name="Review queue").click()
    page.get_by_role("button", name="Refresh").first.click()
    expect(page.locator("#vt-queue-note")).to_contain_text("Nothing is waiting for review", timeout=30_000)
    page.screenshot(path=str(shots(tmp_path) / "empty-queue.png"))
    page.get_by_role("tab", name="Label").click()
    upload(page, [served_without_model.app.photo("tee")], "tee")
    page.get_by_role("button", name="Save", exact=True).click()
    message = page.locator("#vt-save-msg")
    expect(message).to_contain_text("Nothing saved for product", timeout=30_000)
    expect(message).to_contain_text("every field is empty")
    assert "0 change(s)" not in message.inner_text()
    page.screenshot(path=str(shots(tmp_path) / "empty-save.png"), full_page=True)
    page.close()


def test_activating_asks_first_then_the_header_and_notes_follow(served: Served, browser, tmp_path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    sign_in(page, served.url, "admin")
    expect(page.locator("#vt-header")).to_contain_text("model v-one")
    page.get_by_role("tab", name="Admin").click()
    pick(page, "vt-version-pick", "v-two")
    page.get_by_role("button", name="Activate (or roll back to) this version").click()
    expect(page.get_by_text(re.compile(r"Activate v-two\? It replaces v-one"))).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.get_by_text("Nothing changed.")).to_be_visible(timeout=30_000)
    assert served.app.ctx.models.active.version_id == "v-one"
    page.get_by_role("button", name="Activate (or roll back to) this version").click()
    page.get_by_role("button", name="Yes, activate it").click()
    expect(page.get_by_text(re.compile("Version v-two is active"))).to_be_visible(timeout=30_000)
    assert served.app.ctx.models.active.version_id == "v-two"
    # The header follows without a reload.
    expect(page.locator("#vt-header")).to_contain_text("model v-two", timeout=30_000)
    (row,) = [v for v in services.versions(served.app.ctx, served.app.admin) if v["version"] == "v-two"]
    assert row["status"] == "active" and row["notes"].startswith("Activated by hand by admin on ")
    page.screenshot(path=str(shots(tmp_path) / "admin-activated.png"), full_page=True)
    page.close()


def test_my_products_lists_filters_and_reopens_a_product_with_its_history(
    served: Served,
    browser,  # noqa: F811
    tmp_path,
) -> None:
    from playwright.sync_api import expect

    mine = served.app
    ids = [
        services.upload_one(mine.ctx, mine.alice, mine.photo(f"p{i}", seed=i), "tee").view.product_id for i in range(3)
    ]
    services.save_labels(mine.ctx, mine.alice, ids[1], "tee", {"color": "blue"})
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, served.url, "alice")
    page.get_by_role("tab", name="My products").click()
    note = page.locator("#vt-products-note")
    expect(note).to_contain_text("3 product(s); page 1 of 1", timeout=30_000)
    gallery = page.locator("#vt-products")
    expect(gallery).to_contain_text(f"#{ids[1]} tee · confirmed · 1/2 confirmed (50%)")
    expect(gallery).to_contain_text(f"#{ids[0]} tee · suggested · 0/2 confirmed (0%)")
    assert "owner_id" not in gallery.inner_text()
    page.screenshot(path=str(shots(tmp_path) / "my-products.png"), full_page=True)
    pick(page, "vt-products-status", "confirmed")
    expect(note).to_contain_text("1 product(s)", timeout=30_000)
    gallery.locator(".thumbnail-item").first.click()  # the one thumbnail left
    expect(page.locator("#vt-summary")).to_contain_text(f"Product {ids[1]}", timeout=30_000)
    page.get_by_text("History of this product").click()
    history = page.locator("#vt-history")
    expect(history).to_contain_text("alice")
    expect(history).to_contain_text("blue")
    page.screenshot(path=str(shots(tmp_path) / "reopened.png"), full_page=True)
    page.close()
