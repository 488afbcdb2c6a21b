"""The collective sessions' waiting list at its bounds: which places a cancellation or more capacity frees (one per
place, no more than the families waiting), what a moved session's open places and held offers become, what happens
to the waiting families when a session is cancelled, the exact French of a refusal. Written against the mutants of
lapins/waitlist/offers.py that the offers room let through (docs/testing.md, « offers, the collective sessions' »)."""
from __future__ import annotations

import html
import logging
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.booking import book_rdv, cancel_rdv, move_rdv
from lapins.booking import sessions
from lapins.infra.extensions import db
from lapins.models import (
    EntryStatus, Message, MessageStatus, OfferStatus, Rdv, RdvStatus, SlotOffer, SlotStatus, WaitlistEntry,
    WaitlistSlot,
)
from lapins.notifications import outbox
from lapins.notifications.offer_links import offer_token
from lapins.waitlist import entries as waitlist_entries
from lapins.waitlist import offers
from tests.conftest import csrf_token_from
from tests.test_sessions import NOW, factories_motif, new_session, pmi, tuesday  # noqa: F401  (pmi: fixture)
from tests.test_sessions_edit import offered_place


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


def full_session(pmi, taken: list[int], waiting: list[int], week: int = 0) -> Rdv:
    """A session whose places are all taken by the families `taken`, the families `waiting` on its waiting list."""
    session = new_session(pmi, capacity=len(taken), starts=[tuesday(week)])
    for index in taken:
        sessions.add_participant(actor=pmi.agent, session=session, usagers=[pmi.families[index][0]])
    for index in waiting:
        waitlist_entries.add_for_session(pmi.agent, pmi.families[index][0], session)
    return session


def more_places(session: Rdv, capacity: int) -> None:
    """The capacity raised behind the listener's back, so that the test calls free_session_places itself."""
    session.max_participants = capacity
    db.session.commit()


def free(session: Rdv, now=NOW) -> list[WaitlistSlot]:
    slots = offers.free_session_places(session, now)
    db.session.commit()
    return slots


def offer_texts(offer_id: int) -> list[Message]:
    db.session.expire_all()
    return list(db.session.scalars(select(Message).where(Message.offer_id == offer_id).order_by(Message.id)))


# --- Which places are opened to the waiting list -----------------------------------------------------------------

def test_one_open_place_per_free_place_no_more_than_the_families_waiting_and_none_twice(pmi):
    session = full_session(pmi, taken=[0], waiting=[1, 2, 3])
    more_places(session, 3)
    later = NOW + timedelta(hours=1)  # the clock the change gives, not the server's
    slots = free(session, later)
    assert len(slots) == 2
    db.session.expire_all()
    for slot in slots:
        assert (slot.organisation_id, slot.motif_id, slot.lieu_id, slot.agent_id, [a.id for a in slot.agents]) == \
            (pmi.organisation.id, pmi.motif.id, pmi.lieu.id, pmi.agent.id, [pmi.agent.id])
        assert (slot.starts_at, slot.ends_at, slot.session_id, slot.source_rdv_id) == \
            (session.starts_at, session.ends_at, session.id, session.id)
        assert (slot.status, slot.created_at) == (SlotStatus.OPEN, later)
    # Asked again before anyone was offered them: the two open places are those places, none is added.
    assert free(session, later) == []
    assert db.session.scalar(select(func.count()).select_from(WaitlistSlot)) == 2


