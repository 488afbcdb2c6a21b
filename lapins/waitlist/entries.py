"""The waiting list's entries: put a family on it (an agent, the family from its rdv's page or from the online booking
pages), list, withdraw."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from lapins import policies
from lapins.infra.extensions import db
from lapins.booking import sessions as booking_sessions
from lapins.waitlist import offers
from lapins.models import (
    Agent, EntrySource, EntryStatus, Lieu, Motif, OfferStatus, Rdv, SlotOffer, Usager, WaitlistEntry, utcnow,
)
from lapins.models.rdvs import BookingChannel, rdv_usagers

MAX_PRIORITY = 9
# Its offers would book an individual rdv, which a collective motif never gives (booking.CollectiveMotif).
COLLECTIVE_WAIT = ("Ce motif est collectif : inscrivez la famille sur la file d'attente d'une séance complète, "
                   "depuis la page de la séance.")


class EntryError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _family_ids(usager: Usager) -> list[int]:
    return [usager.id] + [relative.id for relative in usager.relatives]


def _active_entry(usager_id: int, motif_id: int) -> WaitlistEntry | None:
    return db.session.scalar(select(WaitlistEntry).where(
        WaitlistEntry.usager_id == usager_id, WaitlistEntry.motif_id == motif_id,
        WaitlistEntry.status == EntryStatus.ACTIVE))


def next_rdv(usager: Usager, motif: Motif, now: datetime) -> Rdv | None:
    """The usager's next live rdv of this motif: with one, the family waits for an earlier slot."""
    return db.session.scalar(
        select(Rdv).join(rdv_usagers, rdv_usagers.c.rdv_id == Rdv.id)
        .where(rdv_usagers.c.usager_id == usager.id, Rdv.motif_id == motif.id, Rdv.starts_at > now,
               Rdv.status.not_in(["excused", "revoked"]))
        .order_by(Rdv.starts_at).limit(1))


def add_by_agent(actor: Agent, usager: Usager, motif: Motif, lieu: Lieu | None, priority: int,
                 now: datetime | None = None) -> WaitlistEntry:
    """An agent puts a family on the list of its motif's organisation (and commits)."""
    now = now or utcnow()
    policies.authorize(actor, "book", motif)
    policies.authorize(actor, "view", usager)
    if usager.territory_id != motif.organisation.territory_id:
        raise EntryError("Cet usager n'appartient pas au territoire de ce motif.")
    if lieu is not None and lieu.organisation_id != motif.organisation_id:
        raise EntryError("Ce lieu n'appartient pas à l'organisation de ce motif.")
    if not motif.active:
        raise EntryError("Ce motif n'est plus proposé.")
    if motif.collective:
        raise EntryError(COLLECTIVE_WAIT)
    if _active_entry(usager.id, motif.id):
        raise EntryError("Cet usager est déjà sur la file d'attente pour ce motif.")
    entry = WaitlistEntry(organisation_id=motif.organisation_id, usager=usager, motif=motif, lieu=lieu,
                          rdv=next_rdv(usager, motif, now), priority=max(0, min(priority, MAX_PRIORITY)),
                          source=EntrySource.AGENT, created_by_id=actor.id, status=EntryStatus.ACTIVE,
                          created_at=now)
    db.session.add(entry)
    db.session.commit()
    offers.kick()  # an open slot may be waiting for just this family
    return entry


