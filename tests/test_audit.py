"""The audit trail: every change to an rdv or a usager says who made it, through what, and when — to admins only,
and without the personal data of the families."""
from __future__ import annotations

import html
import json
import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from lapins import booking
from lapins.booking import book_rdv, cancel_rdv
from lapins.audit import acting
from lapins.models import Message, MessageKind, Rdv, RdvStatus, Role
from lapins.models.audit import AuditAction, AuditChannel, AuditEvent, AuditObject, Party
from lapins.models.rdvs import CancellationChannel
from lapins.notifications import outbox
from lapins.notifications.links import rdv_token
from lapins.notifications.webhooks import INBOUND_PATH
from tests.conftest import csrf_token_from

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)  # Monday 2 March 2026, 08:00 in Paris
TUESDAY = date(2026, 3, 3)
PHONE, NEW_PHONE = "+33612345678", "+33698765432"
PUBLIC_URL = "https://rdv.pmi.example.fr"
SENDER = "+33757000001"


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def clinic(factories):
    organisation = factories.OrganisationFactory(name="PMI Belleville", territory__sms_sender=SENDER,
                                                 territory__sms_takes_replies=True)
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT,
                                   first_name="Claire", last_name="Martin")
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN,
                                   first_name="Sophie", last_name="Chef")
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=NOW.date(), motifs=[motif], start_time=time(9),
                           end_time=time(17), weekdays=0b0011111)
    usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Awa", last_name="Diallo", phone=PHONE, sms_consent=True)
    # An admin of another organisation of the same territory, and one of another territory.
    neighbour = factories.AgentFactory(organisation=factories.OrganisationFactory(territory=organisation.territory),
                                       organisation__role=Role.ADMIN)
    stranger = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.ADMIN)

    def rdv(usager=usager, day: date = TUESDAY, hour: int = 10, minute: int = 0):
        return book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[usager], lieu=lieu,
                        starts_at=datetime.combine(day, time(hour, minute), PARIS))

    return type("Clinic", (), dict(organisation=organisation, lieu=lieu, motif=motif, agent=agent, admin=admin,
                                   usager=usager, neighbour=neighbour, stranger=stranger, rdv=staticmethod(rdv)))


def events_of(obj, db) -> list[AuditEvent]:
    db.session.expire_all()
    kind = AuditObject.RDV if isinstance(obj, Rdv) else AuditObject.USAGER
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == kind,
                                                            AuditEvent.object_id == obj.id).order_by(AuditEvent.id)))


def change(event: AuditEvent, field: str) -> dict | None:
    return next((item for item in event.changes if item["field"] == field), None)


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


# --- Recording ---------------------------------------------------------------------------------------------------

def test_an_agent_booking_from_the_form_is_recorded_with_the_agent_the_time_and_the_people(client, auth, clinic, db):
    auth.login(clinic.agent)
    page = client.get(f"/rdvs/nouveau?usager_id={clinic.usager.id}&agent_id={clinic.agent.id}")
    response = client.post("/rdvs/nouveau", data={
        "csrf_token": csrf_token_from(page.get_data(as_text=True)), "usager_ids": [clinic.usager.id],
        "motif_id": clinic.motif.id, "lieu_id": clinic.lieu.id, "agent_ids": [clinic.agent.id], "day": "2026-03-03",
        "start_time": "09:30", "duration": "", "notes": "Allergie aux arachides"})
    assert response.status_code == 302
    rdv = db.session.scalar(select(Rdv))

    [event] = events_of(rdv, db)
    assert event.action == AuditAction.CREATED and event.occurred_at == NOW
    assert (event.party, event.agent_id, event.via) == (Party.AGENT, clinic.agent.id, AuditChannel.AGENDA)
    assert event.organisation_id == clinic.organisation.id and event.territory_id == clinic.organisation.territory_id
    assert change(event, "starts_at")["new"] == datetime(2026, 3, 3, 9, 30, tzinfo=PARIS).astimezone(timezone.utc).isoformat()
    assert change(event, "agents") == {"field": "agents", "added": [clinic.agent.id], "removed": []}
    assert change(event, "usagers") == {"field": "usagers", "added": [clinic.usager.id], "removed": []}
    assert change(event, "notes") == {"field": "notes"}  # that there are notes, never what they say
    assert "arachides" not in json.dumps(event.changes)


