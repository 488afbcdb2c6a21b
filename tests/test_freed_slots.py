"""Créneaux libérés: a cancelled slot shows on the organisation's board until someone takes it again."""
from __future__ import annotations

import html
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from lapins.booking import book_rdv, cancel_rdv
from lapins.models import RdvStatus, Role
from lapins.models.rdvs import CancellationChannel

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)  # Monday, 08:00 in Paris


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def clinic(factories):
    organisation = factories.OrganisationFactory(name="PMI Belleville")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, first_name="Nadia",
                                   last_name="Benali")
    secretary = factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=NOW.date(), motifs=[motif], start_time=time(9),
                           end_time=time(12), weekdays=0b0011111)
    usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation])

    def rdv(day: date, hour: int, minute: int = 0):
        return book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[usager], lieu=lieu,
                        starts_at=datetime.combine(day, time(hour, minute), PARIS))

    return type("Clinic", (), dict(organisation=organisation, lieu=lieu, motif=motif, agent=agent,
                                   secretary=secretary, usager=usager, rdv=staticmethod(rdv)))


def board(client, **query) -> str:
    response = client.get("/creneaux-liberes", query_string=query)
    assert response.status_code == 200
    return html.unescape(response.get_data(as_text=True))


def test_a_cancelled_slot_shows_with_a_link_that_books_it_again(client, auth, clinic):
    rdv = clinic.rdv(date(2026, 3, 4), 10)
    cancel_rdv(actor=None, rdv=rdv, status=RdvStatus.EXCUSED, reason=None, via=CancellationChannel.LINK)
    auth.login(clinic.secretary)
    page = board(client)
    assert "mercredi 4 mars 2026 à 10h00" in page and "Benali" in page and "Annulé par l'usager" in page
    starts = datetime(2026, 3, 4, 10, tzinfo=PARIS).astimezone(timezone.utc).isoformat()
    link = f"/rdvs/nouveau?agent_id={clinic.agent.id}&lieu_id={clinic.lieu.id}&motif_id={clinic.motif.id}"
    assert link in page and starts.replace("+", "%2B") in page
    form = client.get(f"/rdvs/nouveau?agent_id={clinic.agent.id}&lieu_id={clinic.lieu.id}&motif_id={clinic.motif.id}"
                      f"&starts_at={starts.replace('+', '%2B')}").get_data(as_text=True)
    assert 'value="10:00"' in form and 'value="2026-03-04"' in form


def test_a_slot_taken_again_leaves_the_board(client, auth, clinic):
    rdv = clinic.rdv(date(2026, 3, 4), 10)
    cancel_rdv(actor=clinic.agent, rdv=rdv, status=RdvStatus.REVOKED, reason="Agent en formation")
    auth.login(clinic.secretary)
    assert "mercredi 4 mars 2026 à 10h00" in board(client)
    clinic.rdv(date(2026, 3, 4), 10, 15)  # overlaps the freed half hour
    assert "mercredi 4 mars 2026 à 10h00" not in board(client)


def test_the_same_time_cancelled_twice_is_one_slot(client, auth, clinic):
    for _ in range(2):
        rdv = clinic.rdv(date(2026, 3, 4), 10)
        cancel_rdv(actor=clinic.agent, rdv=rdv, status=RdvStatus.EXCUSED, reason=None)
    auth.login(clinic.secretary)
    assert board(client).count("<td>mercredi 4 mars 2026 à 10h00</td>") == 1


def test_past_slots_and_slots_beyond_the_horizon_are_left_out(client, auth, clinic):
    with time_machine.travel(NOW - timedelta(days=1), tick=False):
        past = clinic.rdv(date(2026, 3, 2), 9)  # Monday 09:00, an hour after NOW
    far = clinic.rdv(date(2026, 3, 20), 9)
    for rdv in (past, far):
        cancel_rdv(actor=clinic.agent, rdv=rdv, status=RdvStatus.EXCUSED, reason=None)
    auth.login(clinic.secretary)
    with time_machine.travel(NOW + timedelta(hours=2), tick=False):  # 10:00: the 09:00 slot is gone
        page = board(client)
        assert "lundi 2 mars" not in page and "vendredi 20 mars" not in page
        assert "vendredi 20 mars 2026 à 09h00" in board(client, jours=28)


def test_another_organisations_freed_slots_stay_hidden(client, auth, clinic, factories):
    rdv = clinic.rdv(date(2026, 3, 4), 10)
    cancel_rdv(actor=clinic.agent, rdv=rdv, status=RdvStatus.EXCUSED, reason=None)
    outsider = factories.AgentFactory(organisation=factories.OrganisationFactory(territory=clinic.organisation.territory))
    auth.login(outsider)
    page = board(client)
    assert "mercredi 4 mars" not in page and "Aucun créneau libéré" in page
    assert "mercredi 4 mars" not in board(client, organisation_id=clinic.organisation.id, jours="beaucoup")


def test_the_board_needs_a_signed_in_agent(client, clinic):
    response = client.get("/creneaux-liberes")
    assert response.status_code == 302 and response.location.startswith("/connexion")


def test_a_slot_offered_to_a_waiting_family_says_until_when_it_is_held(client, auth, clinic, factories):
    waiting = factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation],
                                      phone="+33622222222", sms_consent=True)
    factories.WaitlistEntryFactory(usager=waiting, motif=clinic.motif, organisation=clinic.organisation)
    rdv = clinic.rdv(date(2026, 3, 4), 10)
    cancel_rdv(actor=None, rdv=rdv, status=RdvStatus.EXCUSED, reason=None, via=CancellationChannel.LINK)
    auth.login(clinic.secretary)
    assert "Proposé à une famille jusqu'à 08h30" in board(client)  # 30 minutes from 08:00, Paris time
