"""Freed slots offered to the waiting list: who gets the offer, the hold, expiry and refusal, and accepting it."""
from __future__ import annotations

import html
import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from lapins.booking import book_rdv, cancel_rdv
from lapins.infra.extensions import db
from lapins.models import (
    Channel, EntryStatus, Message, MessageKind, MessageStatus, OfferStatus, Rdv, RdvStatus, Role, SlotOffer,
)
from lapins.models.rdvs import BookingChannel, CancellationChannel
from lapins.notifications.gsm import segments, septets
from lapins.waitlist import offers
from lapins.notifications.offer_links import offer_id_from_token, offer_token
from tests.conftest import csrf_token_from

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)  # Monday, 09:00 in Paris
WEDNESDAY = date(2026, 3, 4)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def clinic(factories):
    organisation = factories.OrganisationFactory(name="PMI Belleville")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville")
    other_lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Ménilmontant")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=NOW.date(), motifs=[motif], start_time=time(9),
                           end_time=time(12), weekdays=0b0011111)

    def family(name: str, **kwargs):
        return factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                       last_name=name, phone=kwargs.pop("phone", "+33611111111"), **kwargs)

    def rdv(usager, day: date = WEDNESDAY, hour: int = 10, minute: int = 0):
        return book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[usager], lieu=lieu,
                        starts_at=datetime.combine(day, time(hour, minute), PARIS))

    def wait(usager, **kwargs):
        return factories.WaitlistEntryFactory(usager=usager, motif=motif, organisation=organisation, **kwargs)

    return type("Clinic", (), dict(organisation=organisation, lieu=lieu, other_lieu=other_lieu, motif=motif,
                                   agent=agent, family=staticmethod(family), rdv=staticmethod(rdv),
                                   wait=staticmethod(wait)))


def cancel(rdv):
    return cancel_rdv(actor=None, rdv=rdv, status=RdvStatus.EXCUSED, reason=None, via=CancellationChannel.LINK)


def reread(obj):
    """The row as the requests left it (they ran in sessions of their own)."""
    db.session.expire_all()
    return db.session.get(type(obj), obj.id)


def offers_made() -> list[SlotOffer]:
    db.session.expire_all()
    return list(db.session.scalars(select(SlotOffer).order_by(SlotOffer.id)))


def offer_sms(usager) -> list[Message]:
    return list(db.session.scalars(select(Message).where(
        Message.kind == MessageKind.OFFER, Message.usager_id == usager.id, Message.channel == Channel.SMS)))


def link_of(message: Message) -> str:
    return re.search(r"/o/[0-9a-f]+-[A-Za-z0-9_-]{10}", message.body).group(0)


def answer(client, link: str, what: str):
    token = csrf_token_from(client.get(link).get_data(as_text=True))
    return client.post(f"{link}/{what}", data={"csrf_token": token})


# --- Who is offered the slot ---------------------------------------------------------------------------------------

def test_a_cancellation_offers_the_slot_to_the_highest_priority_then_the_oldest_and_to_nobody_else(clinic, frozen_time):
    cancelled = clinic.rdv(clinic.family("Annule"))
    older = clinic.wait(clinic.family("Ancienne"), created_at=NOW - timedelta(days=5))
    clinic.wait(clinic.family("Recente"), created_at=NOW - timedelta(days=1))
    urgent = clinic.wait(clinic.family("Urgente", phone="+33622222222"), priority=2, created_at=NOW)

    cancel(cancelled)

    [offer] = offers_made()
    assert offer.entry_id == urgent.id and offer.status == OfferStatus.HELD
    assert offer.held_until == NOW + timedelta(minutes=30)
    [sms] = offer_sms(urgent.usager)
    assert sms.status == MessageStatus.SENT and sms.to_address == "+33622222222"
    assert segments(sms.body) <= 2  # one when the names allow it (tests/test_offer_sms_text.py)
    assert "mer. 04/03 à 10h" in sms.body and "Acceptez avant 9h30" in sms.body and "/o/" in sms.body
    assert offer_id_from_token(link_of(sms).removeprefix("/o/")) == offer.id

    frozen_time.shift(timedelta(minutes=29))
    assert offers.reallocate() == 0  # held: nobody else is offered it
    assert len(offers_made()) == 1 and not offer_sms(older.usager)


