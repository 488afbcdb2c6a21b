"""The day-before confirmation round: families at risk are asked to reply OUI in their J-1 reminder; agents see
« À confirmer » per lieu and, after a call, free an unconfirmed slot, which the waiting list gets."""
from __future__ import annotations

import html as html_text
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from lapins.booking import book_rdv
from lapins.infra.extensions import db as _db
from lapins.models import (
    Channel, Message, MessageKind, MessageStatus, Rdv, RdvStatus, Role,
)
from lapins.models.rdvs import Canceller
from lapins.models.waitlist import OfferStatus, SlotOffer
from lapins.notifications import confirmation, outbox, replies
from tests.conftest import csrf_token_from

PARIS = ZoneInfo("Europe/Paris")
UTC = timezone.utc
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=UTC)  # Monday 19 October 2026, 10:00 in Paris
TOMORROW = date(2026, 10, 20)
ASK = "Répondez OUI"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), PARIS).astimezone(UTC)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def clinic(factories):
    territory = factories.TerritoryFactory(sms_sender="+33757000001", sms_takes_replies=True,
                                           sms_confirm_everyone=False, reminder_offsets="72,24")
    organisation = factories.OrganisationFactory(territory=territory, name="PMI Nord")
    lieu = factories.LieuFactory(organisation=organisation, name="PMI Wazemmes", phone=None)
    other_lieu = factories.LieuFactory(organisation=organisation, name="PMI Fives")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif], start_time=time(8),
                           end_time=time(18), weekdays=0b1111111)

    def usager(first_name: str, phone: str):
        return factories.UsagerFactory(territory=territory, organisations=[organisation], first_name=first_name,
                                       last_name="Martin", phone=phone, sms_consent=True)

    def past(usager_, status: RdvStatus, days_ago: int, cancelled_hours_before: int | None = None):
        starts_at = NOW - timedelta(days=days_ago)
        rdv = factories.RdvFactory(motif=motif, lieu=lieu, starts_at=starts_at, status=status, usagers=[usager_])
        if cancelled_hours_before is not None:
            rdv.cancelled_at = starts_at - timedelta(hours=cancelled_hours_before)
            rdv.cancelled_by_party = Canceller.FAMILY
        _db.session.commit()
        return rdv

    def book(usager_, starts_at, where=None):
        return book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[usager_], starts_at=starts_at,
                        lieu=where or lieu, force=where is not None)

    missed = usager("Inès", "+33611111111")
    past(missed, RdvStatus.NOSHOW, 40)
    past(missed, RdvStatus.SEEN, 10)
    late = usager("Yanis", "+33622222222")
    past(late, RdvStatus.SEEN, 60)
    past(late, RdvStatus.EXCUSED, 12, cancelled_hours_before=5)
    early = usager("Chloé", "+33633333333")
    past(early, RdvStatus.EXCUSED, 12, cancelled_hours_before=96)
    since = usager("Noah", "+33644444444")  # cancelled late once, then came: no longer at risk
    past(since, RdvStatus.EXCUSED, 30, cancelled_hours_before=2)
    past(since, RdvStatus.SEEN, 5)
    return type("Clinic", (), dict(territory=territory, organisation=organisation, lieu=lieu, other_lieu=other_lieu,
                                   motif=motif, agent=agent, missed=missed, late=late, early=early, since=since,
                                   book=staticmethod(book), usager=staticmethod(usager)))


def sms_reminders(rdv: Rdv) -> list[Message]:
    return list(_db.session.scalars(select(Message).where(
        Message.rdv_id == rdv.id, Message.kind == MessageKind.REMINDER, Message.channel == Channel.SMS,
        Message.status == MessageStatus.PENDING).order_by(Message.due_at)))


# --- The risk rule and the J-1 reminder ----------------------------------------------------------------------------

def test_a_past_noshow_or_a_last_rdv_cancelled_late_puts_a_family_at_risk(clinic):
    found = confirmation.risks([clinic.missed.id, clinic.late.id, clinic.early.id, clinic.since.id], before=NOW)
    assert {usager_id: risk.why for usager_id, risk in found.items()} == {
        clinic.missed.id: "noshow", clinic.late.id: "late_cancellation"}


