"""The offer engine: a freed slot goes to the best-placed waiting family, held for it, then to the next one.

1. **Freeing** (`free_cancelled` and `free_left`, on booking's RdvCancelled and RdvMoved events, in the change's own
   transaction, whoever made it: an agent, a family on its link or accepting an earlier slot): the slot is recorded
   (`waitlist_slots`, open), then the reallocation job is kicked, as the outbox is after a booking.
2. **Offering** (`reallocate`, the beat's job every minute and the kicked task): holds whose time is over expire,
   slots too close to their start close, and each open slot without a hold is offered to the best-placed family:
   same organisation and motif, the lieu if the entry names one, a slot earlier than the family's rdv if it has
   one; by priority, then age; at most WAITLIST_MAX_OFFERS_PER_DAY a day per family; never in quiet hours (the SMS
   could not leave). An offer is a row (`slot_offers`, held until `held_until`) and its SMS/e-mails are outbox
   rows (kind `offer`), written in one transaction taken under the agent's booking lock: offers of one agent's
   times are made one after the other, and a partial unique index keeps one hold per slot whatever happens.
3. **Answering** (`accept`, `decline`, from /o/<token>): the offer is claimed by a conditional UPDATE (held, not
   expired) in the same transaction as the booking, which goes through booking.book_rdv / move_rdv and so takes
   the same agent lock and overlap check as any booking: two acceptances of one time book it once.
"""
from __future__ import annotations

import logging
from datetime import datetime, time, timedelta

from flask import current_app
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from lapins import booking
from lapins.booking import sessions as booking_sessions
from lapins.booking.events import TimeLeft
from lapins.infra.celery_app import task_named
from lapins.infra.extensions import db
from lapins.infra.logs import safe_traceback
from lapins.models import (
    Agent, Channel, EntryStatus, WaitlistSlot, Message, MessageKind, MessageStatus, Motif, OfferStatus, Rdv, RdvAgent,
    RdvStatus,
    SlotOffer, SlotStatus, Usager, WaitlistEntry, utcnow,
)
from lapins.models.rdvs import CANCELLED_STATUSES, BookingChannel, MoveChannel
from lapins.models.waitlist import waitlist_slot_agents
from lapins.notifications import outbox, timing
from lapins.slots.engine import to_utc

logger = logging.getLogger(__name__)

REALLOCATE_TASK = "lapins.tasks.reallocate_freed_slots"
SLOTS_PER_RUN = 200


class OfferRefused(Exception):
    """An answer to an offer that cannot be taken, with the French sentence the family reads."""

    def __init__(self, title: str, message: str, code: int = 409) -> None:
        super().__init__(message)
        self.title, self.message, self.code = title, message, code


def _hold() -> timedelta:
    return timedelta(minutes=current_app.config["WAITLIST_HOLD_MINUTES"])


def _stop_before() -> timedelta:
    return timedelta(hours=current_app.config["WAITLIST_STOP_BEFORE_HOURS"])


# --- Freeing ------------------------------------------------------------------------------------------------------

def free_cancelled(rdv: Rdv) -> WaitlistSlot | None:
    """A cancellation frees its time: the slot is recorded in the cancellation's transaction, so that a process
    dying right after the commit leaves it for the beat to offer. Never fails the cancellation: a failure here is
    rolled back to a savepoint and logged."""
    now = utcnow()
    try:
        with db.session.begin_nested():
            if rdv.is_session:
                # A cancelled session frees no slot for individual rdvs; the places it offered are gone and its
                # own waiting families wait for nothing.
                _withdraw_session_places(rdv.id, now)
                _lapse_session_entries(rdv.id, now)
                return None
            settle_entries_of_cancelled(rdv, now)
            if not rdv.agent_links:
                return None
            # A joint consultation (several agents) is offered as one slot that needs them all.
            return record_freed(rdv.organisation_id, rdv.motif_id, rdv.lieu_id,
                                sorted(link.agent_id for link in rdv.agent_links), rdv.starts_at, rdv.ends_at,
                                source_rdv_id=rdv.id, commit=False)
    except Exception as error:
        logger.error("Waiting list: the slot freed by rdv %s could not be recorded\n%s", rdv.id, safe_traceback(error))
        return None


