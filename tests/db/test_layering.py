"""db/ stands on taxonomy/ only and reads no environment variables (the app's settings do)."""

from __future__ import annotations

import ast
from pathlib import Path

DB = Path(__file__).resolve().parents[2] / "db"


def _modules() -> list[Path]:
    return sorted(DB.rglob("*.py"))


def test_db_imports_taxonomy_but_not_trainer_or_app() -> None:
    offenders = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("trainer", "app")]
    assert offenders == []


def test_db_reads_no_environment() -> None:
    for path in _modules():
        text = path.read_text("utf-8")
        assert "os.environ" not in text and "getenv" not in text, path
