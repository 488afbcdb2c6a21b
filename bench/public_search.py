"""The family's online search under 50 concurrent families (public.search, issues 15 and 25), served by gunicorn
against the benchmark's département with its 40 sectors and 900 zones (bench/sectors.py: every motif open online,
sectorised).

A search is `GET /59/prendre-rendez-vous?motif=…&commune_code=…&rue=…`: a need and an address, answered with the
lieux serving it, each with its first days of free times, each time signed. Driven by wrk (bench/wrk.py) over
--public-clients connections, each scenario in three windows alternated with its floor (bench/public_search_floor.py:
the sectors of the address and, for each lieu shown, the one query reading the rows of the days it shows; then the
median page's bytes):

- hit: HIT_SEARCHES need × address pairs that find at least one lieu, asked again and again: the picker's kept pages
  (lapins.slots.picker, per process, on the agents' and the territory's stamps) serve the days;
- miss: MISS_SEARCHES pairs among every individual need × every zone, in random order, served by
  bench/public_search_cold.py (the kept pages emptied before each request: the département's pairs all fit in
  KEPT_PAGES, see `kept_pages_needed`), so each search reads its days from PostgreSQL;
- mixed: the hit set while families book online at 1 per second (lapins.public.online.book_online, a new family and
  number each time, a time from one of the hit searches): what every search pays for the département's bookings;
- open_loop: the hit set at OPEN_LOOP_RPS searches a second on average, at random moments (bench.paced: a Poisson
  stream, at most 50 in flight): the latency a family sees while the server keeps up. With 50 wrk connections back
  to back, a search's latency is about 50 ÷ the throughput, whatever it costs alone;
- miss_open_loop: the miss set, every search cold, at OPEN_LOOP_RPS: what a family's first search of an address
  costs while the server keeps up (miss itself says how many cold searches a second the server can take).
"""
from __future__ import annotations

import http.client
import json
import random
import tempfile
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import event, func, select

from bench import wrk
from bench.agenda_week import Gunicorn, ServerConfig
from bench.background import Background
from bench.database import statement_counter
from bench.sectors import add_sectors
from lapins.infra.extensions import db
from lapins.models import Motif, PhoneVerification, Sector, SectorZone, Territory, utcnow
from lapins.public import online
from lapins.sectors.communes import communes
from lapins.slots import picker
from lapins.slots.engine import ONE_DAY, local_midnight

SCENARIOS = ("hit", "miss", "mixed", "open_loop", "miss_open_loop")
OPEN_LOOP_RPS = 20
HIT_SEARCHES = 50
MISS_SEARCHES = 3000
BOOKINGS_PER_SECOND = 1
WARM_SECONDS = 2  # unmeasured, closed loop: every page kept by both workers
LIEU_SECTION = b'<section class="fr-mb-6w"'


def search_path(number: str, motif_id: int, commune: str, street: str) -> str:
    return f"/{number}/prendre-rendez-vous?" + urlencode(
        {"motif": motif_id, "commune_code": commune, **({"rue": street} if street else {})})


def prepare(territory_id: int, seed: int = 25) -> tuple[list[int], list[tuple[str, str]]]:
    """The sectors of bench/sectors.py, added unless the département has some already (every motif opened online and
    sectorised); the individual needs' motif ids and the places (commune, street) the zones hold."""
    territory = db.session.get(Territory, territory_id)
    if db.session.scalar(select(func.count()).select_from(Sector).where(Sector.territory_id == territory_id)):
        places = [tuple(row) for row in db.session.execute(
            select(SectorZone.commune_code, SectorZone.street_code).where(SectorZone.territory_id == territory_id)
            .order_by(SectorZone.id))]
    else:
        places, _ = add_sectors(territory, random.Random(seed))
    territory = db.session.get(Territory, territory_id)
    needs = [need.motif_id for need in online.open_needs(territory)
             if not db.session.get(Motif, need.motif_id).collective]
    db.session.commit()
    return needs, places


def floor_of(territory: Territory, motif_id: int, commune_code: str, street: str, now) -> dict:
    """What search (motif, address) shows, as the floor reads it: each lieu with the days its page shows."""
    motif = db.session.get(Motif, motif_id)
    commune = communes().get(commune_code)
    found = online.offers(territory, motif, commune, now, street_code=street or None)
    lieux = []
    for offer in found:
        if offer.days is None:  # a farther lieu listed with a link: the search reads nothing of it
            continue
        scope = online.scope_for(territory, offer.motif, offer.serving.lieu.id, now)
        # From the first day's midnight, as the picker reads its days, to the end of the last day shown.
        end = local_midnight(offer.days[-1].day + ONE_DAY, territory.tz) if offer.days else scope.end
        lieux.append({"motif_id": offer.motif.id, "lieu_id": offer.serving.lieu.id,
                      "start": local_midnight(scope.first_day, territory.tz).isoformat(), "end": end.isoformat()})
    return {"territory_id": territory.id, "timezone": territory.timezone, "commune": commune_code, "street": street,
            "lieux": lieux, "times": sum(len(day.choices) for offer in found for day in offer.days or ())}


