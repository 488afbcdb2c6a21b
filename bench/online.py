"""Online booking at département scale (issue 15): `public.search` and `public.book_race`.

`python -m bench.online [--rdvs N] [--runs N] [--families N] [--slots N]`: the bench's Nord (300 agents, 60 lieux,
`--rdvs` rdvs, 1 M by default as `make bench` seeds it) with the 40 sectors and 900 zones of bench/sectors.py, on
BENCH_DATABASE_URL (a schema of its own, `lapins_bench_online`) or a temporary SQLite file.

- public.search: a family's search page, `GET /59/prendre-rendez-vous?motif=…&commune_code=…`, through the app (the
  lieux serving the address, each with its first days of free times, each time signed), for a random motif and
  commune among the zones; one client in the process: `public.search.single_client.*`, the cost of one search with
  no one else asking (the figure under 50 families, served by gunicorn to wrk, is bench/public_search.py's).
- public.book_race: `--families` families, each with its number checked, book one of `--slots` free times of one
  lieu at once (family i the (i mod times)-th; a time with two free agents is two places), through `lapins.public.online.book_online`, from threads of this
  process. Expected: exactly `--slots` rdvs, no agent booked twice, every other family told the time was taken, no
  usager stored for them.
"""
from __future__ import annotations

import argparse
import random
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

from sqlalchemy import func, select

from bench.database import BenchDatabase
from bench.measure import elapsed_ms, now_ns, summary
from bench.results import merge_results
from bench.sectors import add_sectors
from lapins.infra.extensions import db
from lapins.models import Motif, PhoneVerification, Rdv, RdvAgent, SectorZone, Territory, Usager, utcnow
from lapins.models.sectors import lieu_sectors
from lapins.models.rdvs import BookingChannel
from lapins.onboarding.seeding import seed_departement
from lapins.public import online
from lapins.slots import picker

TARGET_SEARCH_P95_MS = 50
RACE_WORKERS = 12  # within the engine's pool (5 + 10 overflow): a thread never waits for a connection


