"""Imports point one way: no module of atlas_services imports itself back through others,
and no two of its subpackages import each other (imports inside functions count)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import build

PACKAGE = build.REPO / "atlas_services"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        # Relative: from the module's package (a package's __init__ is its own package).
        base = module.split(".")
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    yield prefix
    # `from pkg import mod` imports the module pkg.mod when there is one.
    yield from (f"{prefix}.{alias.name}" for alias in node.names)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module → the modules of the same package it imports, anywhere in its code."""
    paths = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets |= {t for t in _imported(node, module, path.name == "__init__.py")
                            if t in paths and t != module}
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def package_ties(graph: dict[str, set[str]], root_name: str) -> set[tuple[str, str]]:
    """Pairs of second-level subpackages that import each other (a ↔ b), a < b."""
    def subpackage(module: str) -> str | None:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 and parts[0] == root_name else None

    edges: set[tuple[str, str]] = set()
    for module, targets in graph.items():
        for target in targets:
            a, b = subpackage(module), subpackage(target)
            if a and b and a != b:
                edges.add((a, b))
    return {(a, b) for a, b in edges if (b, a) in edges and a < b}


def test_no_module_imports_itself_back() -> None:
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, " → ".join(cycle or [])


def test_no_two_subpackages_import_each_other() -> None:
    assert package_ties(import_graph(PACKAGE), "atlas_services") == set()


def test_the_checks_find_a_cycle_and_a_tie(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    for sub in ("a", "b"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "one.py").write_text("from pkg.b import two\n")
    # The way back hides inside a function, and is relative.
    (pkg / "b" / "two.py").write_text("def late() -> None:\n    from ..a import one\n")
    graph = import_graph(pkg)
    assert graph["pkg.a.one"] == {"pkg.b", "pkg.b.two"} and graph["pkg.b.two"] == {"pkg.a", "pkg.a.one"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and {"pkg.a.one", "pkg.b.two"} <= set(cycle)
    assert package_ties(graph, "pkg") == {("pkg.a", "pkg.b")}