def searches(territory_id: int, needs: list[int], places: list[tuple[str, str]], count: int, rng: random.Random,
             with_lieux: bool) -> list[tuple[str, dict]]:
    """`count` distinct (need, place) searches in random order, each with its floor; only those finding a lieu when
    `with_lieux`."""
    territory = db.session.get(Territory, territory_id)
    pairs = [(motif_id, commune, street) for motif_id in needs for commune, street in places]
    rng.shuffle(pairs)
    now, chosen = utcnow(), []
    for motif_id, commune, street in pairs:
        if len(chosen) == count:
            break
        floor = floor_of(territory, motif_id, commune, street, now)
        if with_lieux and not floor["lieux"]:
            continue
        floor["motif_id"] = motif_id
        chosen.append((search_path(territory.number, motif_id, commune, street), floor))
    db.session.rollback()
    return chosen


class OnlineBookings(Background):
    """Families booking online, BOOKINGS_PER_SECOND a second, in a thread of its own for as long as the `with` lasts:
    each a new family with its checked number, a time found by one of `chosen` searches (its motif and address)."""

    def __init__(self, app, territory_id: int, chosen: list[dict], log):
        super().__init__()
        self.app, self.territory_id, self.chosen, self.log = app, territory_id, chosen, log
        self.taken = self.families = 0

    def run(self) -> None:
        chooser = random.Random(9)
        next_at = time.monotonic()
        with self.app.app_context():
            # On a schedule, not a pause after each: a booking's own search takes a while on a loaded machine.
            while not self.stop.wait(max(0.0, next_at - time.monotonic())):
                next_at += 1 / BOOKINGS_PER_SECOND
                try:
                    self.book_one(chooser)
                except online.SlotGone:
                    self.taken += 1
                finally:
                    db.session.remove()

    def book_one(self, chooser: random.Random) -> None:
        territory = db.session.get(Territory, self.territory_id)
        search = chooser.choice(self.chosen)
        now = utcnow()
        offers = [offer for offer in online.offers(territory, db.session.get(Motif, search["motif_id"]),
                                                   communes().get(search["commune"]), now,
                                                   street_code=search["street"] or None) if offer.days]
        if not offers:
            return
        offer = chooser.choice(offers)
        choice = chooser.choice(chooser.choice(offer.days).choices)
        token = online.slot_token(territory, offer.motif, offer.serving.lieu.id, choice.agent_ids[0],
                                  choice.starts_at, search["commune"], search["street"])
        self.families += 1
        phone = f"+3362{self.families:07d}"
        verification = PhoneVerification(territory_id=territory.id, phone=phone, code_hash="-", expires_at=now,
                                         tries=1, verified_at=now, created_at=now)
        db.session.add(verification)
        db.session.commit()
        family = online.Family(last_name=f"Recherche{self.families}", first_name="Alex", phone=phone, email=None,
                               child_first_name="Sam", birth_date=date(2026, 1, 1))
        online.book_online(territory, online.read_slot_token(token, territory), family, verification, now=now)
        self.count += 1


