#!/usr/bin/env python3
"""`make mutate`: mutation testing (mutmut) of the modules that hold the promises, each against its room's tests.

For each module chosen (all of ROOMS by default, or the names given: `make mutate MUTATE_ARGS="booking links"`):
1. a fresh copy of the work tree (tracked and untracked files, not ignored ones) is made under .mutate/<name>/;
2. the room's test files run once under coverage.py (tests/mutation_lines.py): the lines each test executes;
   mutmut 3 mutates only that module there, runs them once more to learn which test reaches which function, then
   runs each mutant against those of them that executed the statement it changed, stopping at the first failure
   (pytest -x), two mutants at a time (MUTATE_JOBS);
3. the counts (killed, survived, timeouts...) go to .mutate/<name>/summary.json and every surviving mutant's diff
   to .mutate/<name>/survivors.md, for a person to judge: an equivalent mutant (no behaviour changed) or a test to
   add. docs/testing.md keeps the figures and the judgements.

One PostgreSQL and one Redis server are started for the whole run (tests/services.py), as `make test` does, so that
each mutant's tests do not start their own. Not in CI: a full run takes hours on a two-core machine
(docs/testing.md, « Figures »: the minutes measured per room, and where a mutant's seconds go).
Exit status: 0 when every module ran, whatever survived (the figures are for reading, not a gate).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import mutation_lines, services  # noqa: E402

WORK = ROOT / ".mutate"
# Copied beside the package into mutmut's mutants/ directory: what the app and the tests read at run time.
ALSO_COPY = ["templates", "config.py", "worker.py", "migrations", "pytest.ini", ".importlinter", "package.json"]


@dataclass(frozen=True)
class Room:
    modules: tuple[str, ...]  # the files mutated
    tests: tuple[str, ...]  # the test files that hold the room's promises


# The modules that hold the promises, with the tests of their room. The delivery-reliability tests (a Celery
# worker in a subprocess, a real beat) and the browser tests are left out: too slow to run for each mutant.
ROOMS: dict[str, Room] = {
    "booking": Room(("lapins/booking/__init__.py",), (
        "tests/test_booking_rules.py", "tests/test_booking.py", "tests/test_double_booking.py", "tests/test_booking_events.py",
        "tests/test_concurrent_cancellation.py", "tests/test_concurrent_restore.py", "tests/test_api.py",
        "tests/test_family_cancellation.py", "tests/test_rdv_views.py")),
    "links": Room(("lapins/notifications/links.py", "lapins/notifications/offer_links.py"), (
        "tests/test_signed_links.py", "tests/test_family_page.py", "tests/test_family_cancellation.py", "tests/test_offers.py",
        "tests/test_sms_text.py", "tests/test_email.py", "tests/test_guardians.py", "tests/test_sessions.py",
        "tests/test_family_moves.py")),
    # test_family_move_rules.py holds the family's moves at their bounds (written against this room's survivors).
    "identity": Room(("lapins/family/services.py",), (
        "tests/test_identity_guesses.py", "tests/test_family_move_rules.py", "tests/test_family_cancellation.py",
        "tests/test_family_identity_limits.py", "tests/test_family_page.py", "tests/test_concurrent_cancellation.py",
        "tests/test_family_moves.py", "tests/test_family_moves_race.py")),
    # Narrowed to the files that test permissions as such: the seven files it had took 3 min 47 s a pass here
    # (158 tests), these three 1 min 31 s (29 tests, the walk covers every route as each role);
    # test_policies_rules.py decides each rule from both sides, written against this room's survivors.
    "policies": Room(("lapins/policies.py",), (
        "tests/test_policies_rules.py", "tests/test_permission_walk.py", "tests/test_territory_admins.py",
        "tests/test_usager_privacy.py")),
    # Added on 8 December, after a first run stopped at 713 of 2,164 mutants (124 survivors, 233 « no tests »):
    # test_reminder_plan.py (the reminders' planning: the territory's wall clock, DST, quiet hours),
    # test_online_code_redaction.py (the verification code's text), test_sessions.py (the sessions' participants:
    # 118 mutants no other file reaches), the composed texts (test_email.py, test_discreet_motifs.py,
    # test_confirmation_round.py), and test_outbox_texts.py and test_outbox_claim_rules.py, written against that
    # run's survivors. test_guardians.py and test_family_cancellation.py after the second run (their « ne prévenir
    # que … », per-guardian links and receipts: `left_out`, `rdv_link_for`, `compose_sms`, survivors of that run)
    # test_offers_session_rules.py (an offer SMS withdrawn before it left: `_why_not_offer` 8), test_cost_sentence.py
    # and test_territory_settings.py (the territory's cost and note sentences: `_rdv_facts` 19, 20).
    "outbox": Room(("lapins/notifications/outbox.py",), (
        "tests/test_outbox.py", "tests/test_outbox_claim_rules.py", "tests/test_outbox_texts.py",
        "tests/test_offers.py", "tests/test_message_views.py", "tests/test_booking_events.py", "tests/test_sms_replies.py",
        "tests/test_reminder_plan.py", "tests/test_online_code_redaction.py", "tests/test_email.py",
        "tests/test_discreet_motifs.py", "tests/test_confirmation_round.py", "tests/test_sessions.py",
        "tests/test_guardians.py", "tests/test_family_cancellation.py", "tests/test_offers_session_rules.py",
        "tests/test_cost_sentence.py", "tests/test_territory_settings.py")),
    # test_offers_engine_rules.py holds the engine's rules at their bounds (written against this room's survivors);
    # test_sessions.py and test_sessions_edit.py reach the collective sessions' waiting list (free_session_places,
    # follow_session, the session branches of offer_slot and accept: 171 mutants no other file reaches), 16 s a pass;
    # test_offers_session_rules.py holds those at their bounds (written against the 7 December run's survivors).
    "offers": Room(("lapins/waitlist/offers.py",), (
        "tests/test_offers.py", "tests/test_offers_engine_rules.py", "tests/test_offer_races.py",
        "tests/test_waitlist.py", "tests/test_freed_slots.py", "tests/test_booking_events.py", "tests/test_sessions.py",
        "tests/test_sessions_edit.py", "tests/test_offers_session_rules.py")),
    # test_slot_engine_intervals.py holds merge's empty intervals and to_utc's zone (written against this room's
    # survivors, three tests).
    "slots": Room(("lapins/slots/engine.py",), (
        "tests/test_slot_engine_bounds.py", "tests/test_slot_engine_intervals.py", "tests/test_slots.py",
        "tests/test_availability.py", "tests/test_schedule.py", "tests/test_plage_exceptions.py")),
    # test_offers.py left out: it was here for compose_offer before test_offer_sms_text.py held the offer's exact
    # texts; it reached 25 of the two modules' functions (the confirmation SMS), so most mutants paid its live servers
    # and databases. A pass took 24.3 s with it, 10.5 s without; it kills none of the 47 survivors of the room without.
    "gsm": Room(("lapins/notifications/gsm.py", "lapins/notifications/sms_text.py"), (
        "tests/test_gsm.py", "tests/test_sms_text.py", "tests/test_offer_sms_text.py", "tests/test_cost_sentence.py")),
}


def copy_tree(target: Path) -> None:
    """The work tree as git sees it (tracked and untracked files, ignored ones left out), without .venv."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def preloaded_modules(directory: Path, room: Room) -> list[str]:
    """Every module of the package, pytest's plugins, the conftest and the room's test files: imported once by
    mutmut's fork server, so that each mutant's child inherits them. With mutmut's default warm-up (`pytest
    --collect-only`) only the test files and what they import at the top were loaded, and each child still imported
    the app's blueprints when its first test built the app: 0.6 s of a 3.7 s child (docs/testing.md, « Figures »)."""
    package = sorted(path.relative_to(directory).with_suffix("") for path in (directory / "lapins").rglob("*.py"))
    names = [".".join(path.parts[:-1] if path.name == "__init__" else path.parts) for path in package]
    # The installed pytest plugins (schemathesis, faker, hypothesis...): each child's pytest loaded them again, with
    # its assertion rewriting of their modules, 1.8 s of a 2-second child running one plain test; once imported here,
    # 0.35 s (docs/testing.md, « Figures »).
    plugins = sorted({entry.module for entry in entry_points(group="pytest11")})
    tests = [test.removesuffix(".py").replace("/", ".") for test in room.tests]
    return names + plugins + ["tests.conftest", *tests, "tests.mutation_lines", "tests.mutation_fork"]


