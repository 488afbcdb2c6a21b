"""The waiting list's side of booking's events: a cancelled rdv's time is offered to a waiting family."""
from __future__ import annotations

from lapins.booking import events
from lapins.booking.events import RdvCancelled
from lapins.infra.extensions import db
from lapins.models import Rdv
from lapins.waitlist import offers

# Slots freed in the transaction, offered once it has committed.
_FREED = "lapins.waitlist.freed"


@events.in_transaction.connect_via(RdvCancelled)
def record_freed_slot(sender, *, event: RdvCancelled, rdv: Rdv) -> None:
    slot = offers.free_cancelled(rdv)
    if slot is not None:
        db.session.info.setdefault(_FREED, {})[event.rdv_id] = slot.id


@events.committed.connect_via(RdvCancelled)
def offer_freed_slot(sender, *, event: RdvCancelled) -> None:
    slot_id = db.session.info.get(_FREED, {}).pop(event.rdv_id, None)
    if slot_id is not None:
        offers.offer_soon(slot_id)
