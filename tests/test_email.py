"""Emails to families, sent over SMTP to a real server on 127.0.0.1: French texts, calendar events, failures."""
from __future__ import annotations

import socket
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import icalendar
import pytest

from lapins.models import LocationType, MessageKind, RdvStatus
from lapins.notifications.backends import PermanentError, TransientError
from lapins.notifications.providers import email_backend
from lapins.notifications.email import SmtpEmailBackend, render_rdv_email
from lapins.notifications.links import family_url

# The fixtures smtp_server, smtp_app_config, smtp_app (a no-op once tests/conftest.py loads the module too).
pytest_plugins = ["tests.fakes.smtp"]

FAMILY = "famille.durand@example.fr"
# Tuesday 24 November 2026, 08:30 UTC: 9 h 30 in Paris (UTC+1), 12 h 30 in La Réunion (UTC+4).
STARTS_AT = datetime(2026, 11, 24, 8, 30, tzinfo=timezone.utc)


@pytest.fixture()
def make_rdv(factories):
    def make(timezone_name: str = "Europe/Paris", number: str | None = None,
             motif_name: str = "Consultation nourrisson", lieu_name: str = "Centre PMI Belleville",
             organisation_name: str = "PMI de Paris Est", child_name: str = "Léa",
             location_type: LocationType = LocationType.ON_SITE, **rdv_fields):
        territory = factories.TerritoryFactory(timezone=timezone_name, **({"number": number} if number else {}))
        organisation = factories.OrganisationFactory(territory=territory, name=organisation_name)
        motif = factories.MotifFactory(organisation=organisation, name=motif_name, location_type=location_type)
        lieu = factories.LieuFactory(organisation=organisation, name=lieu_name, phone="+33140000000",
                                     address="12 rue de la République, 75011 Paris")
        parent = factories.UsagerFactory(territory=territory, first_name="Awa", email=FAMILY, email_consent=True)
        child = factories.UsagerFactory(territory=territory, first_name=child_name, responsible=parent, phone=None)
        fields = {"starts_at": STARTS_AT, "ends_at": STARTS_AT + timedelta(minutes=30), **rdv_fields}
        return factories.RdvFactory(motif=motif, lieu=lieu, usagers=[child], **fields)

    return make


@pytest.fixture()
def send(smtp_app, smtp_server):
    """Renders the email of `kind` about `rdv`, sends it through the configured backend, returns what arrived."""

    def send_email(kind: MessageKind, rdv, message_id: int = 1):
        rendered = render_rdv_email(kind, rdv, family_url(rdv.id))
        email_backend(smtp_app).send(rendered.outgoing(message_id, FAMILY))
        return smtp_server.last

    return send_email


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def html_of(message) -> str:
    return message.get_body(("html",)).get_content()


def calendar_part(message):
    parts = [part for part in message.walk() if part.get_content_type() == "text/calendar"]
    assert len(parts) == 1, "one text/calendar alternative expected"
    return parts[0]


def event_of(message):
    calendar = icalendar.Calendar.from_ical(calendar_part(message).get_content())
    (event,) = calendar.walk("VEVENT")
    return calendar, event


def test_confirmation_arrives_in_french_with_text_html_and_the_family_link(make_rdv, send, smtp_server):
    rdv = make_rdv()
    received = send(MessageKind.CREATED, rdv)
    message, link = received.message, family_url(rdv.id)

    assert received.rcpt_tos == (FAMILY,)
    assert received.mail_from == "ne-pas-repondre@pmi.example.fr"
    assert message["Subject"] == "Rendez-vous confirmé : mardi 24 novembre à 9 h 30"
    assert b"=?utf-8?" in received.raw.split(b"\r\n\r\n")[0].lower()  # the accent travels RFC 2047-encoded
    assert message["To"] == FAMILY
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"]

    text = text_of(message)
    assert text.startswith("Bonjour,\n")
    assert "Votre rendez-vous est confirmé." in text
    assert "Date : mardi 24 novembre 2026 à 9 h 30" in text
    assert "Motif : Consultation nourrisson" in text
    assert "Pour : Léa" in text
    assert "Lieu : Centre PMI Belleville, 12 rue de la République, 75011 Paris" in text
    assert "Téléphone : 01 40 00 00 00" in text
    assert f"Voir, ajouter à mon agenda ou annuler : {link}" in text
    assert "PMI de Paris Est" in text
    assert "envoyé automatiquement" in text

    html = html_of(message)
    assert f'href="{link}"' in html
    assert "mardi 24 novembre 2026 à 9 h 30" in html
    assert "Centre PMI Belleville" in html and "Léa" in html
    assert "<img" not in html