def free_left(left: TimeLeft, rdv: Rdv) -> WaitlistSlot | None:
    """The time a moved rdv left, recorded in the move's transaction as a cancellation's is; not when one of its
    agents is still busy then (a move by a few minutes). Never fails the move (a savepoint, logged)."""
    kept = set(left.agent_ids) & {link.agent_id for link in rdv.agent_links}
    if not left.agent_ids or (kept and rdv.starts_at < left.ends_at and rdv.ends_at > left.starts_at):
        return None
    try:
        with db.session.begin_nested():
            return record_freed(left.organisation_id, left.motif_id, left.lieu_id, list(left.agent_ids),
                                left.starts_at, left.ends_at, source_rdv_id=rdv.id, commit=False)
    except Exception as error:
        logger.error("Waiting list: the slot left by rdv %s could not be recorded\n%s", rdv.id, safe_traceback(error))
        return None


def follow_session(session: Rdv) -> None:
    """A moved session's places still open to its waiting list take its new time, lieu and agents, in the move's
    transaction: an offer made later names where and when the session now is, and a family already told of a place
    it still holds is sent the offer again, with the new time (the same link)."""
    agents = [link.agent for link in session.agent_links]
    slots = list(db.session.scalars(select(WaitlistSlot).where(WaitlistSlot.session_id == session.id,
                                                               WaitlistSlot.status == SlotStatus.OPEN)))
    for slot in slots:
        slot.starts_at, slot.ends_at, slot.lieu_id = session.starts_at, session.ends_at, session.lieu_id
        slot.agent_id, slot.agents = agents[0].id, list(agents)
    if not slots:
        return
    now = utcnow()
    held = db.session.scalars(select(SlotOffer).where(SlotOffer.slot_id.in_([slot.id for slot in slots]),
                                                      SlotOffer.status == OfferStatus.HELD, SlotOffer.held_until > now))
    for offer in held:
        told = db.session.execute(select(Message.status, Message.body.is_(None))
                                  .where(Message.offer_id == offer.id)).all()
        # An offer whose text is not written yet will be, when it leaves, with the session's new time already.
        unwritten = any(status in (MessageStatus.PENDING, MessageStatus.QUEUED) and blank for status, blank in told)
        if told and not unwritten:
            db.session.add_all(_messages(offer, session.organisation.territory_id, now, again=len(told)))


def free_session_places(session: Rdv, now: datetime | None = None) -> list[WaitlistSlot]:
    """Places of a collective session that a cancellation (or more capacity) made free, recorded as open slots of
    the session — one per place to offer, no more than families waiting for it — in the change's transaction, under
    the agents' locks booking holds. Never fails the change (a savepoint, logged)."""
    now = now or utcnow()
    if not session.is_live or session.starts_at - _stop_before() <= now:
        return []
    try:
        with db.session.begin_nested():
            waiting = db.session.scalar(select(func.count()).select_from(WaitlistEntry).where(
                WaitlistEntry.session_id == session.id, WaitlistEntry.status == EntryStatus.ACTIVE)) or 0
            held = exists().where(SlotOffer.slot_id == WaitlistSlot.id, SlotOffer.status == OfferStatus.HELD)
            open_unheld = db.session.scalar(select(func.count()).select_from(WaitlistSlot).where(
                WaitlistSlot.session_id == session.id, WaitlistSlot.status == SlotStatus.OPEN, ~held)) or 0
            wanted = min(booking_sessions.free_places(session, now), waiting) - open_unheld
            agents = [link.agent for link in session.agent_links]
            slots = []
            for _ in range(max(wanted, 0)):
                slot = WaitlistSlot(organisation_id=session.organisation_id, motif_id=session.motif_id,
                                    lieu_id=session.lieu_id, agent_id=agents[0].id, starts_at=session.starts_at,
                                    ends_at=session.ends_at, source_rdv_id=session.id, session_id=session.id,
                                    status=SlotStatus.OPEN, created_at=now)
                slot.agents = list(agents)
                db.session.add(slot)
                slots.append(slot)
            db.session.flush()
            return slots
    except Exception as error:
        logger.error("Waiting list: the places freed in session %s could not be recorded\n%s", session.id,
                     safe_traceback(error))
        return []