def add_for_session(actor: Agent, usager: Usager, session: Rdv, now: datetime | None = None) -> WaitlistEntry:
    """An agent puts a family on a full collective session's waiting list (and commits): a place given back is
    offered to it with the usual hold (offers.free_session_places)."""
    now = now or utcnow()
    policies.authorize(actor, "book", session)
    policies.authorize(actor, "view", usager)
    if not session.is_session or not session.is_live or session.starts_at <= now:
        raise EntryError("On ne peut attendre une place que dans une séance collective à venir.")
    if usager.territory_id != session.organisation.territory_id:
        raise EntryError("Cet usager n'appartient pas au territoire de cette séance.")
    if any(usager.id in {person.id for person in participation.usagers}
           for participation in session.live_participations):
        raise EntryError(f"{usager.full_name} est déjà inscrit à cette séance.")
    db.session.refresh(session)  # its places as they are now
    free = booking_sessions.free_places(session, now)
    if free:  # the agenda offers the waiting list only then: a place free now is given, not waited for
        raise EntryError(f"Il reste {free} place(s) dans cette séance : inscrivez directement la famille.")
    if db.session.scalar(select(WaitlistEntry.id).where(
            WaitlistEntry.usager_id == usager.id, WaitlistEntry.session_id == session.id,
            WaitlistEntry.status == EntryStatus.ACTIVE)):
        raise EntryError(f"{usager.full_name} est déjà sur la file d'attente de cette séance.")
    entry = WaitlistEntry(organisation_id=session.organisation_id, usager=usager, motif_id=session.motif_id,
                          lieu_id=session.lieu_id, session_id=session.id, source=EntrySource.AGENT,
                          created_by_id=actor.id, status=EntryStatus.ACTIVE, created_at=now)
    db.session.add(entry)
    db.session.commit()
    return entry


def session_entries(session: Rdv) -> list[WaitlistEntry]:
    """The families waiting for a place in this session, in the order places go to them."""
    return list(db.session.scalars(
        select(WaitlistEntry).where(WaitlistEntry.session_id == session.id, WaitlistEntry.status == EntryStatus.ACTIVE)
        .order_by(WaitlistEntry.priority.desc(), WaitlistEntry.created_at, WaitlistEntry.id)
        .options(selectinload(WaitlistEntry.usager))))


def withdraw(actor: Agent, entry: WaitlistEntry, now: datetime | None = None) -> None:
    policies.authorize(actor, "book", entry.organisation)
    if entry.status != EntryStatus.ACTIVE:
        raise EntryError("Cette demande n'est plus en attente.")
    entry.status, entry.closed_at = EntryStatus.WITHDRAWN, now or utcnow()
    db.session.commit()


def organisation_entries(actor: Agent, organisation_id: int) -> list[WaitlistEntry]:
    """The organisation's active entries, in the order offers go to them; only within the actor's organisations."""
    if organisation_id not in policies.organisations_of(actor):
        return []
    return list(db.session.scalars(
        select(WaitlistEntry).where(WaitlistEntry.organisation_id == organisation_id,
                                    WaitlistEntry.status == EntryStatus.ACTIVE)
        .options(selectinload(WaitlistEntry.usager), selectinload(WaitlistEntry.motif),
                 selectinload(WaitlistEntry.lieu), selectinload(WaitlistEntry.rdv))
        .order_by(WaitlistEntry.priority.desc(), WaitlistEntry.created_at, WaitlistEntry.id)))


def held_offers(entry_ids: list[int]) -> dict[int, SlotOffer]:
    """The offer each entry is answering now, if any."""
    if not entry_ids:
        return {}
    rows = db.session.scalars(select(SlotOffer).where(SlotOffer.entry_id.in_(entry_ids),
                                                      SlotOffer.status == OfferStatus.HELD)
                              .options(selectinload(SlotOffer.slot)))
    return {offer.entry_id: offer for offer in rows}


def offers_that_moved(rdv: Rdv) -> list[SlotOffer]:
    """The waiting-list offers the family accepted to move this rdv earlier, oldest first (the rdv page says so);
    an rdv booked by taking an offer (`booked_via` offer) says so itself, its first offer is not repeated."""
    accepted = list(db.session.scalars(select(SlotOffer).where(SlotOffer.rdv_id == rdv.id,
                                                               SlotOffer.status == OfferStatus.ACCEPTED)
                                       .order_by(SlotOffer.answered_at, SlotOffer.id)))
    return accepted[1:] if rdv.booked_via == BookingChannel.OFFER else accepted


