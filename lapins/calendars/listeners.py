"""Booking's events, followed for the agents' CalDAV calendars (lapins.booking.events): the rows to write are added
inside the booking's transaction, the worker is kicked after its commit."""
from __future__ import annotations

from lapins.booking import events
from lapins.booking.events import RdvEvent, RdvMoved
from lapins.calendars import push
from lapins.infra.extensions import db
from lapins.models import Rdv

# Rdv ids whose calendar rows were planned, kept on the session from the transaction to its commit.
_PLANNED = "lapins.calendars.planned"


@events.in_transaction.connect
def plan_calendar_writes(sender, *, event: RdvEvent, rdv: Rdv) -> None:
    agent_ids = {link.agent_id for link in rdv.agent_links}
    if isinstance(event, RdvMoved) and event.left is not None:
        agent_ids |= set(event.left.agent_ids)  # an agent taken off the rdv has it deleted from their calendar
    if push.plan(event.rdv_id, agent_ids):
        db.session.info.setdefault(_PLANNED, set()).add(event.rdv_id)


@events.committed.connect
def write_calendars_now(sender, *, event: RdvEvent) -> None:
    planned = db.session.info.get(_PLANNED, set())
    if event.rdv_id in planned:
        planned.discard(event.rdv_id)
        push.kick()
