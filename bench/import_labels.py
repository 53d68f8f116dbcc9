"""Benchmark: import the competition's train.csv label-only into a fresh SQLite file.

python bench/import_labels.py                 # all 70,213 rows of ../shared/data/meesho-labels
python bench/import_labels.py --limit 2000    # a quick smoke run (CI)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

import db  # noqa: E402
from db.users import hash_password  # noqa: E402
from taxonomy import default_taxonomy  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "meesho-labels"


def _prepare(source: Path, target: Path, limit: int | None) -> None:
    """``target`` holds the dataset's train.csv (its first ``limit`` rows) and layout file."""
    target.mkdir(parents=True)
    with (
        open(source / "train.csv", encoding="utf-8-sig", newline="") as src,
        open(target / "train.csv", "w", encoding="utf-8", newline="") as dst,
    ):
        for i, line in enumerate(src):
            if limit is not None and i > limit:
                break
            dst.write(line)
    for name in db.importer.LAYOUT_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="competition-layout dataset directory")
    parser.add_argument("--limit", type=int, default=None, help="import only the first N rows")
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    if not (args.data / "train.csv").is_file():
        sys.exit(f"no train.csv in {args.data}")

    taxonomy = default_taxonomy()
    with tempfile.TemporaryDirectory(prefix="vt-bench-") as tmp:
        tmp = Path(tmp)
        data = args.data
        if args.limit is not None:
            data = tmp / "data"
            _prepare(args.data, data, args.limit)
        engine = db.make_engine(db.default_sqlite_url(tmp))
        db.upgrade(engine)
        factory = db.make_session_factory(engine)
        with factory.begin() as session:
            owner = db.User(name="bench", password_hash=hash_password("unused-password"), role="admin")
            session.add(owner)
        media = db.MediaStore(tmp / "media")

        started = time.perf_counter()
        report = db.import_dataset(
            factory, taxonomy, media, data, owner=owner, labels_only=True, batch_size=args.batch_size
        )
        seconds = time.perf_counter() - started
        with factory() as session:
            products = session.scalar(select(func.count()).select_from(db.Product))
            events = session.scalar(select(func.count()).select_from(db.LabelEvent))
        engine.dispose()

    print(report.summary())
    print(f"rows {report.read}  products {products}  label events {events}")
    print(f"seconds {seconds:.2f}  rows/s {report.read / seconds:,.0f}")


if __name__ == "__main__":
    main()
