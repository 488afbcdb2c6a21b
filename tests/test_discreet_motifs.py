"""Discreet motifs and motifs « sans notification » (issue 23.2): a discreet motif is never named where someone else
may read — the SMS and e-mails (their calendar file too) actually sent, the dev inbox, the family's page and its ICS,
the agent's calendar feed; a motif without notification sends nothing, and the agent is told on the booking form."""
from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, time, timedelta

import icalendar
import pytest
import time_machine
from sqlalchemy import select

from lapins.api.openapi import PREFIX
from lapins.auth import tokens
from lapins.booking import cancel_rdv, move_rdv
from lapins.calendars import feeds
from lapins.models import (
    Channel, LocationType, Message, MessageKind, MessageStatus, Motif, Rdv, RdvStatus, Role,
)
from lapins.notifications import gsm, outbox
from lapins.notifications.links import rdv_token
from lapins.onboarding import seeding
from tests.conftest import csrf_token_from

pytest_plugins = ["tests.fakes.smtp"]

NOW = datetime(2026, 10, 19, 8, 0, tzinfo=UTC)  # Monday 10:00 in Paris
SECRET = "Contraception d'urgence"
NOTE = "IVG évoquée, ne pas appeler le domicile"


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def clinic(factories, db):
    organisation = factories.OrganisationFactory(name="PMI Nanterre", phone="+33141371000",
                                                 territory__timezone="Europe/Paris", territory__number="92")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Les Pâquerettes",
                                 address="12 rue de la République, 92000 Nanterre", phone="+33141371010")
    motif = factories.MotifFactory(organisation=organisation, name=SECRET, duration_minutes=30, discreet=True)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif], start_time=time(8),
                           end_time=time(18), weekdays=0b1111111)
    young = factories.UsagerFactory(territory=organisation.territory, first_name="Inès", last_name="Morel",
                                    phone="+33612345678", sms_consent=True, email="ines@example.fr",
                                    email_consent=True, organisations=[organisation])
    return type("Clinic", (), dict(organisation=organisation, lieu=lieu, motif=motif, agent=agent, young=young))


def book_in_agenda(client, clinic, day: str = "2026-10-22", hour: str = "09:30"):
    path = f"/rdvs/nouveau?usager_id={clinic.young.id}"
    token = csrf_token_from(client.get(path).get_data(as_text=True))
    response = client.post(path, data={
        "csrf_token": token, "usager_ids": [str(clinic.young.id)], "motif_id": str(clinic.motif.id),
        "lieu_id": str(clinic.lieu.id), "agent_ids": [str(clinic.agent.id)], "day": day, "start_time": hour,
        "notes": NOTE})
    assert response.status_code == 302, html.unescape(response.get_data(as_text=True))[:3000]
    return int(response.headers["Location"].rsplit("/", 1)[1])


def rows(db) -> list[Message]:
    return list(db.session.scalars(select(Message).order_by(Message.id).execution_options(populate_existing=True)))


