"""Two cancellations of one rdv at the same moment: exactly one passes, on SQLite and PostgreSQL.

The family cancels on its link while an agent cancels through the API (or two agents at once). Both requests are
held inside the server at the cancellation's first write, each having read the rdv as live: what keeps the second
one out is then the conditional UPDATE's own `status NOT IN cancelled` guard, run after the first one's commit (it
waited on the row lock, or SQLite's write lock), nothing else.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import func, select

from lapins import create_app
from lapins.auth import tokens
from lapins.booking import book_rdv, events
from lapins.booking.events import RdvCancelled
from lapins.infra.extensions import db
from lapins.models import Message, MessageKind, Rdv, RdvAgent, RdvStatus, Role, WaitlistSlot
from lapins.models.rdvs import Canceller
from lapins.notifications.links import rdv_token
from tests.races import PARTY_HEADER, HeldStatements, live_server

PARIS = ZoneInfo("Europe/Paris")
# A cancellation's first writes: its agents' agenda stamps (models/agenda_stamps.py, on the bulk UPDATE), then the
# UPDATE.
FIRST_WRITES = ("UPDATE agents SET agenda_stamp", "UPDATE territories SET agenda_stamp", "UPDATE rdvs")
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture()
def live_rdv(database_url):
    """A live server over its own database, one rdv a week ahead, two agents with an API token each."""
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=True)
    with app.app_context():
        organisation = factories.OrganisationFactory()
        lieu = factories.LieuFactory(organisation=organisation)
        motif = factories.MotifFactory(organisation=organisation)
        agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
        colleague = factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY)
        day = date.today() + timedelta(days=7)
        factories.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=date.today(), weekdays=0b1111111)
        usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                         last_name="Payet", phone="+33612345678", email="payet@example.fr",
                                         email_consent=True)
        rdv = book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[usager], lieu=lieu,
                       starts_at=datetime.combine(day, time(10), PARIS))
        with app.test_request_context():
            link = f"/r/{rdv_token(rdv.id)}"
        world = {"rdv_id": rdv.id, "revision": rdv.revision, "link": link, "agent_id": agent.id,
                 "tokens": {"agent": tokens.create(agent, "Logiciel")[1],
                            "colleague": tokens.create(colleague, "Logiciel")[1]}}
        db.session.remove()
    with live_server(app) as base:
        yield app, base, world
    with app.app_context():
        db.engine.dispose()


class Family:
    """The family on its link, its identity already checked, ready to post the cancellation form."""

    def __init__(self, base: str, link: str) -> None:
        self.session, self.url = requests.Session(), f"{base}{link}"
        token = CSRF.search(self.session.get(self.url, timeout=30).text).group(1)
        checked = self.session.post(f"{self.url}/verifier", data={"csrf_token": token, "letters": "pay"},
                                    allow_redirects=False, timeout=30)
        assert checked.status_code == 302, checked.text
        self.form = {"csrf_token": CSRF.search(self.session.get(self.url, timeout=30).text).group(1),
                     "reason": "Enfant malade", "confirme": "oui"}

    def cancel(self) -> requests.Response:
        return self.session.post(f"{self.url}/annuler", data=self.form, headers={PARTY_HEADER: "family"},
                                 allow_redirects=False, timeout=60)


def api_cancel(base: str, world: dict, who: str, status: str):
    return lambda: requests.post(f"{base}/api/v1/rdvs/{world['rdv_id']}/cancel", json={"status": status},
                                 headers={"Authorization": f"Bearer {world['tokens'][who]}", PARTY_HEADER: who},
                                 timeout=60)


def race(app, *cancellations, first: str | None = None):
    """Runs the cancellations at once, each held before its first write until all are there (each has read the rdv
    as live by then)."""
    committed: list[RdvCancelled] = []

    def heard(_sender, *, event):
        if isinstance(event, RdvCancelled):
            committed.append(event)

    with app.app_context():
        engine = db.engine
    with HeldStatements(engine, FIRST_WRITES, len(cancellations), first=first) as held, \
            events.committed.connected_to(heard), ThreadPoolExecutor(len(cancellations)) as pool:
        responses = list(pool.map(lambda cancel: cancel(), cancellations))
    assert held.crossed == len(cancellations), "the cancellations did not meet before their UPDATE"
    return responses, committed


def the_rdv(app, world: dict) -> tuple[Rdv, int, int]:
    with app.app_context():
        rdv = db.session.get(Rdv, world["rdv_id"])
        db.session.expunge(rdv)
        freed = db.session.scalar(select(func.count(WaitlistSlot.id)))
        live = db.session.scalar(select(func.count()).select_from(RdvAgent).where(RdvAgent.live.is_(True)))
        db.session.remove()
    return rdv, freed, live


def test_the_family_and_an_agent_cancelling_at_the_same_moment_cancel_it_once(live_rdv):
    app, base, world = live_rdv
    family = Family(base, world["link"])

    (by_family, by_agent), committed = race(app, family.cancel, api_cancel(base, world, "agent", "revoked"))

    outcomes = sorted([("family", by_family.status_code), ("agent", by_agent.status_code)], key=lambda o: o[1])
    assert [code for _, code in outcomes] in ([200, 409], [302, 409]), outcomes
    winner = outcomes[0][0]
    loser = by_agent if winner == "family" else by_family
    assert "Ce rendez-vous est déjà annulé." in (loser.json()["message"] if winner == "family" else loser.text)
    assert len(committed) == 1 and committed[0].rdv_id == world["rdv_id"]
    rdv, freed, live = the_rdv(app, world)
    assert rdv.revision == world["revision"] + 1 and freed == 1 and live == 0
    if winner == "family":
        assert (rdv.status, rdv.cancelled_by_party, rdv.cancel_reason) == (
            RdvStatus.EXCUSED, Canceller.FAMILY, "Enfant malade")
        assert committed[0].by == Canceller.FAMILY
    else:
        assert (rdv.status, rdv.cancelled_by_party, rdv.cancelled_by_id) == (
            RdvStatus.REVOKED, Canceller.AGENT, world["agent_id"])
        assert committed[0].by == Canceller.AGENT


@pytest.mark.parametrize("first", ["agent", "colleague"])
def test_two_agents_cancelling_at_the_same_moment_cancel_it_once_and_the_family_is_told_once(live_rdv, first):
    """Whichever goes first, the second finds the rdv cancelled: its status and reason are not written over, and
    the family gets one cancellation notice per address, not two."""
    app, base, world = live_rdv

    responses, committed = race(app, api_cancel(base, world, "agent", "revoked"),
                                api_cancel(base, world, "colleague", "excused"), first=first)

    codes = {who: response.status_code for who, response in zip(("agent", "colleague"), responses)}
    assert codes[first] == 200 and sorted(codes.values()) == [200, 409], codes
    loser = next(response for who, response in zip(("agent", "colleague"), responses) if who != first)
    assert loser.json()["message"] == "Ce rendez-vous est déjà annulé."
    assert len(committed) == 1
    rdv, freed, live = the_rdv(app, world)
    assert rdv.status == (RdvStatus.REVOKED if first == "agent" else RdvStatus.EXCUSED)
    assert rdv.revision == world["revision"] + 1 and freed == 1 and live == 0
    with app.app_context():
        notices = db.session.scalars(select(Message).where(Message.kind == MessageKind.CANCELLED)).all()
        # Only an rdv revoked by the service is announced; one per address (SMS and e-mail).
        assert len(notices) == (2 if first == "agent" else 0)
        db.session.remove()