def test_places_held_for_a_family_count_as_given_and_places_open_unheld_as_waiting_to_be_offered(app, pmi,
                                                                                               monkeypatch):
    # The test offers each place itself: a decline's kick must not offer the place again behind its back.
    monkeypatch.setitem(app.extensions["celery"].conf, "task_always_eager", False)
    session = full_session(pmi, taken=[0], waiting=[1, 2, 3])
    more_places(session, 2)
    [first] = free(session)
    assert offers.offer_slot(first.id, NOW).usager_id == pmi.families[1][0].id
    more_places(session, 3)  # one more place; the first is held, not open to another family
    [second] = free(session)
    assert offers.offer_slot(second.id, NOW).usager_id == pmi.families[2][0].id
    more_places(session, 4)
    [third] = free(session)  # left open, offered to nobody yet
    more_places(session, 5)  # two places free: the third place is one of them, one more is opened
    assert len(free(session)) == 1
    # A family says no: its place is open again (its offer declined, not held), and counts as open.
    offers.decline(db.session.get(SlotOffer, db.session.scalar(
        select(SlotOffer.id).where(SlotOffer.slot_id == first.id))), NOW)
    db.session.expire_all()
    open_places = db.session.scalar(select(func.count()).select_from(WaitlistSlot).where(
        WaitlistSlot.session_id == session.id, WaitlistSlot.status == SlotStatus.OPEN))
    assert free(db.session.get(Rdv, session.id)) == []
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(WaitlistSlot).where(
        WaitlistSlot.session_id == session.id, WaitlistSlot.status == SlotStatus.OPEN)) == open_places


def test_a_place_taken_by_an_offer_no_longer_counts_as_open(pmi):
    session = full_session(pmi, taken=[0], waiting=[1, 2])
    more_places(session, 2)
    [first] = free(session)
    offers.accept(offers.offer_slot(first.id, NOW), NOW)
    db.session.expire_all()
    assert db.session.get(WaitlistSlot, first.id).status == SlotStatus.TAKEN
    more_places(db.session.get(Rdv, session.id), 3)
    [second] = free(db.session.get(Rdv, session.id))
    assert offers.offer_slot(second.id, NOW).usager_id == pmi.families[2][0].id


def test_only_this_sessions_active_waiting_families_and_open_places_count(pmi):
    other = full_session(pmi, taken=[3], waiting=[0, 2], week=1)
    more_places(other, 2)
    assert len(free(other)) == 1  # an open place of another session, offered to nobody yet
    session = full_session(pmi, taken=[0], waiting=[1, 2])
    withdrawn = db.session.scalar(select(WaitlistEntry).where(WaitlistEntry.session_id == session.id,
                                                              WaitlistEntry.usager_id == pmi.families[2][0].id))
    waitlist_entries.withdraw(pmi.agent, withdrawn, NOW)
    more_places(session, 3)  # two places, one family still waiting for this session
    [slot] = free(session)
    assert slot.session_id == session.id


def test_no_place_is_opened_from_the_stop_before_hours_on_nor_in_a_cancelled_session(app, pmi):
    session = full_session(pmi, taken=[0], waiting=[1])
    more_places(session, 2)
    stop = session.starts_at - timedelta(hours=app.config["WAITLIST_STOP_BEFORE_HOURS"])
    assert free(session, stop) == []
    assert len(free(session, stop - timedelta(seconds=1))) == 1
    cancelled = full_session(pmi, taken=[2], waiting=[3], week=1)
    cancel_rdv(actor=pmi.agent, rdv=cancelled, status=RdvStatus.REVOKED, reason="Animatrice malade")
    more_places(cancelled, 2)
    assert free(db.session.get(Rdv, cancelled.id)) == []


def test_a_hold_over_by_the_clock_given_frees_its_place_though_the_beat_has_not_expired_it_yet(pmi):
    session = full_session(pmi, taken=[0], waiting=[1, 2])
    more_places(session, 2)
    [first] = free(session)
    offer = offers.offer_slot(first.id, NOW)
    later = offer.held_until + timedelta(minutes=1)
    assert len(free(db.session.get(Rdv, session.id), later)) == 1


def test_a_sessions_place_goes_to_its_own_waiting_family_not_to_an_earlier_one_waiting_for_another(pmi):
    full_session(pmi, taken=[0], waiting=[1], week=1)  # family 1 waits first, for next week's session
    session = full_session(pmi, taken=[0], waiting=[2])
    more_places(session, 2)
    [place] = free(session)
    offer = offers.offer_slot(place.id, NOW)
    assert offer.usager_id == pmi.families[2][0].id


