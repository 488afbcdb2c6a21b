"""The week agenda (the calendar's events feed) as agents get it, driven by wrk (bench/wrk.py), each scenario in three
10-second windows alternated with its floor (bench/floor_app.py: the same bytes, no application):

- agenda.week.hit: the 20 agents with the fullest next week, each asking for that week again and again (warm caches);
- agenda.week.miss: every agent of the département with plages × 52 weeks, in random order: more agent-weeks than the
  per-process caches hold, so most requests read PostgreSQL;
- agenda.week.mixed: the hit set while the booking service books and cancels an rdv once a second somewhere in the
  département (a busy département's rate): every write draws the territory's new agenda stamp today;
- agenda.week.open_loop: the hit set at 200 requests per second on average, at random moments (bench.paced, at most
  20 in flight): the latency an agent sees when the server is not saturated.

Agents' session cookies are signed by the bench with the served app's secret key, as the sign-in form signs them, and
signed again before each window (the app signs a session again after a minute: a browser gets the new cookie once a
minute, and so does wrk here). Each window's client CPU share is recorded; above half the machine the scenario is
marked `client_bound` (not a result).
"""
from __future__ import annotations

import http.client
import json
import random
import secrets
import tempfile
import time
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import select

from bench import wrk
from bench.agenda_week import EVENTS_PATH, Gunicorn, ServerConfig, busiest_agents
from bench.background import Background
from bench.database import statement_counter
from lapins.booking import BookingError, book_rdv, cancel_rdv
from lapins.infra.extensions import db
from lapins.models import (
    Agent, Lieu, Motif, Organisation, PlageOuverture, Rdv, RdvStatus, Territory, Usager, utcnow,
)
from lapins.models.agents import session_user_id
from lapins.slots.availability import first_available

SCENARIOS = ("hit", "miss", "mixed", "open_loop")
OPEN_LOOP_RPS = 200
WRITES_PER_SECOND = 1
MISS_WEEKS = 52


def week_query(monday) -> str:
    # FullCalendar asks with the territory's wall-clock times (no offset); the API reads them in territory.tz.
    return urlencode({"start": f"{monday.isoformat()}T00:00:00",
                      "end": f"{(monday + timedelta(days=7)).isoformat()}T00:00:00"})


class Cookies:
    """Agents' session cookies as the sign-in form makes them, signed with the served app's key."""

    def __init__(self, app, secret_key: str):
        self.app, self.secret_key = app, secret_key

    def signed(self, agents: list[tuple[int, int]]) -> dict[int, str]:
        previous = self.app.config["SECRET_KEY"]
        self.app.config["SECRET_KEY"] = self.secret_key
        try:
            serializer = self.app.session_interface.get_signing_serializer(self.app)
            name = self.app.session_interface.get_cookie_name(self.app)
            return {agent_id: f"{name}={serializer.dumps(signed_in(agent_id, generation))}"
                    for agent_id, generation in agents}
        finally:
            self.app.config["SECRET_KEY"] = previous


def signed_in(agent_id: int, generation: int) -> dict:
    """A session's content after the sign-in form (Flask-Login's keys, permanent: lapins.auth.views)."""
    return {"_user_id": session_user_id(agent_id, generation), "_fresh": True, "_permanent": True}


class Writes(Background):
    """The booking service booking, then cancelling, an rdv for a random agent of the territory (of one lieu and motif
    when given), WRITES_PER_SECOND times a second, in a thread of its own, for as long as the `with` lasts."""

    def __init__(self, app, territory_id: int, log, lieu_id: int | None = None, motif_id: int | None = None):
        super().__init__()
        self.app, self.territory_id, self.log = app, territory_id, log
        self.lieu_id, self.motif_id = lieu_id, motif_id

    def run(self) -> None:
        chooser = random.Random(7)
        with self.app.app_context():
            territory = db.session.get(Territory, self.territory_id)
            plages = db.session.execute(
                select(PlageOuverture.agent_id, PlageOuverture.lieu_id, Motif.id).join(PlageOuverture.motifs)
                .join(Organisation, Organisation.id == PlageOuverture.organisation_id)
                .where(Organisation.territory_id == self.territory_id, PlageOuverture.lieu_id.is_not(None),
                       *([PlageOuverture.lieu_id == self.lieu_id] if self.lieu_id else []),
                       *([Motif.id == self.motif_id] if self.motif_id else []))).all()
            usager_ids = list(db.session.scalars(select(Usager.id).where(Usager.territory_id == self.territory_id)
                                                 .limit(500)))
            db.session.rollback()
            booked: Rdv | None = None
            while not self.stop.wait(1 / WRITES_PER_SECOND):
                try:
                    if booked is not None:
                        cancel_rdv(actor=booked.agents[0], rdv=booked, status=RdvStatus.REVOKED, reason="banc d'essai")
                        booked = None
                    else:
                        agent_id, lieu_id, motif_id = chooser.choice(plages)
                        motif = db.session.get(Motif, motif_id)
                        slots = first_available(territory=territory, motif=motif, lieu_id=lieu_id, agent_id=agent_id,
                                                start=utcnow() + timedelta(days=chooser.randint(1, 40)), limit=1)
                        if not slots:
                            continue
                        agent = db.session.get(Agent, agent_id)
                        booked = book_rdv(actor=agent, motif=motif, agents=[agent], lieu=db.session.get(Lieu, lieu_id),
                                          usagers=[db.session.get(Usager, chooser.choice(usager_ids))],
                                          starts_at=slots[0].starts_at)
                    self.count += 1
                except BookingError:
                    db.session.rollback()
                    booked = None


