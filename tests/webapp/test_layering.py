"""The web app's modules import one another in one direction: no circle, not even inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "webapp"


def _imports(path: Path) -> set[str]:
    """The webapp modules ``path`` imports anywhere in it (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found |= {node.module} if node.module else {a.name for a in node.names}
            elif node.module and node.module.startswith("webapp."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("webapp.")}
    return found


def test_no_import_circle_in_webapp() -> None:
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}
    assert graph["ui_admin"] and "ui" not in graph["ui_admin"]
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_the_ui_uses_no_private_service_function() -> None:
    for name in ("ui.py", "ui_admin.py", "api.py"):
        assert "services._" not in (PACKAGE / name).read_text(encoding="utf-8"), name
