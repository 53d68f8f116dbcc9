"""Load and save taxonomies: the project's JSON file, or a competition-layout dataset."""

from __future__ import annotations

import json
import os
from collections import Counter
from importlib import resources
from pathlib import Path

from .formats import FormatError, iter_raw_rows
from .schema import Attribute, Category, Taxonomy, TaxonomyError, normalize

DEFAULT_TAXONOMY_FILE = "meesho.json"
# A competition-layout folder says its categories' attributes in one of these (the first found).
LAYOUT_FILES = ("category_attributes.parquet", "category_attributes.json")
TRAIN_FILE = "train.csv"


def default_taxonomy() -> Taxonomy:
    """The competition's taxonomy: 5 categories, 41 attributes, values seen in its train.csv."""
    text = resources.files("taxonomy").joinpath("data", DEFAULT_TAXONOMY_FILE).read_text("utf-8")
    return Taxonomy.from_dict(json.loads(text))


def load_taxonomy(path: str | os.PathLike[str]) -> Taxonomy:
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise TaxonomyError(f"taxonomy file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise TaxonomyError(f"taxonomy file {path} is not valid JSON: {exc}") from None
    try:
        return Taxonomy.from_dict(data)
    except (KeyError, TypeError) as exc:
        raise TaxonomyError(f"taxonomy file {path} is malformed: missing or wrong field {exc}") from None


def save_taxonomy(taxonomy: Taxonomy, path: str | os.PathLike[str]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(taxonomy.to_dict(), indent=1, ensure_ascii=False) + "\n", "utf-8")
    os.replace(tmp, path)


def read_category_attributes(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """``category_attributes.parquet`` (or its ``.json`` twin) as category -> ordered attributes."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"no such file: {path}")
    if path.suffix == ".json":
        data = json.loads(path.read_text("utf-8"))
        return {str(k): [str(a) for a in v] for k, v in data.items()}
    import pandas as pd  # heavy; only needed here

    frame = pd.read_parquet(path)
    for column in ("Category", "Attribute_list"):
        if column not in frame.columns:
            raise FormatError(f"{path.name}: missing column {column!r}; found {list(frame.columns)}")
    return {str(row.Category): [str(a) for a in row.Attribute_list] for row in frame.itertuples()}


def taxonomy_from_competition(
    category_attributes: str | os.PathLike[str], train_csv: str | os.PathLike[str]
) -> Taxonomy:
    """Build a taxonomy whose values are those found (normalised) in a labelled ``train.csv``.

    Values are ordered by frequency (most common first), ties by name, with their counts kept.
    """
    layout = read_category_attributes(category_attributes)
    counters: dict[tuple[str, str], Counter[str]] = {
        (cat, attr): Counter() for cat, attrs in layout.items() for attr in attrs
    }
    for row in iter_raw_rows(train_csv):
        attrs = layout.get(row.category.strip())
        if attrs is None:
            continue
        for attr, cell in zip(attrs, row.cells):
            value = normalize(cell)
            if value:
                counters[(row.category.strip(), attr)][value] += 1
    categories = []
    for cat, attrs in layout.items():
        built = []
        for attr in attrs:
            counts = counters[(cat, attr)]
            if not counts:
                raise TaxonomyError(f"{cat!r} / {attr!r}: no labelled value in {train_csv}")
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            built.append(Attribute(name=attr, values=tuple(v for v, _ in ranked), counts=tuple(n for _, n in ranked)))
        categories.append(Category(name=cat, attributes=tuple(built)))
    return Taxonomy(categories=tuple(categories))


def layout_file(data_dir: str | os.PathLike[str]) -> Path | None:
    """The folder's category_attributes file (parquet first), or None when it has none."""
    for name in LAYOUT_FILES:
        path = Path(data_dir) / name
        if path.is_file():
            return path
    return None


def taxonomy_from_folder(data_dir: str | os.PathLike[str]) -> Taxonomy:
    """The taxonomy of a competition-layout folder: its category_attributes file for the categories
    and their attributes, the values found in its ``train.csv`` (as ``taxonomy_from_competition``)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FormatError(f"no directory {data_dir}")
    layout = layout_file(data_dir)
    if layout is None:
        raise FormatError(
            f"no {' or '.join(LAYOUT_FILES)} in {data_dir}: the folder does not say which attributes each category has"
        )
    train_csv = data_dir / TRAIN_FILE
    if not train_csv.is_file():
        raise FormatError(f"no {TRAIN_FILE} in {data_dir}: the values of a taxonomy are those found in it")
    return taxonomy_from_competition(layout, train_csv)