def setup_cfg(room: Room, ordered: bool) -> str:
    def listed(values) -> str:
        return "\n    ".join(values)

    # One argument a line (mutmut splits the value on new lines only). tests/mutation_order.py: a mutant's tests run
    # the known killers first, then fastest first.
    # pytest's unraisable-exception plugin collects the garbage at each child's end, to report exceptions raised in
    # __del__: 0.2 to 0.35 s of a one-second child; a mutant is killed by a failing test, not by those reports.
    pytest_args = ["-pno:cacheprovider", "-pno:unraisableexception", *(["-ptests.mutation_order"] if ordered else [])]

    return f"""[mutmut]
source_paths = lapins
only_mutate = {listed(room.modules)}
also_copy = {listed(ALSO_COPY)}
pytest_add_cli_args_test_selection = {listed(room.tests)}
pytest_add_cli_args = {listed(pytest_args)}
process_isolation = forkserver
forkserver_warmup = import
preload_modules_file = preload.txt
log_to_file = true
"""  # log_to_file: each mutant's seconds, in mutants/mutmut-debug.log


def mutmut(directory: Path, *args: str, env: dict[str, str], log: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mutmut", *args]
    if log is None:
        return subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True)
    with log.open("w") as output:
        return subprocess.run(command, cwd=directory, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)


