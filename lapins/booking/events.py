"""What booking did to an rdv, told to the rooms that follow it (notifications, waiting list, ...).

Two blinker signals, one per moment; the sender is the event's class, so a listener picks its events with
`connect_via(RdvCancelled)`:
- `in_transaction` is sent inside booking's transaction, just before its commit: its listeners write what must be
  atomic with the booking (the outbox rows that guarantee the confirmation and the reminders);
- `committed` is sent after the commit: its listeners talk to the outside world (kick the queue, offer the freed
  slot, e-mail agents). A process dying between the commit and this signal loses nothing that matters: the beat
  claims due outbox rows and sweeps freed slots every minute.
Listeners are connected by create_app (`register_listeners`); booking imports none of them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from blinker import Namespace

from lapins.models import Rdv, RdvStatus
from lapins.models.rdvs import BookingChannel, CancellationChannel, Canceller, MoveChannel

logger = logging.getLogger(__name__)

_signals = Namespace()
in_transaction = _signals.signal("rdv-changing", doc="Sent before commit with `event` and `rdv` (the ORM row).")
committed = _signals.signal("rdv-changed", doc="Sent after commit with `event`.")


@dataclass(frozen=True)
class RdvEvent:
    rdv_id: int
    actor_id: int | None  # the agent who did it; None for a family or the system


@dataclass(frozen=True)
class RdvBooked(RdvEvent):
    via: BookingChannel


@dataclass(frozen=True)
class TimeLeft:
    """Where a moved rdv was: its agents are free then, unless the move kept one of them busy at that time."""

    organisation_id: int
    motif_id: int
    lieu_id: int | None
    agent_ids: tuple[int, ...]
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class RdvMoved(RdvEvent):
    family_told: bool  # its time, place or motif changed: what the family must be told again
    via: MoveChannel = MoveChannel.AGENDA
    left: TimeLeft | None = None  # None when neither its time nor its agents changed


@dataclass(frozen=True)
class RdvCancelled(RdvEvent):
    by: Canceller
    via: CancellationChannel


@dataclass(frozen=True)
class RdvStatusSet(RdvEvent):
    status: RdvStatus
    restored: bool  # a cancelled rdv booked again on its slot


@dataclass(frozen=True)
class ParticipantAdded(RdvEvent):
    """A family took a place in a collective session (`rdv_id`)."""

    participation_id: int
    via: BookingChannel


@dataclass(frozen=True)
class ParticipantCancelled(RdvEvent):
    """One family's place in a collective session was cancelled; the session goes on."""

    participation_id: int
    by: Canceller
    via: CancellationChannel


@dataclass(frozen=True)
class AttendanceSet(RdvEvent):
    """An agent recorded who came to a collective session."""


@dataclass(frozen=True)
class CapacitySet(RdvEvent):
    """A collective session's number of places changed (a raise may free places for its waiting list)."""

    capacity: int


def record(event: RdvEvent, rdv: Rdv) -> None:
    """Inside the transaction: listeners add their rows to the same session, committed or rolled back with it."""
    in_transaction.send(type(event), event=event, rdv=rdv)


def announce(event: RdvEvent) -> None:
    """After the commit; the booking is done, so one listener failing neither fails it nor silences the others."""
    for receiver in committed.receivers_for(type(event)):
        try:
            receiver(type(event), event=event)
        except Exception as error:  # ids only: no family data in the logs
            logger.error("After rdv %s was changed, %s failed: %s", event.rdv_id,
                         getattr(receiver, "__qualname__", receiver), type(error).__name__)