def _withdraw_session_places(session_id: int, now: datetime) -> None:
    """A cancelled session's places: a hold is voided (an offer SMS not sent yet never leaves, the outbox sends only
    held offers; a family answering its link reads that the session is cancelled), an open place is closed."""
    places = select(WaitlistSlot.id).where(WaitlistSlot.session_id == session_id)
    db.session.execute(update(SlotOffer).where(SlotOffer.slot_id.in_(places), SlotOffer.status == OfferStatus.HELD)
                       .values(status=OfferStatus.VOID, answered_at=now).execution_options(synchronize_session=False))
    db.session.execute(update(WaitlistSlot).where(WaitlistSlot.session_id == session_id,
                                                  WaitlistSlot.status == SlotStatus.OPEN)
                       .values(status=SlotStatus.CLOSED).execution_options(synchronize_session=False))


def _lapse_session_entries(session_id: int, now: datetime) -> None:
    db.session.execute(update(WaitlistEntry).where(WaitlistEntry.session_id == session_id,
                                                   WaitlistEntry.status == EntryStatus.ACTIVE)
                       .values(status=EntryStatus.LAPSED, closed_at=now).execution_options(synchronize_session=False))


def offer_soon(slot_id: int) -> None:
    """After the commit: have the slot offered now when a family waits for it, rather than at the next beat."""
    slot = db.session.get(WaitlistSlot, slot_id)
    if slot is not None and _anyone_waiting(slot):
        kick()


def settle_entries_of_cancelled(rdv: Rdv, now: datetime) -> None:
    """The waiting-list entries that wanted this (now cancelled) rdv earlier: a family that cancelled it no longer
    waits; a family whose rdv the service cancelled still needs one, and keeps its place for any slot of the motif."""
    for entry in db.session.scalars(select(WaitlistEntry).where(WaitlistEntry.rdv_id == rdv.id,
                                                                WaitlistEntry.status == EntryStatus.ACTIVE)):
        if rdv.status == RdvStatus.EXCUSED:
            entry.status, entry.closed_at = EntryStatus.LAPSED, now
        else:
            entry.rdv_id = None


