"""Keyboard-first labeling against today's dropdown form: keystrokes, clicks and seconds per product.

    python bench/keyboard.py                       # 20 myntra-dev products (a few minutes on 2 cores)
    python bench/keyboard.py --smoke               # 2 products of generated photos, for CI

A scripted seller who knows the truth (``train.csv``) labels the same products twice in headless
Chromium against the running app (a subprocess on a fresh data dir), once with the keys only
(numbered chips 1-9, arrows, ``/`` to search a value the chips lack, Ctrl+Enter to save and open
the next) and once with the mouse on the dropdowns (click to open, click the value; type to filter
when it is not among the first 8 shown; click "Save and next"). Each run is a seller of its own,
so both label fresh copies of the same photos, opened from the review queue. A field whose truth
is missing (an empty cell) is left as the model prefilled it, in both runs.

The model is a small quick one (ResNet18 from random weights, 64 px, a few epochs on a few hundred
other train.csv products), trained here and registered through the admin API (``/register_model``, forced): its
suggestions are often wrong, which is what the keys are for. Reported per product: the seller's
actions (keystrokes, clicks), the machine's seconds (scripted, so this is the UI's and server's
latency, not a person's), and a Keystroke-Level-Model estimate of a person's time (Card, Moran &
Newell: 0.28 s a keystroke, 1.1 s to point plus 0.2 s to click, 0.4 s to move a hand between mouse
and keys; thinking time left out, the same for both). Every save is checked against the truth.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MYNTRA, ROOT, emit, wait_for_app, work_dir, write_subset

from taxonomy import NOT_APPLICABLE, LabeledExample, file_sha256, load_taxonomy

USERS = {
    "admin": ("admin-kbd-pass", "admin"),
    "keys": ("keys-pass-123", "seller"),
    "mouse": ("mouse-pass-123", "seller"),
}
KLM = {"keystroke": 0.28, "click": 1.1 + 0.2, "homing": 0.4}
SHOWN_OPTIONS = 8  # options a dropdown shows before one has to scroll
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generated_dataset(root: Path, n: int = 24) -> Path:
    """A tiny competition-layout folder of drawn photos (two categories), for the smoke run."""
    from PIL import Image, ImageDraw

    (root / "images").mkdir(parents=True, exist_ok=True)
    colors = {"red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 160, 60)}
    rows = []
    for i in range(n):
        category = ("Tees", "Mugs")[i % 2]
        color = list(colors)[(i // 2) % 3]
        striped = (i // 6) % 2 == 1
        image = Image.new("RGB", (64, 64), (245, 245, 245))
        draw = ImageDraw.Draw(image)
        shape = draw.rectangle if category == "Tees" else draw.ellipse
        shape((12, 12, 52, 52), fill=colors[color])
        if striped:
            for y in range(12, 52, 6):
                draw.line((12, y, 52, y), fill=(20, 20, 20), width=2)
        draw.point((i % 64, 0), fill=(i, 0, 0))  # a distinct photo per row
        image.save(root / "images" / f"{i + 1}.jpg", quality=95)
        rows.append([str(i + 1), category, "2", color, "striped" if striped else "plain", *[""] * 8])
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "Category", "len", *(f"attr_{k}" for k in range(1, 11))])
        writer.writerows(rows)
    (root / "category_attributes.json").write_text(
        json.dumps({"Tees": ["color", "pattern"], "Mugs": ["color", "pattern"]})
    )
    return root


def pick_products(examples: list[LabeledExample], n: int) -> tuple[list[LabeledExample], list[LabeledExample]]:
    """``n`` products with distinct photos and at least one label, and the rest (to train on)."""
    chosen, seen, rest = [], set(), []
    for e in examples:
        sha = file_sha256(e.image_path)
        if len(chosen) < n and sha not in seen and any(v is not None for v in e.labels.values()):
            chosen.append(e)
            seen.add(sha)
        else:
            rest.append(e)
    return chosen, rest


def train_quick(examples: list[LabeledExample], taxonomy, out: Path, *, epochs: int, image_size: int) -> Path:
    from trainer import ModelConfig, TrainConfig, train_full

    result = train_full(
        examples,
        taxonomy=taxonomy,
        out_dir=out,
        config=TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, val_fraction=0.15, tta_flip=False),
        model_config=ModelConfig(arch="resnet18", weights="none", image_size=image_size),
        device="cpu",
        seed=0,
    )
    return Path(result.checkpoint_path)


# -- the two sellers ------------------------------------------------------------------------------

# What the seller sees of the form, read at once: per shown attribute, its slot, dropdown text, chips.
FORM_STATE_JS = """() => [...document.querySelectorAll('[id^="vt-slot-"]')].filter(e => e.offsetParent !== null)
  .map(e => { const i = e.id.slice(8); const chips = document.getElementById('vt-chips-' + i);
    return { slot: Number(i), text: e.querySelector('input').value,
             chips: chips ? [...chips.querySelectorAll('input')].map(c => c.value) : [] }; })"""


def shown_value(text: str) -> str | None:
    """The value a dropdown shows ("red  (44%)" -> "red"; the not-applicable label -> its value)."""
    text = text.strip().splitlines()[-1].strip() if text.strip() else ""  # an option: "✓" on a line first
    if not text:
        return None
    if text.startswith(NOT_APPLICABLE):
        return NOT_APPLICABLE
    return re.sub(r"\s+\(\d+%\)$", "", text)


class Counter:
    def __init__(self) -> None:
        self.keys = 0
        self.clicks = 0
        self.homings = 0

    def klm(self) -> float:
        return self.keys * KLM["keystroke"] + self.clicks * KLM["click"] + self.homings * KLM["homing"]


def product_shown(page) -> int | None:
    match = re.search(r"Product (\d+)", page.locator("#vt-summary").inner_text())
    return int(match.group(1)) if match else None


def wait_for_next(page, product_id: int, timeout: float = 60) -> int | None:
    """The product opened after ``product_id`` was saved; None once the form says it was the last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "last one" in page.locator("#vt-save-msg").inner_text():
            return None
        shown = product_shown(page)
        if shown is not None and shown != product_id and page.locator("#vt-chips-0 label").count():
            return shown
        time.sleep(0.02)
    raise TimeoutError(f"no product after {product_id} within {timeout} s")


