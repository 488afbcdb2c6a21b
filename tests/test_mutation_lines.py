"""`make mutate`'s choice of tests per mutant (tests/mutation_lines.py): a mutant runs the tests that executed the
statement it changed. A wrong choice would call a killable mutant a survivor, or « no tests »: these tests hold
the recording (setup and threads included) and the placing of mutmut's own mutants."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mutmut import configuration
from mutmut.mutation.file_mutation import mutate_file_contents

from tests import mutation_lines

ROOT = Path(__file__).resolve().parent.parent

MODULE = '''\
import threading


def sign(x):
    if x > 0:
        return "positive"
    raise ValueError("negative")


class Counter:
    def add(self, y=1):
        total = (y +
                 2)
        return total


def in_a_thread():
    result = []
    worker = threading.Thread(target=lambda: result.append(Counter().add(5)))
    worker.start()
    worker.join()
    return result
'''


@pytest.fixture
def room(tmp_path, monkeypatch):
    """A room's copy: the module, and mutmut's mutants of it as `mutmut run` writes them."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text(MODULE)
    (tmp_path / "setup.cfg").write_text("[mutmut]\nsource_paths = pkg\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(configuration, "_config", None)  # mutmut reads its configuration once, from the cwd
    mutated = mutate_file_contents("pkg/mod.py", MODULE)
    (tmp_path / "mutants" / "pkg").mkdir(parents=True)
    (tmp_path / "mutants" / "pkg" / "mod.py").write_text(mutated.code)
    return tmp_path, mutated.mutant_names


def test_each_mutant_keeps_only_the_tests_that_executed_the_statement_it_changed(room):
    directory, names = room
    # As the coverage pass records them: `total = (y +` by its first line only; no test reaches the raise.
    lines = {"pkg/mod.py": {"5": ["t_sign"], "6": ["t_sign"], "12": ["t_add"], "14": ["t_add"],
                            "18": ["t_thread"], "19": ["t_thread", "t_add"], "20": ["t_thread"]}}
    selected = mutation_lines.tests_by_mutant(directory, ["pkg/mod.py"], lines)

    assert len(names) == 18
    assert selected == {
        # `if x > 0` and `return "positive"`: mutated in place
        **{f"pkg.mod.x_sign__mutmut_{n}": {"t_sign"} for n in (1, 2, 3, 4)},
        # the raise no test executes: no test to run (mutmut counts it « no tests »), not every test
        **{f"pkg.mod.x_sign__mutmut_{n}": set() for n in (5, 6, 7)},
        # `total = None`, `(y - 2)` reflowed onto one line, `3)` on the continuation line: the whole statement's tests
        **{f"pkg.mod.xǁCounterǁadd__mutmut_{n}": {"t_add"} for n in (2, 3, 4)},
        "pkg.mod.x_in_a_thread__mutmut_1": {"t_thread"},
        **{f"pkg.mod.x_in_a_thread__mutmut_{n}": {"t_thread", "t_add"} for n in (2, 3, 4, 5, 6, 7)},
    }
    # `add(self, y=2)`, the default in the signature, runs at import, in no test: not placed, so every test
    # mutmut gives it runs.
    assert "pkg.mod.xǁCounterǁadd__mutmut_1" not in selected


def test_a_function_whose_copy_no_longer_matches_the_code_is_not_placed(room):
    directory, _ = room
    (directory / "pkg" / "mod.py").write_text(MODULE.replace('return "positive"', 'return "plus"'))
    selected = mutation_lines.tests_by_mutant(directory, ["pkg/mod.py"], {"pkg/mod.py": {"5": ["t_sign"]}})
    assert selected and not any(".x_sign__" in name for name in selected)


def test_the_coverage_pass_records_each_tests_lines_its_fixtures_and_threads_included(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text(MODULE)
    (tmp_path / "test_it.py").write_text(
        "import pytest\nfrom pkg.mod import sign, in_a_thread\n\n"
        "@pytest.fixture\ndef signed():\n    return sign(1)\n\n"
        "def test_through_a_fixture(signed):\n    assert signed == 'positive'\n\n"
        "def test_in_a_thread():\n    assert in_a_thread() == [7]\n\n"
        "def test_the_raise():\n    with pytest.raises(ValueError):\n        sign(-1)\n")
    record = tmp_path / "lines.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), mutation_lines.RECORD_ENV: str(record),
           mutation_lines.MODULES_ENV: "pkg/mod.py"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.mutation_lines",
                          "test_it.py"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = {int(line): set(tests) for line, tests in json.loads(record.read_text())["pkg/mod.py"].items()}
    fixture, thread, raising = ("test_it.py::test_through_a_fixture", "test_it.py::test_in_a_thread",
                                "test_it.py::test_the_raise")
    assert lines[6] == {fixture}  # return "positive": executed in the fixture's setup only
    assert lines[7] == {raising}
    assert lines[5] == {fixture, raising}
    assert thread in lines[12] and thread in lines[14]  # Counter.add, run in another thread
    assert lines[1] == set()  # the import: in no test
