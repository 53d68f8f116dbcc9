"""The four rooms and their one-way doors: taxonomy <- db, taxonomy <- trainer, app -> all.

Two views of the same rule: the import statements in the source (any depth, so an import inside
a function counts), and what importing a package really loads, in a fresh interpreter, since in
this test session the packages are already imported and importing them again would show nothing.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
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
def test_imports_flow_one_way(package: str) -> None:
    assert imported_packages(package) <= ALLOWED[package]


_IMPORT_AND_LIST = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_importing_a_package_loads_only_what_it_may_and_is_quiet(package: str) -> None:
    """A fresh interpreter imports the package: nothing printed, none of our other packages loaded."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_AND_LIST, package], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    *printed, loaded = result.stdout.splitlines()
    assert (printed, result.stderr) == ([], "")
    assert set(json.loads(loaded)) & OURS <= ALLOWED[package] | {package}


# -- no import circle inside webapp/ -------------------------------------------------------------


def webapp_imports() -> dict[str, set[str]]:
    """Module -> the webapp modules it imports, at any depth (imports inside functions too)."""
    package = ROOT / "webapp"
    modules = {path.stem for path in package.glob("*.py")} - {"__init__"}
    graph: dict[str, set[str]] = {}
    for name in sorted(modules):
        targets: set[str] = set()
        for node in ast.walk(ast.parse((package / f"{name}.py").read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name.split(".")[1] for a in node.names if a.name.startswith("webapp.")}
            elif isinstance(node, ast.ImportFrom) and (node.level == 1 or node.module == "webapp"):
                if node.module and node.module != "webapp":  # from .x import y / from webapp.x import y
                    targets.add(node.module.split(".")[-1] if node.level else node.module.split(".")[1])
                else:  # from . import x, y
                    targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("webapp."):
                targets.add(node.module.split(".")[1])
        graph[name] = (targets & modules) - {name}
    return graph


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once, as a path that ends where it starts (``[a, b, a]``)."""
    circles: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                circle = [*path[path.index(nxt) :], nxt]
                if frozenset(circle) not in seen:
                    seen.add(frozenset(circle))
                    circles.append(circle)
            else:
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return circles


def test_the_circle_finder_sees_a_circle_and_only_one() -> None:
    graph = {"ui": {"ui_admin", "form"}, "ui_admin": {"ui"}, "form": {"services"}, "services": set()}
    assert find_circles(graph) == [["ui", "ui_admin", "ui"]]
    assert find_circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_web_app_has_no_import_circle() -> None:
    """A circle (even one hidden by an import inside a function) means neither module can be
    understood or tested without the other; the dependency should point one way."""
    circles = find_circles(webapp_imports())
    assert circles == [], "import circles in webapp/: " + "; ".join(" -> ".join(c) for c in circles)
