"""Keyboard-first labeling (issue 12, section 3), in headless Chromium against the real UI.

A seller labels with the number keys, arrows, Enter and Ctrl+Enter only; the saved labels and
their provenance are read back through the services. The server and the tiny real model are the
ones of tests/app/test_workbench_browser.py (a "tee" is a square, a "mug" a disc).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from taxonomy import NOT_APPLICABLE
from tests.app.test_browser import browser  # noqa: F401 (the browser fixture)
from tests.app.test_workbench_browser import Served, _serve, shots, sign_in, upload
from tests.webapp.conftest import App, app, gen_taxonomy, tiny_trained  # noqa: F401 (fixtures)
from webapp import services

pytestmark = pytest.mark.browser


@pytest.fixture
def served(app: App) -> Iterator[Served]:  # noqa: F811
    yield from _serve(app, app.ctx)


def _open(page, product_id: int) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#vt-summary")).to_contain_text(f"Product {product_id}", timeout=30_000)
    # The chips of the first attribute are there: the keys have something to pick.
    expect(page.locator("#vt-chips-0 label").first).to_be_visible(timeout=30_000)
    # Every event of the opening has ended (no status tracker counts seconds): on a slow machine the
    # similar-products event can still run, and a key pressed then waits behind it.
    expect(page.locator(".progress-text")).to_have_count(0, timeout=30_000)


def _chips(served: Served, product_id: int, attribute: str) -> list[str]:
    """The values of an attribute's numbered chips, most likely first, as the model ranked them."""
    view = services.get_product(served.app.ctx, served.app.alice, product_id)
    assert view.suggestion is not None
    a = view.suggestion.attributes[attribute]
    odds = dict(a.alternatives)
    odds.setdefault(a.value, a.confidence)
    return [v for v, _ in sorted(odds.items(), key=lambda kv: -kv[1])]


def _saved(served: Served, product_id: int) -> dict[str, tuple[str | None, str]]:
    """attribute -> (value, source) of the product's latest events."""
    out: dict[str, tuple[str | None, str]] = {}
    for e in services.history(served.app.ctx, served.app.admin, product_id):
        out[e["attribute"]] = (e["value"], e["source"])
    return out


def _ids(served: Served, n: int) -> list[int]:
    """The ids of alice's ``n`` newest products, oldest first (the batch's order)."""
    return sorted(r.product_id for r in services.my_products(served.app.ctx, served.app.alice, limit=n))


def _dropdown_text(page, slot: int) -> str:
    return page.locator(f"#vt-slot-{slot} input").input_value()


def test_a_seller_labels_products_with_the_keyboard_only(served: Served, browser, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, served.url, "alice")
    upload(page, [served.app.photo(f"tee{i}", seed=i) for i in range(3)], "tee")
    first, second, third = _ids(served, 3)
    _open(page, first)
    expect(page.locator("#vt-keys")).to_contain_text("Ctrl+Enter save and next")
    page.screenshot(path=str(shots(tmp_path) / "keyboard-form.png"), full_page=True)
    keys = page.keyboard

    # Product 1: "2" picks the model's second colour and moves on to pattern; "2" there too, and
    # Ctrl+Enter at once: the save waits for the pick to reach the field.
    colors, patterns = _chips(served, first, "color"), _chips(served, first, "pattern")
    keys.press("2")
    expect(page.locator("#vt-slot-0 input")).to_have_value(re.compile("^" + colors[1]))
    keys.press("2")
    keys.press("Control+Enter")
    _open(page, second)
    saved = _saved(served, first)
    assert saved["color"] == (colors[1], "model_edited")  # another alternative than the model's top
    assert saved["pattern"] == (patterns[1], "model_edited")

    # Product 2: down to pattern, "0" is not applicable; back up, "1" is the top colour; Enter accepts.
    colors = _chips(served, second, "color")
    keys.press("ArrowDown")
    keys.press("0")
    expect(page.locator("#vt-slot-1 input")).to_have_value(re.compile("^not applicable"))
    keys.press("Shift+Tab")
    keys.press("1")  # the model's top colour
    keys.press("Enter")
    expect(page.locator("#vt-kbd-status")).to_contain_text("accepted")
    keys.press("Control+Enter")
    _open(page, third)
    saved = _saved(served, second)
    assert saved["color"] == (colors[0], "model_accepted")
    assert saved["pattern"] == (NOT_APPLICABLE, "model_edited")

    # Product 3: Enter alone accepts the sure fields and focuses the first unsure one.
    view = services.get_product(served.app.ctx, served.app.alice, third)
    assert view.suggestion is not None
    sure = [a for a in ("color", "pattern") if view.suggestion.attributes[a].confidence >= services.LOW_CONFIDENCE]
    keys.press("Enter")
    expect(page.locator("#vt-kbd-status")).to_contain_text(f"accepted {len(sure)} sure field(s)")
    keys.press("Control+Enter")
    expect(page.locator("#vt-save-msg")).to_contain_text(f"Saved product {third}", timeout=30_000)
    saved = _saved(served, third)
    for attribute in ("color", "pattern"):
        assert saved[attribute] == (view.suggestion.attributes[attribute].value, "model_accepted")
    page.close()


