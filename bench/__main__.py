"""`python -m bench` (`make bench`): seed a département, time slot search and the agenda API, write the figures.

Phases, in BENCH_DATABASE_URL (else a temporary SQLite file) and a twin beside it (a schema, or a second file):
  1. seed the same département with --small-rdvs rdvs in both;
  2. grow one's history to --large-rdvs rdvs (the coming weeks untouched), then time first_available in both,
     runs interleaved so that the machine's load weighs alike on each: the growth ratio;
  3. book the coming weeks of the large one to their usual occupancy, time first_available and its one-query floor;
  4. serve the app with gunicorn; agents' week agendas under wrk: hit, miss, mixed, open_loop (bench/agenda_scenarios.py);
  5. families on the public slot picker, one alone, then --public-clients connections of wrk (bench/wrk.py), and 200
     families racing to move onto the same 20 free times (bench/public.py); then the online search over the
     département's sectors, hit, miss, mixed, open_loop and miss_open_loop (bench/public_search.py: it opens every
     motif online, so last).
Then the reminders (bench/reminders.py), and the reminders under faults, a deployment of their own per scenario
(bench/faults.py, `--only faults`, `--fault-scenarios worker_kill,…`), and the duplicate finder among 200,000
usagers in a schema of its own (bench/duplicates.py, `--only duplicates`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone

from sqlalchemy import text

from bench import duplicates, faults, reminder_plan, reminders, sessions
from bench.database import BenchDatabase, UnsafeDatabase
from bench.results import RESULTS_PATH, merge_results

TARGETS = {  # figure: (comparison, target) — all "at most"
    "slots.first_available.p95_ms": 50,
    "slots.first_available.floor_ratio": 1.2,  # issue 15: public traffic
    "agenda.week.hit.p95_ms": 30,
    "agenda.week.miss.p95_ms": 30,
    "agenda.week.mixed_to_hit_ratio": 1.5,
    "slots.growth_ratio": 1.5,
    "public.next_slots.p95_ms": 30,
    "public.next_slots.floor_ratio": 1.5,
    "public.next_slots.mixed_to_hit_ratio": 1.5,
    "public.search.hit.p95_ms": 50,  # issue 15: 50 families at once
    "public.search.mixed.p95_ms": 50,
    "public.search.open_loop.p95_ms": 50,
    # Every search cold: held at the open loop's pace. `miss` (50 connections back to back, every search cold) is
    # a throughput figure: its p95 is about 50 ÷ the cold searches a second two workers take, whatever one costs.
    "public.search.miss_open_loop.p95_ms": 50,
    "usagers.duplicates.p95_ms": 50,
}


def public_search_scenarios() -> tuple[str, ...]:
    from bench.public_search import SCENARIOS  # imports the app: only when the arguments are read

    return SCENARIOS


def number(value: int) -> str:
    return f"{value:,}".replace(",", "\u202f")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-rdvs", type=int, default=int(env("BENCH_SMALL_RDVS", 10_000)))
    parser.add_argument("--large-rdvs", type=int, default=int(env("BENCH_LARGE_RDVS", 1_000_000)))
    parser.add_argument("--slot-runs", type=int, default=int(env("BENCH_SLOT_RUNS", 400)),
                        help="recherches chronométrées par mesure (sur les motifs du département, en boucle)")
    parser.add_argument("--slot-warmup", type=int, default=40)
    parser.add_argument("--clients", type=int, default=int(env("BENCH_CLIENTS", 20)))
    parser.add_argument("--requests", type=int, default=int(env("BENCH_REQUESTS", 100)),
                        help="requêtes chronométrées par client")
    parser.add_argument("--workers", type=int, default=int(env("BENCH_GUNICORN_WORKERS", 2)))
    parser.add_argument("--worker-class", default=env("BENCH_GUNICORN_WORKER_CLASS", "sync"),
                        help="sync (par défaut) ou gthread, avec --threads")
    parser.add_argument("--threads", type=int, default=int(env("BENCH_GUNICORN_THREADS", 1)))
    parser.add_argument("--skip-agenda", action="store_true", help="sans la mesure de l'agenda sous gunicorn")
    parser.add_argument("--no-conditional", dest="conditional", action="store_false",
                        help="les clients de l'agenda n'envoient jamais If-None-Match (chaque semaine redemandée "
                             "est renvoyée en entier) ; par défaut ils le font comme un navigateur")
    parser.add_argument("--public-clients", type=int, default=int(env("BENCH_PUBLIC_CLIENTS", 50)),
                        help="familles simultanées sur le sélecteur de créneaux")
    parser.add_argument("--skip-public", action="store_true", help="sans le sélecteur de créneaux ni la course")
    parser.add_argument("--skip-picker", action="store_true",
                        help="sans le sélecteur de créneaux ni la course, mais avec la recherche en ligne")
    parser.add_argument("--only", choices=["slots", "reminders", "public", "agenda", "reminder-plan", "calendars",
                                                "faults", "sessions", "duplicates"],
                        help="une seule mesure : first_available et son plancher, les rappels, le sélecteur et la "
                             "course, les scénarios de l'agenda "
                             "(sur le département généré), le plan J-3 + J-1, les agendas des agents "
                             "ou les rappels sous pannes (reminders.faults.*), la course aux places d'une séance, "
                             "les doublons d'usagers")
    parser.add_argument("--agenda-scenarios", default=",".join(("hit", "miss", "mixed", "open_loop")),
                        help="scénarios de l'agenda, séparés par des virgules : hit, miss, mixed, open_loop")
    parser.add_argument("--search-scenarios", default=",".join(public_search_scenarios()),
                        help="scénarios de la recherche en ligne (public.search), séparés par des virgules : "
                             f"{', '.join(public_search_scenarios())} ; vide pour s'en passer")
    parser.add_argument("--window-seconds", type=float, default=float(env("BENCH_WINDOW_SECONDS", 10)),
                        help="durée de chaque fenêtre mesurée par wrk (3 fenêtres, en alternance avec le plancher)")
    reminders.add_arguments(parser)
    reminder_plan.add_arguments(parser)
    faults.add_arguments(parser)
    duplicates.add_arguments(parser)
    return parser.parse_args(argv)


class Log:
    """Progress on stderr with the elapsed time, so stdout keeps only the JSON figures."""

    def __init__(self):
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f} s] {message}", file=sys.stderr, flush=True)

    def indented(self, message: str) -> None:
        self(f"    {message.strip()}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = Log()
    database = BenchDatabase.from_environment(log)
    figures: dict = {"env.fallback_sqlite": database.is_fallback}
    failures: list[str] = []
    try:
        log(f"Base : {database.safe_url}")
        if args.only in (None, "slots", "public", "agenda"):
            run_phases(args, database, figures, failures, log)
        if not args.skip_reminders and args.only in (None, "reminders"):
            section("rappels", failures, log,
                    lambda: reminders.bench_reminders(args, database, figures, failures, log))
        if not args.skip_faults and args.only in (None, "faults"):
            section("rappels sous pannes", failures, log, lambda: faults.bench_faults(args, figures, failures, log))
        if args.only in (None, "reminder-plan"):
            section("plan J-3 + J-1", failures, log,
                    lambda: reminder_plan.bench_reminder_plan(args, database, figures, log))
        if args.only in (None, "sessions"):  # collective sessions: 200 families for the last 5 places (issue 16)
            section("séances collectives", failures, log, lambda: sessions.bench_signup_race(database, figures, log))
            failures.extend(sessions.verdict_failures(figures))
        if args.only in (None, "duplicates"):
            duplicate_figures = section("doublons d'usagers", failures, log, lambda: duplicates.bench_duplicates(
                database, args.duplicates_usagers, args.duplicates_runs))
            if duplicate_figures:
                figures.update(duplicate_figures)
        if args.only in (None, "calendars"):  # last: it empties the database for a département of its own
            from bench import calendars

            calendar_figures = section("agendas des agents (flux ICS, CalDAV)", failures, log,
                                       lambda: calendars.bench_calendars(database))
            if calendar_figures:
                figures.update(calendar_figures)
                failures.extend(f"hors cible : {failure}" for failure in calendars.verdict_failures(calendar_figures))
    except UnsafeDatabase as error:
        log(str(error))
        return 2
    finally:
        database.cleanup()
    merged = merge_results(figures)
    print(json.dumps({key: merged[key] for key in sorted(figures)}, indent=2, ensure_ascii=False))
    print_verdict(merged, database, log)
    print_race_verdict(merged)
    reminders.print_verdict(merged)
    reminder_plan.print_verdict(merged)
    faults.print_verdict(merged)
    for failure in failures:
        log(f"ÉCHEC : {failure}")
    return 1 if failures else 0


def run_phases(args, database: BenchDatabase, figures: dict, failures: list[str], log: Log) -> None:
    from bench.slots import load_target
    from lapins.onboarding import seeding
    from lapins.infra.extensions import db

    timed = args.only in (None, "slots")  # --only public/agenda: the département generated, only those pages timed
    small_database = database.twin("small")
    large_app = database.app()
    database.reset(large_app)
    if timed:
        small_app = small_database.app()
        small_database.reset(small_app)
        log(f"1/5 Deux départements identiques de {number(args.small_rdvs)} rdvs : l'un restera petit, l'autre "
            "grandira")
        with small_app.app_context():
            small_territory = seeding.seed_departement(rdv_count=args.small_rdvs, progress=log.indented).territory_id
    else:
        log(f"1/5 Un département de {number(args.small_rdvs)} rdvs")
    with large_app.app_context():
        figures.update(environment(db))
        began = time.perf_counter()
        territory_id = seeding.seed_departement(rdv_count=args.small_rdvs, progress=log.indented).territory_id
        figures["seed.small_seconds"] = round(time.perf_counter() - began, 1)
        figures["env.rdvs_small"] = rdv_count(db)

        log(f"2/5 Historique porté à {number(args.large_rdvs)} rdvs (semaines à venir inchangées)")
        began = time.perf_counter()
        added = seeding.add_past_rdvs(territory_id, max(0, args.large_rdvs - figures["env.rdvs_small"]), log.indented)
        seconds = time.perf_counter() - began
        figures.update({"seed.grow_seconds": round(seconds, 1), "seed.grow_rdvs": added,
                        "seed.grow_rdvs_per_second": round(added / seconds) if seconds else None,
                        "env.rdvs_large": rdv_count(db)})
    if timed:
        growth = section("first_available, petite et grande base en alternance", failures, log, lambda: slot_runs(
            args, [load_target(small_app, small_territory), load_target(large_app, territory_id)], False, log))
        if growth:
            figures.update(growth_figures(*growth))
        small_database.drop(small_app)

    with large_app.app_context():
        log("3/5 Semaines à venir remplies comme d'habitude")
        began = time.perf_counter()
        seeding.add_future_rdvs(territory_id, log.indented)
        figures["seed.future_seconds"] = round(time.perf_counter() - began, 1)
        figures["env.rdvs_final"] = rdv_count(db)
    if timed:
        full = section("first_available et plancher", failures, log,
                       lambda: slot_runs(args, [load_target(large_app, territory_id)], True, log))
        if full:
            figures.update(first_available_figures(full[0]))
    if args.only == "slots":
        return

    from bench.agenda_scenarios import bench_agenda_scenarios
    from bench.agenda_week import ServerConfig

    server = ServerConfig(args.workers, args.worker_class, args.threads)
    redis_url = os.environ.get("BENCH_REDIS_URL")
    if args.skip_agenda or args.only == "public":
        log("4/5 Agenda : ignoré")
    else:
        scenarios = tuple(name.strip() for name in args.agenda_scenarios.split(",") if name.strip())
        log(f"4/5 Agenda de la semaine sous gunicorn, wrk à {args.clients} connexions : {', '.join(scenarios)}")
        with large_app.app_context():
            agenda = section("agenda de la semaine", failures, log, lambda: bench_agenda_scenarios(
                large_app, database.url, territory_id, server, log.indented, redis_url, args.clients,
                args.window_seconds, 3, scenarios))
        if agenda:
            figures.update(agenda)
            errors = {key: value for key, value in agenda.items() if key.endswith(".errors") and value}
            if errors:
                failures.append(f"agenda : requêtes en erreur {errors}")
    if args.only == "agenda":
        return

    if args.skip_public:
        log("5/5 Sélecteur de créneaux et course : ignorés (--skip-public)")
        return
    from bench.public import bench_move_race, bench_next_slots, bench_next_slots_miss, race_failures

    log(f"5/5 Sélecteur de créneaux : 1 famille × {args.requests} pages, puis wrk sur {args.public_clients} familles "
        "(3 × 10 s en alternance avec le plancher) sous gunicorn ; puis la course")
    with large_app.app_context():
        picker = None if args.skip_picker else section("sélecteur de créneaux", failures, log, lambda: bench_next_slots(
            large_app, database.url, territory_id, args.public_clients, args.requests, 5, server, log.indented,
            redis_url, args.window_seconds))
        if picker:
            mixed = picker.pop("mixed")
            figures.update({f"public.next_slots.{key}": value for key, value in picker.items()})
            figures.update({f"public.next_slots.mixed.{key}": value for key, value in mixed.items()})
            if picker["p95_ms"] and mixed["p95_ms"]:
                figures["public.next_slots.mixed_to_hit_ratio"] = round(mixed["p95_ms"] / picker["p95_ms"], 2)
            if mixed["errors"]:
                failures.append(f"sélecteur (mixed) : {mixed['errors']} requêtes en erreur")
            if picker["errors"]:
                failures.append(f"sélecteur : {picker['errors']} requêtes en erreur "
                                f"({', '.join(picker['error_kinds'])})")
        miss = None if args.skip_picker else section("sélecteur de créneaux, pages jamais gardées (miss)", failures, log,
                       lambda: bench_next_slots_miss(large_app, database.url, territory_id, args.public_clients,
                                                     server, log.indented, redis_url, args.window_seconds))
        if miss:
            figures.update({f"public.next_slots.miss.{key}": value for key, value in miss.items()})
            if miss["errors"]:
                failures.append(f"sélecteur (miss) : {miss['errors']} requêtes en erreur")
        race = None if args.skip_picker else section("course au même créneau", failures, log, lambda: bench_move_race(
            large_app, database.url, territory_id, server, log.indented, redis_url))
        if race:
            figures.update({f"public.move_race.{key}": value for key, value in race.items()})
            failures.extend(race_failures(race))
        search_scenarios = tuple(name.strip() for name in args.search_scenarios.split(",") if name.strip())
        if search_scenarios:  # last: it opens every motif online and sectorised (bench/sectors.py)
            from bench.public_search import bench_public_search

            log(f"Recherche en ligne : wrk sur {args.public_clients} connexions, {', '.join(search_scenarios)}")
            search = section("recherche en ligne (public.search)", failures, log, lambda: bench_public_search(
                large_app, database.url, territory_id, server, log.indented, redis_url, args.public_clients,
                args.window_seconds, 3, search_scenarios))
            if search:
                figures.update(search)
                errors = {key: value for key, value in search.items() if key.endswith(".errors") and value}
                if errors:
                    failures.append(f"recherche en ligne : requêtes en erreur {errors}")


def section(name: str, failures: list[str], log: Log, measure):
    """Run one measurement; a failure is reported and the others still run."""
    log(f"  Mesure : {name}")
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 — the benchmark reports every failing part, then exits non-zero
        traceback.print_exc(file=sys.stderr)
        failures.append(f"{name} : {type(error).__name__}: {error}")
        return None


def slot_runs(args, targets, with_floor: bool, log: Log) -> list[dict]:
    from bench.slots import time_searches

    results = [runs.figures() for runs in time_searches(targets, args.slot_runs, args.slot_warmup, with_floor,
                                                         log.indented)]
    for figures in results:
        search = figures["search"]
        floor = f", plancher p50 {figures['floor']['p50_ms']} ms" if with_floor else ""
        log(f"    p50 {search['p50_ms']} ms, p95 {search['p95_ms']} ms sur {search['runs']} recherches{floor}")
    return results


def first_available_figures(full: dict) -> dict:
    search, floor = full["search"], full["floor"]
    return {
        "slots.first_available.p50_ms": search["p50_ms"], "slots.first_available.p95_ms": search["p95_ms"],
        "slots.first_available.p99_ms": search["p99_ms"], "slots.first_available.runs": search["runs"],
        "slots.first_available.motifs": full["motifs"],
        "slots.first_available.runs_with_fewer_slots": full["runs_with_fewer_slots"],
        "slots.first_available.floor_p50_ms": floor["p50_ms"], "slots.first_available.floor_p95_ms": floor["p95_ms"],
        "slots.first_available.floor_ratio": full["floor_ratio"],
        "slots.first_available.floor_ratio_p95": full["floor_ratio_p95"],
    }


def growth_figures(small: dict, large: dict) -> dict:
    small_search, large_search = small["search"], large["search"]
    return {
        "slots.growth.small_p50_ms": small_search["p50_ms"], "slots.growth.small_p95_ms": small_search["p95_ms"],
        "slots.growth.large_p50_ms": large_search["p50_ms"], "slots.growth.large_p95_ms": large_search["p95_ms"],
        "slots.growth_ratio": round(large_search["p50_ms"] / small_search["p50_ms"], 2),
        "slots.growth_ratio_p95": round(large_search["p95_ms"] / small_search["p95_ms"], 2),
    }


def rdv_count(db) -> int:
    return db.session.scalar(text("SELECT COUNT(*) FROM rdvs"))


def environment(db) -> dict:
    dialect = db.engine.dialect.name
    version = db.session.scalar(text("SELECT version()" if dialect == "postgresql" else "SELECT sqlite_version()"))
    db.session.rollback()
    return {
        "env.database": dialect, "env.database_version": version, "env.cpu_count": os.cpu_count(),
        "env.load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "env.python": platform.python_version(), "env.platform": platform.platform(),
        "env.redis": bool(os.environ.get("BENCH_REDIS_URL")),
        "env.measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def print_race_verdict(figures: dict) -> None:
    if "public.move_race.moves" not in figures:
        return
    race = {key.removeprefix("public.move_race."): value for key, value in figures.items()
            if key.startswith("public.move_race.")}
    print(f"  public.move_race : {race['families']} familles sur {race['free_times']} créneaux → {race['moves']} "
          f"déplacements, {race['taken_pages']} pages « créneau pris », {race['double_bookings']} double réservation, "
          f"{race['lost_rdvs']} rdv perdu", file=sys.stderr)


def print_verdict(figures: dict, database: BenchDatabase, log: Log) -> None:
    print("\nRésultats (cibles sur PostgreSQL) :", file=sys.stderr)
    for key, target in TARGETS.items():
        value = figures.get(key)
        verdict = "non mesuré" if value is None else "OK" if value <= target else "AU-DESSUS DE LA CIBLE"
        if value is not None and figures.get(f"{key.rsplit('.', 1)[0]}.client_bound"):
            verdict = "PAS UN RÉSULTAT : le client de charge a pris plus de la moitié du CPU"
        print(f"  {key:<36} {value if value is not None else '—':>10}   cible ≤ {target:<5} {verdict}", file=sys.stderr)
    print(f"Écrit dans {RESULTS_PATH}", file=sys.stderr)
    if database.is_fallback:
        log("ATTENTION : mesures sur SQLite (BENCH_DATABASE_URL absent) — non comparables aux cibles.")


if __name__ == "__main__":
    sys.exit(main())