def test_the_offer_sms_opens_with_the_territorys_own_label_like_the_other_sms(clinic):
    """The label set on the territory settings page signs every SMS a family gets, offers of freed slots too."""
    assert clinic.organisation.label_in_sms == "PMI Belleville"
    clinic.organisation.territory.sms_label = "PMI de Paris"
    db.session.commit()
    cancelled = clinic.rdv(clinic.family("Annule"))
    waiting = clinic.wait(clinic.family("Attente", phone="+33622222222"))
    cancel(cancelled)
    [sms] = offer_sms(waiting.usager)
    assert sms.body.startswith("PMI de Paris : créneau libéré pour vous")
    assert segments(sms.body) <= 2


def test_the_offer_sms_names_the_sender_the_child_the_motif_the_place_the_time_and_the_holds_end(clinic, factories):
    cancelled = clinic.rdv(clinic.family("Annule"))
    parent = clinic.family("Hoarau", first_name="Josiane", phone="+33622222222")
    child = factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation],
                                    first_name="Maëlys", last_name="Hoarau", responsible=parent, phone=None)
    clinic.wait(child)
    cancel(cancelled)
    [sms] = offer_sms(parent)
    assert sms.body.startswith("PMI Belleville : créneau libéré pour Maelys, mer. 04/03 à 10h (Consultation "
                               "nourrisson), Centre PMI Belleville")
    assert "Hoarau" not in sms.body and "Acceptez avant 9h30 : http" in sms.body and sms.body.endswith(link_of(sms))
    # Too long for one SMS with the lieu's name: a second segment, so the address comes too.
    assert segments(sms.body) == 2 and clinic.lieu.address in sms.body


def test_when_the_hold_expires_the_next_family_is_offered_the_slot(clinic, frozen_time):
    cancelled = clinic.rdv(clinic.family("Annule"))
    first = clinic.wait(clinic.family("Premiere"), created_at=NOW - timedelta(days=2))
    second = clinic.wait(clinic.family("Seconde"), created_at=NOW - timedelta(days=1))
    cancel(cancelled)
    frozen_time.shift(timedelta(minutes=30))

    assert offers.reallocate() == 1

    expired, current = offers_made()
    assert (expired.entry_id, expired.status) == (first.id, OfferStatus.EXPIRED)
    assert (current.entry_id, current.status) == (second.id, OfferStatus.HELD)
    assert len(offer_sms(second.usager)) == 1


def test_a_declined_offer_goes_at_once_to_the_next_family(client, clinic):
    cancelled = clinic.rdv(clinic.family("Annule"))
    first = clinic.wait(clinic.family("Premiere"), created_at=NOW - timedelta(days=2))
    second = clinic.wait(clinic.family("Seconde"), created_at=NOW - timedelta(days=1))
    cancel(cancelled)
    link = link_of(offer_sms(first.usager)[0])

    response = answer(client, link, "refuser")

    assert response.status_code == 302
    declined, current = offers_made()
    assert declined.status == OfferStatus.DECLINED and current.entry_id == second.id
    assert "Proposition refusée" in client.get(link).get_data(as_text=True)
    assert reread(first).status == EntryStatus.ACTIVE  # still waiting for another slot


def test_the_lieu_and_the_earlier_wish_are_respected(clinic):
    cancelled = clinic.rdv(clinic.family("Annule"), hour=10)
    clinic.wait(clinic.family("Ailleurs"), lieu=clinic.other_lieu, priority=5)
    before = clinic.family("DejaAvant")
    clinic.wait(before, rdv=clinic.rdv(before, day=date(2026, 3, 3), hour=9), priority=4)  # earlier already
    later = clinic.family("PlusTard")
    wants_earlier = clinic.wait(later, rdv=clinic.rdv(later, day=date(2026, 3, 6), hour=9), priority=3)

    cancel(cancelled)

    [offer] = offers_made()
    assert offer.entry_id == wants_earlier.id