def test_digits_typed_in_a_text_box_do_not_pick_chips(served: Served, browser) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, served.url, "alice")
    upload(page, [served.app.photo("tee-typed")], "tee")
    (product,) = _ids(served, 1)
    _open(page, product)
    before = [_dropdown_text(page, 0), _dropdown_text(page, 1)]
    # In the colour dropdown's own search, "2" and "0" are text: no chip is picked, focus stays.
    box = page.locator("#vt-slot-0 input")
    box.click()
    page.keyboard.type("20")
    expect(box).to_have_value(re.compile("20$"))  # text in the search, after what it showed
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    # The My products search box: digits there are a search, not a pick.
    page.get_by_role("tab", name="My products").click()
    search = page.get_by_label("Search: product id or a label value")
    search.click()
    page.keyboard.type("10")
    expect(search).to_have_value("10")
    page.get_by_role("tab", name="Label").click()
    expect(page.locator("#vt-slot-1 input")).to_have_value(before[1])
    page.keyboard.press("Control+Enter")
    expect(page.locator("#vt-save-msg")).to_contain_text(f"Saved product {product}", timeout=30_000)
    view = services.get_product(served.app.ctx, served.app.alice, product)
    assert view.suggestion is not None
    # Saved as the model prefilled them: nothing the digits did reached the form.
    assert view.labels["pattern"] == view.suggestion.attributes["pattern"].value
    assert view.labels["color"] == view.suggestion.attributes["color"].value
    assert before[0].startswith(view.suggestion.attributes["color"].value)
    page.close()


def test_c_copies_the_previous_products_values_and_s_skips(served: Served, browser) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, served.url, "alice")
    upload(page, [served.app.photo(f"tee-copy{i}", seed=10 + i) for i in range(4)], "tee")
    ids = _ids(served, 4)
    _open(page, ids[0])
    keys = page.keyboard
    # "c" with nothing saved before says so and changes nothing.
    keys.press("c")
    expect(page.locator("#vt-save-msg")).to_contain_text("Nothing to copy")
    colors, patterns = _chips(served, ids[0], "color"), _chips(served, ids[0], "pattern")
    keys.press("2")  # colour: the second alternative
    keys.press("2")  # pattern: the second alternative
    keys.press("Control+Enter")
    _open(page, ids[1])
    keys.press("c")
    expect(page.locator("#vt-save-msg")).to_contain_text(f"Copied 2 value(s) from product {ids[0]}")
    expect(page.locator("#vt-slot-0 input")).to_have_value(re.compile("^" + colors[1]))
    expect(page.locator("#vt-slot-1 input")).to_have_value(re.compile("^" + patterns[1]))
    keys.press("Control+Enter")
    _open(page, ids[2])
    copied = _saved(served, ids[1])
    # Copied values are the seller's choice, not an acceptance of the model's suggestion.
    assert copied["color"] == (colors[1], "seller") and copied["pattern"] == (patterns[1], "seller")
    # "s" skips the third without saving: the fourth opens, the third has no label.
    keys.press("s")
    _open(page, ids[3])
    expect(page.locator("#vt-save-msg")).to_contain_text(f"Skipped product {ids[2]}")
    assert all(v is None for v in services.get_product(served.app.ctx, served.app.alice, ids[2]).labels.values())
    page.close()
