"""The four rooms and their one-way doors: taxonomy <- db, taxonomy <- trainer, app -> all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"taxonomy", "db", "trainer", "app", "webapp"}
ALLOWED = {"taxonomy": set(), "db": {"taxonomy"}, "trainer": {"taxonomy"}}


def imported_packages(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found |= {n.split(".")[0] for n in names} & OURS
    return found - {package}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package):
    assert imported_packages(package) <= ALLOWED[package]


def test_importing_the_packages_is_quiet(capsys):
    import importlib

    for package in ALLOWED:
        importlib.import_module(package)
    assert capsys.readouterr() == ("", "")