def test_no_offer_within_the_stop_before_hours(clinic, frozen_time):
    soon = clinic.rdv(clinic.family("Bientot"), day=NOW.date(), hour=11)  # 11:00, two hours from now
    clinic.wait(clinic.family("Attente"))
    frozen_time.shift(timedelta(minutes=1))
    cancel(soon)
    assert offers_made() == []


def test_a_motif_sans_notification_offers_nothing_by_sms_and_its_slot_stays_freed(client, auth, clinic):
    clinic.motif.notify = False
    db.session.commit()
    cancelled = clinic.rdv(clinic.family("Annule"))
    waiting = clinic.wait(clinic.family("Attente", phone="+33622222222"))
    cancel(cancelled)
    assert offers.reallocate() == 0
    assert offers_made() == [] and not offer_sms(waiting.usager)
    assert reread(waiting).status == EntryStatus.ACTIVE
    auth.login(clinic.agent)
    page = client.get("/creneaux-liberes").get_data(as_text=True)
    assert page.count('aria-label="Réserver le créneau du') == 1 and "fr-btn--secondary" not in page  # free, not held


def test_no_offer_in_quiet_hours_then_the_morning_run_offers_it(clinic, frozen_time):
    cancelled = clinic.rdv(clinic.family("Annule"))
    clinic.wait(clinic.family("Attente"))
    frozen_time.move_to(datetime(2026, 3, 2, 21, 0, tzinfo=PARIS))
    cancel(cancelled)
    assert offers_made() == []
    frozen_time.move_to(datetime(2026, 3, 3, 8, 1, tzinfo=PARIS))
    assert offers.reallocate() == 1


def test_a_family_is_offered_at_most_three_slots_a_day(clinic, frozen_time):
    waiting = clinic.wait(clinic.family("Attente"))
    for hour in (9, 10, 11, 9):
        day = WEDNESDAY if len(offers_made()) < 3 else date(2026, 3, 5)
        cancel(clinic.rdv(clinic.family(f"Annule{hour}{len(offers_made())}"), day=day, hour=hour))
        frozen_time.shift(timedelta(minutes=31))
        offers.reallocate()  # the hold ends unanswered: the slot is free again for the next offer
    assert len([offer for offer in offers_made() if offer.entry_id == waiting.id]) == 3
    frozen_time.move_to(datetime(2026, 3, 3, 9, 0, tzinfo=PARIS))  # the next day, a new allowance
    assert offers.reallocate() >= 1


# --- Accepting -------------------------------------------------------------------------------------------------------

def test_accepting_books_the_slot_and_fulfils_the_entry(client, clinic):
    cancelled = clinic.rdv(clinic.family("Annule"))
    entry = clinic.wait(clinic.family("Attente"))
    cancel(cancelled)
    link = link_of(offer_sms(entry.usager)[0])

    page = client.get(link)
    text = html.unescape(page.get_data(as_text=True))
    assert page.status_code == 200 and "mercredi 4 mars 2026 à 10h00" in text and "J'accepte" in text
    assert "Attente" not in text  # a forwarded link shows no name
    token = csrf_token_from(text)
    response = client.post(f"{link}/accepter", data={"csrf_token": token})

    assert response.status_code == 302
    [offer] = offers_made()
    assert offer.status == OfferStatus.ACCEPTED and offer.rdv_id is not None
    rdv = db.session.get(Rdv, offer.rdv_id)
    assert rdv.is_live and rdv.usagers == [entry.usager] and rdv.starts_at == cancelled.starts_at
    assert rdv.created_by_id is None and rdv.forced_by_id is None
    assert reread(entry).status == EntryStatus.FULFILLED
    assert "Rendez-vous confirmé" in client.get(link).get_data(as_text=True)
    again = client.post(f"{link}/accepter", data={"csrf_token": token})  # the same offer twice books once
    assert again.status_code == 409 and "déjà accepté" in html.unescape(again.get_data(as_text=True))
    assert db.session.query(Rdv).filter(Rdv.status == RdvStatus.UNKNOWN).count() == 1


