"""Generated datasets in the competition's layout, for import and export tests."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from taxonomy import Taxonomy

HEADER = "id,Category,len," + ",".join(f"attr_{i}" for i in range(1, 11))


def image_bytes(seed: int, fmt: str = "JPEG", size: tuple[int, int] = (24, 16)) -> bytes:
    """A small, valid image whose pixels (and so its hash) depend on ``seed``."""
    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image.putpixel((seed % size[0], seed % size[1]), (255 - seed % 256, seed % 13, 7))
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def csv_row(ident: str, category: str, cells: list[str], length: int | None = None) -> str:
    n = len(cells) if length is None else length
    return ",".join([ident, category, str(n), *cells, *[""] * (10 - len(cells))])


def write_layout(taxonomy: Taxonomy, root: Path, fmt: str = "json") -> None:
    mapping = {c.name: list(c.attribute_names) for c in taxonomy.categories}
    if fmt == "json":
        (root / "category_attributes.json").write_text(json.dumps(mapping), "utf-8")
        return
    import pandas as pd

    frame = pd.DataFrame(
        {
            "Category": list(mapping),
            "No_of_attribute": [len(v) for v in mapping.values()],
            "Attribute_list": list(mapping.values()),
        }
    )
    frame.to_parquet(root / "category_attributes.parquet")


def make_dataset(taxonomy: Taxonomy, root: Path, n: int, *, layout: str = "json") -> dict[str, dict]:
    """``n`` good products over every category, with images; returns id -> {category, labels}.

    Labels cycle through each attribute's values; every third product leaves one cell empty.
    Images alternate JPEG and PNG; odd ids are saved zero-padded (``000007.jpg``).
    """
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    truth: dict[str, dict] = {}
    for i in range(n):
        cat = taxonomy.categories[i % len(taxonomy.categories)]
        labels: dict[str, str | None] = {}
        for j, attr in enumerate(cat.attributes):
            labels[attr.name] = None if (i % 3 == 0 and j == 1) else attr.values[(i + j) % len(attr.values)]
        ident = str(i)
        lines.append(csv_row(ident, cat.name, [v or "" for v in labels.values()], len(cat.attributes)))
        fmt, suffix = ("JPEG", ".jpg") if i % 2 == 0 else ("PNG", ".png")
        stem = ident.zfill(6) if i % 2 else ident
        (root / "images" / f"{stem}{suffix}").write_bytes(image_bytes(i, fmt))
        truth[ident] = {"category": cat.name, "labels": labels}
    (root / "train.csv").write_text("\n".join(lines) + "\n", "utf-8")
    write_layout(taxonomy, root, layout)
    return truth


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """The URL of a new, uniquely named database on the PostgreSQL server at ``server_url``,
    dropped afterwards (connections still open included)."""
    server = make_url(server_url)
    name = f"vt_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