def bench_public_search(app, database_url: str, territory_id: int, config: ServerConfig, log,
                        redis_url: str | None = None, connections: int = 50, seconds: float = 10, repeats: int = 3,
                        scenarios: tuple[str, ...] = SCENARIOS) -> dict:
    """Every scenario's figures, under keys public.search.<scenario>.<figure>."""
    if not wrk.available():
        raise RuntimeError("wrk manquant : `bash scripts/system-packages wrk` (make bench l'installe)")
    rng = random.Random(25)
    needs, places = prepare(territory_id)
    log(f"{len(needs)} besoins ouverts en ligne, {len(places)} communes ou rues dans les secteurs")
    hit = searches(territory_id, needs, places, HIT_SEARCHES, rng, with_lieux=True)
    if not hit:
        raise RuntimeError("aucune recherche ne trouve de lieu : rien à mesurer")
    picker._kept.clear()
    cold = {"miss", "miss_open_loop"} & set(scenarios)
    miss = searches(territory_id, needs, places, MISS_SEARCHES, rng, with_lieux=False) if cold else []
    kept_needed = len(picker._kept)  # the pages this process kept for them (never emptied below KEPT_PAGES)
    figures: dict = {}
    served_statements = served_statement_counter(app)
    with tempfile.TemporaryDirectory(prefix="lapins-bench-search-") as directory:
        def floor_server(name: str, chosen: list[tuple[str, dict]], body: bytes) -> Gunicorn:
            Path(directory, f"{name}.html").write_bytes(body)
            Path(directory, f"{name}.json").write_text(json.dumps([floor for _, floor in chosen]))
            return Gunicorn(database_url, config, application="bench.public_search_floor:app",
                            env={"BENCH_FLOOR_BODY": f"{directory}/{name}.html",
                                 "BENCH_FLOOR_QUERIES": f"{directory}/{name}.json"})

        plans = {"hit": ("lapins:create_app()", hit, None), "miss": ("bench.public_search_cold:app", miss, None),
                 "mixed": ("lapins:create_app()", hit, None), "open_loop": ("lapins:create_app()", hit, OPEN_LOOP_RPS),
                 "miss_open_loop": ("bench.public_search_cold:app", miss, OPEN_LOOP_RPS)}
        for scenario in scenarios:
            application, chosen, rate = plans[scenario]
            # The 50 connections stand for families at as many addresses: one address's limit is not the point.
            with Gunicorn(database_url, config, redis_url, application=application,
                          env={"ONLINE_SEARCH_LIMITS_PER_IP": "1000000/minute"}) as server:
                # The pages' bytes: their sizes are logged, the floor answers the median one.
                bodies = sorted((_fetch(server.port, path) for path, _ in chosen[:HIT_SEARCHES] * 2), key=len)
                requests = [wrk.Request(path) for path, _ in chosen]
                # Which worker takes a connection is chance: without this, open_loop's 15 requests a second left
                # a fifth of the (page, worker) pairs cold after its first window, and measured first searches.
                if scenario not in cold:
                    wrk.run(server.port, requests, connections, WARM_SECONDS)
                with floor_server(scenario, chosen, bodies[len(bodies) // 2]) as floor:
                    log(f"public.search.{scenario} : {len(chosen)} recherches, {connections} connexions, pages de "
                        f"{len(bodies[0])} à {len(bodies[-1])} octets")
                    floor_requests = [wrk.Request(f"/floor/{index}") for index in range(len(chosen))]
                    bookings = OnlineBookings(app, territory_id, [floor for _, floor in hit], log) \
                        if scenario == "mixed" else None
                    started = time.monotonic()
                    if bookings:
                        bookings.__enter__()
                    try:
                        result = wrk.alternated(server.port, requests, floor.port, floor_requests, connections,
                                                seconds, repeats, log, rate=rate, statements=served_statements)
                    finally:
                        if bookings:
                            bookings.__exit__()
                    if bookings:
                        result["bookings"] = bookings.count
                        result["bookings_taken_meanwhile"] = bookings.taken
                        result["bookings_per_second"] = round(bookings.count / (time.monotonic() - started), 2)
            if result["floor_errors"]:
                raise RuntimeError(f"plancher ({scenario}) : {result['floor_errors']} requêtes en erreur")
            result.update({
                "searches": len(chosen), "lieux_per_search": _median([len(floor["lieux"]) for _, floor in chosen]),
                "times_per_search": _median([floor["times"] for _, floor in chosen]),
                "searches_without_lieu": sum(not floor["lieux"] for _, floor in chosen),
                "pages_without_lieu": sum(LIEU_SECTION not in body for body in bodies),
            })
            if scenario in cold:
                result.update({"kept_pages_needed": kept_needed, "kept_pages": picker.KEPT_PAGES})
            figures.update({f"public.search.{scenario}.{key}": value for key, value in result.items()})
    figures["public.search.config"] = config.as_dict()
    hit_p95, mixed_p95 = figures.get("public.search.hit.p95_ms"), figures.get("public.search.mixed.p95_ms")
    if hit_p95 and mixed_p95:
        figures["public.search.mixed_to_hit_ratio"] = round(mixed_p95 / hit_p95, 2)
    return figures


def served_statement_counter(app):
    """bench.database.statement_counter less the statements this process ran meanwhile (the bookings of `mixed`, the
    counting itself): what the served searches ran. None where PostgreSQL does not count them."""
    everyone = statement_counter(app)
    if everyone is None:
        return None
    ours = [0]

    def count(*_) -> None:
        ours[0] += 1

    with app.app_context():
        for name in ("begin", "before_cursor_execute", "commit", "rollback"):  # as pg_stat_statements sees them
            if not event.contains(db.engine, name, count):
                event.listen(db.engine, name, count)
    return lambda: everyone() - ours[0]


def _median(values: list[int]) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None


def _fetch(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"recherche : HTTP {response.status} pour {path}")
    return payload