def test_moving_an_rdv_by_drag_and_drop_records_the_old_and_new_times(client, auth, clinic, db):
    rdv = clinic.rdv(hour=10)
    auth.login(clinic.agent)
    token = csrf_token_from(client.get(f"/agenda/agents/{clinic.agent.id}").get_data(as_text=True))
    response = client.post(f"/agenda/api/rdvs/{rdv.id}/deplacer", json={"starts_at": "2026-03-03T11:00:00"},
                           headers={"X-CSRFToken": token})
    assert response.status_code == 200

    created, moved = events_of(rdv, db)
    assert created.action == AuditAction.CREATED
    assert moved.action == AuditAction.MOVED and (moved.party, moved.agent_id) == (Party.AGENT, clinic.agent.id)
    assert change(moved, "starts_at") == {
        "field": "starts_at", "old": datetime(2026, 3, 3, 10, tzinfo=PARIS).astimezone(timezone.utc).isoformat(),
        "new": datetime(2026, 3, 3, 11, tzinfo=PARIS).astimezone(timezone.utc).isoformat()}
    assert change(moved, "agents") is None  # the same agent

    auth.logout()
    auth.login(clinic.admin)
    page = text_of(client.get(f"/rdvs/{rdv.id}/historique"))
    assert "Déplacement" in page and "Claire Martin (depuis l'agenda)" in page
    assert "début : mardi 3 mars 2026 à 10h00 → mardi 3 mars 2026 à 11h00" in page  # Paris time


def test_handing_an_rdv_to_a_colleague_records_the_agents_who_left_and_came(client, auth, clinic, factories, db):
    colleague = factories.AgentFactory(organisation=clinic.organisation, first_name="Nadia", last_name="Benali")
    factories.PlageFactory(agent=colleague, lieu=clinic.lieu, first_day=NOW.date(), motifs=[clinic.motif],
                           start_time=time(9), end_time=time(17), weekdays=0b0011111)
    rdv = clinic.rdv()
    booking.move_rdv(actor=clinic.agent, rdv=rdv, starts_at=rdv.starts_at, agents=[colleague])

    moved = events_of(rdv, db)[-1]
    assert moved.action == AuditAction.MOVED
    assert change(moved, "agents") == {"field": "agents", "added": [colleague.id], "removed": [clinic.agent.id]}


def test_editing_a_phone_says_it_changed_and_keeps_neither_number(client, auth, clinic, db):
    auth.login(clinic.agent)
    path = f"/usagers/{clinic.usager.id}/modifier"
    response = client.post(path, data={
        "csrf_token": csrf_token_from(client.get(path).get_data(as_text=True)), "first_name": "Awa",
        "last_name": "Diallo", "birth_date": "", "phone": "06 98 76 54 32", "email": "", "sms_consent": "y"})
    assert response.status_code == 302

    event = events_of(clinic.usager, db)[-1]
    assert event.action == AuditAction.UPDATED and event.changes == [{"field": "phone"}]
    assert (event.party, event.agent_id) == (Party.AGENT, clinic.agent.id)
    stored = json.dumps(event.changes)
    assert "98765432" not in stored and "12345678" not in stored

    auth.logout()
    auth.login(clinic.admin)
    page = text_of(client.get(f"/usagers/{clinic.usager.id}/historique"))
    assert "téléphone modifié" in page
    assert "06 98 76 54 32" not in page and "06 12 34 56 78" not in page and "98765432" not in page


def test_the_family_cancelling_from_its_link_is_recorded_as_the_family_via_the_link(client, clinic, db):
    rdv = clinic.rdv()
    url = f"/r/{rdv_token(rdv.id)}"
    client.post(f"{url}/verifier", data={"csrf_token": csrf_token_from(client.get(url).get_data(as_text=True)),
                                         "letters": "Dia"})
    done = client.post(f"{url}/annuler", data={"csrf_token": csrf_token_from(client.get(url).get_data(as_text=True)),
                                               "reason": "Mon fils Enzo est malade", "confirme": "oui"})
    assert done.status_code == 302

    created, cancelled = events_of(rdv, db)
    assert cancelled.action == AuditAction.CANCELLED
    assert (cancelled.party, cancelled.agent_id, cancelled.via) == (Party.FAMILY, None, AuditChannel.LINK)
    assert change(cancelled, "status") == {"field": "status", "old": "unknown", "new": "excused"}
    assert change(cancelled, "cancelled_via")["new"] == "link"
    assert change(cancelled, "cancel_reason") == {"field": "cancel_reason"}  # free text: never kept
    assert "Enzo" not in json.dumps(cancelled.changes)
    assert len(events_of(rdv, db)) == 2  # the conditional UPDATE and the change made with it: one event


def test_an_agent_cancelling_is_the_agent_from_the_agenda(clinic, db):
    rdv = clinic.rdv()
    cancel_rdv(actor=clinic.admin, rdv=rdv, status=RdvStatus.REVOKED, reason="Agent malade")

    cancelled = events_of(rdv, db)[-1]
    assert cancelled.action == AuditAction.CANCELLED
    assert (cancelled.party, cancelled.agent_id, cancelled.via) == (Party.AGENT, clinic.admin.id, AuditChannel.AGENDA)