def bench_search(app, territory_id: int, places: list[tuple[str, str]], runs: int, rng: random.Random) -> dict:
    client = app.test_client()
    with app.app_context():
        territory = db.session.get(Territory, territory_id)
        motif_ids = [need.motif_id for need in online.open_needs(territory)]
        number = territory.number
        db.session.remove()
    timings, lieux = [], []
    for index in range(runs + runs // 10):
        commune, street = rng.choice(places)
        started = now_ns()
        page = client.get(f"/{number}/prendre-rendez-vous", query_string={
            "motif": rng.choice(motif_ids), "commune_code": commune, "rue": street})
        if page.status_code != 200:
            raise RuntimeError(f"public.search answered {page.status_code}")
        if index >= runs // 10:  # the first tenth warms the caches up
            timings.append(elapsed_ms(started))
            lieux.append(page.get_data(as_text=True).count('<section class="fr-mb-6w"'))
    return {**summary(timings), "lieux_shown_median": sorted(lieux)[len(lieux) // 2] if lieux else 0}


def _race_times(territory: Territory, slots: int, now) -> tuple[Motif, int, str, list]:
    """A motif, a lieu serving one of the sectors' communes, and its first free times making `slots` places."""
    for motif in online.open_motifs(territory):
        for lieu_id, commune in db.session.execute(
                select(lieu_sectors.c.lieu_id, SectorZone.commune_code)
                .join(SectorZone, SectorZone.sector_id == lieu_sectors.c.sector_id)
                .where(SectorZone.street_code == "").limit(60)):
            scope = online.scope_for(territory, motif, lieu_id, now)
            # A time with two free agents is two places (a family whose agent was taken gets the other one):
            # times are taken until their agents make exactly `slots` places.
            times, places = [], 0
            for day in picker.first_days(scope, count=28):
                for choice in day.choices:
                    if places + len(choice.agent_ids) <= slots:
                        times.append(choice)
                        places += len(choice.agent_ids)
            if places == slots:
                return motif, lieu_id, commune, times
    raise RuntimeError("no lieu with enough free times for the race")


def bench_book_race(app, territory_id: int, families: int, slots: int) -> dict:
    now = utcnow()
    with app.app_context():
        territory = db.session.get(Territory, territory_id)
        motif, lieu_id, commune, times = _race_times(territory, slots, now)
        tokens = [online.read_slot_token(online.slot_token(territory, motif, lieu_id, choice.agent_ids[0],
                                                           choice.starts_at, commune), territory) for choice in times]
        phones = [f"+3361{index:07d}" for index in range(families)]
        verifications = [PhoneVerification(territory_id=territory.id, phone=phone, code_hash="-", expires_at=now,
                                           tries=1, verified_at=now, created_at=now) for phone in phones]
        db.session.add_all(verifications)
        db.session.commit()
        verification_ids = [verification.id for verification in verifications]
        usagers_before = db.session.scalar(select(func.count()).select_from(Usager))
        rdvs_before = db.session.scalar(select(func.count()).select_from(Rdv).where(
            Rdv.booked_via == BookingChannel.ONLINE))
        db.session.remove()
    start = threading.Barrier(min(families, RACE_WORKERS))
    outcomes: list[str] = []

    def book(index: int) -> str:
        family = online.Family(last_name=f"Course{index}", first_name="Alex", phone=phones[index], email=None,
                               child_first_name="Sam", birth_date=date(2026, 1, 1))
        if index < RACE_WORKERS:
            start.wait(timeout=60)  # before any connection is taken: the first wave starts together
        with app.app_context():
            territory = db.session.get(Territory, territory_id)
            verification = db.session.get(PhoneVerification, verification_ids[index])
            try:
                online.book_online(territory, tokens[index % len(tokens)], family, verification, now=now)
                return "booked"
            except online.SlotGone:
                return "taken"
            except online.OnlineError as error:
                return f"refused: {error.message}"
            finally:
                db.session.remove()

    started = now_ns()
    with ThreadPoolExecutor(RACE_WORKERS) as pool:
        outcomes = list(pool.map(book, range(families)))
    took = elapsed_ms(started)
    with app.app_context():
        booked = db.session.scalar(select(func.count()).select_from(Rdv).where(
            Rdv.booked_via == BookingChannel.ONLINE)) - rdvs_before
        usagers = db.session.scalar(select(func.count()).select_from(Usager)) - usagers_before
        spans = db.session.execute(select(RdvAgent.agent_id, RdvAgent.starts_at, RdvAgent.ends_at)
                                   .where(RdvAgent.live.is_(True), RdvAgent.starts_at >= now,
                                          RdvAgent.starts_at < now + timedelta(days=30))
                                   .order_by(RdvAgent.agent_id, RdvAgent.starts_at)).all()
        doubles = sum(1 for first, second in zip(spans, spans[1:])
                      if first.agent_id == second.agent_id and second.starts_at < first.ends_at)
        db.session.remove()
    return {"families": families, "slots": slots, "times": len(times), "rdvs": booked, "booked_answers": outcomes.count("booked"),
            "taken_answers": outcomes.count("taken"), "other_answers": len(outcomes) - outcomes.count("booked")
            - outcomes.count("taken"), "double_bookings": doubles, "usagers_stored": usagers, "total_ms": round(took)}


def run(rdvs: int, runs: int, families: int, slots: int, seed: int = 15) -> dict:
    rng = random.Random(seed)
    database = BenchDatabase.from_environment(print).twin("online")
    # Each family from an address of its own would be counted apart: the bench is one client, so no limits here.
    app = database.app(RATELIMIT_ENABLED=False, CELERY_BROKER_URL="memory://")  # the queue kicked after each booking
    database.reset(app)
    try:
        with app.app_context():
            report = seed_departement(rdv_count=rdvs, usagers=min(50_000, max(1_000, rdvs // 20)), progress=print)
            territory = db.session.get(Territory, report.territory_id)
            places, _ = add_sectors(territory, rng)  # every motif opened online, sectorised
            territory_id = territory.id
            db.session.remove()
        search = bench_search(app, territory_id, places, runs, rng)
        race = bench_book_race(app, territory_id, families, slots)
    finally:
        database.drop(app)
        database.cleanup()
    figures = {f"public.search.single_client.{key}": value for key, value in search.items()}
    figures.update({f"public.book_race.{key}": value for key, value in race.items()})
    figures["public.search.single_client.database"] = figures["public.book_race.database"] = database.dialect
    figures["public.search.single_client.rdvs"] = rdvs
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.online", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rdvs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--families", type=int, default=500)
    parser.add_argument("--slots", type=int, default=50)
    args = parser.parse_args(argv)
    figures = run(args.rdvs, args.runs, args.families, args.slots)
    merge_results(figures)
    single = {key.removeprefix("public.search.single_client."): value for key, value in figures.items()
              if key.startswith("public.search.single_client.")}
    print(f"public.search (un client) : p50 {single['p50_ms']} ms, p95 {single['p95_ms']} ms sur {single['runs']} "
          f"recherches ({single['database']})")
    print(f"public.book_race : {figures['public.book_race.families']} familles sur {figures['public.book_race.slots']}"
          f" créneaux → {figures['public.book_race.rdvs']} rdv, {figures['public.book_race.double_bookings']} "
          f"double(s), {figures['public.book_race.usagers_stored']} usager(s) enregistré(s)")
    race_ok = (figures["public.book_race.rdvs"] == args.slots and figures["public.book_race.double_bookings"] == 0
               and figures["public.book_race.other_answers"] == 0)
    return 0 if race_ok and single["p95_ms"] <= TARGET_SEARCH_P95_MS else 1


if __name__ == "__main__":
    sys.exit(main())