def assert_unnamed(text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode()
    plain = html.unescape(text).replace("\r\n ", "")  # ICS folds long lines
    assert "contraception" not in plain.lower() and "IVG" not in plain, plain


def test_a_discreet_motif_is_never_named_in_the_sms_emails_their_ics_the_inbox_or_the_family_page(
        client, auth, clinic, db, smtp_app, smtp_server, clock):
    auth.login(clinic.agent)
    rdv_id = book_in_agenda(client, clinic)
    rdv = db.session.get(Rdv, rdv_id)
    move_rdv(actor=clinic.agent, rdv=rdv, starts_at=rdv.starts_at + timedelta(hours=1))
    clock.move_to(rdv.starts_at - timedelta(hours=47))
    outbox.dispatch_due()  # the reminders
    clock.move_to(rdv.starts_at - timedelta(hours=23))
    outbox.dispatch_due()
    cancel_rdv(actor=clinic.agent, rdv=db.session.get(Rdv, rdv_id), status=RdvStatus.REVOKED, reason=None)

    sent = [row for row in rows(db) if row.status == MessageStatus.SENT]
    kinds = {(row.channel, row.kind) for row in sent}
    assert {(Channel.SMS, MessageKind.CREATED), (Channel.EMAIL, MessageKind.CREATED), (Channel.SMS, MessageKind.CHANGED),
            (Channel.SMS, MessageKind.REMINDER), (Channel.SMS, MessageKind.CANCELLED)} <= kinds
    for row in sent:
        assert_unnamed(row.body)
        assert_unnamed(row.subject or "")
        if row.channel == Channel.SMS:
            assert gsm.is_gsm7(row.body) and gsm.segments(row.body) == 1, row.body
            if row.kind != MessageKind.CANCELLED:  # a cancellation gives the number to call instead
                assert "Paquerettes" in row.body  # the lieu (in GSM-7) and the time stay
            assert re.search(r"\d{1,2}h\d\d", row.body), row.body

    # The e-mails as they arrived over SMTP: text, HTML and the calendar file.
    assert len(smtp_server.messages) >= 3
    for message in smtp_server.messages:
        for part in message.walk():
            if part.get_content_maintype() == "text":
                assert_unnamed(part.get_content())
        (ics_part,) = [part for part in message.walk() if part.get_content_type() == "text/calendar"]
        (event,) = icalendar.Calendar.from_ical(ics_part.get_content()).walk("VEVENT")
        assert str(event["SUMMARY"]).startswith("Rendez-vous PMI")

    auth.login(clinic.agent)  # the session ended while the clock ran on to the reminders
    inbox = client.get("/dev/messages")
    assert inbox.status_code == 200 and "Pâquerettes" in html.unescape(inbox.get_data(as_text=True))
    assert_unnamed(inbox.get_data(as_text=True))

    family = client.get(f"/r/{rdv_token(rdv_id)}")
    assert family.status_code == 200 and "Rendez-vous PMI" in family.get_data(as_text=True)
    assert_unnamed(family.get_data(as_text=True))
    family_ics = client.get(f"/r/{rdv_token(rdv_id)}/rendez-vous.ics")
    assert family_ics.status_code == 200
    assert_unnamed(family_ics.data)

    # Agents still read it where only they look.
    assert SECRET in html.unescape(client.get(f"/rdvs/{rdv_id}").get_data(as_text=True))


def test_the_agents_calendar_feed_never_names_a_discreet_motif_even_with_family_names(client, auth, clinic, db):
    auth.login(clinic.agent)
    rdv_id = book_in_agenda(client, clinic)
    token = feeds.issue(clinic.agent)
    feeds.set_family_names(clinic.agent.id, True)
    db.session.commit()
    response = client.get(f"/calendrier/{token}.ics")
    assert response.status_code == 200
    events = icalendar.Calendar.from_ical(response.data).walk("VEVENT")
    assert [str(event["X-LAPINS-RDV"]) for event in events] == [str(rdv_id)]
    assert "Pâquerettes" in str(events[0]["SUMMARY"]) and "Morel" in str(events[0]["SUMMARY"])
    assert_unnamed(response.data)

    clinic.motif.discreet = False  # the same rdv of an ordinary motif says what it is for
    db.session.commit()
    assert "contraception" in client.get(f"/calendrier/{token}.ics").data.decode().replace("\r\n ", "").lower()


def test_the_sms_preview_of_the_booking_form_says_rendez_vous_pmi(client, auth, clinic):
    auth.login(clinic.agent)
    preview = client.get(f"/rdvs/apercu-sms?motif_id={clinic.motif.id}&lieu_id={clinic.lieu.id}&day=2026-10-22"
                         f"&start_time=09:30&usager_ids={clinic.young.id}")
    text = html.unescape(preview.get_data(as_text=True))
    assert "Paquerettes" in text and "Motif discret" in text
    sms = re.search(r"data-sms-text>(.*?)</p>", text, re.S).group(1)
    assert "contraception" not in sms.lower()


def test_a_motif_without_notification_plans_nothing_and_the_booking_form_warns(client, auth, clinic, db):
    clinic.motif.notify, clinic.motif.discreet = False, False
    db.session.commit()
    auth.login(clinic.agent)
    form = html.unescape(client.get(f"/rdvs/nouveau?usager_id={clinic.young.id}&motif_id={clinic.motif.id}")
                         .get_data(as_text=True))
    assert "sans notification" in form and "ni SMS ni courriel" in form
    preview = html.unescape(client.get(f"/rdvs/apercu-sms?motif_id={clinic.motif.id}&day=2026-10-22"
                                       f"&start_time=09:30&usager_ids={clinic.young.id}").get_data(as_text=True))
    assert "sans notification" in preview and "data-sms-text" not in preview

    rdv_id = book_in_agenda(client, clinic)
    rdv = db.session.get(Rdv, rdv_id)
    move_rdv(actor=clinic.agent, rdv=rdv, starts_at=rdv.starts_at + timedelta(hours=1))
    detail = client.get(f"/rdvs/{rdv_id}").get_data(as_text=True)
    reminded = client.post(f"/rdvs/{rdv_id}/rappel", data={"csrf_token": csrf_token_from(detail)},
                           follow_redirects=True)
    assert "sans notification" in html.unescape(reminded.get_data(as_text=True))
    cancel_rdv(actor=clinic.agent, rdv=db.session.get(Rdv, rdv_id), status=RdvStatus.REVOKED, reason=None)
    assert rows(db) == []  # no confirmation, reminder (even by hand), change or cancellation: not even a skipped row


def test_the_motif_form_explains_both_and_saves_discreet(client, auth, factories, db):
    organisation = factories.OrganisationFactory()
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    auth.login(admin)
    path = f"/admin/organisations/{organisation.id}/motifs/nouveau"
    page = client.get(path)
    assert page.status_code == 200, path
    text = html.unescape(page.get_data(as_text=True))
    assert "Rendez-vous PMI" in text and "sans notification" in text
    response = client.post(path, data={
        "csrf_token": csrf_token_from(text), "name": "Entretien protection de l'enfance", "duration_minutes": "45",
        "location_type": "on_site", "color": "#000091", "cancellation_limit_hours": "4", "move_limit_hours": "24",
        "family_moves_max": "2", "booking_horizon_weeks": "8", "reminder_offsets": "", "notify": "y",
        "discreet": "y", "active": "y"})
    assert response.status_code == 302, html.unescape(response.get_data(as_text=True))[:2000]
    motif = db.session.scalar(select(Motif).where(Motif.organisation_id == organisation.id))
    assert motif.discreet and motif.notify


def test_the_api_says_which_motifs_are_discreet_or_without_notification(client, clinic, db):
    clinic.motif.notify = False
    db.session.commit()
    _, token = tokens.create(clinic.agent, "Logiciel du centre")
    listed = client.get(f"{PREFIX}/motifs", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200
    (motif,) = listed.json["items"]
    assert (motif["discreet"], motif["notify"]) == (True, False)


def test_the_demo_has_a_discreet_motif_one_without_notification_and_addresses_for_its_home_visits(db):
    with time_machine.travel(datetime(2026, 3, 25, 9, 30, tzinfo=UTC), tick=False):
        seeding.seed_demo()
    motifs = list(db.session.scalars(select(Motif)))
    assert [motif.name for motif in motifs if motif.discreet] == [seeding.DEMO_DISCREET]
    assert [motif.name for motif in motifs if not motif.notify] == [seeding.DEMO_SILENT]
    visits = list(db.session.scalars(select(Rdv).join(Motif).where(Motif.location_type == LocationType.HOME)))
    assert visits and all(rdv.home_address is not None for rdv in visits)