def test_the_time_is_the_territorys_local_time(make_rdv, send):
    paris = send(MessageKind.REMINDER, make_rdv(), message_id=1).message
    reunion = send(MessageKind.REMINDER, make_rdv("Indian/Reunion", number="974"), message_id=2).message

    assert paris["Subject"] == "Rappel : rendez-vous mardi 24 novembre à 9 h 30"
    assert reunion["Subject"] == "Rappel : rendez-vous mardi 24 novembre à 12 h 30"
    assert "mardi 24 novembre 2026 à 12 h 30" in text_of(reunion)
    assert "mardi 24 novembre 2026 à 12 h 30" in html_of(reunion)
    # The calendar event is the same instant for both: calendar apps place it in their own zone.
    assert event_of(paris)[1].decoded("dtstart") == event_of(reunion)[1].decoded("dtstart") == STARTS_AT


def test_confirmation_carries_a_calendar_event_to_add(make_rdv, send):
    rdv = make_rdv()
    message = send(MessageKind.CREATED, rdv).message

    part = calendar_part(message)
    assert part.get_param("method") == "PUBLISH"
    calendar, event = event_of(message)
    assert calendar["method"] == "PUBLISH"
    assert calendar["prodid"] == "-//Lapins//PMI//FR"
    assert event.decoded("dtstart") == rdv.starts_at
    assert event.decoded("dtend") == rdv.ends_at
    assert "DTSTART:20261124T083000Z" in part.get_content()
    assert event["uid"] == f"rdv-{rdv.id}@127.0.0.1"
    assert event["sequence"] == 0
    assert event["status"] == "CONFIRMED"
    assert event["summary"] == "Consultation nourrisson — PMI de Paris Est"
    assert event["location"] == "Centre PMI Belleville, 12 rue de la République, 75011 Paris"
    assert event["url"] == family_url(rdv.id)

    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "invite.ics"
    assert icalendar.Calendar.from_ical(attachment.get_content()).walk("VEVENT")[0]["uid"] == event["uid"]


def test_a_change_updates_the_same_calendar_event(make_rdv, send, db):
    rdv = make_rdv()
    created = event_of(send(MessageKind.CREATED, rdv, message_id=1).message)[1]

    rdv.starts_at, rdv.ends_at = STARTS_AT + timedelta(days=1), STARTS_AT + timedelta(days=1, minutes=30)
    rdv.revision += 1
    db.session.commit()
    received = send(MessageKind.CHANGED, rdv, message_id=2).message
    changed = event_of(received)[1]

    assert changed["uid"] == created["uid"]
    assert changed["sequence"] == 1 == rdv.revision
    assert changed.decoded("dtstart") == STARTS_AT + timedelta(days=1)
    assert received["Subject"] == "Rendez-vous modifié : mercredi 25 novembre à 9 h 30"
    assert "Votre rendez-vous a changé." in text_of(received)


def test_a_cancellation_by_the_service_cancels_the_calendar_event(make_rdv, send, db):
    rdv = make_rdv()
    uid = event_of(send(MessageKind.CREATED, rdv, message_id=1).message)[1]["uid"]

    rdv.status, rdv.revision = RdvStatus.REVOKED, rdv.revision + 1
    db.session.commit()
    message = send(MessageKind.CANCELLED, rdv, message_id=2).message

    assert message["Subject"] == "Rendez-vous annulé : mardi 24 novembre à 9 h 30"
    assert calendar_part(message).get_param("method") == "CANCEL"
    calendar, event = event_of(message)
    assert calendar["method"] == "CANCEL"
    assert event["status"] == "CANCELLED"
    assert event["uid"] == uid
    assert event["sequence"] == 1
    text = text_of(message)
    assert "le service a dû annuler ce rendez-vous" in text
    assert "Pour prendre un autre rendez-vous, appelez le 01 40 00 00 00." in text
    assert family_url(rdv.id) in text and family_url(rdv.id) in html_of(message)


def test_a_message_sent_again_keeps_its_message_id(make_rdv, send):
    rdv = make_rdv()
    first = send(MessageKind.REMINDER, rdv, message_id=41).message
    again = send(MessageKind.REMINDER, rdv, message_id=41).message
    other = send(MessageKind.REMINDER, rdv, message_id=42).message

    assert first["Message-ID"] == again["Message-ID"] == "<lapins-message-41@pmi.example.fr>"
    assert other["Message-ID"] != first["Message-ID"]


