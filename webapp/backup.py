"""``python app.py backup`` and ``restore``: the database, the photos and the models, together.

SQLite is copied with its online backup API (consistent while the app keeps writing);
PostgreSQL with ``pg_dump`` / ``psql``. A manifest records the row count of every table and
the checksum of every file, and a restore checks both before it reports success.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from sqlalchemy import Engine, MetaData, func, select
from sqlalchemy.engine import make_url

import db
from taxonomy import file_sha256

from .settings import Settings

MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite3"
SQL_DUMP = "database.sql"


class BackupError(RuntimeError):
    """A backup or restore that cannot be done safely; the text says why."""


def table_counts(engine: Engine) -> dict[str, int]:
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        return {
            name: conn.scalar(select(func.count()).select_from(table)) or 0
            for name, table in sorted(metadata.tables.items())
        }


def _copy_tree(source: Path, target: Path) -> dict[str, str]:
    """Copy every file under ``source``; returns relative path -> sha256."""
    files = {}
    if not source.is_dir():
        return files
    for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
        rel = path.relative_to(source)
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        files[str(rel)] = file_sha256(dest)
    return files


def _pg_env(url: str) -> tuple[list[str], dict[str, str]]:
    u = make_url(url)
    env = {**os.environ}
    if u.password:
        env["PGPASSWORD"] = u.password
    args = ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres", "-d", u.database]
    return args, env


def backup(settings: Settings, out_dir: Path) -> Path:
    """Write a backup folder under ``out_dir``; returns its path."""
    target = Path(out_dir) / time.strftime("vt-backup-%Y%m%d-%H%M%S")
    if target.exists():
        raise BackupError(f"{target} exists already; wait a second or choose another folder")
    target.mkdir(parents=True)
    engine = db.make_engine(settings.db_url)
    try:
        counts = table_counts(engine)
        revision = db.current_revision(engine)
        if engine.dialect.name == "sqlite":
            source = sqlite3.connect(make_url(settings.db_url).database)
            dest = sqlite3.connect(target / SQLITE_FILE)
            with dest:
                source.backup(dest)
            source.close()
            dest.close()
            dump = SQLITE_FILE
        elif engine.dialect.name == "postgresql":
            args, env = _pg_env(settings.db_url)
            with open(target / SQL_DUMP, "w") as handle:
                result = subprocess.run(
                    ["pg_dump", "--no-owner", "--no-privileges", *args],
                    stdout=handle,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            if result.returncode != 0:
                raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
            dump = SQL_DUMP
        else:
            raise BackupError(f"backups of {engine.dialect.name} databases are not supported")
    finally:
        engine.dispose()
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dialect": dump,
        "schema_revision": revision,
        "tables": counts,
        "database_sha256": file_sha256(target / dump),
        "media": _copy_tree(settings.media_dir, target / "media"),
        "models": _copy_tree(settings.models_dir, target / "models"),
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return target


def _verify_files(folder: Path, expected: dict[str, str], what: str) -> None:
    for rel, digest in expected.items():
        path = folder / rel
        if not path.is_file() or file_sha256(path) != digest:
            raise BackupError(f"{what} file {rel} is missing or damaged in the backup")


def restore(settings: Settings, backup_dir: Path, *, force: bool = False) -> dict[str, int]:
    """Restore a backup into the settings' database and folders; returns the restored row counts.

    Refuses to overwrite a database that holds products unless ``force`` is given.
    """
    backup_dir = Path(backup_dir)
    try:
        manifest = json.loads((backup_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackupError(f"{backup_dir} is not a Visual Taxonomy backup: {exc}") from None
    dump = backup_dir / manifest["dialect"]
    if not dump.is_file() or file_sha256(dump) != manifest["database_sha256"]:
        raise BackupError(f"the database file of {backup_dir} is missing or damaged")
    _verify_files(backup_dir / "media", manifest["media"], "photo")
    _verify_files(backup_dir / "models", manifest["models"], "model")
    engine = db.make_engine(settings.db_url)
    try:
        existing = table_counts(engine)
        if existing.get("products") and not force:
            raise BackupError(
                f"the target database already holds {existing['products']} products; "
                "restore into an empty database, or pass --force to replace it"
            )
        if manifest["dialect"] == SQLITE_FILE:
            if engine.dialect.name != "sqlite":
                raise BackupError("this backup is of a SQLite database; restore it into a SQLite URL")
            engine.dispose()
            path = Path(make_url(settings.db_url).database)
            path.parent.mkdir(parents=True, exist_ok=True)
            source = sqlite3.connect(dump)
            dest = sqlite3.connect(path)
            with dest:
                source.backup(dest)
            source.close()
            dest.close()
        else:
            if engine.dialect.name != "postgresql":
                raise BackupError("this backup is of a PostgreSQL database; restore it into a PostgreSQL URL")
            metadata = MetaData()
            metadata.reflect(engine)
            metadata.drop_all(engine)
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
            args, env = _pg_env(settings.db_url)
            result = subprocess.run(
                ["psql", "-v", "ON_ERROR_STOP=1", "-q", *args, "-f", str(dump)], capture_output=True, text=True, env=env
            )
            if result.returncode != 0:
                raise BackupError(f"psql failed: {result.stderr.strip()}")
    finally:
        engine.dispose()
    for name, folder in (("media", settings.media_dir), ("models", settings.models_dir)):
        _copy_tree(backup_dir / name, folder)
    engine = db.make_engine(settings.db_url)
    try:
        restored = table_counts(engine)
    finally:
        engine.dispose()
    if restored != manifest["tables"]:
        raise BackupError(f"restored row counts {restored} differ from the backup's {manifest['tables']}")
    return restored