@pytest.fixture()
def inbound(app, client, twilio_fake, twilio_app_config):
    """Text the territory's number as Twilio would post it."""
    saved = {key: app.config.get(key) for key in [*twilio_app_config, "PUBLIC_URL"]}
    app.config.update(twilio_app_config, PUBLIC_URL=PUBLIC_URL)
    app.extensions.pop("lapins.sms_backend", None)

    def send(body: str, from_: str = PHONE) -> str:
        request = twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_=from_, body=body, to=SENDER)
        response = client.post(request.path, data=request.data, headers=request.headers)
        assert response.status_code == 200
        return response.get_data(as_text=True)

    yield send
    app.config.update(saved)
    app.extensions.pop("lapins.sms_backend", None)


def test_annuler_by_sms_is_the_family_by_sms(inbound, clinic, db):
    rdv = clinic.rdv()
    assert "est annulé" in inbound("ANNULER")

    cancelled = events_of(rdv, db)[-1]
    assert cancelled.action == AuditAction.CANCELLED
    assert (cancelled.party, cancelled.agent_id, cancelled.via) == (Party.FAMILY, None, AuditChannel.SMS)


def test_oui_by_sms_is_a_confirmation_by_the_family(inbound, clinic, db):
    rdv = clinic.rdv()
    inbound("OUI")

    confirmed = events_of(rdv, db)[-1]
    assert confirmed.action == AuditAction.CONFIRMED and confirmed.party == Party.FAMILY
    assert confirmed.via == AuditChannel.SMS


def test_stop_by_sms_records_the_withdrawn_consent_of_every_usager_with_the_number(inbound, clinic, factories, db):
    sister = factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation],
                                     phone=PHONE, sms_consent=True)
    inbound("STOP")

    for usager in (clinic.usager, sister):
        event = events_of(usager, db)[-1]
        assert event.action == AuditAction.UPDATED and (event.party, event.via) == (Party.FAMILY, AuditChannel.SMS)
        assert event.changes == [{"field": "sms_consent", "old": True, "new": False}]


def test_accepting_a_waiting_list_offer_is_the_family_through_the_offer(client, clinic, factories, db):
    from lapins.models.waitlist import WaitlistEntry

    freed = clinic.rdv()
    waiting = factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation],
                                      last_name="Attente", phone="+33611111111")
    factories.WaitlistEntryFactory(usager=waiting, motif=clinic.motif, organisation=clinic.organisation)
    cancel_rdv(actor=None, rdv=freed, status=RdvStatus.EXCUSED, reason=None, via=CancellationChannel.LINK)
    [sms] = db.session.scalars(select(Message).where(Message.kind == MessageKind.OFFER, Message.usager_id == waiting.id))
    link = re.search(r"/o/[0-9a-f]+-[A-Za-z0-9_-]{10}", sms.body).group(0)

    token = csrf_token_from(client.get(link).get_data(as_text=True))
    assert client.post(f"{link}/accepter", data={"csrf_token": token}).status_code == 302

    db.session.expire_all()
    rdv = db.session.scalar(select(Rdv).where(Rdv.id != freed.id))
    [created] = events_of(rdv, db)
    assert created.action == AuditAction.CREATED
    assert (created.party, created.agent_id, created.via) == (Party.FAMILY, None, AuditChannel.OFFER)
    assert change(created, "usagers")["added"] == [waiting.id]
    assert db.session.scalar(select(WaitlistEntry)).status.value == "fulfilled"


def test_a_task_or_a_command_is_the_system_unless_it_says_who_it_acts_for(clinic, db):
    clinic.usager.sms_consent = False
    db.session.commit()
    with acting(party=Party.SYSTEM, via=AuditChannel.API):
        clinic.usager.email_consent = True
        db.session.commit()

    by_system, by_api = events_of(clinic.usager, db)[-2:]
    assert (by_system.party, by_system.agent_id, by_system.via) == (Party.SYSTEM, None, None)
    assert by_api.via == AuditChannel.API


def test_deleting_a_usager_keeps_its_history_without_its_name(clinic, factories, db):
    child = factories.UsagerFactory(territory=clinic.organisation.territory, first_name="Enzo", last_name="Secret")
    child_id = child.id
    db.session.delete(child)
    db.session.commit()

    events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == AuditObject.USAGER,
                                                              AuditEvent.object_id == child_id)
                                     .order_by(AuditEvent.id)))
    assert [event.action for event in events] == [AuditAction.CREATED, AuditAction.DELETED]
    assert "Enzo" not in json.dumps([event.changes for event in events])
    assert "Secret" not in json.dumps([event.changes for event in events])


