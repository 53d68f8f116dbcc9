"""The first run, as a new team walks it in headless Chromium (issue 12, "done means").

A fresh app on a fresh data dir; the admin imports real myntra-dev products, whose taxonomy is not
the default one, by adopting it in the Admin tab, and trains the first model there; a seller
uploads three real photos the model never saw and labels them with the keyboard only, reopens one
from My products with its history, and undoes that save. ``walk`` asserts every step as a user
would see it and writes a screenshot of each screen; ``tests/app/test_first_run_walk.py`` runs it
in CI and ``docs/take_screenshots.py`` runs it to take the README's screenshots.
"""

from __future__ import annotations

import csv
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tests.app.conftest import RunningApp
from tests.app.test_browser import choose, sign_in

PER_CATEGORY = 40  # imported products of each category: enough for the gate's held-out share
VIEWPORT = {"width": 1400, "height": 1000}


@dataclass(frozen=True)
class Walked:
    products: tuple[int, ...]  # the seller's three products, in upload order
    shots: tuple[Path, ...]


def myntra_subset(source: Path, target: Path, per_category: int = PER_CATEGORY) -> tuple[Path, list[Path]]:
    """The first ``per_category`` products of each category of ``source/train.csv`` in the
    competition's layout (with its own taxonomy file) under ``target``, and three photos of
    ``val.csv`` (one category, never imported) for the seller to upload."""
    (target / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "category_attributes.parquet", target / "category_attributes.parquet")
    taken: dict[str, int] = defaultdict(int)
    with open(source / "train.csv", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = []
        for row in reader:
            if taken[row[1]] < per_category:
                taken[row[1]] += 1
                rows.append(row)
                shutil.copy(source / "images" / f"{row[0]}.jpg", target / "images" / f"{row[0]}.jpg")
    with open(target / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    with open(source / "val.csv", newline="") as handle:
        val = [r for r in csv.DictReader(handle) if r["Category"] == "Men Tshirts"][:3]
    uploads = target.parent / "uploads"
    uploads.mkdir(exist_ok=True)
    photos = []
    for r in val:
        photos.append(uploads / f"shirt-{r['id']}.jpg")
        shutil.copy(source / "images" / f"{r['id']}.jpg", photos[-1])
    return target, photos


def _chips(client, product_id: int, attribute: str) -> list[str]:
    """An attribute's numbered chips, most likely first, as the seller's form shows them."""
    suggestion = client.predict(product_id, api_name="/product")["suggestion"]
    a = suggestion["attributes"][attribute]
    odds = {value: p for value, p in a["alternatives"]}
    odds.setdefault(a["value"], a["confidence"])
    return [v for v, _ in sorted(odds.items(), key=lambda kv: -kv[1])]


def _latest(client, product_id: int) -> dict[str, tuple[str | None, str]]:
    """attribute -> (value, source) of the product's newest events."""
    return {e["attribute"]: (e["value"], e["source"]) for e in client.predict(product_id, api_name="/history")}


def walk(browser, app: RunningApp, dataset: Path, photos: list[Path], shots: Path) -> Walked:
    from playwright.sync_api import expect

    shots.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []

    def shot(page, name: str) -> None:
        taken.append(shots / name)
        page.screenshot(path=str(taken[-1]), full_page=True)

    # -- the admin: a dataset with a taxonomy of its own, adopted in the Admin tab -------------
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(app.url)
    page.get_by_label("username").wait_for(timeout=30_000)
    shot(page, "1-sign-in.png")
    sign_in(page, app.url, "admin")
    expect(page.locator("#vt-header")).to_contain_text("no trained model yet", timeout=30_000)
    page.get_by_role("tab", name="Admin").click()
    report = page.get_by_label("Import report")
    page.get_by_label("Dataset folder on the server").fill(str(dataset))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(report).to_have_value(re.compile("disagrees with the taxonomy"), timeout=60_000)
    page.get_by_label("Adopt this dataset's taxonomy").check()
    page.get_by_role("button", name="Import", exact=True).click()
    expect(report).to_have_value(re.compile(r"^Adopted the taxonomy", re.S), timeout=120_000)
    shot(page, "2-admin-import.png")

    # -- the first model, trained from the Admin tab ---------------------------------------------
    page.get_by_role("button", name="Retrain (heads, fast)").click()
    done = re.compile(r"Run 1 \(heads.*: (succeeded|rejected|failed)")
    expect(page.locator("body")).to_contain_text(done, timeout=300_000)
    assert "succeeded" in page.locator("body").inner_text(), "the first model did not pass the gate"
    page.reload()
    page.get_by_text("Signed in as admin").wait_for(timeout=30_000)
    header = page.locator("#vt-header")
    expect(header).to_contain_text("random weights", timeout=30_000)  # and says what that means
    page.get_by_role("tab", name="Admin").click()
    page.wait_for_timeout(8000)  # the timer fills the versions table, then the plots are drawn
    shot(page, "3-admin-trained.png")
    page.close()

    # -- a seller: three real photos, labelled with the keyboard alone -----------------------
    seller = app.client("alice")
    page = browser.new_page(viewport=VIEWPORT)
    sign_in(page, app.url, "alice")
    page.locator("input[type=file]").first.set_input_files([str(p) for p in photos])
    choose(page, "Category of these photos", "Men Tshirts")
    page.get_by_role("button", name="Upload and suggest").click()
    expect(page.locator("#vt-upload-report")).to_contain_text("3 photo(s) ready", timeout=60_000)
    ids = tuple(sorted(p["product_id"] for p in seller.predict(3, 0, api_name="/products")))
    summary = page.locator("#vt-summary")

    def opened(product_id: int) -> None:
        expect(summary).to_contain_text(f"Product {product_id}", timeout=30_000)
        expect(page.locator("#vt-chips-0 label").first).to_be_visible(timeout=30_000)

    opened(ids[0])
    expect(page.locator("#vt-keys")).to_contain_text("Ctrl+Enter save and next")
    shot(page, "4-label-form.png")
    keys = page.keyboard
    # 1: Enter accepts every sure field, Ctrl+Enter saves them all as suggested and opens the next.
    keys.press("Enter")
    expect(page.locator("#vt-kbd-status")).to_contain_text("accepted")
    keys.press("Control+Enter")
    opened(ids[1])
    assert {source for _, source in _latest(seller, ids[0]).values()} <= {"model_accepted"}, _latest(seller, ids[0])
    events = [e["attribute"] for e in seller.predict(ids[0], api_name="/history")]
    assert len(events) == len(set(events)), events  # one save, one event per field
    # 2: "2" takes the model's second colour.
    second = _chips(seller, ids[1], "color")[1]
    keys.press("2")
    expect(page.locator("#vt-slot-0 input")).to_have_value(re.compile("^" + re.escape(second)))
    keys.press("Control+Enter")
    opened(ids[2])
    assert _latest(seller, ids[1])["color"] == (second, "model_edited")
    # 3: down to pattern, "0" says it does not apply.
    keys.press("ArrowDown")
    keys.press("0")
    expect(page.locator("#vt-slot-1 input")).to_have_value(re.compile("^not applicable"))
    keys.press("Control+Enter")
    expect(page.locator("#vt-save-msg")).to_contain_text(f"Saved product {ids[2]}", timeout=30_000)
    assert _latest(seller, ids[2])["pattern"] == ("not applicable", "model_edited")

    # -- My products: the second one reopened with its history, and its save undone -------------
    page.get_by_role("tab", name="My products").click()
    gallery = page.locator("#vt-products")
    expect(gallery).to_contain_text(f"#{ids[1]} Men Tshirts · confirmed", timeout=30_000)
    shot(page, "5-my-products.png")
    gallery.locator(".thumbnail-item", has_text=f"#{ids[1]} ").click()
    opened(ids[1])
    expect(page.locator("#vt-slot-0 input")).to_have_value(re.compile("^" + re.escape(second)))
    page.locator("#vt-undo").click()
    expect(page.locator("#vt-save-msg")).to_contain_text("Undid your save of", timeout=30_000)
    expect(page.locator("#vt-batch")).to_contain_text("save undone")  # the batch no longer says "saved"
    page.get_by_text("History of this product").click()
    history = page.locator("#vt-history")
    expect(history).to_contain_text("undo", timeout=30_000)
    expect(history).to_contain_text("model_edited")  # the undone save stays in the history
    shot(page, "6-history-undo.png")
    assert _latest(seller, ids[1])["color"][1] == "undo"
    page.close()
    return Walked(ids, tuple(taken))
