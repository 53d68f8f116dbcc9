"""Backup and restore round trips: every table and every stored file come back the same."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import MetaData, create_engine, select, text
from sqlalchemy.engine import make_url

from tests.app._data import make_learnable_dataset
from tests.app.conftest import ROOT


def cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result


def dump_tables(url: str) -> dict[str, list]:
    engine = create_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        out = {
            name: sorted(tuple(map(str, row)) for row in conn.execute(select(table)))
            for name, table in metadata.tables.items()
        }
    engine.dispose()
    return out


def files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request, tmp_path):
    if request.param == "sqlite":
        yield (
            f"sqlite:///{tmp_path / 'a' / 'visual_taxonomy.sqlite3'}",
            f"sqlite:///{tmp_path / 'b' / 'visual_taxonomy.sqlite3'}",
        )
        return
    server = os.environ.get("VT_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("VT_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server)")
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    names = [f"vt_backup_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield tuple(make_url(server).set(database=n).render_as_string(hide_password=False) for n in names)
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_backup_and_restore_round_trip(tmp_path, urls):
    source_url, target_url = urls
    dataset = make_learnable_dataset(tmp_path / "dataset", n=12)
    a, b = tmp_path / "a", tmp_path / "b"
    common_a = ["--data-dir", str(a), "--database-url", source_url]
    cli("import", str(dataset), *common_a)
    (a / "models" / "run-00001").mkdir(parents=True)
    (a / "models" / "run-00001" / "model.pt").write_bytes(b"checkpoint bytes")
    out = cli("backup", str(tmp_path / "backups"), *common_a).stdout
    folder = out.strip().split("backup written to ")[1]

    common_b = ["--data-dir", str(b), "--database-url", target_url]
    restored = cli("restore", folder, *common_b).stdout
    assert "products 12" in restored
    assert dump_tables(source_url) == dump_tables(target_url)
    assert files(a / "media") == files(b / "media") and len(files(b / "media")) == 12
    assert files(a / "models") == files(b / "models")

    # A second restore over the now-filled database is refused unless forced.
    again = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "restore", folder, *common_b],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert again.returncode == 2 and "already holds 12 products" in again.stderr


def test_a_damaged_backup_is_refused(tmp_path):
    dataset = make_learnable_dataset(tmp_path / "dataset", n=4)
    common = ["--data-dir", str(tmp_path / "a")]
    cli("import", str(dataset), *common)
    folder = cli("backup", str(tmp_path / "backups"), *common).stdout.strip().split("backup written to ")[1]
    photo = next((tmp_path / "backups").rglob("*.jpg"))
    photo.write_bytes(b"damaged")
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "restore", folder, "--data-dir", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 2 and "missing or damaged" in result.stderr
    assert not (tmp_path / "b" / "visual_taxonomy.sqlite3").exists()  # checked before anything was written