# --- Nothing half-stored -------------------------------------------------------------------------------------------

def test_a_refused_booking_leaves_no_audit_row(client, auth, clinic, db):
    clinic.rdv(hour=10)
    before = db.session.query(AuditEvent).count()
    with pytest.raises(booking.BookingError):
        clinic.rdv(hour=10, minute=15)  # the agent is busy
    assert db.session.query(AuditEvent).count() == before


def test_a_booking_failing_after_its_flush_takes_its_audit_row_away_with_it(clinic, db, monkeypatch):
    def broken_outbox(rdv, kind, **_):  # called once the rdv is flushed, before the commit
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(outbox, "plan_for_rdv", broken_outbox)
    with pytest.raises(RuntimeError):
        clinic.rdv()
    assert db.session.query(Rdv).count() == 0
    assert db.session.query(AuditEvent).filter(AuditEvent.object_type == AuditObject.RDV).count() == 0


# --- Who sees it ---------------------------------------------------------------------------------------------------

def test_admins_see_the_histories_agents_are_refused_and_other_organisations_do_not_find_them(client, auth, clinic):
    rdv = clinic.rdv()
    pages = [f"/rdvs/{rdv.id}/historique", f"/usagers/{clinic.usager.id}/historique"]

    auth.login(clinic.admin)
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200 and "Historique des modifications" in text_of(response)
    assert "Historique des modifications" in text_of(client.get(f"/rdvs/{rdv.id}"))
    assert "Historique des modifications" in text_of(client.get(f"/usagers/{clinic.usager.id}"))
    auth.logout()

    auth.login(clinic.agent)
    assert [client.get(page).status_code for page in pages] == [403, 403]
    assert client.get("/historique").status_code == 403
    assert "Historique des modifications" not in text_of(client.get(f"/rdvs/{rdv.id}"))
    assert "Historique des modifications" not in text_of(client.get(f"/usagers/{clinic.usager.id}"))
    auth.logout()

    for outsider in (clinic.neighbour, clinic.stranger):
        auth.login(outsider)
        assert [client.get(page).status_code for page in pages] == [404, 404]
        assert client.get(f"/historique?organisation={clinic.organisation.id}").status_code == 404
        assert client.get("/rdvs/999999/historique").status_code == 404
        auth.logout()


def test_the_organisation_page_lists_the_events_of_its_rdvs_and_usagers_only_with_filters(client, auth, clinic,
                                                                                         factories, frozen_time):
    rdv = clinic.rdv()
    elsewhere = factories.UsagerFactory(territory=clinic.organisation.territory,
                                        organisations=[clinic.neighbour.roles[0].organisation], last_name="Ailleurs")
    frozen_time.shift(timedelta(days=1))
    cancel_rdv(actor=clinic.admin, rdv=rdv, status=RdvStatus.REVOKED, reason=None)
    auth.login(clinic.admin)

    page = text_of(client.get("/historique"))
    assert "Annulation" in page and "Création" in page and "Awa Diallo" in page
    assert "Ailleurs" not in page and str(elsewhere.id) not in re.findall(r"Usager n° (\d+)", page)
    assert "Sophie Chef (depuis l'agenda)" in page and "Claire Martin" in page

    only_admin = text_of(client.get(f"/historique?agent={clinic.admin.id}"))
    assert "Annulation" in only_admin and "Création" not in only_admin
    only_usagers = text_of(client.get("/historique?objet=usager"))
    assert "Annulation" not in only_usagers and "Awa Diallo" in only_usagers
    first_day = text_of(client.get("/historique?du=2026-03-02&au=2026-03-02"))
    assert "Création" in first_day and "Annulation" not in first_day
    bad = client.get("/historique?du=demain&objet=lapin")
    assert bad.status_code == 200 and "doit être une date" in text_of(bad) and "Type d'objet inconnu" in text_of(bad)


def test_the_organisation_page_is_paginated(client, auth, clinic, factories, db):
    from lapins.audit.views import PAGE_SIZE

    for number in range(PAGE_SIZE + 5):
        clinic.usager.sms_consent = number % 2 == 0
        db.session.commit()
    auth.login(clinic.admin)
    first = text_of(client.get("/historique?objet=usager"))
    assert "Page suivante" in first and 'href="/historique?' in first
    second = client.get("/historique?objet=usager&page=2")
    assert second.status_code == 200 and text_of(second).count("accepte les SMS") == 6  # 5 changes + the creation
    assert client.get("/historique?page=abc").status_code == 200
