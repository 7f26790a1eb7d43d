"""The house rules of the code's layout: small modules, and no import cycle inside ``mem1_envs``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mem1_envs", "agents", "wrappers", "scripts")
MAX_LINES = 600


def _modules(package: str, root: Path = ROOT) -> dict[str, Path]:
    """``{dotted name: path}`` of every module of ``package`` (``__init__`` named as the package)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST, name: str, is_package: bool) -> list[str]:
    """Every module named by an import anywhere in ``tree`` (module level and inside functions);
    ``if TYPE_CHECKING:`` blocks, which never run, are left out. ``from a import b`` names
    ``a.b`` (a module or not: the caller keeps the ones that are)."""
    found: list[str] = []
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
               for child in node.body for n in ast.walk(child)}  # fmt: skip
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found += [f"{module}.{alias.name}" for alias in node.names]
    return found


def import_graph(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``: the deepest module each import names.

    An import of ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first; those implicit
    parent-package edges are not counted (every module would otherwise reach ``mem1_envs``)."""
    modules = _modules(package, root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges = set()
        for target in _imported(tree, name, path.name == "__init__.py"):
            while target and target not in modules:  # a.b.attr -> a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``) or None: depth-first search with colours.

    >>> find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    ['a', 'b', 'c', 'a']
    >>> find_cycle({"a": {"b"}, "b": set()}) is None
    True
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_hand_written_module_is_over_the_line_limit():
    too_long = {}
    for package in PACKAGES:
        for path in _modules(package).values():
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                too_long[str(path.relative_to(ROOT))] = lines
    assert not too_long, f"modules over {MAX_LINES} lines (split them by concern): {too_long}"


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph("mem1_envs")
    assert len(graph) > 30 and graph["mem1_envs.qa.env"]  # the walk saw the package and its imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in mem1_envs: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    ("source", "edges"),
    [
        ("import mem1_envs.qa.index\n", {"mem1_envs.qa.index"}),
        ("from mem1_envs.qa import index\n", {"mem1_envs.qa.index"}),
        ("from mem1_envs.qa.index import build\n", {"mem1_envs.qa.index"}),
        ("def f():\n    from .index import build\n", {"mem1_envs.qa.index"}),  # function level counts
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .index import build\n", set()),
    ],
)
def test_the_graph_reads_every_kind_of_import(source, edges, tmp_path):
    package = tmp_path / "mem1_envs"
    (package / "qa").mkdir(parents=True)
    for name in ("__init__.py", "qa/__init__.py", "qa/index.py"):
        (package / name).write_text("")
    (package / "qa" / "dense.py").write_text(source)
    assert import_graph("mem1_envs", tmp_path)["mem1_envs.qa.dense"] == edges
