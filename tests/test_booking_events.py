"""Booking tells what happened; the rooms that follow it listen, and a crash after the commit loses nothing."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import time, timedelta

import pytest
from sqlalchemy import select

from lapins import booking
from lapins.booking import events
from lapins.booking.events import RdvBooked, RdvCancelled, RdvMoved, RdvStatusSet, TimeLeft
from lapins.infra.extensions import db
from lapins.models import Message, MessageKind, MessageStatus, OfferStatus, RdvStatus, SlotOffer, WaitlistSlot
from lapins.models.rdvs import BookingChannel, CancellationChannel, Canceller, MoveChannel
from lapins.notifications import outbox
from lapins.waitlist import offers
from tests.test_offers import NOW, cancel, clinic, frozen_time  # noqa: F401  (fixtures shared with the offer tests)


@contextmanager
def told():
    """Every event booking sends, with the moment it was sent at."""
    seen: list[tuple[str, object]] = []

    def in_transaction(sender, *, event, rdv):
        assert rdv.id == event.rdv_id
        seen.append(("in_transaction", event))

    def committed(sender, *, event):
        seen.append(("committed", event))

    with events.in_transaction.connected_to(in_transaction), events.committed.connected_to(committed):
        yield seen


def confirmation_of(rdv) -> Message:
    db.session.expire_all()
    return db.session.scalars(select(Message).where(Message.rdv_id == rdv.id, Message.kind == MessageKind.CREATED)
                              .order_by(Message.id)).first()


def test_each_change_is_told_once_inside_the_transaction_then_once_after_the_commit(clinic):
    family = clinic.family("Martin")
    with told() as seen:
        rdv = clinic.rdv(family)
        left = TimeLeft(rdv.organisation_id, rdv.motif_id, rdv.lieu_id, (clinic.agent.id,), rdv.starts_at,
                        rdv.ends_at)
        booking.move_rdv(actor=clinic.agent, rdv=rdv, starts_at=rdv.starts_at + timedelta(hours=1))
        booking.move_rdv(actor=clinic.agent, rdv=rdv, starts_at=rdv.starts_at, notes="Apporter le carnet")
        cancel(rdv)
    booked = RdvBooked(rdv.id, clinic.agent.id, via=BookingChannel.AGENDA)
    moved = RdvMoved(rdv.id, clinic.agent.id, family_told=True, via=MoveChannel.AGENDA, left=left)
    noted = RdvMoved(rdv.id, clinic.agent.id, family_told=False)
    cancelled = RdvCancelled(rdv.id, None, by=Canceller.FAMILY, via=CancellationChannel.LINK)
    assert seen == [(moment, event) for event in (booked, moved, noted, cancelled)
                    for moment in ("in_transaction", "committed")]


def test_restoring_a_cancelled_rdv_is_told_with_its_status(clinic, frozen_time):
    rdv = clinic.rdv(clinic.family("Martin"))
    booking.cancel_rdv(actor=clinic.agent, rdv=rdv, status=RdvStatus.REVOKED, reason=None)
    frozen_time.move_to(rdv.starts_at + timedelta(minutes=5))
    with told() as seen:
        booking.set_outcome(actor=clinic.agent, rdv=rdv, status=RdvStatus.SEEN)
    assert seen[-1] == ("committed", RdvStatusSet(rdv.id, clinic.agent.id, status=RdvStatus.SEEN, restored=True))


def test_a_refused_booking_tells_nothing(clinic):
    clinic.rdv(clinic.family("Martin"))
    with told() as seen, pytest.raises(booking.BookingError):
        clinic.rdv(clinic.family("Durand"), minute=15)  # the agent is busy
    assert seen == []


def test_a_listener_failing_after_the_commit_neither_fails_the_booking_nor_silences_the_others(clinic):
    def broken(sender, *, event):
        raise RuntimeError("broker down")

    with events.committed.connected_to(broken), told() as seen:
        rdv = clinic.rdv(clinic.family("Martin"))
    assert rdv.id is not None and seen[-1][0] == "committed"
    assert confirmation_of(rdv).status == MessageStatus.SENT  # the outbox's kick still ran


# --- A process that dies between the commit and what follows it ---------------------------------------------------

@pytest.fixture()
def dies_after_commit(monkeypatch):
    """As if the process were killed right after each commit: nothing that runs after it happens."""
    monkeypatch.setattr(events, "announce", lambda event: None)


def test_a_booking_whose_process_dies_after_the_commit_still_sends_its_confirmation_at_the_next_beat(
        clinic, dies_after_commit):
    rdv = clinic.rdv(clinic.family("Martin"))
    message = confirmation_of(rdv)
    assert message.status == MessageStatus.PENDING and message.due_at <= NOW  # planned with the booking, not sent

    outbox.dispatch_due()  # the beat's job (the worker runs eagerly here)

    assert confirmation_of(rdv).status == MessageStatus.SENT


def test_a_cancellation_whose_process_dies_after_the_commit_still_offers_its_slot_at_the_next_beat(
        clinic, dies_after_commit):
    cancelled = clinic.rdv(clinic.family("Annule"))
    waiting = clinic.wait(clinic.family("Attente", phone="+33622222222"))

    cancel(cancelled)

    db.session.expire_all()
    [slot] = db.session.scalars(select(WaitlistSlot)).all()  # recorded with the cancellation
    assert slot.source_rdv_id == cancelled.id
    assert not db.session.scalars(select(SlotOffer)).all()  # nobody was told yet

    assert offers.reallocate() == 1  # the beat's job

    [offer] = db.session.scalars(select(SlotOffer)).all()
    assert offer.entry_id == waiting.id and offer.status == OfferStatus.HELD


def test_a_cancellation_rolled_back_leaves_no_freed_slot(clinic, monkeypatch):
    rdv = clinic.rdv(clinic.family("Annule"))
    clinic.wait(clinic.family("Attente"))

    def commit_fails():
        raise RuntimeError("database gone")

    monkeypatch.setattr(db.session, "commit", commit_fails)
    with pytest.raises(RuntimeError):
        cancel(rdv)
    monkeypatch.undo()
    db.session.expire_all()
    assert db.session.get(type(rdv), rdv.id).is_live
    assert not db.session.scalars(select(WaitlistSlot)).all()


def test_the_confirmation_leaves_with_the_booking_even_as_the_clock_moves_on(clinic, monkeypatch):
    """The listener and the outbox read the time once: a clock that moved between two reads must not make a message
    due now look due later, and wait for the beat."""
    monkeypatch.setattr(outbox, "utcnow", lambda: NOW + timedelta(milliseconds=1))
    rdv = clinic.rdv(clinic.family("Martin"))
    assert confirmation_of(rdv).status == MessageStatus.SENT


def test_a_move_frees_the_time_it_leaves_for_the_waiting_list_unless_the_agent_is_still_busy_then(clinic):
    rdv = clinic.rdv(clinic.family("Martin"))
    waiting = clinic.wait(clinic.family("Attente", phone="+33622222222"))
    booking.move_rdv(actor=clinic.agent, rdv=rdv, starts_at=rdv.starts_at + timedelta(minutes=15))
    assert db.session.scalars(select(WaitlistSlot)).all() == []  # 10:00-10:30 → 10:15-10:45: still busy at 10:00

    before = rdv.starts_at
    with told() as seen:
        booking.move_rdv(actor=clinic.agent, rdv=rdv, starts_at=rdv.starts_at + timedelta(hours=1))
    assert seen[0][1].left.starts_at == before
    [slot] = db.session.scalars(select(WaitlistSlot)).all()  # recorded in the move's transaction
    assert (slot.starts_at, slot.source_rdv_id) == (before, rdv.id)
    [offer] = db.session.scalars(select(SlotOffer)).all()  # and offered once it committed
    assert offer.entry_id == waiting.id and offer.slot_id == slot.id


@pytest.mark.parametrize("shift", [timedelta(minutes=30), timedelta(minutes=-30)], ids=["later", "earlier"])
def test_a_move_by_exactly_its_length_frees_the_whole_time_it_leaves_in_its_lieu(clinic, shift):
    rdv = clinic.rdv(clinic.family("Martin"))  # 10:00-10:30, moved to 10:30-11:00 or 09:30-10:00: free at 10:00
    clinic.wait(clinic.family("Attente", phone="+33622222222"))
    before = rdv.starts_at

    booking.move_rdv(actor=clinic.agent, rdv=rdv, starts_at=before + shift)

    [slot] = db.session.scalars(select(WaitlistSlot)).all()
    assert (slot.starts_at, slot.ends_at, slot.agent_id, slot.lieu_id) == (
        before, before + timedelta(minutes=30), clinic.agent.id, clinic.lieu.id)


def test_a_move_to_a_colleague_at_the_same_time_frees_the_first_agents_time(clinic, factories):
    colleague = factories.AgentFactory(organisation=clinic.organisation)
    factories.PlageFactory(agent=colleague, lieu=clinic.lieu, first_day=NOW.date(), motifs=[clinic.motif],
                           start_time=time(9), end_time=time(12), weekdays=0b0011111)
    rdv = clinic.rdv(clinic.family("Martin"))
    clinic.wait(clinic.family("Attente", phone="+33622222222"))

    booking.move_rdv(actor=clinic.agent, rdv=rdv, starts_at=rdv.starts_at, agents=[colleague])

    [slot] = db.session.scalars(select(WaitlistSlot)).all()
    assert (slot.starts_at, slot.agent_id) == (rdv.starts_at, clinic.agent.id)



def test_the_time_a_move_leaves_is_recorded_in_the_moves_transaction_and_rolled_back_with_it(clinic, monkeypatch):
    # What must be atomic with a booking is written in its transaction: a failure after the freed time is recorded
    # undoes the move and the freed time together (committing the freed time would commit the move half-done).
    rdv = clinic.rdv(clinic.family("Martin"))
    clinic.wait(clinic.family("Attente", phone="+33622222222"))
    before, free_left = rdv.starts_at, offers.free_left

    def then_fails(left, moved):
        assert free_left(left, moved) is not None  # the freed time recorded
        raise RuntimeError("what the move writes next fails")

    monkeypatch.setattr(offers, "free_left", then_fails)
    with pytest.raises(RuntimeError):
        booking.move_rdv(actor=clinic.agent, rdv=rdv, starts_at=before + timedelta(hours=1))

    db.session.expire_all()
    assert db.session.get(type(rdv), rdv.id).starts_at == before
    assert db.session.scalars(select(WaitlistSlot)).all() == []