def search_and_pick(page, slot: int, value: str, count: Counter) -> None:
    """Type ``value`` into the slot's dropdown search and take the exact option with the arrows."""
    page.keyboard.type(value)
    count.keys += len(value)
    options = page.get_by_role("option")
    options.first.wait_for(timeout=10_000)
    names = [shown_value(t.strip()) for t in options.all_inner_texts()]
    for _ in range(names.index(value)):  # the filtered list opens with its first option active
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    count.keys += names.index(value) + 1


def label_with_keys(page, attrs: list[str], truth: dict[str, str | None], count: Counter) -> None:
    form = page.evaluate(FORM_STATE_JS)
    focus = 0
    for i, (attr, field) in enumerate(zip(attrs, form)):
        want = truth.get(attr)
        if want is None or shown_value(field["text"]) == want:
            continue
        for _ in range(abs(i - focus)):
            page.keyboard.press("ArrowDown" if i > focus else "ArrowUp")
        count.keys += abs(i - focus)
        numbered = field["chips"][:-1]
        if want == NOT_APPLICABLE or want in numbered[:9]:
            page.keyboard.press("0" if want == NOT_APPLICABLE else str(numbered.index(want) + 1))
            count.keys += 1
            focus = min(i + 1, len(form) - 1)  # a pick moves on to the next attribute
        else:
            page.keyboard.press("/")
            search_and_pick(page, field["slot"], want, count)
            count.keys += 1  # the "/"; picking the option gives the keys back
            focus = i
    page.keyboard.press("Control+Enter")
    count.keys += 1  # a chord, counted as one keystroke


def label_with_mouse(page, attrs: list[str], truth: dict[str, str | None], count: Counter) -> None:
    form = page.evaluate(FORM_STATE_JS)
    for attr, field in zip(attrs, form):
        want = truth.get(attr)
        if want is None or shown_value(field["text"]) == want:
            continue
        page.locator(f"#vt-slot-{field['slot']} input").click()
        count.clicks += 1
        options = page.get_by_role("option")
        options.first.wait_for(timeout=10_000)
        names = [shown_value(t.strip()) for t in options.all_inner_texts()]
        if want in names[:SHOWN_OPTIONS]:
            options.nth(names.index(want)).click()
        else:  # not in sight: select the shown text, type to filter, then click it
            page.keyboard.press("Control+a")
            page.keyboard.type(want)
            count.keys += 1 + len(want)
            count.homings += 2
            options = page.get_by_role("option")
            names = [shown_value(t.strip()) for t in options.all_inner_texts()]
            options.nth(names.index(want)).click()
        count.clicks += 1
    page.get_by_role("button", name="Save and next").click()
    count.clicks += 1


def run_seller(
    browser, url: str, user: str, products: dict[int, LabeledExample], taxonomy, keys: bool, shots: Path
) -> dict:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(USERS[user][0])
    page.get_by_role("button", name="Login").click()
    page.get_by_text(f"Signed in as {user}").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Review queue").click()
    page.locator("#vt-queue-note").get_by_text("waiting").wait_for(timeout=60_000)
    page.locator(".thumbnail-item:visible").first.click()
    page.locator("#vt-chips-0 label").first.wait_for(timeout=60_000)
    count, done = Counter(), []
    t0 = time.perf_counter()
    current = product_shown(page)
    while current is not None:
        example = products[current]
        attrs = list(taxonomy.category(example.category).attribute_names)
        try:
            (label_with_keys if keys else label_with_mouse)(page, attrs, example.labels, count)
        except Exception:
            page.screenshot(path=str(shots / f"failed-{user}.png"), full_page=True)  # what the seller saw
            raise
        done.append(current)
        current = wait_for_next(page, current)
    seconds = time.perf_counter() - t0
    page.close()
    n = len(done)
    return {
        "products": n,
        "keystrokes_per_product": round(count.keys / n, 2),
        "clicks_per_product": round(count.clicks / n, 2),
        "actions_per_product": round((count.keys + count.clicks) / n, 2),
        "seconds_per_product": round(seconds / n, 2),
        "klm_person_seconds_per_product": round(count.klm() / n, 2),
        "saved": done,
    }


