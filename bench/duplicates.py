"""The duplicate finder (issue 23.1): `usagers.duplicates`, the p95 of the likely duplicates of one usager among
--duplicates-usagers usagers (200,000 by default: a large département), as the usager's page asks for them
(lapins.agenda.duplicates.find_candidates, with the agent's scope), target ≤ 50 ms on PostgreSQL.

Families as the seeding makes them (a mother with her phone, an e-mail one time in two, children born in the last
six years, so a few dozen usagers share each child's birth date), and 2 % of them typed a second time as agents and
families do: in capitals, with a hyphen, « née » in the last name, one letter off, another phone. Timed on usagers
drawn at random, half of them one of a duplicated pair. In a schema (or a SQLite file) of its own, dropped at the end.

`python -m bench.duplicates`, or within `python -m bench` (`--only duplicates`).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from datetime import date, timedelta

from sqlalchemy import insert, text

from bench.database import BenchDatabase
from bench.measure import elapsed_ms, now_ns, summary
from bench.results import merge_results

TARGETS = {"usagers.duplicates.p95_ms": 50}
CHUNK = 5_000


def add_arguments(parser) -> None:
    group = parser.add_argument_group("doublons (usagers.duplicates)")
    env = os.environ.get
    group.add_argument("--duplicates-usagers", type=int, default=int(env("BENCH_DUPLICATES_USAGERS", 200_000)),
                       help="usagers du département où l'on cherche les doublons d'un usager")
    group.add_argument("--duplicates-runs", type=int, default=int(env("BENCH_DUPLICATES_RUNS", 400)),
                       help="recherches chronométrées")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _retyped(rng: random.Random, first: str, last: str) -> tuple[str, str]:
    """The same person typed again by someone else."""
    how = rng.randrange(4)
    if how == 0:
        return first.upper(), last.upper()
    if how == 1:
        return first, f"{last} née {rng.choice(['Martin', 'Durand', 'Traoré'])}"
    if how == 2:
        return first.lower(), last[:2] + "-" + last[2:]
    position = rng.randrange(1, len(last))
    return first, last[:position] + last[position] + last[position:]  # one letter doubled


def seed(count: int, rng: random.Random) -> tuple[int, list[int], list[int]]:
    """The département's usagers; returns the agent's id, every usager's id, and those with a twin file."""
    from lapins.infra.extensions import db
    from lapins.locale.matching import name_key
    from lapins.models import Agent, AgentRole, Organisation, Role, Territory, Usager
    from lapins.models.usagers import usager_organisations
    from lapins.onboarding.seeding import CHILDREN, DEPARTEMENT_NUMBER, MOTHERS, SURNAMES, _email, _mobile

    territory = Territory(number=DEPARTEMENT_NUMBER, name="Banc d'essai", timezone="Europe/Paris")
    organisation = Organisation(territory=territory, name="PMI du banc d'essai")
    agent = Agent(email="doublons@bench.example.fr", first_name="Banc", last_name="Essai", password_hash="x")
    db.session.add_all([territory, organisation, agent])
    db.session.flush()
    db.session.add(AgentRole(agent_id=agent.id, organisation_id=organisation.id, role=Role.SECRETARY))
    db.session.commit()
    today = date.today()
    rows: list[dict] = []
    twins: list[int] = []
    next_id = 1
    while len(rows) < count:
        last, first = rng.choice(SURNAMES), rng.choice(MOTHERS)
        mother = {"id": next_id, "territory_id": territory.id, "responsible_id": None, "first_name": first,
                  "last_name": last, "birth_date": today - timedelta(days=rng.randint(18 * 365, 44 * 365)),
                  "phone": _mobile(rng), "email": _email(rng, first, last) if rng.random() < 0.5 else None}
        family = [mother]
        for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
            family.append({"id": next_id + len(family), "territory_id": territory.id, "responsible_id": next_id,
                           "first_name": rng.choice(CHILDREN), "last_name": last, "phone": None, "email": None,
                           "birth_date": today - timedelta(days=rng.randint(10, 6 * 365))})
        next_id += len(family)
        for person in list(family):
            if rng.random() < 0.02:  # typed again: another file, perhaps another phone
                first_again, last_again = _retyped(rng, person["first_name"], person["last_name"])
                family.append(person | {"id": next_id, "first_name": first_again, "last_name": last_again,
                                        "responsible_id": None,
                                        "phone": _mobile(rng) if person["phone"] and rng.random() < 0.5
                                        else person["phone"]})
                twins += [person["id"], next_id]
                next_id += 1
        rows.extend(family)
    for row in rows:
        row["name_key"] = name_key(row["first_name"], row["last_name"])
        row.setdefault("sms_consent", False)
        row.setdefault("email_consent", False)
    for offset in range(0, len(rows), CHUNK):
        chunk = rows[offset: offset + CHUNK]
        db.session.execute(insert(Usager.__table__), chunk)
        db.session.execute(insert(usager_organisations),
                           [{"usager_id": row["id"], "organisation_id": organisation.id} for row in chunk])
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SELECT setval(pg_get_serial_sequence('usagers', 'id'), :last)"), {"last": next_id})
        db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE usagers"))
            connection.execute(text("ANALYZE usager_organisations"))
    else:
        db.session.execute(text("ANALYZE"))
        db.session.commit()
    return agent.id, [row["id"] for row in rows], twins