def test_hostile_names_are_escaped_in_html(make_rdv, send):
    hostile = '<script>alert("x")</script>'
    rdv = make_rdv(motif_name=hostile, lieu_name=hostile, organisation_name=hostile, child_name=hostile)
    message = send(MessageKind.CREATED, rdv).message

    html = html_of(message)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert event_of(message)[1]["summary"] == f"{hostile} — {hostile}"


def test_phone_and_home_rdvs_say_where_it_happens(make_rdv, send):
    phone = send(MessageKind.REMINDER, make_rdv(location_type=LocationType.PHONE), message_id=1).message
    home = send(MessageKind.REMINDER, make_rdv(location_type=LocationType.HOME), message_id=2).message

    assert "Rendez-vous téléphonique : nous vous appellerons." in text_of(phone)
    assert "Rendez-vous téléphonique : nous vous appellerons." in html_of(phone)
    assert "Centre PMI" not in text_of(phone)
    assert "Lieu : visite à domicile" in text_of(home)
    assert event_of(home)[1]["location"] == "Visite à domicile"


def test_a_refused_mailbox_is_a_permanent_error(make_rdv, send, smtp_server):
    rdv = make_rdv()
    smtp_server.refuse_next_recipient(550)

    with pytest.raises(PermanentError) as failure:
        send(MessageKind.CREATED, rdv)

    assert failure.value.code == "550"
    assert FAMILY not in failure.value.message
    assert smtp_server.received == []


def test_a_deferred_recipient_is_a_transient_error(make_rdv, send, smtp_server):
    rdv = make_rdv()
    smtp_server.refuse_next_recipient(451)

    with pytest.raises(TransientError) as failure:
        send(MessageKind.CREATED, rdv)

    assert failure.value.code == "451"
    assert smtp_server.received == []
    assert send(MessageKind.CREATED, rdv).rcpt_tos == (FAMILY,)  # the next try goes through


@contextmanager
def connections_tried():
    """The addresses this process tries to connect a socket to meanwhile (Python's audit event socket.connect)."""
    tried: list = []
    _CONNECTS.append(tried)
    try:
        yield tried
    finally:
        _CONNECTS.remove(tried)


_CONNECTS: list[list] = []


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect" and _CONNECTS:
        for tried in _CONNECTS:
            tried.append(args[1])


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one only records while a test asks it to


def test_a_closed_port_is_a_transient_error_at_once(make_rdv, app, smtp_app_config):
    """At once: one connection refused, no retry and no waiting for the timeout (set long here, so that waiting
    for it would hang the test rather than pass it); the outbox retries later."""
    with socket.socket() as probe:  # a port nobody listens on any more
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    backend = SmtpEmailBackend.from_config({**smtp_app_config, "MAIL_PORT": closed_port, "MAIL_TIMEOUT_SECONDS": 600})
    rendered = render_rdv_email(MessageKind.CREATED, make_rdv(), "https://rdv.example.fr/r/1-abc")

    with connections_tried() as tried, pytest.raises(TransientError) as failure:
        backend.send(rendered.outgoing(1, FAMILY))

    assert [address[1] for address in tried] == [closed_port]
    assert "injoignable" in failure.value.message


def test_a_login_the_server_cannot_take_is_a_configuration_problem(make_rdv, app, smtp_app_config, smtp_server):
    backend = SmtpEmailBackend.from_config({**smtp_app_config, "MAIL_USERNAME": "lapins", "MAIL_PASSWORD": "secret"})
    rendered = render_rdv_email(MessageKind.CREATED, make_rdv(), "https://rdv.example.fr/r/1-abc")

    with pytest.raises(TransientError) as failure:
        backend.send(rendered.outgoing(1, FAMILY))

    assert "configuration" in failure.value.message
    assert "secret" not in repr(backend)
    assert smtp_server.received == []


def test_an_invalid_address_is_refused_before_connecting(make_rdv, send, app, smtp_app_config):
    backend = SmtpEmailBackend.from_config(smtp_app_config)
    rendered = render_rdv_email(MessageKind.CREATED, make_rdv(), "https://rdv.example.fr/r/1-abc")

    for address in ("pas-une-adresse", "a@b.fr\r\nBcc: autre@example.fr"):
        with pytest.raises(PermanentError):
            backend.send(rendered.outgoing(1, address))


def test_an_unknown_security_mode_is_refused_at_start(smtp_app_config):
    with pytest.raises(RuntimeError, match="MAIL_SECURITY"):
        SmtpEmailBackend.from_config({**smtp_app_config, "MAIL_SECURITY": "ssl"})