def lapse_entries_of_past_rdvs(now: datetime) -> int:
    """Entries that wanted an rdv earlier than one that has now started: there is nothing earlier left to offer."""
    started = select(Rdv.id).where(Rdv.starts_at <= now)
    lapsed = db.session.execute(
        update(WaitlistEntry).where(WaitlistEntry.status == EntryStatus.ACTIVE,
                                    or_(WaitlistEntry.rdv_id.in_(started), WaitlistEntry.session_id.in_(started)))
        .values(status=EntryStatus.LAPSED, closed_at=now).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return lapsed


def record_freed(organisation_id: int, motif_id: int, lieu_id: int | None, agent_ids: list[int], starts_at: datetime,
                 ends_at: datetime, *, source_rdv_id: int | None, now: datetime | None = None,
                 commit: bool = True) -> WaitlistSlot | None:
    """Record an open slot of these agents to offer (and commit, unless told not to), unless it is too close to its
    start or already open."""
    now = now or utcnow()
    if starts_at - _stop_before() <= now:
        return None
    already = db.session.scalar(select(WaitlistSlot.id).where(
        WaitlistSlot.agent_id == agent_ids[0], WaitlistSlot.starts_at == starts_at,
        WaitlistSlot.status == SlotStatus.OPEN))
    if already:
        return None
    slot = WaitlistSlot(organisation_id=organisation_id, motif_id=motif_id, lieu_id=lieu_id, agent_id=agent_ids[0],
                     starts_at=starts_at, ends_at=ends_at, source_rdv_id=source_rdv_id, status=SlotStatus.OPEN,
                     created_at=now)
    slot.agents = list(db.session.scalars(select(Agent).where(Agent.id.in_(agent_ids))))
    db.session.add(slot)
    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return slot


def _anyone_waiting(slot: WaitlistSlot) -> bool:
    """Whether a task is worth its trip through the broker; the beat offers the slot to a family added later."""
    return bool(db.session.scalar(select(WaitlistEntry.id).where(
        WaitlistEntry.organisation_id == slot.organisation_id, WaitlistEntry.motif_id == slot.motif_id,
        WaitlistEntry.status == EntryStatus.ACTIVE).limit(1)))


def kick() -> None:
    """Offer now rather than at the next beat; the broker being down only delays the offer to the next beat."""
    try:
        task_named(REALLOCATE_TASK).delay()
    except Exception:
        logger.warning("Waiting list: broker unreachable, freed slots wait for the next beat", exc_info=True)


# --- Offering -----------------------------------------------------------------------------------------------------

def reallocate(now: datetime | None = None) -> int:
    """The beat's job: expire holds, close slots too near, offer every open slot without a hold. Returns offers made."""
    now = now or utcnow()
    expire_holds(now)
    lapse_entries_of_past_rdvs(now)
    db.session.execute(
        update(WaitlistSlot).where(WaitlistSlot.status == SlotStatus.OPEN, WaitlistSlot.starts_at <= now + _stop_before())
        .values(status=SlotStatus.CLOSED).execution_options(synchronize_session=False))
    db.session.commit()
    held = exists().where(SlotOffer.slot_id == WaitlistSlot.id, SlotOffer.status == OfferStatus.HELD)
    slot_ids = list(db.session.scalars(
        select(WaitlistSlot.id).where(WaitlistSlot.status == SlotStatus.OPEN, ~held,
                                      WaitlistSlot.motif_id.in_(select(Motif.id).where(Motif.notify)))
        .order_by(WaitlistSlot.starts_at, WaitlistSlot.id).limit(SLOTS_PER_RUN)))
    db.session.commit()
    made = sum(offer_slot(slot_id, now) is not None for slot_id in slot_ids)
    if made:
        outbox.kick()
    return made


def expire_holds(now: datetime) -> int:
    expired = db.session.execute(
        update(SlotOffer).where(SlotOffer.status == OfferStatus.HELD, SlotOffer.held_until <= now)
        .values(status=OfferStatus.EXPIRED).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return expired


def offer_slot(slot_id: int, now: datetime) -> SlotOffer | None:
    """Offer one open slot to the best-placed family and commit the offer with its messages; None if not now."""
    slot = db.session.get(WaitlistSlot, slot_id)
    if slot is None:
        return None
    if not slot.motif.notify:
        # « Sans notification »: nothing is sent for this motif, offers included. The freed time stays on
        # « Créneaux libérés » for an agent to phone a waiting family.
        db.session.commit()
        return None
    territory = slot.organisation.territory
    if timing.in_quiet_hours(now, territory.tz, territory.quiet_hours_start, territory.quiet_hours_end):
        db.session.commit()
        return None  # the SMS could not leave: the slot waits for the morning's first run
    agent_ids = slot.agent_ids
    try:
        # Under the agents' booking locks: an agent booking this time meanwhile, or another run offering an
        # overlapping slot of one of these agents, waits for this transaction (and this one sees theirs).
        booking.lock_agents(agent_ids)
        db.session.refresh(slot)
        if slot.session_id is not None:
            # A place in a collective session: its agents are busy with the session itself, and the place is
            # free only while the session has one neither taken nor held for another family.
            if slot.status != SlotStatus.OPEN or _held_itself(slot):
                db.session.rollback()
                return None
            session = slot.session
            db.session.refresh(session)
            if not session.is_live or booking_sessions.free_places(session, now) <= 0:
                slot.status = SlotStatus.CLOSED
                db.session.commit()
                return None
        elif slot.status != SlotStatus.OPEN or _held(slot):
            db.session.rollback()
            return None
        elif _agent_busy(slot):
            slot.status = SlotStatus.CLOSED  # one of its agents was booked at this time again: it is no longer free
            db.session.commit()
            return None
        entry = _best_entry(slot, now)
        if entry is None:
            db.session.rollback()
            return None  # nobody waiting now: the slot stays open for a family added later
        offer = SlotOffer(slot=slot, entry=entry, usager_id=entry.usager_id, status=OfferStatus.HELD,
                          offered_at=now, held_until=now + _hold())
        db.session.add(offer)
        db.session.flush()
        db.session.add_all(_messages(offer, territory.id, now))
        db.session.commit()
    except IntegrityError:  # another run's hold on this slot won
        db.session.rollback()
        return None
    except BaseException:
        db.session.rollback()
        raise
    logger.info("Waiting list: slot %s offered (offer %s)", slot_id, offer.id)
    return offer


def _held_itself(slot: WaitlistSlot) -> bool:
    return bool(db.session.scalar(select(SlotOffer.id).where(SlotOffer.slot_id == slot.id,
                                                             SlotOffer.status == OfferStatus.HELD).limit(1)))


def _held(slot: WaitlistSlot) -> bool:
    """A hold on this slot, or on another slot overlapping it that needs one of the same agents."""
    return bool(db.session.scalar(
        select(SlotOffer.id).join(WaitlistSlot, SlotOffer.slot_id == WaitlistSlot.id)
        .where(SlotOffer.status == OfferStatus.HELD,
               or_(WaitlistSlot.agent_id.in_(slot.agent_ids),
                   WaitlistSlot.id.in_(select(waitlist_slot_agents.c.slot_id)
                                       .where(waitlist_slot_agents.c.agent_id.in_(slot.agent_ids)))),
               WaitlistSlot.starts_at < slot.ends_at, WaitlistSlot.ends_at > slot.starts_at).limit(1)))


def _agent_busy(slot: WaitlistSlot) -> bool:
    """One of the slot's agents has a live rdv over its time again."""
    return bool(db.session.scalar(
        select(RdvAgent.rdv_id).where(RdvAgent.agent_id.in_(slot.agent_ids), RdvAgent.live.is_(True),
                                      RdvAgent.starts_at < slot.ends_at, RdvAgent.ends_at > slot.starts_at).limit(1)))


BEST_ENTRY_PAGE = 20


def _best_entry(slot: WaitlistSlot, now: datetime) -> WaitlistEntry | None:
    """The first reachable waiting family for this slot, by priority then age."""
    tz = slot.organisation.territory.tz
    day_start = to_utc(now.astimezone(tz).date(), time(0), tz)
    over_limit = (select(SlotOffer.usager_id).where(SlotOffer.offered_at >= day_start)
                  .group_by(SlotOffer.usager_id)
                  .having(func.count() >= current_app.config["WAITLIST_MAX_OFFERS_PER_DAY"]))
    waiting_answer = select(SlotOffer.usager_id).where(SlotOffer.status == OfferStatus.HELD)
    offered_slot = aliased(WaitlistSlot)
    offered_this_time = (select(SlotOffer.entry_id).join(offered_slot, SlotOffer.slot_id == offered_slot.id)
                         .where(offered_slot.agent_id == slot.agent_id, offered_slot.starts_at == slot.starts_at))
    current = aliased(Rdv)
    query = (
        select(WaitlistEntry).outerjoin(current, WaitlistEntry.rdv_id == current.id)
        .where(WaitlistEntry.status == EntryStatus.ACTIVE, WaitlistEntry.organisation_id == slot.organisation_id,
               WaitlistEntry.motif_id == slot.motif_id,
               # A session's place goes to the families waiting for that session; a slot, to the others.
               WaitlistEntry.session_id == slot.session_id if slot.session_id is not None
               else WaitlistEntry.session_id.is_(None),
               or_(WaitlistEntry.lieu_id.is_(None), WaitlistEntry.lieu_id == slot.lieu_id),
               or_(WaitlistEntry.rdv_id.is_(None),
                   and_(current.starts_at > slot.starts_at,
                        current.status.not_in(CANCELLED_STATUSES))),
               WaitlistEntry.usager_id.not_in(over_limit), WaitlistEntry.usager_id.not_in(waiting_answer),
               WaitlistEntry.id.not_in(offered_this_time))
        .order_by(WaitlistEntry.priority.desc(), WaitlistEntry.created_at, WaitlistEntry.id)
    )
    # Read a page at a time: whether a family can be reached is decided in Python (_recipients), and a page of
    # families without a number or consent must not hide a reachable family behind them.
    offset = 0
    while True:
        page = db.session.scalars(query.offset(offset).limit(BEST_ENTRY_PAGE)).all()
        for entry in page:
            if _recipients(entry.usager):
                return entry
        if len(page) < BEST_ENTRY_PAGE:
            return None
        offset += BEST_ENTRY_PAGE


def _recipients(usager: Usager) -> list[tuple[Usager, Channel]]:
    """The family's reachable addresses: the usager and, for a child, the responsible person; one per address."""
    found, seen = [], set()
    for person in (usager, usager.responsible):
        if person is None:
            continue
        for channel, address in ((Channel.SMS, outbox.sms_address(person)), (Channel.EMAIL, outbox.email_address(person))):
            if address and (channel, address) not in seen:
                seen.add((channel, address))
                found.append((person, channel))
    return found


def _messages(offer: SlotOffer, territory_id: int, now: datetime, again: int = 0) -> list[Message]:
    # Through the outbox like every message: the row is committed with the offer, the worker sends it once, and
    # it is skipped if the hold is over first (expires_at). `again`: the offer sent anew (its session moved).
    suffix = f":again{again}" if again else ""
    return [Message(territory_id=territory_id, rdv_id=None, offer_id=offer.id, usager=person, channel=channel,
                    kind=MessageKind.OFFER, due_at=now, expires_at=offer.held_until, status=MessageStatus.PENDING,
                    dedupe_key=f"offer:{offer.id}:{channel}:{person.id}{suffix}")
            for person, channel in _recipients(offer.entry.usager)]


# --- Answering ----------------------------------------------------------------------------------------------------

def accept(offer: SlotOffer, now: datetime) -> Rdv:
    """Book the offered slot for the family (or move its rdv there), atomically with the offer's claim."""
    _refuse_unless_held(offer, now)
    offer_id, slot, entry = offer.id, offer.slot, offer.entry
    moved = entry.rdv if entry.rdv is not None and entry.rdv.is_live and entry.rdv.starts_at > now else None
    try:
        claimed = db.session.execute(
            update(SlotOffer).where(SlotOffer.id == offer_id, SlotOffer.status == OfferStatus.HELD,
                                    SlotOffer.held_until > now)
            .values(status=OfferStatus.ACCEPTED, answered_at=now, rdv_id=moved.id if moved else None),
            execution_options={"synchronize_session": False}).rowcount
        if not claimed:
            raise _Lost()
        offer.status, offer.answered_at = OfferStatus.ACCEPTED, now
        entry.status, entry.closed_at = EntryStatus.FULFILLED, now
        slot.status = SlotStatus.TAKEN
        # book_rdv / move_rdv commit these changes with the booking, or roll everything back.
        agents = slot.agents or [slot.agent]
        if slot.session_id is not None:
            participation = booking_sessions.add_participant(actor=None, session=slot.session,
                                                             usagers=[entry.usager], via=BookingChannel.OFFER)
            db.session.execute(update(SlotOffer).where(SlotOffer.id == offer_id).values(rdv_id=slot.session_id))
            db.session.commit()
            logger.info("Waiting list: offer %s accepted, place %s", offer_id, participation.id)
            return slot.session
        if moved is not None:
            rdv = booking.move_rdv(actor=None, rdv=moved, starts_at=slot.starts_at, ends_at=slot.ends_at,
                                   agents=agents, lieu=slot.lieu, motif=slot.motif, via=MoveChannel.OFFER)
        else:
            rdv = booking.book_rdv(actor=None, motif=slot.motif, agents=agents, usagers=[entry.usager],
                                   lieu=slot.lieu, starts_at=slot.starts_at, ends_at=slot.ends_at,
                                   via=BookingChannel.OFFER)
    except _Lost:
        db.session.rollback()
        db.session.refresh(offer)
        _refuse_unless_held(offer, now)
        raise OfferRefused("Proposition expirée", "Le délai pour accepter ce créneau est dépassé.", 410) from None
    except booking.BookingError:
        db.session.rollback()  # most refusals were rolled back by the booking already; not all of them
        # Rolled back by the booking: the time went another way (an agent booked it, another family was faster).
        _void(offer_id, now)
        raise OfferRefused("Créneau plus disponible", "Ce créneau vient d'être attribué : il n'est plus "
                           "disponible. Vous restez sur la liste d'attente.", 409) from None
    if moved is None:
        db.session.execute(update(SlotOffer).where(SlotOffer.id == offer_id).values(rdv_id=rdv.id))
        db.session.commit()
    logger.info("Waiting list: offer %s accepted, rdv %s", offer_id, rdv.id)
    return rdv


def decline(offer: SlotOffer, now: datetime) -> None:
    """The family says no: the hold ends at once and the slot goes to the next family."""
    _refuse_unless_held(offer, now)
    declined = db.session.execute(
        update(SlotOffer).where(SlotOffer.id == offer.id, SlotOffer.status == OfferStatus.HELD)
        .values(status=OfferStatus.DECLINED, answered_at=now), execution_options={"synchronize_session": False},
    ).rowcount
    db.session.commit()
    if not declined:
        db.session.refresh(offer)
        _refuse_unless_held(offer, now)
    kick()


class _Lost(Exception):
    """The conditional claim of an offer found it no longer held."""


def _void(offer_id: int, now: datetime) -> None:
    db.session.execute(update(SlotOffer).where(SlotOffer.id == offer_id, SlotOffer.status == OfferStatus.HELD)
                       .values(status=OfferStatus.VOID, answered_at=now))
    db.session.commit()


def session_cancelled(offer: SlotOffer) -> OfferRefused | None:
    """What a family reads on the link of a place offered in a session cancelled since (unless it took the place
    first: its place was cancelled with the session, and it was told as every participant is)."""
    session = offer.slot.session
    if session is None or session.is_live or offer.status == OfferStatus.ACCEPTED:
        return None
    return OfferRefused("Séance annulée", "Cette séance a été annulée : la place qui vous était proposée n'existe "
                        "plus, et vous n'êtes plus sur sa liste d'attente.", 410)


def _refuse_unless_held(offer: SlotOffer, now: datetime) -> None:
    status = offer.status
    cancelled = session_cancelled(offer)
    if cancelled is not None:
        raise cancelled
    if status == OfferStatus.ACCEPTED:
        raise OfferRefused("Créneau déjà accepté", "Vous avez déjà accepté ce créneau : votre rendez-vous est "
                           "enregistré.", 409)
    if status == OfferStatus.DECLINED:
        raise OfferRefused("Proposition refusée", "Vous avez refusé ce créneau : il a été proposé à une autre "
                           "famille.", 409)
    if status == OfferStatus.VOID:
        raise OfferRefused("Créneau plus disponible", "Ce créneau n'est plus disponible. Vous restez sur la liste "
                           "d'attente.", 409)
    if status == OfferStatus.EXPIRED or offer.held_until <= now:
        raise OfferRefused("Proposition expirée", "Le délai pour accepter ce créneau est dépassé : il a pu être "
                           "proposé à une autre famille.", 410)
