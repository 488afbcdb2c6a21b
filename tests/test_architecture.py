"""The shape of the code: layers that import only downwards, no import circle, booking knowing none of its listeners.

The contracts live in .importlinter (read by `lint-imports` too); docs/architecture.md draws the same layers.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
# Pure leaves that the models may use, each its own node among the packages (they import nothing of Lapins).
LEAF_MODULES = {"lapins.slots.engine"}


def graph():
    return grimp.build_graph("lapins", include_external_packages=False, exclude_type_checking_imports=True)


def strongly_connected(nodes, edges) -> list[set[str]]:
    """Tarjan's components of more than one node: each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(component)

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return circles


def room(module: str) -> str:
    if module in LEAF_MODULES:
        return module
    return ".".join(module.split(".")[:2])


def test_the_import_contracts_hold():
    # In a process of its own: import-linter reconfigures logging and would disable the loggers of later tests.
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--config", ".importlinter",
                             "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]


def test_no_module_imports_itself_through_others():
    g = graph()
    edges = {module: g.find_modules_directly_imported_by(module) for module in g.modules}
    assert strongly_connected(g.modules, edges) == []


def test_no_room_imports_itself_through_other_rooms():
    g = graph()
    edges: dict[str, set[str]] = {}
    for module in g.modules:
        for imported in g.find_modules_directly_imported_by(module):
            if room(imported) != room(module):
                edges.setdefault(room(module), set()).add(room(imported))
    assert strongly_connected({room(module) for module in g.modules}, edges) == []


def test_the_leaf_modules_import_nothing_of_lapins():
    g = graph()
    for leaf in LEAF_MODULES:
        assert g.find_modules_directly_imported_by(leaf) == set()


def test_no_import_hides_in_a_function_unless_its_comment_says_why():
    """An import inside a function to dodge a circle hides the circle; one for start-up cost says so. The app
    factory (lapins/__init__.py) is the exception by construction: every module imports the package `lapins` first,
    so the package cannot import its rooms at its top."""
    hidden = []
    for path in sorted((ROOT / "lapins").rglob("*.py")):
        if path == ROOT / "lapins" / "__init__.py":
            continue
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                names = ([inner.module or ""] if isinstance(inner, ast.ImportFrom)
                         else [alias.name for alias in inner.names] if isinstance(inner, ast.Import) else [])
                if any(name.startswith("lapins") for name in names) and "start-up" not in lines[inner.lineno - 1]:
                    hidden.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert hidden == []