def test_accepting_moves_the_familys_rdv_and_offers_its_old_slot_in_turn(client, clinic):
    cancelled = clinic.rdv(clinic.family("Annule"), hour=10)
    mover = clinic.family("Avance")
    old_rdv = clinic.rdv(mover, day=date(2026, 3, 6), hour=9)
    entry = clinic.wait(mover, rdv=old_rdv, priority=1)
    next_in_line = clinic.wait(clinic.family("Suivante"))
    cancel(cancelled)
    link = link_of(offer_sms(mover)[0])

    assert answer(client, link, "accepter").status_code == 302

    moved = db.session.get(Rdv, old_rdv.id)
    assert moved.is_live and moved.starts_at == datetime(2026, 3, 4, 10, tzinfo=PARIS)
    assert db.session.query(Rdv).filter(Rdv.status == RdvStatus.UNKNOWN).count() == 1
    assert reread(entry).status == EntryStatus.FULFILLED
    accepted, old_slot_offer = offers_made()
    assert accepted.rdv_id == old_rdv.id
    assert old_slot_offer.entry_id == next_in_line.id and old_slot_offer.status == OfferStatus.HELD
    assert old_slot_offer.slot.starts_at == datetime(2026, 3, 6, 9, tzinfo=PARIS)
    assert len(offer_sms(next_in_line.usager)) == 1


def test_accepting_a_slot_of_another_agent_moves_the_rdv_to_that_agent(client, clinic, factories):
    colleague = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=colleague, lieu=clinic.lieu, first_day=NOW.date(), motifs=[clinic.motif],
                           start_time=time(9), end_time=time(12), weekdays=0b0011111)
    mover = clinic.family("Avance")
    old_rdv = book_rdv(actor=colleague, motif=clinic.motif, agents=[colleague], usagers=[mover], lieu=clinic.lieu,
                       starts_at=datetime(2026, 3, 6, 9, tzinfo=PARIS))
    clinic.wait(mover, rdv=old_rdv)
    cancel(clinic.rdv(clinic.family("Annule"), hour=10))

    assert answer(client, link_of(offer_sms(mover)[0]), "accepter").status_code == 302

    moved = reread(old_rdv)
    assert moved.starts_at == datetime(2026, 3, 4, 10, tzinfo=PARIS)
    assert [agent.id for agent in moved.agents] == [clinic.agent.id]


def test_accepting_moves_the_rdv_to_the_whole_time_offered_its_end_too(client, clinic):
    # The agent had booked the cancelled consultation for 45 minutes: that is the time offered, and taken.
    ten = datetime(2026, 3, 4, 10, tzinfo=PARIS)
    cancelled = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], lieu=clinic.lieu,
                         usagers=[clinic.family("Annule")], starts_at=ten, ends_at=ten + timedelta(minutes=45))
    mover = clinic.family("Avance")
    old_rdv = clinic.rdv(mover, day=date(2026, 3, 6), hour=9)  # 30 minutes, the motif's length
    clinic.wait(mover, rdv=old_rdv)
    cancel(cancelled)

    assert answer(client, link_of(offer_sms(mover)[0]), "accepter").status_code == 302

    moved = reread(old_rdv)
    assert (moved.starts_at, moved.ends_at) == (ten, ten + timedelta(minutes=45))


def test_accepting_after_the_hold_is_refused_and_changes_nothing(client, clinic, frozen_time):
    cancelled = clinic.rdv(clinic.family("Annule"))
    entry = clinic.wait(clinic.family("Attente"))
    cancel(cancelled)
    link = link_of(offer_sms(entry.usager)[0])
    token = csrf_token_from(client.get(link).get_data(as_text=True))
    frozen_time.shift(timedelta(minutes=31))

    response = client.post(f"{link}/accepter", data={"csrf_token": token})

    assert response.status_code == 410 and "Proposition expirée" in response.get_data(as_text=True)
    assert db.session.query(Rdv).filter(Rdv.status == RdvStatus.UNKNOWN).count() == 0
    assert reread(entry).status == EntryStatus.ACTIVE
    assert offers_made()[0].status == OfferStatus.HELD  # the beat's next run expires it and offers the next family


