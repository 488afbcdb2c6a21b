"""The waiting list: agents put a family on it from its page, see and withdraw entries; a family asks for an earlier
slot from its link page."""
from __future__ import annotations

import html
from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from lapins.booking import book_rdv
from lapins.infra.extensions import db
from lapins.models import EntrySource, EntryStatus, Role, WaitlistEntry
from lapins.notifications.links import rdv_token
from tests.conftest import csrf_token_from

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)  # Monday, 09:00 in Paris


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def clinic(factories):
    organisation = factories.OrganisationFactory(name="PMI Belleville")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=NOW.date(), motifs=[motif], start_time=time(9),
                           end_time=time(12), weekdays=0b0011111)
    usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Inès", last_name="Durand")
    stranger = factories.AgentFactory(organisation=factories.OrganisationFactory(territory=organisation.territory))
    return type("Clinic", (), dict(organisation=organisation, lieu=lieu, motif=motif, agent=agent, usager=usager,
                                   stranger=stranger))


def entries() -> list[WaitlistEntry]:
    db.session.expire_all()
    return list(db.session.scalars(select(WaitlistEntry).order_by(WaitlistEntry.id)))


def add(client, clinic, **data):
    page = client.get(f"/usagers/{clinic.usager.id}")
    token = csrf_token_from(page.get_data(as_text=True))
    return client.post(f"/usagers/{clinic.usager.id}/file-d-attente",
                       data={"csrf_token": token, "motif_id": clinic.motif.id, "lieu_id": 0, "priority": 0, **data})


def test_an_agent_puts_a_family_on_the_waiting_list_from_its_page(client, auth, clinic):
    auth.login(clinic.agent)
    page = html.unescape(client.get(f"/usagers/{clinic.usager.id}").get_data(as_text=True))
    assert "File d'attente" in page and "Mettre en file d'attente" in page

    response = add(client, clinic, lieu_id=clinic.lieu.id, priority=3)

    assert response.status_code == 302
    [entry] = entries()
    assert (entry.motif_id, entry.lieu_id, entry.priority, entry.status) == (
        clinic.motif.id, clinic.lieu.id, 3, EntryStatus.ACTIVE)
    assert entry.created_by_id == clinic.agent.id and entry.source == EntrySource.AGENT and entry.rdv_id is None
    assert "priorité 3" in html.unescape(client.get(f"/usagers/{clinic.usager.id}").get_data(as_text=True))
    add(client, clinic)  # twice for one motif: refused, one entry
    assert len(entries()) == 1


def test_a_family_with_an_rdv_of_that_motif_waits_for_an_earlier_slot(client, auth, clinic):
    rdv = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.usager],
                   lieu=clinic.lieu, starts_at=datetime(2026, 3, 13, 10, tzinfo=PARIS))
    auth.login(clinic.agent)
    add(client, clinic)
    assert entries()[0].rdv_id == rdv.id


def test_the_waiting_list_page_shows_the_order_of_offers_and_withdraws(client, auth, clinic, factories):
    later = factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation],
                                    last_name="Zola")
    factories.WaitlistEntryFactory(usager=later, motif=clinic.motif, organisation=clinic.organisation, priority=5)
    factories.WaitlistEntryFactory(usager=clinic.usager, motif=clinic.motif, organisation=clinic.organisation)
    auth.login(clinic.agent)

    page = html.unescape(client.get("/file-d-attente").get_data(as_text=True))

    assert page.index("Zola") < page.index("Durand")  # priority first
    token = csrf_token_from(page)
    first = entries()[0]
    response = client.post(f"/file-d-attente/{first.id}/retirer", data={"csrf_token": token})
    assert response.status_code == 302
    assert entries()[0].status == EntryStatus.WITHDRAWN
    assert "Zola" not in html.unescape(client.get("/file-d-attente").get_data(as_text=True))


def test_an_agent_of_another_organisation_sees_nothing_of_this_waiting_list(client, auth, clinic, factories):
    entry = factories.WaitlistEntryFactory(usager=clinic.usager, motif=clinic.motif, organisation=clinic.organisation)
    auth.login(clinic.stranger)
    assert "Durand" not in client.get("/file-d-attente").get_data(as_text=True)
    assert "Durand" not in client.get(f"/file-d-attente?organisation_id={clinic.organisation.id}").get_data(as_text=True)
    token = csrf_token_from(client.get("/file-d-attente").get_data(as_text=True))
    assert client.post(f"/file-d-attente/{entry.id}/retirer", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/usagers/{clinic.usager.id}/file-d-attente",
                       data={"csrf_token": token, "motif_id": clinic.motif.id}).status_code == 404
    assert entries()[0].status == EntryStatus.ACTIVE


def test_a_family_asks_for_an_earlier_slot_from_its_link_after_the_identity_check(client, clinic):
    rdv = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.usager],
                   lieu=clinic.lieu, starts_at=datetime(2026, 3, 13, 10, tzinfo=PARIS))
    url = f"/r/{rdv_token(rdv.id)}"
    page = client.get(url).get_data(as_text=True)
    assert "plus tôt" not in html.unescape(page)  # not before the check
    token = csrf_token_from(page)
    assert client.post(f"{url}/plus-tot", data={"csrf_token": token}).status_code == 302
    assert entries() == []

    client.post(f"{url}/verifier", data={"csrf_token": token, "letters": "dur"})
    page = html.unescape(client.get(url).get_data(as_text=True))
    assert "Me prévenir d'un créneau plus tôt" in page
    client.post(f"{url}/plus-tot", data={"csrf_token": token})
    client.post(f"{url}/plus-tot", data={"csrf_token": token})  # twice: one entry

    [entry] = entries()
    assert entry.rdv_id == rdv.id and entry.source == EntrySource.FAMILY and entry.usager_id == clinic.usager.id
    assert "C'est noté" in html.unescape(client.get(url).get_data(as_text=True))
