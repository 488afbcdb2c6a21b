"""The waiting list's side of booking's events: the time a cancelled or moved rdv leaves is offered to a waiting
family."""
from __future__ import annotations

from lapins.booking import events
from lapins.booking.events import CapacitySet, ParticipantCancelled, RdvCancelled, RdvMoved
from lapins.infra.extensions import db
from lapins.models import Rdv
from lapins.waitlist import offers

# Slots freed in the transaction, offered once it has committed.
_FREED = "lapins.waitlist.freed"
_FREED_PLACES = "lapins.waitlist.freed_places"


@events.in_transaction.connect_via(RdvCancelled)
def record_freed_slot(sender, *, event: RdvCancelled, rdv: Rdv) -> None:
    slot = offers.free_cancelled(rdv)
    if slot is not None:
        db.session.info.setdefault(_FREED, {})[event.rdv_id] = slot.id


@events.in_transaction.connect_via(RdvMoved)
def record_time_left(sender, *, event: RdvMoved, rdv: Rdv) -> None:
    if rdv.is_session:
        # A moved session leaves no slot for individual rdvs (its motif gives none); its open places follow it.
        offers.follow_session(rdv)
        return
    if event.left is None:
        return
    slot = offers.free_left(event.left, rdv)
    if slot is not None:
        db.session.info.setdefault(_FREED, {})[event.rdv_id] = slot.id


@events.committed.connect_via(RdvCancelled)
@events.committed.connect_via(RdvMoved)
def offer_freed_slot(sender, *, event: RdvCancelled | RdvMoved) -> None:
    slot_id = db.session.info.get(_FREED, {}).pop(event.rdv_id, None)
    if slot_id is not None:
        offers.offer_soon(slot_id)


@events.in_transaction.connect_via(ParticipantCancelled)
@events.in_transaction.connect_via(CapacitySet)
def record_freed_places(sender, *, event: ParticipantCancelled | CapacitySet, rdv: Rdv) -> None:
    """A place given back in a collective session (or more places): offered to the families waiting for it."""
    slots = offers.free_session_places(rdv)
    if slots:
        db.session.info.setdefault(_FREED_PLACES, set()).add(event.rdv_id)


@events.committed.connect_via(ParticipantCancelled)
@events.committed.connect_via(CapacitySet)
def offer_freed_places(sender, *, event: ParticipantCancelled | CapacitySet) -> None:
    places = db.session.info.get(_FREED_PLACES, set())
    if event.rdv_id in places:
        places.discard(event.rdv_id)
        offers.kick()
