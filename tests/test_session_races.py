"""Many families put on a collective session's last places at the same moment: exactly the capacity is given, on
SQLite and PostgreSQL; every other family is told the session is full and offered its waiting list.

Real concurrent HTTP requests against a threaded server, each agent signed in through the login form. Every request
is held inside the server at its first write (booking's lock on the session's agents), having read the session's
places as free: what keeps the places from being given twice is then the lock and the count made under it.
"""
from __future__ import annotations

import html
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import func, select

from lapins import create_app
from lapins.booking import sessions
from lapins.infra.extensions import db
from lapins.models import Participation, ParticipationStatus, Rdv, Role
from tests.races import PARTY_HEADER, HeldStatements, live_server

PARIS = ZoneInfo("Europe/Paris")
FAMILIES = 10
CAPACITY, TAKEN = 6, 3  # three places left
PASSWORD = "motdepasse-solide-2026"
# booking.lock_agents: SQLite's write lock, PostgreSQL's row locks on the session's agents.
FIRST_WRITES = ("BEGIN IMMEDIATE", "UPDATE agents SET booking_version")
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture()
def live_session(database_url):
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=True)
    with app.app_context():
        organisation = factories.OrganisationFactory()
        lieu = factories.LieuFactory(organisation=organisation)
        motif = factories.MotifFactory(organisation=organisation, collective=True, duration_minutes=90)
        animator = factories.AgentFactory(organisation=organisation)
        parents = [factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                           phone=f"+336123450{index:02d}") for index in range(FAMILIES + TAKEN)]
        secretaries = [factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY)
                       for _ in range(FAMILIES)]
        session = sessions.create_sessions(
            actor=animator, motif=motif, agents=[animator], lieu=lieu, capacity=CAPACITY,
            starts=[datetime.combine(date.today() + timedelta(days=7), time(10), PARIS)],
            duration=timedelta(minutes=90))[0]
        for parent in parents[:TAKEN]:
            sessions.add_participant(actor=animator, session=session, usagers=[parent])
        world = {"session_id": session.id, "usager_ids": [p.id for p in parents[TAKEN:]],
                 "emails": [s.email for s in secretaries]}
        db.session.remove()
    with live_server(app) as base:
        yield app, base, world
    with app.app_context():
        db.engine.dispose()


def signed_in(base: str, email: str) -> requests.Session:
    client = requests.Session()
    token = CSRF.search(client.get(f"{base}/connexion", timeout=30).text).group(1)
    response = client.post(f"{base}/connexion", data={"email": email, "password": PASSWORD, "csrf_token": token},
                           allow_redirects=False, timeout=30)
    assert response.status_code == 302
    return client


def test_families_racing_for_the_last_places_get_exactly_the_capacity(live_session):
    app, base, world = live_session
    url = f"{base}/seances/{world['session_id']}"
    clients = [signed_in(base, email) for email in world["emails"]]
    forms = [{"csrf_token": CSRF.search(client.get(url, timeout=30).text).group(1), "usager_ids": usager_id}
             for client, usager_id in zip(clients, world["usager_ids"])]

    def add(index: int) -> str:
        response = clients[index].post(f"{url}/inscrire", data=forms[index], headers={PARTY_HEADER: f"f{index}"},
                                       timeout=60)
        assert response.status_code == 200
        return html.unescape(response.text)

    with app.app_context():
        engine = db.engine
    with HeldStatements(engine, FIRST_WRITES, FAMILIES) as held, ThreadPoolExecutor(FAMILIES) as pool:
        pages = list(pool.map(add, range(FAMILIES)))
    assert held.crossed == FAMILIES  # every request had read the places as free before any of them wrote

    added = [page for page in pages if "Inscription enregistrée" in page]
    full = [page for page in pages if f"La séance est complète ({CAPACITY}/{CAPACITY})" in page]
    assert (len(added), len(full)) == (CAPACITY - TAKEN, FAMILIES - CAPACITY + TAKEN)
    assert all("file d'attente" in page for page in full)
    with app.app_context():
        session = db.session.get(Rdv, world["session_id"])
        live = db.session.scalar(select(func.count()).select_from(Participation).where(
            Participation.rdv_id == session.id, Participation.status == ParticipationStatus.REGISTERED))
        assert (live, session.places_taken) == (CAPACITY, CAPACITY)
