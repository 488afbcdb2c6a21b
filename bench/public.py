"""The public slot picker under concurrent families (public.next_slots), and families racing to move onto the same
free times (public.move_race), served by gunicorn against the benchmark's département.

next_slots: families whose rdvs are of the busiest motif and lieu of the coming weeks, each in a browser of its own
(its session cookie, its address) that passed the identity check, fetch the picker's first page (/r/<token>/changer):
one family back to back (the Python client), then wrk (bench/wrk.py) over --public-clients connections, each request
a family's page with its cookie, in three 10-second windows alternated with the floor's. The floor
(bench/public_floor.py): the same wrk against a WSGI app, on the same gunicorn, that reads in one query every row the
family's first page needs (lapins.slots.availability.fetch_rows_for_floor over the days it shows) and answers the
picker's median page. Then `mixed`: the same windows while the booking service books and cancels an rdv once a
second at that lieu for that motif (bench.agenda_scenarios.Writes), so that the agents' stamps the kept pages
depend on change under them: `public.next_slots.mixed.*` and `mixed_to_hit_ratio`.

move_race: a lieu opened for the race, with one agent who has RACE_TIMES free times in a few days, and RACE_FAMILIES
families whose rdvs fill her days a week later. Each family opens its picker and the confirmation page of one of the
free times (family i the (i mod RACE_TIMES)-th), then all confirm at once. Expected: RACE_TIMES moves, every other
family told « ce créneau vient d'être pris », no agent booked twice, every rdv still live.
"""
from __future__ import annotations

import html
import json
import random
import re
import secrets
import tempfile
import threading
import time as clock
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from urllib.parse import urlencode, urljoin

from sqlalchemy import func, select

from bench import wrk
from bench.agenda_scenarios import Writes
from bench.agenda_week import ClientResult, CookieConnection, Gunicorn, ServerConfig
from bench.database import statement_counter
from bench.measure import elapsed_ms, now_ns, summary
from lapins.family import services
from lapins.infra.extensions import db
from lapins.models import (
    Agent, AgentRole, Lieu, LocationType, Motif, Organisation, PlageOuverture, Rdv, RdvAgent, RdvStatus, Role,
    Territory, Usager, utcnow,
)
from lapins.models.rdvs import CANCELLED_STATUSES, RdvMove
from lapins.notifications import links
from lapins.slots import picker
from lapins.slots.availability import free_slots_between
from lapins.slots.engine import ONE_DAY, local_midnight, public_holidays

# Each family comes from an address of its own, as nginx would tell gunicorn; the limits are counted as usual, high
# enough for the hundred pages a family asks for in a minute here.
SERVED = {"TRUSTED_PROXIES": "1", "FAMILY_MOVE_LIMITS_PER_RDV": "100000/15minutes",
          "FAMILY_MOVE_LIMITS_PER_IP": "100000/minute"}
RACE_TIMES, RACE_FAMILIES = 20, 200  # RACE_FAMILIES a multiple of RACE_TIMES: their days are full
TAKEN = "Ce créneau vient d'être pris"
CONFIRM_LINK = re.compile(rb'href="([^"]*changer/confirmer[^"]*)"')
FORM_FIELD = re.compile(r'<input[^>]*name="(csrf_token|debut|agent|revision)"[^>]*value="([^"]*)"')


class Browser(CookieConnection):
    """A family's browser: a keep-alive connection with its cookies, and the address a proxy in front of gunicorn
    would say it comes from (X-Forwarded-For, read with TRUSTED_PROXIES=1)."""

    def __init__(self, port: int, address: str):
        super().__init__(port)
        self.address = address

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None):
        return self.send(method, path, body, {**(headers or {}), "X-Forwarded-For": self.address})

    def post_form(self, page: str, action: str, fields: dict):
        """POST `fields` to `action` with the CSRF token of the form on `page`."""
        _, body = self.request("GET", page)
        match = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', body)
        if not match:
            raise RuntimeError(f"pas de jeton CSRF dans {page}")
        return self.request("POST", action, urlencode({**fields, "csrf_token": match.group(1).decode()}),
                            {"Content-Type": "application/x-www-form-urlencoded"})