def function_patterns(functions: list[str]) -> list[str]:
    """mutmut's names for the mutants of these functions or methods (`lapins.x.x_name__mutmut_3`,
    `lapins.x.xǁClassǁname__mutmut_3`), as the patterns `mutmut run` selects by."""
    return [pattern for function in functions for pattern in (f"*.x_{function}__mutmut_*", f"*ǁ{function}__mutmut_*")]


def record_lines(directory: Path, room: Room, env: dict[str, str]) -> Path:
    """One pass of the room's tests under coverage.py: the lines of the mutated modules each test executes
    (tests/mutation_lines.py), so that each mutant runs only the tests that execute what it changed."""
    lines = directory / "lines.json"
    started = time.monotonic()
    with (directory / "lines-pass.log").open("w") as log:
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.mutation_lines",
                        *room.tests], cwd=directory, env={**env, mutation_lines.RECORD_ENV: str(lines)},
                       stdout=log, stderr=subprocess.STDOUT)
    if not lines.exists():
        raise SystemExit(f"the coverage pass wrote no {lines}: see {directory / 'lines-pass.log'}")
    print(f"    lines each test executes recorded in {time.monotonic() - started:.0f} s", flush=True)
    return lines


def run_room(name: str, room: Room, jobs: int, env: dict[str, str], ordered: bool = True,
             functions: list[str] | None = None, by_line: bool = True) -> dict:
    directory = WORK / name
    only = f", only {', '.join(functions)}" if functions else ""
    print(f"\n=== {name}: {', '.join(room.modules)} against {len(room.tests)} test files{only}", flush=True)
    copy_tree(directory)
    (directory / "setup.cfg").write_text(setup_cfg(room, ordered))
    env = {**env, "LAPINS_MUTATE_KILLS": str(directory / "kills.tsv"),
           mutation_lines.MODULES_ENV: ":".join(room.modules)}
    if by_line:
        env[mutation_lines.LINES_ENV] = str(record_lines(directory, room, env))
    (directory / "preload.txt").write_text("\n".join(preloaded_modules(directory, room)) + "\n")
    started = time.monotonic()
    run = mutmut(directory, "run", "--max-children", str(jobs), *function_patterns(functions or []), env=env,
                 log=directory / "mutmut-run.log")
    minutes = (time.monotonic() - started) / 60
    mutmut(directory, "export-cicd-stats", env=env)
    stats_file = directory / "mutants" / "mutmut-cicd-stats.json"
    counts = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    results = [line.strip().rsplit(": ", 1) for line in mutmut(directory, "results", env=env).stdout.splitlines()
               if ": " in line]
    survivors = [mutant for mutant, status in results if status == "survived"]
    untested = [mutant for mutant, status in results if status == "no tests"]
    with (directory / "survivors.md").open("w") as report:
        # The « no tests » mutants too: a change to code no test of the room executes is judged as a survivor is.
        for title, mutants in ((f"Surviving mutants of {', '.join(room.modules)}", survivors),
                               ("Mutants of code no test of the room executes (« no tests »)", untested)):
            report.write(f"# {title}\n\n")
            for mutant in mutants:
                shown = mutmut(directory, "show", mutant, env=env).stdout
                report.write(f"## {mutant}\n\n```diff\n{shown.strip()}\n```\n\n")
    killed, total = counts.get("killed", 0), counts.get("total", 0)
    summary = {"room": name, "modules": list(room.modules), "tests": list(room.tests), "functions": functions or "all",
               "tests_per_mutant": ("those executing the changed statement" if by_line
                                    else "those reaching the function"),
               "exit": run.returncode,
               "minutes": round(minutes, 1), **counts,
               "killed_percent": round(100 * killed / total, 1) if total else None, "survivors": survivors,
               "no_tests_mutants": untested}
    (directory / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"    {killed}/{total} killed ({summary['killed_percent']} %), {counts.get('survived', '?')} survived, "
          f"{counts.get('timeout', 0)} timeouts, {counts.get('no_tests', 0)} without tests, in {minutes:.0f} min "
          f"(mutmut exit {run.returncode}); survivors in {directory / 'survivors.md'}", flush=True)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rooms", nargs="*", metavar="ROOM", help=f"rooms to mutate (default: all): {', '.join(ROOMS)}")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATE_JOBS", "2")))
    parser.add_argument("--unordered", action="store_true",
                        help="run each mutant's tests in mutmut's own order, every test that reaches its function (to "
                             "measure what the ordering saves)")
    parser.add_argument("--every-test", action="store_true",
                        help="run each mutant against every test that reaches its function, as mutmut chooses them, "
                             "not only those that execute the statement it changed (to measure what that saves)")
    parser.add_argument("--functions", nargs="+", metavar="NAME",
                        help="mutate only these functions of the one room given (the others are left unchecked): "
                             "to measure again what new tests kill without the whole room's run")
    args = parser.parse_args()
    chosen = args.rooms or list(ROOMS)
    if args.functions and len(chosen) != 1:
        parser.error("--functions needs exactly one room")
    unknown = sorted(set(chosen) - set(ROOMS))
    if unknown:
        parser.error(f"unknown room(s) {', '.join(unknown)}: choose among {', '.join(ROOMS)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = {key: value for key, value in os.environ.items() if key != "TEST_DATABASE_URL"}
    # node_modules is not copied (a symlink, ignored by git): the copy's app reads the npm data (communes, DSFR)
    # from the work tree's, else every page that needs it answers 500 and mutmut's first pass fails.
    env.setdefault("VENDOR_DIR", str(ROOT / "node_modules"))
    servers = []
    try:
        for server_class, variable, url in ((services.PostgresServer, services.POSTGRES_ENV, "admin_url"),
                                            (services.RedisServer, services.REDIS_ENV, "url")):
            try:
                server = server_class().start()
            except services.ServiceUnavailable as error:
                print(f"{server_class.__name__} not available ({error}): its tests are skipped", file=sys.stderr)
                continue
            servers.append(server)
            value = getattr(server, url)
            env[variable] = value() if callable(value) else value
        summaries = [run_room(name, ROOMS[name], args.jobs, env, not args.unordered, args.functions,
                              not args.every_test)
                     for name in chosen]
    finally:
        for server in reversed(servers):
            server.stop()
    (WORK / "summary.json").write_text(json.dumps(summaries, indent=2))
    print("\nroom      killed/total  survived  timeouts  minutes")
    for summary in summaries:
        print(f"{summary['room']:<9} {summary.get('killed', 0):>6}/{summary.get('total', 0):<5} "
              f"{summary.get('survived', 0):>9} {summary.get('timeout', 0):>9} {summary['minutes']:>8}")
    return 0 if all(summary["exit"] == 0 for summary in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
