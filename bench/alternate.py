"""`python -m bench.alternate`: the agenda's week measured in turns for several versions of the code, on one database.

The machine's speed changes from one hour to the next (docs/benchmarks.md): two versions compare only when measured
in the same minutes. This seeds the département once (BENCH_DATABASE_URL, with this tree's models), then runs the
agenda phase of `python -m bench` (bench/agenda_week.py: one client, then --clients concurrent ones, then the floor)
for each `--code NAME=DIR` in turn, --rounds times: gunicorn serves DIR's application, the clients are this tree's.
Each DIR is a checkout of the application (`git archive <commit> | tar -x -C DIR`, with .venv beside it or not:
gunicorn runs with this interpreter). One line of figures per run on stderr, all of them as JSON on stdout.

    .venv/bin/python -m tests.services --postgres-db BENCH_DATABASE_URL --redis BENCH_REDIS_URL -- \\
        .venv/bin/python -m bench.alternate --rdvs 200000 --code avant=/tmp/avant --code apres=. --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench import agenda_week
from bench.__main__ import Log, number
from bench.agenda_week import ServerConfig, bench_agenda_week
from bench.database import BenchDatabase

SHOWN = ("p50_ms", "p95_ms", "throughput_rps", "floor_p95_ms", "floor_ratio", "single_client_p50_ms",
         "not_modified_share", "errors")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.alternate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", action="append", required=True, metavar="NAME=DIR",
                        help="une version de l'application à servir (répétable)")
    parser.add_argument("--rounds", type=int, default=3, help="tours : chaque version une fois par tour")
    parser.add_argument("--rdvs", type=int, default=200_000, help="rdvs du département (semaines à venir remplies)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100, help="requêtes chronométrées par client")
    parser.add_argument("--no-conditional", dest="conditional", action="store_false",
                        help="les clients n'envoient jamais If-None-Match")
    args = parser.parse_args(argv)
    args.code = [tuple(item.split("=", 1)) for item in args.code]
    for name, directory in args.code:
        if not (Path(directory) / "lapins" / "__init__.py").is_file():
            parser.error(f"{name} : {directory} n'est pas une copie de l'application")
    return args


def main(argv: list[str] | None = None) -> int:
    from lapins.infra.extensions import db
    from lapins.onboarding import seeding

    args = parse_args(argv)
    log = Log()
    database = BenchDatabase.from_environment(log)
    if database.is_fallback:
        log("Il faut BENCH_DATABASE_URL (PostgreSQL) : une mesure alternée sur SQLite ne dirait rien.")
        return 2
    app = database.app()
    database.reset(app)
    with app.app_context():
        log(f"Département de {number(args.rdvs)} rdvs, semaines à venir remplies")
        territory_id = seeding.seed_departement(rdv_count=args.rdvs, progress=log.indented).territory_id
        seeding.add_future_rdvs(territory_id, log.indented)
        db.session.remove()
    runs = []
    root = agenda_week.ROOT
    try:
        for round_number in range(1, args.rounds + 1):
            for name, directory in args.code:
                agenda_week.ROOT = Path(directory).resolve()
                log(f"Tour {round_number}, {name} ({agenda_week.ROOT})")
                with app.app_context():
                    figures = bench_agenda_week(database.url, territory_id, args.clients, args.requests, 5,
                                                ServerConfig(), log.indented, os.environ.get("BENCH_REDIS_URL"),
                                                args.conditional)
                    db.session.remove()
                run = {"code": name, "round": round_number, "at": time.strftime("%H:%M:%S"),
                       "load_average": round(os.getloadavg()[0], 2), **figures}
                runs.append(run)
                log("    " + ", ".join(f"{key} {run[key]}" for key in SHOWN))
    finally:
        agenda_week.ROOT = root
        database.cleanup()
    print(json.dumps(runs, indent=2, ensure_ascii=False))
    for name, _ in args.code:
        mine = [run for run in runs if run["code"] == name]
        log(f"{name:>12} : p95 " + " / ".join(f"{run['p95_ms']}" for run in mine)
            + " ms ; débit " + " / ".join(f"{run['throughput_rps']}" for run in mine) + " req/s ; plancher p95 "
            + " / ".join(f"{run['floor_p95_ms']}" for run in mine) + " ms")
    return 1 if any(run["errors"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