@dataclass
class PageResult(ClientResult):
    empty_pages: int = 0  # pages that offered no time at all


@dataclass
class Family:
    rdv_id: int
    path: str  # /r/<token>
    letters: str
    floor: dict  # what its first page reads, for the floor


def link_key_in(app) -> str:
    """The key the served app signs family links with, set on this process's app too so that both agree."""
    key = secrets.token_hex(16)
    app.config["LINK_SECRET_KEY"] = key
    return key


def address(index: int) -> str:
    return f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"


def check_identity(browser: Browser, family: Family) -> None:
    response, _ = browser.post_form(family.path, f"{family.path}/verifier", {"letters": family.letters})
    if response.status != 302:
        raise RuntimeError(f"vérification refusée pour le rdv {family.rdv_id} (HTTP {response.status})")


# --- public.next_slots ---------------------------------------------------------------------------------------------

def picker_families(territory_id: int, count: int) -> tuple[dict, list[Family]]:
    """Up to `count` families of the motif and lieu with the most rdvs the picker may move, with their floor."""
    now = utcnow()
    movable = (Rdv.status.not_in(CANCELLED_STATUSES), Rdv.lieu_id.is_not(None),
               Rdv.starts_at >= now + timedelta(hours=25), Rdv.starts_at < now + timedelta(weeks=8),
               Rdv.organisation_id.in_(select(Organisation.id).where(Organisation.territory_id == territory_id)))
    motif_id, lieu_id, _ = db.session.execute(
        select(Rdv.motif_id, Rdv.lieu_id, func.count()).where(*movable).group_by(Rdv.motif_id, Rdv.lieu_id)
        .order_by(func.count().desc(), Rdv.motif_id, Rdv.lieu_id).limit(1)).one()
    families = []
    for rdv in db.session.scalars(select(Rdv).where(*movable, Rdv.motif_id == motif_id, Rdv.lieu_id == lieu_id)
                                  .order_by(Rdv.starts_at, Rdv.id).limit(count * 3)):
        if len(families) == count or len(rdv.agent_links) != 1 or services.family_move_refusal(rdv, now):
            continue
        scope = services.picker_scope(rdv, now)
        days = picker.first_days(scope)
        tz = scope.territory.tz
        end = local_midnight(days[-1].day + ONE_DAY, tz) if days else scope.end
        families.append(Family(rdv.id, f"/r/{links.rdv_token(rdv.id)}",
                               services.letters_of(rdv.usagers[0].last_name)[:3], {
            "territory_id": territory_id, "timezone": scope.territory.timezone, "motif_id": motif_id,
            "lieu_id": lieu_id, "agent_id": rdv.agent_links[0].agent_id,
            "start": local_midnight(scope.first_day, tz).isoformat(), "end": end.isoformat()}))
    return {"motif_id": motif_id, "lieu_id": lieu_id}, families


def one_family_alone(port: int, family: Family, requests_each: int, warmup_each: int) -> PageResult:
    """One family's browser fetching its picker's first page back to back: the latency with no one else asking."""
    browser, result = Browser(port, address(0)), PageResult()
    check_identity(browser, family)
    for _ in range(warmup_each):
        browser.request("GET", f"{family.path}/changer")
    for _ in range(requests_each):
        began = now_ns()
        try:
            response, payload = browser.request("GET", f"{family.path}/changer")
        except OSError as error:
            result.errors.append(type(error).__name__)
            continue
        took = elapsed_ms(began)
        if response.status != 200:
            result.errors.append(f"HTTP {response.status}")
            continue
        result.latencies_ms.append(took)
        result.empty_pages += b"lapins-creneaux" not in payload
    return result


