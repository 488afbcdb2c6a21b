"""A pytest plugin for `make mutate` only (scripts/mutate.py loads it with `-p`): in each mutant's run, the tests that
killed another mutant of the same function run first, then the others fastest first.

mutmut runs a mutant's tests with `-x` in no particular order, so a killed mutant paid for every test that happened
to come before one that notices it. Which test noticed is written to the file named by LAPINS_MUTATE_KILLS, one
line per kill, for the next mutants of that function. The tests that never executed the statement the mutant
changed are left out first (tests/mutation_lines.py): they cannot notice it."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from tests import mutation_lines

KILLS_ENV = "LAPINS_MUTATE_KILLS"


def _function(mutant: str) -> str:
    """`lapins.x.x_name__mutmut_12` → `lapins.x.x_name`: the mutated function, whose mutants share their killers."""
    return mutant.rsplit("__mutmut_", 1)[0]


def _killers(path: Path, function: str) -> Counter[str]:
    found: Counter[str] = Counter()
    try:
        with path.open() as lines:
            for line in lines:
                name, _, test = line.rstrip("\n").partition("\t")
                if name == function:
                    found[test] += 1
    except FileNotFoundError:
        pass
    return found


def _durations() -> dict[str, float]:
    """mutmut's own timing of each test, from its first pass over the room (the run's directory is mutants/)."""
    try:
        return json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return {}


def pytest_collection_modifyitems(session, config, items) -> None:
    mutant, kills = os.environ.get("MUTANT_UNDER_TEST"), os.environ.get(KILLS_ENV)
    if not kills or "__mutmut_" not in (mutant or ""):  # not a mutant's run (mutmut's own passes)
        return
    selected = mutation_lines.SELECTED.get(mutant)
    if selected is not None:
        # Only the tests that executed the statement the mutant changed (tests/mutation_lines.py).
        left_out = [item for item in items if item.nodeid not in selected]
        items[:] = [item for item in items if item.nodeid in selected]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
    killers, durations = _killers(Path(kills), _function(mutant)), _durations()
    # Stable sort: killers by how often they killed, then every other test by its duration.
    items.sort(key=lambda item: (-killers[item.nodeid], durations.get(item.nodeid, float("inf"))))


def pytest_runtest_logreport(report) -> None:
    mutant, kills = os.environ.get("MUTANT_UNDER_TEST"), os.environ.get(KILLS_ENV)
    if not report.failed or not kills or "__mutmut_" not in (mutant or ""):
        return
    # One short line in append mode: written whole even with two children appending at once.
    with open(kills, "a") as out:
        out.write(f"{_function(mutant)}\t{report.nodeid}\n")
