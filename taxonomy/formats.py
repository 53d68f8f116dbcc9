"""The competition's files: ``train.csv`` (wide ``attr_1..attr_10``) and the submission layout."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .records import LabeledExample, RowError
from .schema import NOT_APPLICABLE, Category, Taxonomy, TaxonomyError

BASE_COLUMNS = ("id", "Category", "len")
DEFAULT_FILLER = "dummy_value"
MAX_ID_LENGTH = 64
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

# Why a row was refused (``BadRow.kind``; an import report counts rows by these).
BAD_ID = "bad id"
DUPLICATE_ID = "duplicate id"
UNKNOWN_CATEGORY = "unknown category"
BAD_ROW = "bad row"
INVALID_VALUE = "invalid value"


class FormatError(ValueError):
    """A file that is not in the competition's layout at all (as opposed to one bad row)."""


class BadRow(FormatError):
    """One row that breaks the row rules; the file itself is readable."""

    def __init__(self, kind: str, ident: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind  # BAD_ID, DUPLICATE_ID, UNKNOWN_CATEGORY, BAD_ROW or INVALID_VALUE
        self.id = ident  # the checked id, or the id as written when the id itself is bad


@dataclass(frozen=True)
class RawRow:
    line: int
    id: str
    category: str
    length: str
    cells: tuple[str, ...]  # attr_1..attr_N as written, possibly empty


def check_id(raw: str) -> str:
    """An id is a short name of letters, digits, '_', '-' and '.', never a path."""
    value = raw.strip()
    if not value:
        raise FormatError("empty id")
    if len(value) > MAX_ID_LENGTH:
        raise FormatError(f"id is {len(value)} characters long; at most {MAX_ID_LENGTH}")
    if ".." in value or not _SAFE_ID.match(value):
        raise FormatError(f"id {raw!r} may hold only letters, digits, '_', '-' and '.' (no path parts)")
    return value


def _open_text(source: str | os.PathLike[str] | io.TextIOBase) -> io.TextIOBase:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FormatError(f"no such file: {path}")
        # utf-8-sig drops a byte-order mark that spreadsheet programs put in front.
        return open(path, newline="", encoding="utf-8-sig")
    return source


def iter_raw_rows(source: str | os.PathLike[str] | io.TextIOBase) -> Iterator[RawRow]:
    """Rows of a competition-layout CSV, cells as written. Raises FormatError on a bad header."""
    handle = _open_text(source)
    try:
        reader = csv.reader(handle)
        try:
            header = [h.lstrip("\ufeff").strip() for h in next(reader)]
        except StopIteration:
            raise FormatError("the file is empty; expected a header 'id,Category,len,attr_1,...'") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FormatError(f"cannot read the header as UTF-8 CSV: {exc}") from None
        if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
            sep = next(s for s in ";\t|" if s in header[0])
            raise FormatError(f"the header looks delimited by {sep!r}; the competition files use commas")
        missing = [c for c in BASE_COLUMNS if c not in header]
        if missing:
            raise FormatError(f"missing column(s) {missing}; the header must start with id,Category,len,attr_1,...")
        attr_cols = [i for i, h in enumerate(header) if re.fullmatch(r"attr_\d+", h)]
        if not attr_cols:
            raise FormatError("no attr_1,... columns in the header")
        order = sorted(attr_cols, key=lambda i: int(header[i][5:]))
        i_id, i_cat, i_len = (header.index(c) for c in BASE_COLUMNS)
        width = len(header)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise FormatError(f"line {reader.line_num}: cannot parse CSV: {exc}") from None
            if not row or all(not c.strip() for c in row):
                continue
            row = row + [""] * (width - len(row))
            yield RawRow(
                line=reader.line_num,
                id=row[i_id],
                category=row[i_cat],
                length=row[i_len],
                cells=tuple(row[i] for i in order),
            )
    finally:
        if isinstance(source, (str, os.PathLike)):
            handle.close()


class RowValidator:
    """The row rules of a competition CSV, applied to the rows of one file in order.

    A row is taken or refused whole: its id must be a valid id not taken by an earlier valid
    row, its category known, its ``len`` (when given) the category's number of attributes, and
    each of the category's cells empty or an allowed value. Cells past ``len`` are ignored (a
    submission's filler lives there). Lookups are remembered, since a large file repeats a few
    hundred raw values many thousand times.
    """

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self._seen: set[str] = set()
        self._categories: dict[str, Category | TaxonomyError] = {}  # raw name -> category or why not
        self._values: dict[tuple[str, str, str], str | TaxonomyError | None] = {}

    def check(self, raw: RawRow) -> LabeledExample:
        """The row as an example (an empty cell is a missing label, None), or ``BadRow``."""
        try:
            ident = check_id(raw.id)
        except FormatError as exc:
            raise BadRow(BAD_ID, raw.id, str(exc)) from None
        if ident in self._seen:
            raise BadRow(DUPLICATE_ID, ident, f"duplicated id {ident!r} (its first valid row is kept)")
        cat = self._category(raw.category)
        if isinstance(cat, TaxonomyError):
            raise BadRow(UNKNOWN_CATEGORY, ident, str(cat))
        n = len(cat.attributes)
        if raw.length.strip() and raw.length.strip() != str(n):
            raise BadRow(BAD_ROW, ident, f"len is {raw.length.strip()!r} but category {cat.name!r} has {n} attributes")
        if len(raw.cells) < n:
            raise BadRow(BAD_ROW, ident, f"{len(raw.cells)} attr columns but {cat.name!r} needs {n}")
        labels: dict[str, str | None] = {}
        problems: list[str] = []
        for attr, cell in zip(cat.attributes, raw.cells):
            value = self._value(cat.name, attr.name, cell)
            if isinstance(value, TaxonomyError):
                problems.append(str(value))
            else:
                labels[attr.name] = value
        if problems:
            raise BadRow(INVALID_VALUE, ident, "; ".join(problems))
        self._seen.add(ident)
        return LabeledExample(id=ident, category=cat.name, labels=labels)

    def _category(self, name: str) -> Category | TaxonomyError:
        if name not in self._categories:
            try:
                self._categories[name] = self.taxonomy.category(name)
            except TaxonomyError as exc:
                self._categories[name] = exc
        return self._categories[name]

    def _value(self, category: str, attribute: str, cell: str) -> str | TaxonomyError | None:
        key = (category, attribute, cell)
        if key not in self._values:
            try:
                self._values[key] = self.taxonomy.validate_value(category, attribute, cell)
            except TaxonomyError as exc:
                self._values[key] = exc
        return self._values[key]


def read_train_csv(
    source: str | os.PathLike[str] | io.TextIOBase, taxonomy: Taxonomy
) -> tuple[list[LabeledExample], list[RowError]]:
    """Read labels; bad rows (see ``RowValidator``) are skipped whole and reported, never half-read."""
    examples: list[LabeledExample] = []
    errors: list[RowError] = []
    validator = RowValidator(taxonomy)
    for raw in iter_raw_rows(source):
        try:
            examples.append(validator.check(raw))
        except BadRow as exc:
            errors.append(RowError(row=raw.line, id=exc.id or None, reason=str(exc)))
    return examples, errors


def safe_cell(value: str) -> str:
    """Neutralise a cell a spreadsheet would run as a formula (``=HYPERLINK(...)``)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _wide_rows(
    rows: Iterable[tuple[str, str, dict[str, str | None]]], taxonomy: Taxonomy, filler: str | None
) -> Iterator[list[str]]:
    width = taxonomy.max_attributes
    for ident, category, labels in rows:
        cat = taxonomy.category(category)
        cells = []
        for attr in cat.attributes:
            value = labels.get(attr.name)
            if value is None or value == NOT_APPLICABLE:
                value = filler or ""
            cells.append(safe_cell(value))
        cells += [filler or ""] * (width - len(cells))
        yield [safe_cell(str(ident)), safe_cell(cat.name), str(len(cat.attributes)), *cells]


def _write(path: str | os.PathLike[str] | io.TextIOBase, taxonomy: Taxonomy, body: Iterator[list[str]]) -> int:
    header = [*BASE_COLUMNS, *(f"attr_{i}" for i in range(1, taxonomy.max_attributes + 1))]
    if isinstance(path, io.TextIOBase):
        return _write_to(path, header, body)
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        count = _write_to(handle, header, body)
    os.replace(tmp, target)
    return count


def _write_to(handle: io.TextIOBase, header: list[str], body: Iterator[list[str]]) -> int:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(header)
    count = 0
    for row in body:
        writer.writerow(row)
        count += 1
    return count


def write_train_csv(
    examples: Iterable[LabeledExample], path: str | os.PathLike[str] | io.TextIOBase, taxonomy: Taxonomy
) -> int:
    """Write labels in the ``train.csv`` layout; missing and not-applicable are empty cells."""
    rows = ((e.id, e.category, e.labels) for e in examples)
    return _write(path, taxonomy, _wide_rows(rows, taxonomy, filler=None))


def write_submission(
    predictions: Iterable[tuple[str, str, dict[str, str | None]]],
    path: str | os.PathLike[str] | io.TextIOBase,
    taxonomy: Taxonomy,
    *,
    filler: str = DEFAULT_FILLER,
) -> int:
    """Write ``(id, category, attribute -> value)`` in the submission layout, filler past ``len``."""
    return _write(path, taxonomy, _wide_rows(predictions, taxonomy, filler=filler))


def find_image(images_dir: str | os.PathLike[str], ident: str) -> Path | None:
    """The image of ``ident`` under ``images_dir``: ``<id>.jpg`` or the zero-padded ``000001.jpg``."""
    base = Path(images_dir)
    ident = check_id(ident)
    stems = [ident]
    if ident.isdigit() and len(ident) < 6:
        stems.append(ident.zfill(6))
    for stem in stems:
        for suffix in IMAGE_SUFFIXES:
            candidate = base / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None
