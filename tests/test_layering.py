"""The house rules of the import map: pages and routes go through services, never the store or each other.

Read from the source with ``ast`` (imports inside functions count too), so a shortcut added anywhere fails here.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

WEBAPP = Path(__file__).resolve().parent.parent / "webapp"


def _imports() -> dict[str, set[str]]:
    """Module → the webapp modules it imports."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in WEBAPP.rglob("*.py"):
        parts = path.relative_to(WEBAPP.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("webapp"):
                found[module].add(node.module)
            elif isinstance(node, ast.Import):
                found[module].update(a.name for a in node.names if a.name.startswith("webapp"))
    return found


def _package(module: str) -> str:
    """webapp.ui.chat.page → webapp.ui; webapp.app → webapp.app."""
    return ".".join(module.split(".")[:2])


def test_pages_and_routes_never_import_the_store() -> None:
    shortcuts = [
        f"{module} imports {target}"
        for module, targets in _imports().items()
        if _package(module) in ("webapp.ui", "webapp.api")
        for target in targets
        if _package(target) == "webapp.store"
    ]
    assert shortcuts == []


def test_pages_and_routes_never_import_each_other() -> None:
    crossings = [
        f"{module} imports {target}"
        for module, targets in _imports().items()
        for target in targets
        if {_package(module), _package(target)} == {"webapp.ui", "webapp.api"}
    ]
    assert crossings == []


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle among the packages (depth-first search), or [] when the graph has none."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_the_packages_import_each_other_in_no_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in _imports().items():
        graph[_package(module)].update(_package(t) for t in targets if _package(t) != _package(module))
    assert _cycle(graph) == []


def test_the_cycle_finder_finds_a_cycle_of_three() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_the_rule_checker_sees_imports_inside_functions() -> None:
    """webapp/app.py imports the pages inside create_app (Gradio loads only for an app with pages)."""
    assert "webapp.ui.mount" in _imports()["webapp.app"]