def usager_entries(actor: Agent, usager: Usager) -> list[WaitlistEntry]:
    return list(db.session.scalars(
        select(WaitlistEntry).where(WaitlistEntry.usager_id.in_(_family_ids(usager)),
                                    WaitlistEntry.organisation_id.in_(policies.organisations_of(actor)),
                                    WaitlistEntry.status == EntryStatus.ACTIVE)
        .order_by(WaitlistEntry.created_at)))


# --- The family, from its rdv's page -------------------------------------------------------------------------------

def can_ask_earlier(rdv: Rdv, now: datetime) -> bool:
    return rdv.is_live and rdv.starts_at > now and rdv.motif.active and bool(rdv.usagers)


def earlier_slot_requested(rdv: Rdv) -> bool:
    return bool(db.session.scalar(select(WaitlistEntry.id).where(
        WaitlistEntry.rdv_id == rdv.id, WaitlistEntry.status == EntryStatus.ACTIVE).limit(1)))


def ask_earlier(rdv: Rdv, now: datetime) -> WaitlistEntry:
    """The family asks to be told of an earlier slot for this rdv (idempotent: asking twice adds nothing)."""
    existing = db.session.scalar(select(WaitlistEntry).where(
        WaitlistEntry.rdv_id == rdv.id, WaitlistEntry.status == EntryStatus.ACTIVE))
    if existing is not None:
        return existing
    usager = rdv.usagers[0]
    entry = WaitlistEntry(organisation_id=rdv.organisation_id, usager=usager, motif_id=rdv.motif_id,
                          lieu_id=rdv.lieu_id, rdv=rdv, priority=0, source=EntrySource.FAMILY, status=EntryStatus.ACTIVE,
                          created_at=now)
    db.session.add(entry)
    db.session.commit()
    offers.kick()
    return entry


# --- The family, from the online booking pages ----------------------------------------------------------------------

def add_online(usager: Usager, motif: Motif, lieu: Lieu | None, now: datetime) -> WaitlistEntry:
    """A family whose number was checked online waits for a slot of this motif (at this lieu), no slot fitting: commits
    with the usagers the caller added (lapins.public.online). Asking again keeps the entry it has."""
    if motif.collective:
        raise EntryError(COLLECTIVE_WAIT)
    existing = _active_entry(usager.id, motif.id) if usager.id is not None else None
    if existing is not None:
        db.session.commit()  # what the caller changed on the usagers (consent given with the checked number)
        return existing
    entry = WaitlistEntry(organisation_id=motif.organisation_id, usager=usager, motif=motif, lieu=lieu,
                          rdv=next_rdv(usager, motif, now) if usager.id is not None else None, priority=0,
                          source=EntrySource.ONLINE, status=EntryStatus.ACTIVE, created_at=now)
    db.session.add(entry)
    db.session.commit()
    offers.kick()
    return entry


def add_online_for_session(usager: Usager, session: Rdv, now: datetime) -> WaitlistEntry:
    """A family whose number was checked online waits for a place in this full session: commits with the usagers the
    caller added (lapins.public.online). Asking again keeps the entry it has."""
    if not session.is_session or not session.is_live or session.starts_at <= now:
        raise EntryError("On ne peut attendre une place que dans une séance collective à venir.")
    existing = db.session.scalar(select(WaitlistEntry).where(
        WaitlistEntry.usager_id == usager.id, WaitlistEntry.session_id == session.id,
        WaitlistEntry.status == EntryStatus.ACTIVE)) if usager.id is not None else None
    if existing is not None:
        db.session.commit()
        return existing
    if usager.id is not None and any(usager.id in {person.id for person in participation.usagers}
                                     for participation in session.live_participations):
        raise EntryError(f"{usager.full_name} est déjà inscrit à cette séance.")
    entry = WaitlistEntry(organisation_id=session.organisation_id, usager=usager, motif_id=session.motif_id,
                          lieu_id=session.lieu_id, session_id=session.id, source=EntrySource.ONLINE,
                          status=EntryStatus.ACTIVE, created_at=now)
    db.session.add(entry)
    db.session.commit()
    return entry
