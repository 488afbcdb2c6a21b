"""The waiting list's side of booking's events: a cancelled rdv's time is offered to a waiting family."""
from __future__ import annotations

from lapins.booking import events
from lapins.booking.events import RdvCancelled
from lapins.waitlist import offers


@events.committed.connect_via(RdvCancelled)
def offer_freed_slot(sender, *, event: RdvCancelled) -> None:
    # After the commit; if this process dies first, the beat's reallocation finds the slot (offers.reallocate).
    offers.after_cancellation(event.rdv_id)
