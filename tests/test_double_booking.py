"""Many agents booking the same agent at the same second: exactly one rdv is created, on SQLite and PostgreSQL.

Real concurrent HTTP requests against a real threaded server, each client logged in through the login form.
"""
from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
from werkzeug.serving import make_server

from lapins import create_app
from lapins.infra.extensions import db
from lapins.models import Rdv, RdvAgent, Role

CLIENTS = 12
PASSWORD = "motdepasse-solide-2026"


@pytest.fixture()
def live_clinic(database_url):
    """A real server on 127.0.0.1 with one puéricultrice, her opening slot and CLIENTS secretaries."""
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=True)
    with app.app_context():
        organisation = factories.OrganisationFactory()
        lieu = factories.LieuFactory(organisation=organisation)
        motif = factories.MotifFactory(organisation=organisation)
        agent = factories.AgentFactory(organisation=organisation)
        monday = date.today() + timedelta(days=7 - date.today().weekday())
        factories.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=monday, weekdays=0b1111111)
        usagers = [factories.UsagerFactory(territory=organisation.territory, organisations=[organisation])
                   for _ in range(CLIENTS)]
        secretaries = [factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY)
                       for _ in range(CLIENTS)]
        clinic = dict(agent_id=agent.id, lieu_id=lieu.id, motif_id=motif.id, day=monday.isoformat(),
                      usager_ids=[u.id for u in usagers], emails=[s.email for s in secretaries])
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    clinic["base"] = f"http://127.0.0.1:{server.server_port}"
    yield app, clinic
    server.shutdown()
    with app.app_context():
        db.engine.dispose()


def logged_in_session(base: str, email: str) -> requests.Session:
    session = requests.Session()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', session.get(f"{base}/connexion").text).group(1)
    response = session.post(f"{base}/connexion", data={"email": email, "password": PASSWORD, "csrf_token": token},
                            allow_redirects=False)
    assert response.status_code == 302
    return session


def test_simultaneous_bookings_of_one_slot_create_exactly_one_rdv(live_clinic):
    app, clinic = live_clinic
    base = clinic["base"]
    sessions = [logged_in_session(base, email) for email in clinic["emails"]]
    forms = []
    for index, session in enumerate(sessions):
        page = session.get(f"{base}/rdvs/nouveau").text
        forms.append({
            "csrf_token": re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1),
            "usager_ids": clinic["usager_ids"][index], "motif_id": clinic["motif_id"], "lieu_id": clinic["lieu_id"],
            "agent_ids": clinic["agent_id"], "day": clinic["day"], "start_time": "10:00", "duration": "30",
        })
    start = threading.Barrier(CLIENTS)

    def book(index: int) -> requests.Response:
        start.wait()
        return sessions[index].post(f"{base}/rdvs/nouveau", data=forms[index], allow_redirects=False, timeout=60)

    with ThreadPoolExecutor(CLIENTS) as pool:
        responses = list(pool.map(book, range(CLIENTS)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [302] + [422] * (CLIENTS - 1)
    refused = [response.text for response in responses if response.status_code == 422]
    assert all("a déjà un rendez-vous de 10h00 à 10h30" in text for text in refused)
    with app.app_context():
        assert db.session.query(Rdv).count() == 1
        assert db.session.query(RdvAgent).filter_by(agent_id=clinic["agent_id"], live=True).count() == 1


def test_simultaneous_moves_onto_one_free_time_leave_one_rdv_there(live_clinic):
    """Two rdvs dragged to the same free time at the same second: one moves, the other stays where it was."""
    app, clinic = live_clinic
    base = clinic["base"]
    sessions = [logged_in_session(base, email) for email in clinic["emails"][:2]]
    rdv_ids = []
    for index, (session, hour) in enumerate(zip(sessions, ("09:00", "11:00"))):
        page = session.get(f"{base}/rdvs/nouveau").text
        response = session.post(f"{base}/rdvs/nouveau", allow_redirects=False, data={
            "csrf_token": re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1),
            "usager_ids": clinic["usager_ids"][index], "motif_id": clinic["motif_id"], "lieu_id": clinic["lieu_id"],
            "agent_ids": clinic["agent_id"], "day": clinic["day"], "start_time": hour, "duration": "30"})
        rdv_ids.append(int(response.headers["Location"].rsplit("/", 1)[1]))
    target = datetime.fromisoformat(clinic["day"] + "T09:30").replace(tzinfo=ZoneInfo("Europe/Paris"))
    start = threading.Barrier(2)

    def move(index: int) -> requests.Response:
        session = sessions[index]
        token = re.search(r'name="csrf-token" content="([^"]+)"|name="csrf_token"[^>]*value="([^"]+)"',
                          session.get(f"{base}/rdvs/{rdv_ids[index]}").text)
        start.wait()
        return session.post(f"{base}/agenda/api/rdvs/{rdv_ids[index]}/deplacer",
                            json={"starts_at": target.astimezone(timezone.utc).isoformat()},
                            headers={"X-CSRFToken": token.group(1) or token.group(2)}, timeout=60)

    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(move, range(2)))
    assert sorted(response.status_code for response in responses) == [200, 409]
    with app.app_context():
        times = sorted(rdv.starts_at for rdv in db.session.query(Rdv))
        assert times[0] != times[1]