def test_only_the_j1_reminder_of_a_family_at_risk_asks_to_reply_oui(clinic):
    risky = clinic.book(clinic.missed, at(date(2026, 10, 23), 10))
    safe = clinic.book(clinic.early, at(date(2026, 10, 23), 11))
    j3, j1 = (outbox.compose_sms(message) for message in sms_reminders(risky))
    assert ASK not in j3 and ASK in j1
    assert all(ASK not in outbox.compose_sms(message) for message in sms_reminders(safe))


def test_a_late_canceller_is_asked_too(clinic):
    rdv = clinic.book(clinic.late, at(date(2026, 10, 23), 10))
    assert ASK in outbox.compose_sms(sms_reminders(rdv)[-1])


def test_a_territory_asking_everyone_asks_in_every_reminder(clinic):
    clinic.territory.sms_confirm_everyone = True
    _db.session.commit()
    rdv = clinic.book(clinic.early, at(date(2026, 10, 23), 10))
    assert all(ASK in outbox.compose_sms(message) for message in sms_reminders(rdv))


def test_nobody_is_asked_where_replies_cannot_reach_the_territory(clinic):
    clinic.territory.sms_takes_replies, clinic.territory.sms_sender = False, "PMI59"
    _db.session.commit()
    rdv = clinic.book(clinic.missed, at(date(2026, 10, 23), 10))
    assert all(ASK not in outbox.compose_sms(message) for message in sms_reminders(rdv))


# --- « À confirmer » ---------------------------------------------------------------------------------------------

@pytest.fixture()
def tomorrow(clinic):
    rdvs = dict(
        confirmed=clinic.book(clinic.early, at(TOMORROW, 9)),
        risky=clinic.book(clinic.missed, at(TOMORROW, 10)),
        failed=clinic.book(clinic.since, at(TOMORROW, 11)),
        elsewhere=clinic.book(clinic.late, at(TOMORROW, 14), where=clinic.other_lieu),
        later=clinic.book(clinic.late, at(date(2026, 10, 21), 9)),
    )
    assert replies.answer(clinic.early.phone, [clinic.territory.id], replies.parse("OUI")).startswith("Merci")
    failed = sms_reminders(rdvs["failed"])[0]
    failed.status, failed.error = MessageStatus.UNDELIVERABLE, "Numéro inconnu de l'opérateur"
    _db.session.commit()
    return type("Tomorrow", (), rdvs)