def check_saved(db_file: Path, owner: str, products: dict[int, LabeledExample]) -> tuple[int, int]:
    """(fields saved equal to the truth, fields with a truth) over the seller's products."""
    import sqlite3

    with sqlite3.connect(db_file) as conn:
        rows = conn.execute(
            "SELECT e.product_id, e.attribute, e.value FROM label_events e JOIN products p ON p.id = e.product_id "
            "JOIN users u ON u.id = p.owner_id WHERE u.name = ? ORDER BY e.id",
            (owner,),
        ).fetchall()
    latest = {(pid, attr): value for pid, attr, value in rows}
    right = total = 0
    for pid, example in products.items():
        for attr, value in example.labels.items():
            if value is not None:
                total += 1
                right += latest.get((pid, attr)) == value
    return right, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=MYNTRA)
    parser.add_argument(
        "--out", type=Path, default=None, help="working folder (default: a temporary one, removed at the end)"
    )
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--train", type=int, default=600, help="train.csv products the quick model learns from")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="2 products of generated photos: for CI")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = work_dir(args.out, "keyboard-")
    if args.smoke:
        args.data = generated_dataset(work / "generated")
        args.products, args.train, args.epochs, args.image_size = 2, 22, 1, 48
    if not (args.data / "train.csv").is_file():
        print(f"no train.csv in {args.data}", file=sys.stderr)
        return 2
    from trainer import read_dataset

    taxonomy_file = work / "taxonomy.json"
    app_py = [sys.executable, str(ROOT / "app.py")]
    subprocess.run(
        [*app_py, "taxonomy", "from-data", str(args.data), "--out", str(taxonomy_file)], check=True, cwd=ROOT
    )
    taxonomy = load_taxonomy(taxonomy_file)
    examples, _ = read_dataset(args.data, taxonomy)
    examples = [e for e in examples if e.image_path]
    random.Random(0).shuffle(examples)
    chosen, rest = pick_products(examples, args.products)
    t0 = time.perf_counter()
    trained_dir = work / "trained-on"
    write_subset(args.data, {e.id for e in rest[: args.train]}, trained_dir)
    checkpoint = train_quick(
        rest[: args.train], taxonomy, work / "model", epochs=args.epochs, image_size=args.image_size
    )
    train_seconds = time.perf_counter() - t0
    data_dir = work / "data"
    common = ["--data-dir", str(data_dir), "--taxonomy-file", str(taxonomy_file)]

    users = work / "users.json"
    users.write_text(json.dumps([{"name": n, "password": p, "role": r} for n, (p, r) in USERS.items()]))
    port = free_port()
    log = work / "app.log"
    serve = [*app_py, "serve", *common, "--port", str(port), "--users-file", str(users), "--no-worker"]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "VT_AUTO_RETRAIN": "off"}
    process = subprocess.Popen(serve, cwd=ROOT, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_app(process, url, log)
        from gradio_client import Client, handle_file
        from playwright.sync_api import sync_playwright

        # The model's training products go in too (the admin's), so the gate has held-out products to
        # judge it on; it is forced in whatever the gate says: the benchmark needs a model, any model.
        admin = Client(url, auth=("admin", USERS["admin"][0]), verbose=False)
        admin.predict(str(trained_dir), False, api_name="/import_data")
        admin.predict(str(checkpoint), True, api_name="/register_model")
        owned: dict[str, dict[int, LabeledExample]] = {}
        for user in ("keys", "mouse"):
            client = Client(url, auth=(user, USERS[user][0]), verbose=False)
            owned[user] = {}
            for e in chosen:
                result = client.predict(handle_file(e.image_path), e.category, api_name="/upload")
                owned[user][int(result["product_id"])] = e
        results = {}
        with sync_playwright() as p:
            chromium = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            for user, keys in (("keys", True), ("mouse", False)):
                result = run_seller(browser, url, user, owned[user], taxonomy, keys, work)
                right, total = check_saved(data_dir / "visual_taxonomy.sqlite3", user, owned[user])
                if sorted(result.pop("saved")) != sorted(owned[user]) or right != total:
                    raise RuntimeError(f"{user}: {right} of {total} fields saved right, or products missed")
                results["keyboard" if keys else "dropdown"] = {**result, "fields_checked": total}
            browser.close()
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    fields = sum(len([v for v in e.labels.values() if v is not None]) for e in chosen)
    trained = len(rest[: args.train])
    emit(
        {
            "data": str(args.data),
            "products": len(chosen),
            "fields_with_truth": fields,
            "model": f"resnet18, random init, {args.image_size}px, {args.epochs} epochs, {trained} products",
            "model_train_seconds": round(train_seconds, 1),
            **results,
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