# --- A cancelled session: its waiting families wait for nothing ----------------------------------------------------

def test_cancelling_a_session_lapses_its_waiting_families_and_no_one_elses(pmi):
    session = full_session(pmi, taken=[0], waiting=[1, 2])
    other = full_session(pmi, taken=[3], waiting=[1], week=1)
    withdrawn_at = NOW - timedelta(hours=1)
    withdrawn = db.session.scalar(select(WaitlistEntry).where(WaitlistEntry.session_id == session.id,
                                                              WaitlistEntry.usager_id == pmi.families[2][0].id))
    waitlist_entries.withdraw(pmi.agent, withdrawn, withdrawn_at)
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        cancel_rdv(actor=pmi.agent, rdv=session, status=RdvStatus.REVOKED, reason="Animatrice malade")
    db.session.expire_all()
    rows = db.session.execute(select(WaitlistEntry.session_id, WaitlistEntry.usager_id, WaitlistEntry.status,
                                     WaitlistEntry.closed_at).order_by(WaitlistEntry.id)).all()
    assert rows == [
        (session.id, pmi.families[1][0].id, EntryStatus.LAPSED, NOW + timedelta(minutes=5)),
        (session.id, pmi.families[2][0].id, EntryStatus.WITHDRAWN, withdrawn_at),
        (other.id, pmi.families[1][0].id, EntryStatus.ACTIVE, None),
    ]


def test_cancelling_a_session_voids_its_held_places_closes_its_open_ones_and_the_offer_sms_never_leaves(app, pmi,
                                                                                                         monkeypatch):
    other = offered_place(app, pmi)  # another session, its place held for family 1: left as it is
    [others_offer] = db.session.scalars(select(SlotOffer)).all()
    monkeypatch.setitem(app.extensions["celery"].conf, "task_always_eager", False)  # what is queued waits
    session = full_session(pmi, taken=[0], waiting=[1, 2])
    more_places(session, 3)
    held_place, open_place = free(session)
    offer = offers.offer_slot(held_place.id, NOW)
    told = offer_texts(offer.id)
    assert told and {m.status for m in told} == {MessageStatus.PENDING}

    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        cancel_rdv(actor=pmi.agent, rdv=db.session.get(Rdv, session.id), status=RdvStatus.REVOKED,
                   reason="Animatrice malade")
    db.session.expire_all()
    offer, others_offer = db.session.get(SlotOffer, offer.id), db.session.get(SlotOffer, others_offer.id)
    assert (offer.status, offer.answered_at) == (OfferStatus.VOID, NOW + timedelta(minutes=5))
    assert [db.session.get(WaitlistSlot, slot.id).status for slot in (held_place, open_place)] == \
        [SlotStatus.CLOSED, SlotStatus.CLOSED]
    assert (others_offer.status, db.session.get(WaitlistSlot, others_offer.slot_id).status) == \
        (OfferStatus.HELD, SlotStatus.OPEN)
    assert db.session.get(Rdv, other.id).is_live

    app.extensions["celery"].conf["task_always_eager"] = True  # the worker now sends what is due
    outbox.dispatch_due()
    assert {(m.status, m.error) for m in offer_texts(offer.id)} == {(MessageStatus.SKIPPED,
                                                                     "Proposition close avant l'envoi")}


def test_a_family_answering_the_place_of_a_cancelled_session_reads_that_it_is_cancelled(app, client, pmi):
    session = offered_place(app, pmi)
    [offer] = db.session.scalars(select(SlotOffer)).all()
    link = f"/o/{offer_token(offer.id)}"
    csrf = csrf_token_from(client.get(link).get_data(as_text=True))
    cancel_rdv(actor=pmi.agent, rdv=db.session.get(Rdv, session.id), status=RdvStatus.REVOKED,
               reason="Animatrice malade")

    cancelled = "Cette séance a été annulée : la place qui vous était proposée n'existe plus, et vous n'êtes plus " \
                "sur sa liste d'attente."
    page = client.get(link)
    text = html.unescape(page.get_data(as_text=True))
    assert page.status_code == 200 and "Séance annulée" in text and cancelled in text
    assert "J'accepte" not in text and "Vous restez sur la liste d'attente" not in text
    for answer in ("accepter", "refuser"):
        response = client.post(f"{link}/{answer}", data={"csrf_token": csrf})
        text = html.unescape(response.get_data(as_text=True))
        assert response.status_code == 410 and cancelled in text and "J'accepte" not in text
    db.session.expire_all()
    assert db.session.get(SlotOffer, offer.id).status == OfferStatus.VOID
    assert [p.is_live for p in db.session.get(Rdv, session.id).participations] == [False]  # the place given back
    assert db.session.scalar(select(WaitlistEntry.status)) == EntryStatus.LAPSED