def bench_duplicates(database: BenchDatabase, usagers: int = 200_000, runs: int = 400, warmup: int = 40) -> dict:
    from lapins.agenda.duplicates import find_candidates
    from lapins.infra.extensions import db
    from lapins.models import Agent, Usager

    twin = database.twin("duplicates")
    app = twin.app()
    twin.reset(app)
    rng = random.Random(23)
    try:
        with app.app_context():
            log(f"  {usagers:,} usagers".replace(",", "\u202f"))
            agent_id, ids, twins = seed(usagers, rng)
            times, found, pairs_found = [], [], 0
            for run in range(warmup + runs):
                usager_id = rng.choice(twins) if run % 2 else rng.choice(ids)
                db.session.expunge_all()
                agent = db.session.get(Agent, agent_id)
                usager = db.session.get(Usager, usager_id)
                agent.organisation_ids  # noqa: B018  (read before the stopwatch, as the page has it already)
                started = now_ns()
                candidates = find_candidates(usager, agent)
                took = elapsed_ms(started)
                db.session.rollback()
                if run >= warmup:
                    times.append(took)
                    found.append(len(candidates))
                    pairs_found += bool(run % 2 and candidates)
            figures = {f"usagers.duplicates.{key}": value for key, value in summary(times).items()}
            figures.update({
                "usagers.duplicates.usagers": len(ids), "usagers.duplicates.twin_files": len(twins) // 2,
                "usagers.duplicates.max_candidates": max(found),
                "usagers.duplicates.twins_found_share": round(pairs_found / (runs // 2), 3),
                "usagers.duplicates.database": db.engine.dialect.name,
            })
            db.session.remove()
    finally:
        twin.drop(app)
    return figures


def verdict_failures(figures: dict) -> list[str]:
    return [f"{name} = {figures.get(name)} (cible ≤ {target})" for name, target in TARGETS.items()
            if figures.get(name) is None or figures[name] > target]


def print_verdict(figures: dict) -> None:
    if "usagers.duplicates.p95_ms" not in figures:
        return
    print(f"  usagers.duplicates.p95_ms {figures['usagers.duplicates.p95_ms']:>10}   cible ≤ 50 "
          f"({figures['usagers.duplicates.usagers']} usagers, {figures['usagers.duplicates.database']})",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.duplicates", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    database = BenchDatabase.from_environment(log)
    try:
        figures = bench_duplicates(database, args.duplicates_usagers, args.duplicates_runs)
    finally:
        database.cleanup()
    merge_results(figures)
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    print_verdict(figures)
    failures = verdict_failures(figures)
    for failure in failures:
        log(f"HORS CIBLE : {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
