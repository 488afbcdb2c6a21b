"""`python -m bench.sessions`: sessions.signup_race — 200 families put on a collective session's last 5 places at once.

A twin database of its own (bench/database.py), the app served by werkzeug's threaded server on 127.0.0.1, one agent
signed in through the login form; RACE_FAMILIES requests (one thread each, released together by a barrier) post
« Inscrire » for a family each on a session with RACE_PLACES places left. Online sign-up (the public page) is not
built yet (issue 16.4): the agents' form is the path that exists, and it goes through the same booking code
(`booking.sessions.add_participant`, under the session's agents' locks) that online sign-up will call.

Figures: `sessions.signup_race.given` (must equal RACE_PLACES), `.refused_full` (the others, each told the session is
full and offered its waiting list: read from the database, the page's message is checked by
tests/test_session_races.py), `.errors` (any answer but a page: must be 0), `.seconds` (wall time of the race) and the
requests' `.p50_ms` / `.p95_ms`.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time as clock_time, timedelta, timezone
from zoneinfo import ZoneInfo

import requests
from werkzeug.serving import make_server

from bench.database import BenchDatabase
from bench.results import merge_results
from lapins.infra.extensions import db

RACE_FAMILIES, RACE_PLACES, CAPACITY = 200, 5, 30
PASSWORD = "banc-seances-2026-solide"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
PARIS = ZoneInfo("Europe/Paris")


def seed(app) -> dict:
    from lapins.booking import sessions
    from lapins.models import Agent, AgentRole, Lieu, Motif, Organisation, Role, Territory, Usager

    with app.app_context():
        territory = Territory(number="75", name="Banc séances", timezone="Europe/Paris")
        organisation = Organisation(territory=territory, name="PMI du banc")
        lieu = Lieu(organisation=organisation, name="Centre de PMI", address="1 place de la Mairie")
        motif = Motif(organisation=organisation, name="Atelier massage bébé", duration_minutes=90, collective=True)
        agent = Agent(email="banc.seances@example.org", first_name="Banc", last_name="Séances")
        agent.set_password(PASSWORD)
        db.session.add_all([territory, organisation, lieu, motif, agent])
        db.session.flush()
        db.session.add(AgentRole(agent=agent, organisation=organisation, role=Role.AGENT))
        families = [Usager(territory=territory, first_name="Prénom", last_name=f"Famille {index}",
                           phone=f"+3361{index:07d}", sms_consent=True, organisations=[organisation])
                    for index in range(RACE_FAMILIES + CAPACITY - RACE_PLACES)]
        db.session.add_all(families)
        db.session.commit()
        starts = datetime.combine(datetime.now(PARIS).date() + timedelta(days=7), clock_time(10), PARIS)
        session = sessions.create_sessions(actor=agent, motif=motif, agents=[agent], lieu=lieu, starts=[starts],
                                           duration=timedelta(minutes=90), capacity=CAPACITY)[0]
        already = families[:CAPACITY - RACE_PLACES]
        for family in already:
            sessions.add_participant(actor=agent, session=session, usagers=[family])
        world = {"session_id": session.id, "email": agent.email,
                 "usager_ids": [family.id for family in families[len(already):]]}
        db.session.remove()
        return world


def race(base: str, world: dict) -> dict:
    signed_in = requests.Session()
    token = CSRF.search(signed_in.get(f"{base}/connexion", timeout=30).text).group(1)
    assert signed_in.post(f"{base}/connexion", data={"email": world["email"], "password": PASSWORD,
                                                     "csrf_token": token}, allow_redirects=False).status_code == 302
    url = f"{base}/seances/{world['session_id']}"
    csrf = CSRF.search(signed_in.get(url, timeout=30).text).group(1)
    cookies = signed_in.cookies.get_dict()
    barrier = threading.Barrier(RACE_FAMILIES)
    durations: list[float] = []

    def add(usager_id: int) -> str:
        client = requests.Session()
        client.cookies.update(cookies)
        barrier.wait()
        began = time.perf_counter()
        response = client.post(f"{url}/inscrire", data={"csrf_token": csrf, "usager_ids": usager_id}, timeout=120)
        durations.append(time.perf_counter() - began)
        # The outcome is read from the database afterwards (who holds a place); here, only that the page came.
        return "answered" if response.status_code == 200 else f"error {response.status_code}"

    began = time.perf_counter()
    with ThreadPoolExecutor(RACE_FAMILIES) as pool:
        outcomes = list(pool.map(add, world["usager_ids"][:RACE_FAMILIES]))
    seconds = time.perf_counter() - began
    ordered = sorted(durations)
    return {"answered": outcomes.count("answered"), "errors": len(outcomes) - outcomes.count("answered"),
            "seconds": round(seconds, 2),
            "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1)}


def bench_signup_race(database: BenchDatabase, figures: dict, log) -> None:
    twin = database.twin("sessions")
    app = twin.app(CELERY_BROKER_URL="memory://", WTF_CSRF_ENABLED=True, RATELIMIT_ENABLED=False,
                   SESSION_COOKIE_SECURE=False)
    twin.reset(app)
    try:
        world = seed(app)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            log(f"Séances : {RACE_FAMILIES} familles pour les {RACE_PLACES} dernières places")
            result = race(f"http://127.0.0.1:{server.server_port}", world)
        finally:
            server.shutdown()
            thread.join(10)
        with app.app_context():
            from sqlalchemy import func, select

            from lapins.models import Participation, Rdv

            result["places_taken"] = db.session.get(Rdv, world["session_id"]).places_taken
            result["given"] = db.session.scalar(select(func.count()).select_from(Participation).where(
                Participation.rdv_id == world["session_id"], Participation.usager_id.in_(world["usager_ids"])))
            result["refused_full"] = result.pop("answered") - result["given"]
            db.session.remove()
        figures.update({f"sessions.signup_race.{key}": value for key, value in result.items()})
    finally:
        twin.drop(app)


def verdict_failures(figures: dict) -> list[str]:
    """What the race must give: exactly the places left, no error, the session exactly full."""
    expected = {"sessions.signup_race.given": RACE_PLACES, "sessions.signup_race.errors": 0,
                "sessions.signup_race.places_taken": CAPACITY}
    return [f"séances : {key} = {figures.get(key)}, attendu {value}" for key, value in expected.items()
            if key in figures and figures[key] != value]


def main(argv: list[str] | None = None) -> int:
    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    database = BenchDatabase.from_environment(log)
    figures: dict = {}
    try:
        bench_signup_race(database, figures, log)
    finally:
        database.cleanup()
    merged = merge_results(figures)
    print(json.dumps({key: merged[key] for key in sorted(figures)}, indent=2, ensure_ascii=False))
    given = figures.get("sessions.signup_race.given")
    ok = "sessions.signup_race.given" in figures and not verdict_failures(figures)
    print(f"  sessions.signup_race : {given} places données sur {RACE_PLACES}, "
          f"{figures.get('sessions.signup_race.refused_full')} familles vers la file d'attente, "
          f"{figures.get('sessions.signup_race.errors')} erreurs — {'OK' if ok else 'ÉCHEC'}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
