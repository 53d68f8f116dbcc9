"""Undo of the last save, completeness and the My products filters, in headless Chromium
against the real UI (the in-process server and tiny real model of test_workbench_browser)."""

from __future__ import annotations

import re

import pytest

from tests.app.test_browser import browser, choose  # noqa: F401 (the browser fixture)
from tests.app.test_workbench_browser import served, shots, sign_in  # noqa: F401 (fixtures)
from tests.webapp.conftest import app, gen_taxonomy, tiny_trained  # noqa: F401 (fixtures)
from webapp import services

pytestmark = pytest.mark.browser


def test_filter_my_products_save_undo_and_see_the_old_values_and_the_undo(
    served,  # noqa: F811
    browser,  # noqa: F811
    tmp_path,
) -> None:
    from playwright.sync_api import expect

    mine = served.app
    ids = [
        services.upload_one(mine.ctx, mine.alice, mine.photo(f"p{i}", seed=i), "tee").view.product_id for i in range(3)
    ]
    services.save_labels(mine.ctx, mine.alice, ids[0], "tee", {"color": "red", "pattern": "solid"})
    services.save_labels(mine.ctx, mine.alice, ids[2], "tee", {"color": "blue"})
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    sign_in(page, served.url, "alice")
    page.get_by_role("tab", name="My products").click()
    note = page.locator("#vt-products-note")
    gallery = page.locator("#vt-products")
    expect(note).to_contain_text("1 of 3 products ready", timeout=30_000)
    expect(note).to_contain_text("50% of their attributes confirmed")
    expect(gallery).to_contain_text(f"#{ids[0]} tee · confirmed · ready")
    # A misspelt attribute is told apart from "no product matches".
    labels = page.locator("#vt-products-labels textarea")
    labels.fill("colour=red")
    labels.press("Enter")
    expect(page.get_by_text("unknown attribute 'colour'").first).to_be_visible(timeout=30_000)
    labels.fill("color=red")
    labels.press("Enter")
    expect(note).to_contain_text("1 product(s); page 1 of 1", timeout=30_000)
    expect(gallery).not_to_contain_text(f"#{ids[2]} ")
    page.screenshot(path=str(shots(tmp_path) / "my-products-filtered.png"), full_page=True)
    gallery.locator(".thumbnail-item").first.click()
    summary = page.locator("#vt-summary")
    expect(summary).to_contain_text(f"Product {ids[0]}", timeout=30_000)
    expect(summary).to_contain_text("Ready: all 2 attributes confirmed")
    color = page.get_by_label("color", exact=False).first
    expect(color).to_have_value(re.compile(r"^red"))

    choose(page, "color", "green")
    page.locator("#vt-save").click()
    message = page.locator("#vt-save-msg")
    expect(message).to_contain_text(f"Saved product {ids[0]}", timeout=30_000)
    page.locator("#vt-undo").click()
    expect(message).to_contain_text("Undid your save of ", timeout=30_000)
    expect(message).to_contain_text("color back to red, pattern back to solid")
    expect(color).to_have_value(re.compile(r"^red"))
    page.get_by_text("History of this product").click()
    history = page.locator("#vt-history")
    expect(history).to_contain_text("undo")
    expect(history).to_contain_text("green")  # the undone value stays in the history
    page.screenshot(path=str(shots(tmp_path) / "undone.png"), full_page=True)
    # The save before goes next: the form is empty again and no longer complete.
    page.locator("#vt-undo").click()
    expect(message).to_contain_text("color back to empty, pattern back to empty", timeout=30_000)
    expect(summary).to_contain_text("Completeness: 0 of 2 attributes confirmed")
    page.locator("#vt-undo").click()
    expect(page.get_by_text("every save of it has been undone already").first).to_be_visible(timeout=30_000)
    assert services.get_product(mine.ctx, mine.alice, ids[0]).labels == {"color": None, "pattern": None}
    page.close()
