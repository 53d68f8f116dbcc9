"""Similar products beside the form (issue 12, section 4), in headless Chromium against the real UI:
upload a second shot of a confirmed product, see it flagged and its original first among the
similar tiles, copy its attributes with one button and save them."""

from __future__ import annotations

import pytest

from tests.app.test_browser import browser  # noqa: F401 (the browser fixture)
from tests.app.test_workbench_browser import Served, served, shots, sign_in, upload  # noqa: F401 (fixtures)
from tests.webapp.conftest import app, gen_taxonomy, tiny_trained  # noqa: F401 (fixtures)
from tests.webapp.test_similar import COLOURS, near_copy, product_photo
from webapp import services

pytestmark = pytest.mark.browser


def test_a_second_shot_is_flagged_and_its_original_copied_into_the_form(
    served: Served,  # noqa: F811
    browser,  # noqa: F811
    tmp_path,
) -> None:
    from playwright.sync_api import expect

    seeded, ctx = served.app, served.app.ctx
    ids = {}
    for seed, colour in enumerate(COLOURS):  # products alice confirmed earlier
        view = services.upload_one(ctx, seeded.alice, product_photo(seeded.photos, colour, colour, seed), "tee").view
        pattern = "striped" if colour == "blue" else "solid"
        services.save_labels(ctx, seeded.alice, view.product_id, "tee", {"color": colour, "pattern": pattern})
        ids[colour] = view.product_id
    original = ids["blue"]

    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    sign_in(page, served.url, "alice")
    upload(page, [near_copy(seeded.photos / "blue.png", "blue-again")], "tee")
    expect(page.locator("#vt-upload-report")).to_contain_text(f"looks like product {original}")
    expect(page.locator("#vt-summary")).to_contain_text(f"Looks like product {original}", timeout=30_000)
    tiles = page.locator("#vt-similar")
    expect(tiles).to_contain_text(f"#{original} ·", timeout=30_000)
    expect(tiles).to_contain_text("blue, striped")
    expect(page.locator("#vt-similar-note")).to_contain_text("most similar of 4 confirmed products")
    page.screenshot(path=str(shots(tmp_path) / "similar-products.png"), full_page=True)

    page.locator("#vt-copy-similar").click()
    expect(page.locator("#vt-save-msg")).to_contain_text(f"Copied 2 attribute(s) of product {original}")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#vt-save-msg")).to_contain_text("Saved product", timeout=30_000)
    newest = services.my_products(ctx, seeded.alice, limit=1)[0].product_id
    assert newest != original
    view = services.get_product(ctx, seeded.alice, newest)
    assert view.labels == {"color": "blue", "pattern": "striped"}
    events = [e for e in services.history(ctx, seeded.alice, newest) if e["attribute"] != "category"]
    assert {e["source"] for e in events} == {"seller"}  # copied from a similar product, not the model's
    page.close()
