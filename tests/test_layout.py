"""The package's shape: folders by role, imports pointing down (config < run < analysis < cli),
no import circle anywhere, function-level and type-checking imports included."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

FOLDERS = {"harness": "lcbench", "strategies": "lcbench.strategies", "kernels": "lcbench.kernels"}
# The layer of each subpackage; everything else (the top-level modules the plugins use, tasks,
# sparse, kv, reference, strategies, kernels) is the base every layer may import.
LAYERS = {
    "lcbench.config": 1,
    "lcbench.run": 2,
    "lcbench.analysis": 3,
    "lcbench.settle": 4,  # adaptive sampling: runs rounds (run) on the answer's open verdicts (analysis)
    "lcbench.cli": 4,
    "lcbench.__main__": 4,
}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """Every lcbench module `path` imports, wherever the import statement is."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names]
        else:
            continue
        out |= {n for n in names if n in known}
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def layer(module: str) -> int:
    return max((rank for prefix, rank in LAYERS.items() if module == prefix or module.startswith(prefix + ".")), default=0)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_function_level_imports():
    edges = graph()
    assert "lcbench.run.engines" in edges["lcbench.cli"]  # imported inside a function there
    assert len(edges) > 80


def test_no_import_circle():
    assert circles(graph()) == []


def test_a_circle_is_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_point_down_the_layers():
    upward = [f"{m} -> {n}" for m, targets in graph().items() for n in sorted(targets) if layer(n) > layer(m)]
    assert upward == []


def test_the_top_of_the_package_is_short():
    top = sorted(p.name for p in (ROOT / "harness").glob("*.py"))
    assert len(top) <= 12, top