def test_a_slot_booked_by_an_agent_during_the_hold_is_not_given_twice(client, clinic):
    cancelled = clinic.rdv(clinic.family("Annule"))
    entry = clinic.wait(clinic.family("Attente"))
    cancel(cancelled)
    link = link_of(offer_sms(entry.usager)[0])
    clinic.rdv(clinic.family("Guichet"))  # an agent books the same time at the desk

    response = answer(client, link, "accepter")

    assert response.status_code == 409 and "plus disponible" in response.get_data(as_text=True)
    assert db.session.query(Rdv).filter(Rdv.status == RdvStatus.UNKNOWN).count() == 1
    assert offers_made()[0].status == OfferStatus.VOID
    assert reread(entry).status == EntryStatus.ACTIVE


def two_families_holding_offers(clinic):
    """Two freed times, 10:00 and 11:00, each held for its own family: what one family's answer must not touch."""
    ten, eleven = clinic.rdv(clinic.family("Annule"), hour=10), clinic.rdv(clinic.family("Annule2"), hour=11)
    first = clinic.wait(clinic.family("Premiere"), created_at=NOW - timedelta(days=2))
    second = clinic.wait(clinic.family("Seconde"), created_at=NOW - timedelta(days=1))
    cancel(ten)
    cancel(eleven)
    held_first, held_second = offers_made()
    assert (held_first.entry_id, held_second.entry_id) == (first.id, second.id)
    assert held_first.status == held_second.status == OfferStatus.HELD
    return link_of(offer_sms(first.usager)[0]), held_first, held_second


def test_a_familys_refusal_declines_its_own_offer_only(client, clinic):
    link, mine, other = two_families_holding_offers(clinic)

    assert answer(client, link, "refuser").status_code == 302

    assert reread(mine).status == OfferStatus.DECLINED and reread(mine).answered_at == NOW
    assert reread(other).status == OfferStatus.HELD and reread(other).answered_at is None


def test_an_acceptance_the_agenda_refuses_voids_its_own_offer_only(client, clinic):
    link, mine, other = two_families_holding_offers(clinic)
    clinic.rdv(clinic.family("Guichet"), hour=10)  # an agent books the first family's time at the desk

    assert answer(client, link, "accepter").status_code == 409

    assert reread(mine).status == OfferStatus.VOID and reread(mine).answered_at == NOW
    assert reread(other).status == OfferStatus.HELD and reread(other).answered_at is None


@pytest.mark.parametrize("mangle", [
    lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),
    lambda token: "ff" + token,
    lambda token: token.split("-")[0],
    lambda token: "zz-" + token.split("-", 1)[1],
    lambda token: "0x" + token,  # the same id written another way: only the form offer_token writes is read
    lambda token: "+" + token,
    lambda token: "0" + token,
    lambda token: token.split("-")[0] + "-" + "é" * 10,  # once a 500 (compare_digest and non-ASCII str)
])
def test_a_forged_offer_link_opens_nothing_and_books_nothing(client, clinic, mangle):
    cancelled = clinic.rdv(clinic.family("Annule"))
    clinic.wait(clinic.family("Attente"))
    cancel(cancelled)
    real = offer_token(offers_made()[0].id)
    token = mangle(real)
    page = client.get(f"/o/{token}")
    assert page.status_code == 404 and "Lien invalide" in page.get_data(as_text=True)
    csrf = csrf_token_from(client.get(f"/o/{real}").get_data(as_text=True))
    response = client.post(f"/o/{token}/accepter", data={"csrf_token": csrf})
    assert response.status_code == 404
    assert offers_made()[0].status == OfferStatus.HELD


