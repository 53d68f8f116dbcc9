"""Take the README's screenshots of the running app in headless Chromium.

python docs/take_screenshots.py [--out docs/screenshots]

It starts the app on a throwaway data folder, imports a small generated dataset as the admin,
trains a first model, uploads photos as a seller and photographs the main screens.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.app._data import jpeg, make_learnable_dataset, photo  # noqa: E402
from tests.app.conftest import USERS, start_app, stop_app  # noqa: E402
from tests.app.test_browser import CHROMIUM, CHROMIUM_ARGS, sign_in  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="vt-shots-"))
    dataset = make_learnable_dataset(root / "dataset", n=64)
    app = start_app(root / "data", dataset)
    try:
        admin = app.client("admin")
        print(admin.predict(str(dataset), False, api_name="/import_data")["summary"])
        for _ in range(2):  # two versions, so the admin's plots have a line to draw
            run = admin.predict("heads", api_name="/retrain")["run_id"]
            while (status := next(r for r in admin.predict(5, api_name="/runs") if r["run_id"] == run))["status"] in (
                "queued",
                "running",
            ):
                time.sleep(1)
            print("training run:", status["status"], status["message"])
        photos = []
        for i, (cat, color, striped) in enumerate(
            [("Men Tshirts", "black", True), ("Kurtis", "red", False), ("Men Tshirts", "white", False)]
        ):
            path = root / f"upload-{i}.jpg"
            path.write_bytes(jpeg(photo(cat, color, striped, seed=9000 + i, size=320)))
            photos.append(str(path))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app.url)
            page.get_by_label("username").wait_for()
            page.screenshot(path=str(args.out / "1-sign-in.png"))
            sign_in(page, app.url, "alice")
            page.locator("input[type=file]").first.set_input_files(photos)
            page.get_by_role("button", name="Upload and suggest").click()
            page.get_by_text("3 photo(s) ready").wait_for(timeout=60_000)
            time.sleep(1)
            page.screenshot(path=str(args.out / "2-label-form.png"), full_page=True)
            page.get_by_role("tab", name="Review queue").click()
            page.get_by_role("button", name="Refresh").first.click()
            time.sleep(3)
            page.screenshot(path=str(args.out / "3-review-queue.png"), full_page=True)
            admin_page = browser.new_page(viewport={"width": 1400, "height": 1000})
            sign_in(admin_page, app.url, "admin")
            admin_page.get_by_role("tab", name="Admin").click()
            time.sleep(4)  # the timer fills the versions table and the plot
            admin_page.screenshot(path=str(args.out / "4-admin.png"), full_page=True)
            browser.close()
    finally:
        stop_app(app)
    print("screenshots in", args.out, "users:", ", ".join(USERS))


if __name__ == "__main__":
    main()
