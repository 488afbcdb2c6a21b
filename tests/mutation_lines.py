"""For `make mutate` only: each mutant runs the tests that executed the statement it changed, the only ones that can
notice it. A coverage pass over the room (this plugin, RECORD_ENV set) records the lines each test executes, its
fixtures and threads included; the fork server imports this module (LINES_ENV set) to place each mutant's changed
lines in their statements, and tests/mutation_order.py deselects the other tests. A mutant that cannot be placed
(a change in the signature, a copy that no longer matches the code) keeps every test of its function."""
from __future__ import annotations

import ast
import difflib
import json
import os
import re
from pathlib import Path

import pytest

RECORD_ENV = "LAPINS_MUTATE_RECORD_LINES"  # the coverage pass: where to write what each test executed
LINES_ENV = "LAPINS_MUTATE_LINES"  # the mutants' run: the file the coverage pass wrote
MODULES_ENV = "LAPINS_MUTATE_MODULES"  # the mutated files, relative to the room's copy, separated by ":"


_COVERAGE = pytest.StashKey()


# --- The coverage pass -----------------------------------------------------------------------------------------

def pytest_configure(config) -> None:
    if not os.environ.get(RECORD_ENV):
        return
    import coverage

    modules = [str(Path(name).resolve()) for name in os.environ[MODULES_ENV].split(":")]
    cov = coverage.Coverage(data_file=None, include=modules, concurrency=["thread"], config_file=False)
    cov.start()
    config.stash[_COVERAGE] = cov


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    cov = item.config.stash.get(_COVERAGE, None)
    if cov is not None:
        cov.switch_context(item.nodeid)


def pytest_unconfigure(config) -> None:
    cov = config.stash.get(_COVERAGE, None)
    if cov is None:
        return
    cov.stop()
    data = cov.get_data()
    root = Path.cwd()
    lines: dict[str, dict[int, list[str]]] = {}
    for measured in data.measured_files():
        by_line = data.contexts_by_lineno(measured)
        lines[str(Path(measured).relative_to(root))] = {
            line: sorted(context for context in contexts if context) for line, contexts in by_line.items()}
    Path(os.environ[RECORD_ENV]).write_text(json.dumps(lines))


# --- The mutants' run: which tests each mutant needs --------------------------------------------------------------

_MUTANT_DEF = re.compile(r"__mutmut_(orig|\d+)$")


def _statement_spans(tree: ast.AST) -> list[tuple[int, int]]:
    """(first, last) line of each statement's own lines: a compound statement's header only (its body holds its own
    statements), an `except` clause's line too."""
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.stmt, ast.excepthandler)):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.AST):
                spans.append((node.lineno, max(node.lineno, body[0].lineno - 1)))
            else:
                spans.append((node.lineno, node.end_lineno or node.lineno))
    return spans


def _innermost(spans: list[tuple[int, int]], line: int) -> tuple[int, int] | None:
    found = [span for span in spans if span[0] <= line <= span[1]]
    return min(found, key=lambda span: span[1] - span[0]) if found else None


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """The module's functions and methods under mutmut's names (`x_name`, `xǁClassǁname`)."""
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[f"x_{node.name}"] = node
        elif isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"xǁ{node.name}ǁ{member.name}"] = member
    return found


def _mutated_copies(tree: ast.Module) -> dict[str, dict[str, ast.FunctionDef]]:
    """mutmut's copies in the mutants' file: {function: {"orig" or the mutant's number: its def}}."""
    copies: dict[str, dict[str, ast.FunctionDef]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            match = _MUTANT_DEF.search(node.name)
            if match:
                copies.setdefault(node.name[:match.start()], {})[match.group(1)] = node
    return copies


def _changed_offsets(original: list[str], mutant: list[str]) -> set[int]:
    """Offsets, from the def line, of the original function's lines the mutant changed (around an insertion, both
    neighbours)."""
    changed: set[int] = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, original, mutant, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            changed.update(range(i1, i2))
        elif tag == "insert":
            changed.update({max(i1 - 1, 0), min(i1, len(original) - 1)})
    return changed


def tests_by_mutant(room: Path, modules: list[str], lines: dict[str, dict[str, list[str]]]) -> dict[str, set[str]]:
    """{mutant's name: the tests that executed a statement it changed}, for the mutants that could be placed."""
    selected: dict[str, set[str]] = {}
    for module in modules:
        original_text = (room / module).read_text()
        original_lines = original_text.splitlines()
        original_tree = ast.parse(original_text)
        functions, spans = _functions(original_tree), _statement_spans(original_tree)
        mutants_text = (room / "mutants" / module).read_text()
        mutants_lines = mutants_text.splitlines()
        executed = {int(line): tests for line, tests in lines.get(module, {}).items()}
        prefix = module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")

        def source(node: ast.FunctionDef) -> list[str]:
            """The copy's lines, its name in its def line put back to the original's, to compare copies."""
            copy = mutants_lines[node.lineno - 1:node.end_lineno]
            return [copy[0].replace(f"def {node.name}(", "def (", 1), *copy[1:]]

        for function, copies in _mutated_copies(ast.parse(mutants_text)).items():
            original, orig = functions.get(function), copies.get("orig")
            if original is None or orig is None:
                continue
            orig_source = source(orig)
            # The copy must be the original function line for line (its name apart), else nothing is placed.
            if orig_source[1:] != original_lines[original.lineno:original.lineno - 1 + len(orig_source)]:
                continue
            for number, node in copies.items():
                if number == "orig":
                    continue
                offsets = _changed_offsets(orig_source, source(node))
                tests: set[str] = set()
                placed = bool(offsets)
                for offset in offsets:
                    span = _innermost(spans, original.lineno + offset)
                    # The def line itself (a default, an annotation) runs at import, in no test: not placed.
                    if offset == 0 or span is None or span[0] == original.lineno:
                        placed = False
                        break
                    for line in range(span[0], span[1] + 1):
                        tests.update(executed.get(line, ()))
                if placed:
                    selected[f"{prefix}.{function}__mutmut_{number}"] = tests
    return selected


SELECTED: dict[str, set[str]] = {}
if os.environ.get(LINES_ENV) and not os.environ.get(RECORD_ENV):
    # Imported by mutmut's fork server (scripts/mutate.py puts this module in its preload list): computed once,
    # inherited by every mutant's child.
    _recorded = Path(os.environ[LINES_ENV])
    SELECTED = tests_by_mutant(_recorded.parent, os.environ[MODULES_ENV].split(":"), json.loads(_recorded.read_text()))