def test_a_place_taken_through_an_offer_keeps_its_history_when_the_session_is_cancelled(app, pmi):
    session = offered_place(app, pmi)
    [offer] = db.session.scalars(select(SlotOffer)).all()
    offers.accept(offer, NOW)
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        cancel_rdv(actor=pmi.agent, rdv=db.session.get(Rdv, session.id), status=RdvStatus.REVOKED,
                   reason="Animatrice malade")
    db.session.expire_all()
    offer = db.session.get(SlotOffer, offer.id)
    # Counted as accepted in the statistics, as it was: the cancellation is the session's, told to its families.
    assert (offer.status, offer.answered_at) == (OfferStatus.ACCEPTED, NOW)
    assert db.session.get(WaitlistSlot, offer.slot_id).status == SlotStatus.TAKEN


def test_accepting_the_place_of_a_cancelled_session_is_refused_before_anything_is_claimed(app, pmi):
    session = offered_place(app, pmi)
    [offer] = db.session.scalars(select(SlotOffer)).all()
    # Cancelled behind the listener's back, as before the places were withdrawn on cancellation: the hold stands.
    db.session.get(Rdv, session.id).status = RdvStatus.REVOKED
    db.session.commit()
    with pytest.raises(offers.OfferRefused) as refused:
        offers.accept(db.session.get(SlotOffer, offer.id), NOW)
    assert (refused.value.title, refused.value.code) == ("Séance annulée", 410)
    db.session.expire_all()
    assert db.session.get(SlotOffer, offer.id).status == OfferStatus.HELD  # refused before anything was claimed


def test_the_families_waiting_for_a_session_that_has_begun_are_lapsed_by_the_next_run(pmi):
    session = full_session(pmi, taken=[0], waiting=[1])
    coming = full_session(pmi, taken=[0], waiting=[2], week=1)
    begun = session.starts_at + timedelta(minutes=1)
    offers.reallocate(begun)
    db.session.expire_all()
    rows = db.session.execute(select(WaitlistEntry.session_id, WaitlistEntry.status, WaitlistEntry.closed_at)
                              .order_by(WaitlistEntry.id)).all()
    assert rows == [(session.id, EntryStatus.LAPSED, begun), (coming.id, EntryStatus.ACTIVE, None)]


# --- A moved session: its open places follow, a family holding one is told again ----------------------------------

def move(pmi, session: Rdv) -> None:
    sessions.move_session(actor=pmi.agent, session=db.session.get(Rdv, session.id), starts_at=tuesday(2, hour=9),
                          duration=timedelta(minutes=60))


def test_an_offer_whose_sms_has_not_left_yet_is_not_sent_twice_and_leaves_with_the_new_time(app, pmi, monkeypatch):
    monkeypatch.setitem(app.extensions["celery"].conf, "task_always_eager", False)  # what is queued waits
    session = offered_place(app, pmi)
    offers.reallocate(NOW)
    [offer] = db.session.scalars(select(SlotOffer)).all()
    before = [(m.id, m.status, m.body) for m in offer_texts(offer.id)]
    assert before and all(status == MessageStatus.PENDING and body is None for _, status, body in before)
    move(pmi, session)
    assert [m.id for m in offer_texts(offer.id)] == [row[0] for row in before]
    app.extensions["celery"].conf["task_always_eager"] = True  # the worker now sends it
    outbox.dispatch_due()
    [sms] = [m for m in offer_texts(offer.id) if m.channel == "sms"]
    assert "mar. 17/03 à 9h" in sms.body and "10/03" not in sms.body