def bench_next_slots(app, database_url: str, territory_id: int, clients: int, requests_each: int, warmup_each: int,
                     config: ServerConfig, log, redis_url: str | None = None, seconds: float = 10,
                     repeats: int = 3) -> dict:
    """One family alone (the Python client, one page after the other), then `clients` connections of wrk over every
    family's page, `repeats` windows of `seconds` in turns with the floor's (bench.wrk.alternated)."""
    link_key = link_key_in(app)
    chosen, families = picker_families(territory_id, clients)
    db.session.rollback()
    if not families:
        raise RuntimeError("aucune famille ne peut déplacer son rdv : rien à mesurer")
    if not wrk.available():
        raise RuntimeError("wrk manquant : `bash scripts/system-packages wrk` (make bench l'installe)")
    log(f"motif {chosen['motif_id']}, lieu {chosen['lieu_id']} : {len(families)} familles")
    env = {**SERVED, "LINK_SECRET_KEY": link_key}
    with Gunicorn(database_url, config, redis_url, env=env) as server:
        alone = one_family_alone(server.port, families[0], requests_each, warmup_each)
        browsers = [Browser(server.port, address(index)) for index in range(len(families))]
        bodies = []
        for browser, family in zip(browsers, families):
            check_identity(browser, family)
            for _ in range(warmup_each):
                response, body = browser.request("GET", f"{family.path}/changer")
                if response.status != 200:
                    raise RuntimeError(f"sélecteur de la famille {family.rdv_id} : HTTP {response.status}")
            bodies.append(body)
        pages = [wrk.Request(f"{family.path}/changer", (
            ("Cookie", "; ".join(f"{name}={value}" for name, value in browser.cookies.items())),
            ("X-Forwarded-For", browser.address))) for browser, family in zip(browsers, families)]
        with tempfile.TemporaryDirectory(prefix="lapins-bench-public-") as directory:
            bodies.sort(key=len)
            Path(directory, "body.html").write_bytes(bodies[len(bodies) // 2])
            Path(directory, "queries.json").write_text(json.dumps([family.floor for family in families]))
            with Gunicorn(database_url, config, application="bench.public_floor:app",
                          env={"BENCH_FLOOR_BODY": f"{directory}/body.html",
                               "BENCH_FLOOR_QUERIES": f"{directory}/queries.json"}) as floor_server:
                log(f"plancher : bench/public_floor.py, une requête SQL par page, réponses de {len(bodies[0])} à "
                    f"{len(bodies[-1])} octets")
                floor_pages = [wrk.Request(f"/floor/{index}") for index in range(len(families))]
                timed = wrk.alternated(server.port, pages, floor_server.port, floor_pages, len(families), seconds,
                                       repeats, log, statements=statement_counter(app))
                # mixed: the same pages while the booking service books and cancels at their lieu and motif once a
                # second, each change drawing new stamps for the agents the pages show (a busy PMI centre).
                log("mixed : les mêmes pages, une réservation ou annulation par seconde dans ce lieu pour ce motif")
                with Writes(app, territory_id, log, lieu_id=chosen["lieu_id"], motif_id=chosen["motif_id"]) as writes:
                    started = clock.monotonic()
                    mixed = wrk.alternated(server.port, pages, floor_server.port, floor_pages, len(families),
                                           seconds, repeats, log, statements=statement_counter(app))
                    mixed["writes"] = writes.count
                    mixed["writes_per_second"] = round(writes.count / (clock.monotonic() - started), 2)
    if timed["floor_errors"]:
        raise RuntimeError(f"plancher : {timed['floor_errors']} requêtes en erreur")
    errors = alone.errors
    single = summary(alone.latencies_ms)
    return {
        **timed, **chosen, "clients": len(families), "errors": timed["errors"] + len(errors),
        "error_kinds": sorted(set(errors)) + (["HTTP ou socket (wrk)"] if timed["errors"] else []),
        "pages_without_times": sum(b"lapins-creneaux" not in body for body in bodies),
        "single_client_p50_ms": single["p50_ms"], "single_client_p95_ms": single["p95_ms"],
        "config": config.as_dict(), "mixed": mixed,
    }


# --- public.next_slots.miss ------------------------------------------------------------------------------------------

MISS_FAMILIES = 600  # one per motif, lieu and agent: with their weeks, more pages than a process keeps


def miss_families(territory_id: int, count: int) -> list[tuple[Family, list[tuple[str, dict]]]]:
    """Families of every motif, lieu and agent (one each), with every page of their picker: the first one and each
    week up to the horizon (`?du=`), each with the floor's query over the days it shows."""
    now = utcnow()
    movable = (Rdv.status.not_in(CANCELLED_STATUSES), Rdv.lieu_id.is_not(None),
               Rdv.starts_at >= now + timedelta(hours=25), Rdv.starts_at < now + timedelta(weeks=8),
               Rdv.organisation_id.in_(select(Organisation.id).where(Organisation.territory_id == territory_id)))
    first_of_each = (select(func.min(Rdv.id)).join(RdvAgent, RdvAgent.rdv_id == Rdv.id).where(*movable)
                     .group_by(Rdv.motif_id, Rdv.lieu_id, RdvAgent.agent_id))
    chosen = []
    for rdv in db.session.scalars(select(Rdv).where(Rdv.id.in_(first_of_each)).order_by(Rdv.id)):
        if len(chosen) == count:
            break
        if len(rdv.agent_links) != 1 or services.family_move_refusal(rdv, now):
            continue
        scope = services.picker_scope(rdv, now)
        tz = scope.territory.tz
        floor = {"territory_id": territory_id, "timezone": scope.territory.timezone, "motif_id": rdv.motif_id,
                 "lieu_id": rdv.lieu_id, "agent_id": rdv.agent_links[0].agent_id}
        path = f"/r/{links.rdv_token(rdv.id)}"
        # The first page reads up to its third day with a free time; counted here as its first week.
        pages = [(f"{path}/changer", {**floor, "start": local_midnight(scope.first_day, tz).isoformat(),
                                      "end": local_midnight(scope.first_day + timedelta(days=7), tz).isoformat()})]
        week = scope.first_day + ONE_DAY
        while week <= scope.last_day:
            last = min(week + timedelta(days=picker.WEEK), scope.last_day + ONE_DAY)
            pages.append((f"{path}/changer?du={week.isoformat()}",
                          {**floor, "start": local_midnight(week, tz).isoformat(),
                           "end": local_midnight(last, tz).isoformat()}))
            week += timedelta(days=picker.WEEK)
        chosen.append((Family(rdv.id, path, services.letters_of(rdv.usagers[0].last_name)[:3], floor), pages))
    return chosen


def bench_next_slots_miss(app, database_url: str, territory_id: int, clients: int, config: ServerConfig, log,
                          redis_url: str | None = None, seconds: float = 10, repeats: int = 3,
                          families_count: int = MISS_FAMILIES) -> dict:
    """Every page of MISS_FAMILIES families' pickers in random order over `clients` connections: more pages than a
    process keeps (picker.KEPT_PAGES), so most are read from the database, against the floor's query of each."""
    link_key = link_key_in(app)
    families = miss_families(territory_id, families_count)
    db.session.rollback()
    if not families:
        raise RuntimeError("aucune famille ne peut déplacer son rdv : rien à mesurer")
    pages_count = sum(len(pages) for _, pages in families)
    log(f"miss : {len(families)} familles (un motif, un lieu, un agent chacune), {pages_count} pages "
        f"(un processus en garde {picker.KEPT_PAGES})")
    env = {**SERVED, "LINK_SECRET_KEY": link_key}
    with Gunicorn(database_url, config, redis_url, env=env) as server:
        requests, queries = [], []
        for index, (family, pages) in enumerate(families):
            browser = Browser(server.port, address(index))
            check_identity(browser, family)
            cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
            for path, query in pages:
                requests.append(wrk.Request(path, (("Cookie", cookie), ("X-Forwarded-For", browser.address))))
                queries.append(query)
        order = list(range(len(requests)))
        random.Random(11).shuffle(order)
        requests, queries = [requests[i] for i in order], [queries[i] for i in order]
        bodies = sorted((_fetch_page(server.port, request) for request in requests[:40]), key=len)
        with tempfile.TemporaryDirectory(prefix="lapins-bench-public-miss-") as directory:
            Path(directory, "body.html").write_bytes(bodies[len(bodies) // 2])
            Path(directory, "queries.json").write_text(json.dumps(queries))
            with Gunicorn(database_url, config, application="bench.public_floor:app",
                          env={"BENCH_FLOOR_BODY": f"{directory}/body.html",
                               "BENCH_FLOOR_QUERIES": f"{directory}/queries.json"}) as floor_server:
                floor_pages = [wrk.Request(f"/floor/{index}") for index in range(len(queries))]
                timed = wrk.alternated(server.port, requests, floor_server.port, floor_pages, clients, seconds,
                                       repeats, log, statements=statement_counter(app))
    if timed["floor_errors"]:
        raise RuntimeError(f"plancher (miss) : {timed['floor_errors']} requêtes en erreur")
    return {**timed, "families": len(families), "pages": pages_count, "kept_pages": picker.KEPT_PAGES,
            "pages_without_times": sum(b"lapins-creneaux" not in body for body in bodies)}


def _fetch_page(port: int, request: wrk.Request) -> bytes:
    connection, headers = CookieConnection(port), dict(request.headers)
    connection.cookies.update(part.split("=", 1) for part in headers.pop("Cookie").split("; "))
    response, body = connection.send("GET", request.path, None, headers)
    if response.status != 200:
        raise RuntimeError(f"{request.path} : HTTP {response.status}")
    return body


# --- public.move_race ----------------------------------------------------------------------------------------------

def race_setup(territory_id: int) -> tuple[int, list[Family], list[datetime]]:
    """The race's lieu, agent, free times and families (see the module's docstring); returns the agent's id."""
    territory = db.session.get(Territory, territory_id)
    organisation = db.session.scalar(select(Organisation).where(Organisation.territory_id == territory_id)
                                     .order_by(Organisation.id).limit(1))
    motif = db.session.scalar(select(Motif).where(
        Motif.organisation_id == organisation.id, Motif.active, Motif.location_type == LocationType.ON_SITE,
        Motif.family_moves_max > 0, Motif.duration_minutes <= 45).order_by(Motif.id).limit(1))
    lieu = Lieu(organisation=organisation, name="Centre de la course", address="1 rue du Banc, 59000 Lille")
    agent = Agent(email=f"course-{secrets.token_hex(4)}@banc.invalid", first_name="Camille", last_name="Course",
                  roles=[AgentRole(organisation=organisation, role=Role.AGENT)])
    tz, duration = territory.tz, timedelta(minutes=motif.duration_minutes)
    today = utcnow().astimezone(tz).date()
    closed = public_holidays(territory.holiday_subdivision, {today.year, today.year + 1})
    day = next(day for day in (today + timedelta(days=offset) for offset in range(3, 30)) if day not in closed)
    opening = datetime.combine(day, time(8))
    # Days of RACE_TIMES times each: the free one, then full ones a week later (the last one set once they are known).
    full = PlageOuverture(organisation=organisation, agent=agent, lieu=lieu, title="Familles",
                          first_day=day + timedelta(days=7), last_day=day + timedelta(days=60),
                          start_time=opening.time(), end_time=(opening + RACE_TIMES * duration).time(),
                          weekdays=0b1111111, motifs=[motif])
    db.session.add_all([lieu, agent, full, PlageOuverture(
        organisation=organisation, agent=agent, lieu=lieu, title="Course", first_day=day, last_day=day,
        start_time=opening.time(), end_time=(opening + RACE_TIMES * duration).time(), weekdays=0b1111111,
        motifs=[motif])])
    db.session.flush()
    later = free_slots_between(territory=territory, motif=motif, lieu_id=lieu.id, agent_id=agent.id,
                               start=local_midnight(day + timedelta(days=7), tz),
                               end=local_midnight(day + timedelta(days=61), tz))[:RACE_FAMILIES]
    if len(later) < RACE_FAMILIES:
        raise RuntimeError(f"seulement {len(later)} créneaux pour les {RACE_FAMILIES} familles de la course")
    full.last_day = later[-1].starts_at.astimezone(tz).date()
    rdvs = []
    for index, slot in enumerate(later):
        usager = Usager(territory=territory, first_name="Alix", last_name=f"Course{index:03d}",
                        phone=f"+3363998{index:04d}", sms_consent=True)
        rdv = Rdv(organisation_id=organisation.id, motif=motif, lieu=lieu, starts_at=slot.starts_at,
                  ends_at=slot.ends_at, status=RdvStatus.UNKNOWN, usagers=[usager])
        rdv.set_agents([agent])
        rdvs.append(rdv)
    db.session.add_all(rdvs)
    db.session.commit()
    times = [datetime.combine(day, time(8), tz) + index * duration for index in range(RACE_TIMES)]
    return agent.id, [Family(rdv.id, f"/r/{links.rdv_token(rdv.id)}", "cou", {}) for rdv in rdvs], times


def bench_move_race(app, database_url: str, territory_id: int, config: ServerConfig, log,
                    redis_url: str | None = None) -> dict:
    link_key = link_key_in(app)
    agent_id, families, times = race_setup(territory_id)
    log(f"{len(families)} familles, {RACE_TIMES} créneaux libres le {times[0]:%d/%m/%Y}")
    with Gunicorn(database_url, config, redis_url, env={**SERVED, "LINK_SECRET_KEY": link_key}) as server:
        browsers = [Browser(server.port, address(index)) for index in range(len(families))]
        forms = []
        for index, (browser, family) in enumerate(zip(browsers, families)):
            browser.connection.timeout = 300
            check_identity(browser, family)
            _, page = browser.request("GET", f"{family.path}/changer")
            offered = [html.unescape(href.decode()) for href in CONFIRM_LINK.findall(page)]
            if len(offered) != RACE_TIMES:
                raise RuntimeError(f"la famille {index} voit {len(offered)} créneaux, pas {RACE_TIMES}")
            _, confirm = browser.request("GET", urljoin(f"{family.path}/changer", offered[index % RACE_TIMES]))
            forms.append(dict(FORM_FIELD.findall(html.unescape(confirm.decode()))))
        start = threading.Barrier(len(browsers))
        answers: list[tuple[int, str]] = [(0, "")] * len(browsers)

        def confirm_move(index: int) -> None:
            start.wait(timeout=300)
            try:
                response, body = browsers[index].request(
                    "POST", f"{families[index].path}/changer", urlencode(forms[index]),
                    {"Content-Type": "application/x-www-form-urlencoded"})
                answers[index] = (response.status, html.unescape(body.decode()))
            except OSError as error:
                answers[index] = (0, type(error).__name__)

        began = clock.perf_counter()
        threads = [threading.Thread(target=confirm_move, args=(index,), daemon=True) for index in range(len(browsers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = clock.perf_counter() - began
    db.session.rollback()
    ids = [family.rdv_id for family in families]
    spans = sorted(db.session.execute(select(RdvAgent.starts_at, RdvAgent.ends_at).where(
        RdvAgent.agent_id == agent_id, RdvAgent.live.is_(True))).all())
    live = db.session.scalar(select(func.count()).select_from(Rdv).where(
        Rdv.id.in_(ids), Rdv.status.not_in(CANCELLED_STATUSES)))
    moved = db.session.scalar(select(func.count()).select_from(RdvMove).where(RdvMove.rdv_id.in_(ids)))
    taken = sum(status == 409 and TAKEN in body for status, body in answers)
    return {
        "families": len(families), "free_times": RACE_TIMES, "seconds": round(seconds, 2),
        "moves": sum(status == 302 for status, _ in answers), "moves_recorded": moved, "taken_pages": taken,
        "other_answers": sorted({str(status) for status, body in answers
                                 if status != 302 and not (status == 409 and TAKEN in body)}),
        "double_bookings": sum(end > following for (_, end), (following, _) in zip(spans, spans[1:])),
        "lost_rdvs": len(ids) - live,
        "times_taken": sum(1 for moment in times if any(begin == moment for begin, _ in spans)),
    }


def race_failures(race: dict) -> list[str]:
    expected = {"moves": RACE_TIMES, "moves_recorded": RACE_TIMES, "taken_pages": RACE_FAMILIES - RACE_TIMES,
                "double_bookings": 0, "lost_rdvs": 0, "times_taken": RACE_TIMES}
    return [f"course : {key} = {race[key]}, attendu {value}" for key, value in expected.items() if race[key] != value]