def test_an_rdv_link_is_not_an_offer_link(client, clinic):
    from lapins.notifications.links import rdv_token

    rdv = clinic.rdv(clinic.family("Annule"))
    assert client.get(f"/o/{rdv_token(rdv.id)}").status_code == 404


def test_accepting_without_the_csrf_token_changes_nothing(client, clinic):
    cancelled = clinic.rdv(clinic.family("Annule"))
    entry = clinic.wait(clinic.family("Attente"))
    cancel(cancelled)
    link = link_of(offer_sms(entry.usager)[0])
    assert client.post(f"{link}/accepter").status_code == 400
    assert offers_made()[0].status == OfferStatus.HELD


# --- Real concurrency: simultaneous acceptances through a live server, on SQLite and PostgreSQL -------------------

CLIENTS = 8


@pytest.fixture()
def live_offers(database_url):
    """A real threaded server over its own database: one agent's Wednesday 10:00 freed, and waiting families.

    Holds are made here directly, two of them on one time (through two slot rows): a state the engine never makes,
    so that the booking's own guarantee is what is tested.
    """
    import threading

    from werkzeug.serving import make_server

    from lapins import create_app
    from lapins.models import WaitlistSlot, SlotStatus
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=True)
    with app.app_context():
        organisation = factories.OrganisationFactory()
        lieu = factories.LieuFactory(organisation=organisation)
        motif = factories.MotifFactory(organisation=organisation)
        agent = factories.AgentFactory(organisation=organisation)
        factories.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=NOW.date(), start_time=time(9),
                               end_time=time(12), weekdays=0b1111111)
        starts_at = datetime(2026, 3, 4, 10, tzinfo=PARIS)
        tokens = []
        for index in range(CLIENTS):
            usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation])
            entry = factories.WaitlistEntryFactory(usager=usager, motif=motif, organisation=organisation)
            slot = WaitlistSlot(organisation_id=organisation.id, motif_id=motif.id, lieu_id=lieu.id, agent_id=agent.id,
                             starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30), status=SlotStatus.OPEN)
            offer = SlotOffer(slot=slot, entry=entry, usager_id=usager.id, status=OfferStatus.HELD, offered_at=NOW,
                              held_until=NOW + timedelta(minutes=30))
            db.session.add_all([slot, offer])
            db.session.commit()
            with app.test_request_context():
                tokens.append(offer_token(offer.id))
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}", tokens, starts_at
    server.shutdown()
    with app.app_context():
        db.engine.dispose()


def _simultaneous_accepts(base: str, tokens: list[str]):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    sessions, forms = [], []
    for token in tokens:
        session = requests.Session()
        page = session.get(f"{base}/o/{token}", timeout=30).text
        sessions.append(session)
        forms.append({"csrf_token": csrf_token_from(page)})
    start = threading.Barrier(len(tokens))

    def accept(index: int):
        start.wait()
        return sessions[index].post(f"{base}/o/{tokens[index]}/accepter", data=forms[index], allow_redirects=False,
                                    timeout=60)

    with ThreadPoolExecutor(len(tokens)) as pool:
        return list(pool.map(accept, range(len(tokens))))


def _live_rdvs_at(app, starts_at) -> int:
    with app.app_context():
        count = db.session.query(Rdv).filter(Rdv.starts_at == starts_at,
                                             Rdv.status == RdvStatus.UNKNOWN).count()
        db.session.remove()
        return count


def test_families_accepting_one_slot_at_the_same_second_get_exactly_one_booking(live_offers):
    app, base, tokens, starts_at = live_offers

    responses = _simultaneous_accepts(base, tokens)

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [302] + [409] * (CLIENTS - 1), statuses
    assert all("plus disponible" in response.text for response in responses if response.status_code == 409)
    assert _live_rdvs_at(app, starts_at) == 1
    with app.app_context():
        assert sorted(offer.status for offer in db.session.scalars(select(SlotOffer))) == sorted(
            [OfferStatus.ACCEPTED] + [OfferStatus.VOID] * (CLIENTS - 1))
        db.session.remove()