def test_an_offer_sms_being_sent_with_the_old_time_is_sent_again(app, pmi):
    session = offered_place(app, pmi)
    outbox.dispatch_due()
    [offer] = db.session.scalars(select(SlotOffer)).all()
    [sms] = [m for m in offer_texts(offer.id) if m.channel == "sms"]
    sms.status = MessageStatus.QUEUED  # claimed, its text written with the old time, not yet answered by Twilio
    db.session.commit()
    move(pmi, session)
    again = [m for m in offer_texts(offer.id) if m.channel == "sms" and m.id != sms.id]
    assert len(again) == 1 and again[0].status == MessageStatus.PENDING


def test_a_hold_that_ends_as_the_session_moves_is_not_offered_again(app, pmi):
    session = offered_place(app, pmi)
    outbox.dispatch_due()
    [offer] = db.session.scalars(select(SlotOffer)).all()
    told = [m.id for m in offer_texts(offer.id)]
    with time_machine.travel(offer.held_until, tick=False):
        move(pmi, session)
    assert [m.id for m in offer_texts(offer.id)] == told
    # The place itself, still open, follows the session.
    assert db.session.get(WaitlistSlot, offer.slot_id).starts_at == tuesday(2, hour=9)


def test_only_the_moved_sessions_open_places_and_held_offers_follow_it(app, pmi):
    other = full_session(pmi, taken=[3], waiting=[2], week=3)
    with app.test_request_context():
        sessions.cancel_participation(actor=pmi.agent, participation=db.session.get(Rdv, other.id).participations[0])
    session = offered_place(app, pmi)
    outbox.dispatch_due()
    theirs = db.session.scalar(select(SlotOffer).where(SlotOffer.usager_id == pmi.families[2][0].id))
    assert theirs is not None and theirs.status == OfferStatus.HELD
    told = [m.id for m in offer_texts(theirs.id)]
    move(pmi, session)
    assert [m.id for m in offer_texts(theirs.id)] == told
    assert db.session.get(WaitlistSlot, theirs.slot_id).starts_at == tuesday(3)


def test_a_family_that_said_no_is_not_told_again_the_one_holding_the_place_now_is(app, pmi):
    session = full_session(pmi, taken=[0], waiting=[1, 2], week=1)
    with app.test_request_context():
        sessions.cancel_participation(actor=pmi.agent, participation=session.participations[0])
    first = db.session.scalar(select(SlotOffer).where(SlotOffer.usager_id == pmi.families[1][0].id))
    offers.decline(first, NOW)  # the place goes to the next family at once (the kick)
    second = db.session.scalar(select(SlotOffer).where(SlotOffer.usager_id == pmi.families[2][0].id))
    assert second.status == OfferStatus.HELD
    declined_told = [m.id for m in offer_texts(first.id)]
    move(pmi, session)
    assert [m.id for m in offer_texts(first.id)] == declined_told
    assert len([m for m in offer_texts(second.id) if m.channel == "sms"]) == 2


def test_a_place_already_taken_through_an_offer_keeps_the_time_it_was_given_at(app, pmi):
    session = offered_place(app, pmi)
    [offer] = db.session.scalars(select(SlotOffer)).all()
    offers.accept(offer, NOW)
    move(pmi, session)
    db.session.expire_all()
    slot = db.session.get(WaitlistSlot, offer.slot_id)
    assert (slot.status, slot.starts_at) == (SlotStatus.TAKEN, tuesday(1))


# --- What a family reads ------------------------------------------------------------------------------------------

