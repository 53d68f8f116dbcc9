"""Generated product photos whose attributes can be seen, in the competition's layout."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

# Two categories of the default taxonomy, with attributes a random-feature model can learn:
# background colour -> color, stripes -> pattern, the garment's shape and fill -> category.
COLORS = {"white": (245, 245, 245), "black": (15, 15, 15)}
KURTI_COLORS = {"red": (200, 30, 30), "blue": (30, 60, 200)}


def photo(category: str, color: str, striped: bool, seed: int = 0, size: int = 96) -> Image.Image:
    palette = COLORS if category == "Men Tshirts" else KURTI_COLORS
    image = Image.new("RGB", (size, size), palette[color])
    draw = ImageDraw.Draw(image)
    ink = (128, 128, 128) if color in ("white", "black") else (240, 220, 60)
    k = size / 96
    if category == "Men Tshirts":
        draw.rectangle((20 * k, 24 * k, 76 * k, 84 * k), fill=(40, 160, 60))  # a square green body
    else:
        draw.rectangle((34 * k, 8 * k, 62 * k, 92 * k), fill=(240, 200, 40))  # a tall, narrow yellow body
    if striped:
        for y in range(0, size, max(2, round(8 * k))):
            draw.line((0, y, size, y), fill=ink, width=max(1, round(2 * k)))
    draw.point((seed % size, (seed * 7) % size), fill=(seed % 256, seed // 256 % 256, 7))  # a distinct hash per seed
    draw.point(((seed * 3 + 1) % size, (seed * 11 + 5) % size), fill=(0, seed % 251, 255 - seed % 256))
    return image


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def make_learnable_dataset(root: Path, n: int = 48) -> Path:
    """``n`` products (half Men Tshirts, half Kurtis) with colour and pattern labels."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        category = "Men Tshirts" if i % 2 == 0 else "Kurtis"
        colors = list(COLORS if category == "Men Tshirts" else KURTI_COLORS)
        color = colors[(i // 2) % 2]
        striped = (i // 4) % 2 == 1
        (root / "images" / f"{i + 1}.jpg").write_bytes(jpeg(photo(category, color, striped, seed=i)))
        if category == "Men Tshirts":
            cells = [color, "", "printed" if striped else "solid", "", ""]
        else:
            cells = [color, "", "", "", "", "", "", "", ""]
        rows.append([str(i + 1), category, str(len(cells)), *cells, *[""] * (10 - len(cells))])
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "Category", "len", *(f"attr_{k}" for k in range(1, 11))])
        writer.writerows(rows)
    return root


# A taxonomy of its own, unlike the default one: what a shop that is not the competition brings.
OWN_LAYOUT = {"Mugs": ["color", "finish"], "Caps": ["color", "pattern", "brim"]}


def make_own_taxonomy_dataset(root: Path, n: int = 24) -> Path:
    """``n`` products of two categories the default taxonomy lacks, with a category_attributes.json."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        category = "Mugs" if i % 2 == 0 else "Caps"
        color = ("white", "black")[(i // 2) % 2]
        striped = (i // 4) % 2 == 1
        kind = "Men Tshirts" if category == "Mugs" else "Kurtis"
        shown = color if kind == "Men Tshirts" else ("red", "blue")[(i // 2) % 2]
        (root / "images" / f"{i + 1}.jpg").write_bytes(jpeg(photo(kind, shown, striped, seed=500 + i)))
        if category == "Mugs":
            cells = [color, "glossy" if striped else "matte"]
        else:
            cells = [color, "striped" if striped else "plain", "flat" if i % 3 else "curved"]
        rows.append([str(i + 1), category, str(len(cells)), *cells, *[""] * (10 - len(cells))])
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "Category", "len", *(f"attr_{k}" for k in range(1, 11))])
        writer.writerows(rows)
    (root / "category_attributes.json").write_text(json.dumps(OWN_LAYOUT))
    return root