def bench_agenda_scenarios(app, database_url: str, territory_id: int, config: ServerConfig, log,
                           redis_url: str | None = None, connections: int = 20, seconds: float = 10,
                           repeats: int = 3, scenarios: tuple[str, ...] = SCENARIOS) -> dict:
    """Every scenario's figures, under keys agenda.week.<scenario>.<figure>."""
    if not wrk.available():
        raise RuntimeError("wrk manquant : `bash scripts/system-packages wrk` (make bench l'installe)")
    territory = db.session.get(Territory, territory_id)
    tz = territory.tz
    today = utcnow().astimezone(tz).date()
    monday = today - timedelta(days=today.weekday()) + timedelta(weeks=1)  # next week: the fullest one
    hit_agents = [(agent.id, agent.session_generation)
                  for agent in busiest_agents(territory_id, connections, monday, tz)]
    organisations = select(Organisation.id).where(Organisation.territory_id == territory_id)
    all_agents = db.session.execute(
        select(Agent.id, Agent.session_generation).where(Agent.active, Agent.id.in_(
            select(PlageOuverture.agent_id).where(PlageOuverture.organisation_id.in_(organisations))))
        .order_by(Agent.id)).all()
    db.session.rollback()
    if not hit_agents:
        raise RuntimeError(f"aucun agent n'a de rdv la semaine du {monday:%d/%m/%Y} : rien à mesurer")
    secret_key = secrets.token_hex(32)
    cookies = Cookies(app, secret_key)
    first_monday = today - timedelta(days=today.weekday()) - timedelta(weeks=MISS_WEEKS // 2)
    miss_paths = [(agent_id, EVENTS_PATH.format(agent_id=agent_id) + "?"
                   + week_query(first_monday + timedelta(weeks=week)))
                  for agent_id, _ in all_agents for week in range(MISS_WEEKS)]
    random.Random(11).shuffle(miss_paths)
    hit_paths = [(agent_id, EVENTS_PATH.format(agent_id=agent_id) + "?" + week_query(monday))
                 for agent_id, _ in hit_agents]
    figures: dict = {}
    statements = statement_counter(app)
    with Gunicorn(database_url, config, redis_url, env={"SECRET_KEY": secret_key}) as server:
        def requests_of(paths, agents):
            signed = cookies.signed(agents)
            return [wrk.Request(path, (("Cookie", signed[agent_id]),)) for agent_id, path in paths]

        # One full answer of the hit set, for the floor's body (its median size).
        bodies = sorted((_fetch(server.port, request) for request in requests_of(hit_paths, hit_agents)), key=len)
        with tempfile.NamedTemporaryFile(prefix="lapins-bench-floor-", suffix=".json") as body:
            body.write(bodies[len(bodies) // 2])
            body.flush()
            with Gunicorn(database_url, config, application="bench.floor_app:app",
                          env={"BENCH_FLOOR_BODY": body.name, "BENCH_FLOOR_ETAG": ""}) as floor:
                floor_requests = [wrk.Request(path) for _, path in hit_paths]
                plans = {
                    "hit": (hit_paths, hit_agents, {}),
                    "miss": (miss_paths, all_agents, {}),
                    "mixed": (hit_paths, hit_agents, {}),
                    "open_loop": (hit_paths, hit_agents, {"rate": OPEN_LOOP_RPS}),
                }
                for scenario in scenarios:
                    paths, agents, options = plans[scenario]
                    log(f"agenda.week.{scenario} : {len(paths)} adresses, {connections} connexions")
                    writes = Writes(app, territory_id, log) if scenario == "mixed" else None
                    if writes:
                        writes.__enter__()
                    try:
                        result = wrk.alternated(server.port, lambda: requests_of(paths, agents), floor.port,
                                                floor_requests, connections, seconds, repeats, log,
                                                statements=statements, **options)
                    finally:
                        if writes:
                            writes.__exit__()
                    if writes:
                        result["writes"] = writes.count
                        result["writes_per_second"] = round(writes.count / (2 * repeats * seconds), 2)
                    result["addresses"] = len(paths)
                    figures.update({f"agenda.week.{scenario}.{key}": value for key, value in result.items()})
    figures["agenda.week.week"] = monday.isoformat()
    figures["agenda.week.config"] = config.as_dict()
    hit, mixed = figures.get("agenda.week.hit.p95_ms"), figures.get("agenda.week.mixed.p95_ms")
    if hit and mixed:
        figures["agenda.week.mixed_to_hit_ratio"] = round(mixed / hit, 2)
    return figures


def _fetch(port: int, request: wrk.Request) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", request.path, headers=dict(request.headers))
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"agenda : HTTP {response.status} pour {request.path}")
    json.loads(payload)
    return payload