def test_a_refusal_carries_its_french_sentence_as_the_error_itself(app, pmi):
    session = offered_place(app, pmi)
    [offer] = db.session.scalars(select(SlotOffer)).all()
    offers.accept(offer, NOW)
    with pytest.raises(offers.OfferRefused) as refused:
        offers.accept(db.session.get(SlotOffer, offer.id), NOW)
    sentence = "Vous avez déjà accepté ce créneau : votre rendez-vous est enregistré."
    assert (str(refused.value), refused.value.message, refused.value.title, refused.value.code) == \
        (sentence, sentence, "Créneau déjà accepté", 409)
    assert session.id


# --- Never failing the change that frees a place ------------------------------------------------------------------

def test_a_failure_recording_a_sessions_freed_place_is_logged_and_the_cancellation_stands(app, pmi, monkeypatch,
                                                                                         caplog):
    session = full_session(pmi, taken=[0], waiting=[1])

    def broken(*args, **kwargs):
        raise RuntimeError("database gone")

    # The one fault injected: the count of free places failing inside the savepoint.
    monkeypatch.setattr(offers.booking_sessions, "free_places", broken)
    with caplog.at_level(logging.ERROR, logger="lapins.waitlist.offers"), app.test_request_context():
        sessions.cancel_participation(actor=pmi.agent, participation=session.participations[0])
    db.session.expire_all()
    assert db.session.get(Rdv, session.id).places_taken == 0
    [record] = [r for r in caplog.records if r.name == "lapins.waitlist.offers"]
    text = record.getMessage()
    assert f"the places freed in session {session.id} could not be recorded" in text
    assert "RuntimeError" in text and "Traceback" in text


def moved(pmi, rdv: Rdv) -> bool:
    move_rdv(actor=pmi.agent, rdv=rdv, starts_at=tuesday(2), force=True)
    return db.session.get(Rdv, rdv.id).starts_at == tuesday(2)


def cancelled(pmi, rdv: Rdv) -> bool:
    cancel_rdv(actor=pmi.agent, rdv=rdv, status=RdvStatus.REVOKED, reason="Agent absent")
    return db.session.get(Rdv, rdv.id).status == RdvStatus.REVOKED


@pytest.mark.parametrize(("change", "logged"), [(moved, "the slot left by rdv {} could not be recorded"),
                                                (cancelled, "the slot freed by rdv {} could not be recorded")])
def test_a_failure_recording_the_time_an_rdv_frees_is_logged_and_the_move_or_cancellation_stands(
        pmi, monkeypatch, caplog, change, logged):
    rdv = book_rdv(actor=pmi.agent, motif=factories_motif(pmi), agents=[pmi.agent], usagers=[pmi.families[0][0]],
                   lieu=pmi.lieu, starts_at=tuesday(1), force=True)

    def broken(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(offers, "record_freed", broken)
    with caplog.at_level(logging.ERROR, logger="lapins.waitlist.offers"):
        assert change(pmi, rdv)
    [record] = [r for r in caplog.records if r.name == "lapins.waitlist.offers"]
    text = record.getMessage()
    assert logged.format(rdv.id) in text
    assert "RuntimeError" in text and "Traceback" in text


def test_an_accepted_place_names_its_session_and_no_other_offer_is_touched(app, pmi):
    session = full_session(pmi, taken=[0], waiting=[1, 2], week=1)
    with app.test_request_context():
        sessions.cancel_participation(actor=pmi.agent, participation=session.participations[0])
    first = db.session.scalar(select(SlotOffer).where(SlotOffer.usager_id == pmi.families[1][0].id))
    offers.decline(first, NOW)
    second = db.session.scalar(select(SlotOffer).where(SlotOffer.usager_id == pmi.families[2][0].id))
    answered = NOW + timedelta(minutes=3)
    assert offers.accept(second, answered).id == session.id
    db.session.expire_all()
    rows = db.session.execute(select(SlotOffer.usager_id, SlotOffer.status, SlotOffer.rdv_id, SlotOffer.answered_at)
                              .order_by(SlotOffer.id)).all()
    assert rows == [(pmi.families[1][0].id, OfferStatus.DECLINED, None, NOW),
                    (pmi.families[2][0].id, OfferStatus.ACCEPTED, session.id, answered)]
