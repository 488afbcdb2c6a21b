"""What agents see of the messages sent to families: an rdv's history, a reminder by hand, a territory's figures."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from lapins.booking import book_rdv
from lapins.models import Channel, Message, MessageKind, MessageStatus, Role
from tests.conftest import AuthActions, csrf_token_from

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)  # Monday 10:00 in Paris


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def clinic(factories):
    organisation = factories.OrganisationFactory(territory__number="92", territory__name="Hauts-de-Seine")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif],
                           start_time=time(8), end_time=time(18), weekdays=0b1111111)
    usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Awa", last_name="Diallo", phone="+33612345678", sms_consent=True)
    rdv = book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[usager], lieu=lieu,
                   starts_at=datetime(2026, 10, 23, 9, 30, tzinfo=PARIS))
    return type("Clinic", (), dict(organisation=organisation, territory=organisation.territory, lieu=lieu,
                                   motif=motif, agent=agent, admin=admin, usager=usager, rdv=rdv))


def test_the_rdv_page_shows_what_the_family_was_sent(client, auth, clinic):
    auth.login(clinic.agent)
    page = client.get(f"/rdvs/{clinic.rdv.id}").get_data(as_text=True)
    assert "Messages envoyés à la famille" in page
    assert "Confirmation" in page and "Envoyé" in page  # the confirmation left at booking time
    assert "Rappel" in page and "Programmé" in page and "mercredi 21 octobre 2026 à 09h30" in page


def test_an_agent_sends_a_reminder_by_hand(client, auth, clinic, db):
    auth.login(clinic.agent)
    page = client.get(f"/rdvs/{clinic.rdv.id}").get_data(as_text=True)
    response = client.post(f"/rdvs/{clinic.rdv.id}/rappel", data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 302
    assert "Rappel envoyé" in client.get(response.location).get_data(as_text=True)
    manual = db.session.scalar(select(Message).where(Message.created_by_id == clinic.agent.id))
    assert manual.kind == MessageKind.REMINDER and manual.channel == Channel.SMS
    assert manual.status == MessageStatus.SENT and "rappel" in manual.body.lower()


def test_a_reminder_asked_at_night_waits_for_the_morning(client, auth, clinic, db, frozen_time):
    frozen_time.move_to(datetime(2026, 10, 20, 21, 0, tzinfo=PARIS))
    auth.login(clinic.agent)
    page = client.get(f"/rdvs/{clinic.rdv.id}").get_data(as_text=True)
    response = client.post(f"/rdvs/{clinic.rdv.id}/rappel", data={"csrf_token": csrf_token_from(page)},
                           follow_redirects=True)
    assert "pas de SMS la nuit, il partira à 08h00" in response.get_data(as_text=True)
    manual = db.session.scalar(select(Message).where(Message.created_by_id == clinic.agent.id))
    assert manual.status == MessageStatus.PENDING


def test_the_reminder_button_needs_the_csrf_token_and_the_right_organisation(client, auth, clinic, db, factories):
    auth.login(clinic.agent)
    client.post(f"/rdvs/{clinic.rdv.id}/rappel", data={})
    assert db.session.scalar(select(Message).where(Message.created_by_id.is_not(None))) is None

    stranger = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.ADMIN)
    other = AuthActions(client)
    other.logout()
    other.login(stranger)
    token = csrf_token_from(client.get("/rdvs/nouveau").get_data(as_text=True))
    assert client.post(f"/rdvs/{clinic.rdv.id}/rappel", data={"csrf_token": token}).status_code == 404
    assert client.get(f"/rdvs/{clinic.rdv.id}").status_code == 404


def test_territory_figures_are_for_its_admins(client, auth, clinic, db):
    failed = Message(territory_id=clinic.territory.id, rdv_id=clinic.rdv.id, usager_id=clinic.usager.id,
                     channel=Channel.SMS, kind=MessageKind.REMINDER, due_at=NOW, status=MessageStatus.UNDELIVERABLE,
                     error="Numéro invalide", error_code="21211")
    clinic.usager.phone_undeliverable_at, clinic.usager.phone_error = NOW, "Numéro invalide"
    db.session.add(failed)
    db.session.commit()

    auth.login(clinic.agent)
    assert client.get(f"/territoires/{clinic.territory.id}/sms").status_code == 403
    auth.logout()
    auth.login(clinic.admin)
    menu = client.get("/sms")  # the administrator's menu item
    assert menu.status_code == 302 and menu.location.endswith(f"/territoires/{clinic.territory.id}/sms")
    page = client.get(menu.location).get_data(as_text=True)
    assert 'aria-current="page">SMS envoyés' in page
    assert "SMS et e-mails envoyés — 92 Hauts-de-Seine" in page
    assert "Awa Diallo" in page and "Numéro invalide" in page
    assert client.get("/territoires/999999/sms").status_code == 404


def test_the_dev_inbox_shows_the_texts_and_does_not_exist_in_production(client, auth, clinic, app):
    auth.login(clinic.agent)
    page = client.get("/dev/messages").get_data(as_text=True)
    assert "Boîte de développement" in page and "+33612345678" in page and "/r/" in page
    app.config["ENV_NAME"] = "production"
    try:
        assert client.get("/dev/messages").status_code == 404
    finally:
        app.config["ENV_NAME"] = "testing"
