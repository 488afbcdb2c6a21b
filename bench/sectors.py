"""The lieux serving a family's address (lapins.sectors.serving.serving_lieux), timed at département scale: what
`public.search` will call first for each address.

`python -m bench.sectors [--runs N]`: the bench's Nord (300 agents, 60 lieux in 10 organisations, no rdv: the lookup
reads none) on BENCH_DATABASE_URL (a schema of its own, `lapins_bench_sectors`) or a temporary SQLite file, with
the Nord's real communes (648, from the npm dataset) and 252 streets (codes made up) in 40 sectors: 900 zones. Each
sector is served by one or two lieux and three agents; every motif is open online and sectorised. Each run asks for a
random motif and a random address among the zones (a quarter of the whole communes with a street that no sector
holds), or, one time in twenty, a commune that no sector holds, as the public page will. Writes `sectors.serving_lieux` into bench/results/latest.json.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
from datetime import date

from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from bench.database import BenchDatabase
from bench.measure import elapsed_ms, now_ns, summary
from bench.results import merge_results
from lapins.infra.extensions import db
from lapins.models import Agent, AgentRole, Lieu, Motif, Organisation, Sector, SectorZone, Territory
from lapins.onboarding.seeding import seed_departement
from lapins.sectors.communes import communes
from lapins.sectors.serving import serving_lieux

SECTORS, ZONES = 40, 900
TARGET_P95_MS = 10  # a small part of public.search's 50 ms


def add_sectors(territory: Territory, rng: random.Random) -> list[tuple[str, str]]:
    """The 40 sectors of the Nord; returns the places (commune, street) they hold."""
    codes = [commune.code for commune in communes().of_departements({territory.number})]
    lieux = list(db.session.scalars(select(Lieu).join(Organisation).where(Organisation.territory_id == territory.id)))
    agents = list(db.session.scalars(select(Agent).join(AgentRole).join(Organisation)
                                     .where(Organisation.territory_id == territory.id).distinct()))
    sectors = [Sector(territory_id=territory.id, name=f"Secteur {index + 1}") for index in range(SECTORS)]
    db.session.add_all(sectors)
    db.session.flush()
    blocks = [codes[index::SECTORS] for index in range(SECTORS)]
    places = [(code, "") for block in blocks for code in block[:-1]]
    # Streets of sixty communes, each in another sector than its commune, up to ZONES places in all.
    streets = [(codes[index % 60], f"{codes[index % 60]}_{index:04d}") for index in range(ZONES - len(places))]
    places += streets
    for sector, block in zip(sectors, blocks):
        db.session.add_all(SectorZone(sector_id=sector.id, territory_id=territory.id, commune_code=code)
                           for code in block[:-1])  # each sector leaves one commune out: some addresses find none
        sector.lieux = rng.sample(lieux, rng.choice((1, 2)))
        sector.agents = rng.sample(agents, 3)
    for index, (code, street) in enumerate(streets):
        db.session.add(SectorZone(sector_id=sectors[(index * 7) % SECTORS].id, territory_id=territory.id,
                                  commune_code=code, street_code=street))
    for lieu in lieux:
        lieu.latitude, lieu.longitude = rng.uniform(50.0, 51.0), rng.uniform(2.2, 4.2)
    db.session.execute(update(Motif).where(Motif.organisation_id.in_(
        select(Organisation.id).where(Organisation.territory_id == territory.id))).values(
        online_bookable=True, sectorised=True))
    db.session.commit()
    return places, [block[-1] for block in blocks]


def run(runs: int, seed: int = 15) -> dict:
    rng = random.Random(seed)
    database = BenchDatabase.from_environment(print).twin("sectors")
    app = database.app()
    database.reset(app)
    try:
        with app.app_context():
            report = seed_departement(rdv_count=0, usagers=0, progress=print)
            territory = db.session.get(Territory, report.territory_id)
            places, outside = add_sectors(territory, rng)
            zones = db.session.scalar(select(db.func.count()).select_from(SectorZone))
            motif_ids = list(db.session.scalars(select(Motif.id).join(Organisation)
                                                .where(Organisation.territory_id == territory.id)))
            db.session.remove()
            timings, found = [], []
            today = date.today()
            for index in range(runs + runs // 10):
                commune, street = rng.choice(places) if rng.random() >= 0.05 else (rng.choice(outside), "")
                if not street and rng.random() < 0.25:
                    street = f"{commune}_{rng.randrange(ZONES):04d}"
                # The motif with its territory, as the public page will have them loaded.
                motif = db.session.scalar(select(Motif).where(Motif.id == rng.choice(motif_ids)).options(
                    joinedload(Motif.organisation).joinedload(Organisation.territory)))
                near = (rng.uniform(50.0, 51.0), rng.uniform(2.2, 4.2))
                started = now_ns()
                result = serving_lieux(motif, commune, today=today, street_code=street or None, near=near)
                if index >= runs // 10:  # the first tenth warms the caches up
                    timings.append(elapsed_ms(started))
                    found.append(len(result))
                db.session.remove()
    finally:
        database.drop(app)
        database.cleanup()
    return {"sectors.serving_lieux": {**summary(timings), "zones": zones, "sectors": SECTORS,
                                      "lieux_found_median": statistics.median(found),
                                      "addresses_without_lieu": sum(1 for count in found if not count),
                                      "database": database.dialect}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sectors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args(argv)
    figures = run(args.runs)
    merge_results(figures)
    result = figures["sectors.serving_lieux"]
    print(f"serving_lieux : p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms sur {result['runs']} adresses "
          f"({result['zones']} communes ou rues, {result['sectors']} secteurs, {result['database']})")
    return 0 if result["p95_ms"] <= TARGET_P95_MS else 1


if __name__ == "__main__":
    sys.exit(main())