def page(client, clinic) -> str:
    response = client.get(f"/a-confirmer/lieux/{clinic.lieu.id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def row(html: str, rdv: Rdv) -> str:
    start = html.index(f'data-rdv="{rdv.id}"')
    return html_text.unescape(html[start:html.index("</tr>", start)])


def test_the_list_shows_tomorrows_rdvs_of_the_lieu_with_who_confirmed(client, auth, clinic, tomorrow):
    auth.login(clinic.agent)
    html = page(client, clinic)
    assert "mardi 20 octobre 2026" in html
    assert "Confirmé" in row(html, tomorrow.confirmed) and "Libérer" not in row(html, tomorrow.confirmed)
    risky = row(html, tomorrow.risky)
    assert "Pas encore confirmé" in risky and "Absent le 09/09/2026" in risky
    assert 'href="tel:+33611111111"' in risky and "Libérer" in risky
    failed = row(html, tomorrow.failed)
    assert "Échec d'envoi" in failed and "Numéro inconnu de l'opérateur" in failed
    assert "Confirmation non demandée" in failed
    assert f'data-rdv="{tomorrow.elsewhere.id}"' not in html and f'data-rdv="{tomorrow.later.id}"' not in html
    index = client.get("/a-confirmer").get_data(as_text=True)
    assert "PMI Wazemmes" in index and "PMI Fives" in index


def release(client, rdv: Rdv, called: bool = True):
    token = csrf_token_from(client.get(f"/a-confirmer/lieux/{rdv.lieu_id}").get_data(as_text=True))
    data = {"csrf_token": token, **({"called": "y"} if called else {})}
    return client.post(f"/a-confirmer/rdvs/{rdv.id}/liberer", data=data)


def test_releasing_after_a_call_tells_the_family_and_offers_the_slot_to_the_waiting_list(
        client, auth, clinic, tomorrow, factories):
    waiting = clinic.usager("Lina", "+33655555555")
    factories.WaitlistEntryFactory(usager=waiting, motif=clinic.motif, organisation=clinic.organisation)
    auth.login(clinic.agent)

    refused = release(client, tomorrow.risky, called=False)
    assert refused.status_code == 302
    assert "Appelez la famille avant de libérer" in client.get(refused.location).get_data(as_text=True)
    _db.session.expire_all()
    assert _db.session.get(Rdv, tomorrow.risky.id).status == RdvStatus.UNKNOWN

    released = release(client, tomorrow.risky)
    assert "Créneau libéré" in client.get(released.location).get_data(as_text=True)
    _db.session.expire_all()
    rdv = _db.session.get(Rdv, tomorrow.risky.id)
    assert rdv.status == RdvStatus.REVOKED and rdv.cancelled_by_id == clinic.agent.id
    assert rdv.cancel_reason.startswith("Libéré la veille")
    told = _db.session.scalars(select(Message).where(Message.rdv_id == rdv.id, Message.kind == MessageKind.CANCELLED,
                                                     Message.channel == Channel.SMS)).all()
    assert [message.status for message in told] == [MessageStatus.SENT]
    assert "annul" in told[0].body
    offer = _db.session.scalar(select(SlotOffer).where(SlotOffer.usager_id == waiting.id))
    assert offer is not None and offer.status == OfferStatus.HELD
    assert offer.slot.starts_at == at(TOMORROW, 10)
    offered = _db.session.scalar(select(Message).where(Message.kind == MessageKind.OFFER,
                                                       Message.usager_id == waiting.id))
    assert offered is not None and offered.status == MessageStatus.SENT
    assert f'data-rdv="{rdv.id}"' not in page(client, clinic)


def test_a_confirmed_rdv_is_not_released(client, auth, clinic, tomorrow):
    auth.login(clinic.agent)
    response = release(client, tomorrow.confirmed)
    assert "La famille a confirmé ce rendez-vous" in client.get(response.location).get_data(as_text=True)
    _db.session.expire_all()
    assert _db.session.get(Rdv, tomorrow.confirmed.id).is_live


def test_another_organisations_agent_sees_nothing_and_frees_nothing(client, auth, clinic, tomorrow, factories):
    stranger = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.ADMIN)
    auth.login(stranger)
    assert client.get(f"/a-confirmer/lieux/{clinic.lieu.id}").status_code == 404
    token = csrf_token_from(client.get("/a-confirmer").get_data(as_text=True))
    assert "PMI Wazemmes" not in client.get("/a-confirmer").get_data(as_text=True)
    response = client.post(f"/a-confirmer/rdvs/{tomorrow.risky.id}/liberer", data={"csrf_token": token, "called": "y"})
    assert response.status_code == 404
    _db.session.expire_all()
    assert _db.session.get(Rdv, tomorrow.risky.id).is_live


def test_the_administrator_chooses_whom_the_reminders_ask(client, auth, clinic, factories):
    admin = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.ADMIN)
    auth.login(admin)
    settings = f"/territoires/{clinic.territory.id}/parametres"
    html = client.get(settings).get_data(as_text=True)
    assert "familles à risque" in html
    form = {"csrf_token": csrf_token_from(html), "timezone": "Europe/Paris", "sms_sender": "+33757000001",
            "messaging_service_sid": "", "takes_replies": "y", "reminder_offsets": "72, 24",
            "quiet_hours_start": "20:00", "quiet_hours_end": "08:30", "confirm_everyone": "y"}
    assert client.post(settings, data=form).status_code == 302
    _db.session.expire_all()
    assert clinic.territory.sms_confirm_everyone is True
    del form["confirm_everyone"]
    assert client.post(settings, data=form).status_code == 302
    _db.session.expire_all()
    assert clinic.territory.sms_confirm_everyone is False
