"""Take the README's screenshots of the running app in headless Chromium.

python docs/take_screenshots.py [--out docs/screenshots]

It walks the first run as tests/app/test_first_run_walk.py does (tests/app/first_run_walk.py): a
fresh app, real myntra-dev products imported by adopting their taxonomy, the first model trained
in the Admin tab, three real photos labelled with the keyboard, one reopened and its save undone;
a screenshot of each screen.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.app.conftest import start_app, stop_app  # noqa: E402
from tests.app.first_run_walk import myntra_subset, walk  # noqa: E402
from tests.app.test_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "myntra-dev")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vt-shots-"))
    dataset, photos = myntra_subset(args.data, root / "myntra-subset")
    # The retrain policy off, as in the test: a run it started by itself would race the walk's own.
    app = start_app(root / "data", dataset, {"VT_AUTO_RETRAIN": "off"})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            walked = walk(browser, app, dataset, photos, args.out)
            browser.close()
    finally:
        stop_app(app)
    print("screenshots:", ", ".join(str(s) for s in walked.shots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