def test_one_offer_accepted_many_times_at_once_books_once(live_offers):
    app, base, tokens, starts_at = live_offers

    responses = _simultaneous_accepts(base, [tokens[0]] * CLIENTS)

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [302] + [409] * (CLIENTS - 1), statuses
    assert _live_rdvs_at(app, starts_at) == 1


def test_a_family_that_accepts_e_mails_also_gets_the_offer_by_e_mail(clinic):
    cancelled = clinic.rdv(clinic.family("Annule"))
    entry = clinic.wait(clinic.family("Courriel", email="famille@example.fr", email_consent=True))
    cancel(cancelled)
    [email] = db.session.scalars(select(Message).where(Message.kind == MessageKind.OFFER,
                                                       Message.channel == Channel.EMAIL)).all()
    assert email.usager_id == entry.usager_id and email.status == MessageStatus.SENT
    assert email.subject.startswith("Un créneau s'est libéré") and "/o/" in email.body and "09h30" in email.body


def test_the_dev_inbox_shows_offers_to_their_organisation_only(client, auth, clinic, factories):
    clinic.wait(clinic.family("Attente", phone="+33622222222"))
    cancel(clinic.rdv(clinic.family("Annule")))
    auth.login(clinic.agent)
    page = client.get("/dev/messages").get_data(as_text=True)
    assert "+33622222222" in page and "/o/" in page and "proposition d" in page
    auth.logout()
    auth.login(factories.AgentFactory(organisation=factories.OrganisationFactory()))
    assert "+33622222222" not in client.get("/dev/messages").get_data(as_text=True)


# --- What the agents read afterwards, joint consultations, entries whose rdv went away ----------------------------

def test_the_rdv_page_says_the_family_booked_it_or_moved_it_by_taking_an_offer(client, auth, clinic):
    cancelled = clinic.rdv(clinic.family("Annule"), hour=10)
    newcomer = clinic.wait(clinic.family("Nouvelle"), priority=2)
    mover = clinic.family("Avance", phone="+33622222222")
    old_rdv = clinic.rdv(mover, day=date(2026, 3, 6), hour=9)
    clinic.wait(mover, rdv=old_rdv, priority=1)
    cancel(cancelled)
    assert answer(client, link_of(offer_sms(newcomer.usager)[0]), "accepter").status_code == 302
    cancel(clinic.rdv(clinic.family("Annule2"), hour=11))
    assert answer(client, link_of(offer_sms(mover)[0]), "accepter").status_code == 302

    booked, moved = (db.session.get(Rdv, offer.rdv_id) for offer in offers_made()[:2])
    assert booked.usagers == [newcomer.usager] and moved.id == old_rdv.id
    assert booked.booked_via == BookingChannel.OFFER and moved.booked_via == BookingChannel.AGENDA
    auth.login(clinic.agent)
    booked_page = html.unescape(client.get(f"/rdvs/{booked.id}").get_data(as_text=True))
    assert "par la famille, en acceptant une proposition de la file d'attente" in booked_page
    assert "Avancé par la famille" not in booked_page
    moved_page = html.unescape(client.get(f"/rdvs/{moved.id}").get_data(as_text=True))
    assert "Avancé par la famille le lundi 2 mars 2026 à 09h00, en acceptant une proposition" in moved_page
    assert "par la famille, en acceptant" not in moved_page.split("Avancé")[0]


@pytest.fixture()
def joint(clinic, factories):
    """A médecin who sees families at the same centre beside the puéricultrice, for joint consultations."""
    doctor = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=doctor, lieu=clinic.lieu, first_day=NOW.date(), motifs=[clinic.motif],
                           start_time=time(9), end_time=time(12), weekdays=0b0011111)

    def rdv(usager, hour: int = 10):
        return book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent, doctor], usagers=[usager],
                        lieu=clinic.lieu, starts_at=datetime.combine(WEDNESDAY, time(hour), PARIS))

    return type("Joint", (), dict(doctor=doctor, rdv=staticmethod(rdv)))


def test_a_cancelled_joint_consultation_is_offered_whole_and_booked_with_both_agents(client, clinic, joint):
    cancelled = joint.rdv(clinic.family("Annule"))
    entry = clinic.wait(clinic.family("Attente"))
    cancel(cancelled)

    [offer] = offers_made()
    assert {agent.id for agent in offer.slot.agents} == {clinic.agent.id, joint.doctor.id}
    assert answer(client, link_of(offer_sms(entry.usager)[0]), "accepter").status_code == 302
    rdv = db.session.get(Rdv, reread(offer).rdv_id)
    assert {agent.id for agent in rdv.agents} == {clinic.agent.id, joint.doctor.id}
    assert rdv.starts_at == cancelled.starts_at and rdv.is_live


def test_a_joint_slot_is_not_offered_once_one_of_its_agents_is_booked_again(clinic, joint):
    cancel(joint.rdv(clinic.family("Annule")))  # nobody waits yet: the slot stays open
    book_rdv(actor=joint.doctor, motif=clinic.motif, agents=[joint.doctor], usagers=[clinic.family("Autre")],
             lieu=clinic.lieu, starts_at=datetime.combine(WEDNESDAY, time(10), PARIS))
    clinic.wait(clinic.family("Attente"))

    assert offers.reallocate() == 0 and offers_made() == []


def test_a_hold_on_a_joint_slot_keeps_each_of_its_agents_time_from_other_offers(clinic, joint):
    joint_rdv = joint.rdv(clinic.family("Annule"))
    # The médecin was also booked alone at that time, knowingly (a recorded override).
    solo = book_rdv(actor=joint.doctor, motif=clinic.motif, agents=[joint.doctor], usagers=[clinic.family("Solo")],
                    lieu=clinic.lieu, starts_at=joint_rdv.starts_at, force=True)
    first = clinic.wait(clinic.family("Premiere"), created_at=NOW - timedelta(days=1))
    second = clinic.wait(clinic.family("Seconde", phone="+33622222222"))
    cancel(joint_rdv)
    cancel(solo)

    # The médecin's time is held for the first family with the joint slot: it is not offered to the second.
    assert offers.reallocate() == 0
    [held] = offers_made()
    assert held.entry_id == first.id and not offer_sms(second.usager)


def test_an_entry_whose_rdv_the_family_cancelled_leaves_the_list(clinic):
    family = clinic.family("Annule")
    own = clinic.rdv(family, day=date(2026, 3, 6), hour=9)
    entry = clinic.wait(family, rdv=own)
    cancel(own)

    assert reread(entry).status == EntryStatus.LAPSED
    cancel(clinic.rdv(clinic.family("Autre"), hour=10))
    assert all(offer.entry_id != entry.id for offer in offers_made())


def test_an_entry_whose_rdv_the_service_cancelled_keeps_its_place_for_any_slot(clinic):
    family = clinic.family("Revoque")
    own = clinic.rdv(family, day=date(2026, 3, 4), hour=9)
    entry = clinic.wait(family, rdv=own, priority=1)
    cancel_rdv(actor=clinic.agent, rdv=own, status=RdvStatus.REVOKED, reason="Agent absent")

    kept = reread(entry)
    assert kept.status == EntryStatus.ACTIVE and kept.rdv_id is None
    # Its own freed 09:00 slot and a later one are both offered to it, as to a family without an rdv.
    [offer] = offers_made()
    assert offer.entry_id == entry.id and offer.slot.starts_at == datetime(2026, 3, 4, 9, tzinfo=PARIS)


def test_an_entry_whose_rdv_has_come_lapses_at_the_next_run(clinic, frozen_time):
    family = clinic.family("Passe")
    own = clinic.rdv(family, day=date(2026, 3, 3), hour=9)
    entry = clinic.wait(family, rdv=own)
    frozen_time.move_to(datetime(2026, 3, 3, 8, 30, tzinfo=timezone.utc))  # 09:30 in Paris: the rdv has started

    offers.reallocate()
    assert reread(entry).status == EntryStatus.LAPSED
