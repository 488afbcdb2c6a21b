"""What the family and the agents are told when booking changes an rdv (booking's events, lapins.booking.events)."""
from __future__ import annotations

from lapins.booking import events
from lapins.booking.events import (
    ParticipantAdded, ParticipantCancelled, RdvBooked, RdvCancelled, RdvEvent, RdvMoved, RdvStatusSet,
)
from lapins.infra.extensions import db
from lapins.models import MessageKind, Participation, Rdv, utcnow
from lapins.models.rdvs import CancellationChannel, Canceller, MoveChannel
from lapins.notifications import agent_emails, outbox

# Rdv ids whose planned messages are due at once, kept on the session from the transaction to its commit.
_DUE_NOW = "lapins.notifications.due_now"


def message_kind(event: RdvEvent) -> MessageKind | None:
    """What the family is sent for this event, if anything."""
    if isinstance(event, RdvBooked):
        return MessageKind.CREATED
    if isinstance(event, RdvCancelled):
        return MessageKind.CANCELLED
    if isinstance(event, RdvMoved) and event.family_told:
        return MessageKind.CHANGED
    if isinstance(event, RdvStatusSet) and event.restored:
        return MessageKind.CHANGED
    return None


@events.in_transaction.connect
def plan_messages(sender, *, event: RdvEvent, rdv: Rdv) -> None:
    """The outbox rows, in the booking's transaction: a booked rdv is never left without its reminders."""
    kind = message_kind(event)
    if kind is None:
        return
    now = utcnow()
    planned = outbox.plan_for_rdv(rdv, kind, now=now, acted_by=rdv.link_actor_id if _on_link(event) else None)
    if rdv.is_session and kind in (MessageKind.CHANGED, MessageKind.CANCELLED):
        # After plan_for_rdv, which skips the session's older messages: each family is told once, on its own link.
        planned += outbox.plan_for_participants(rdv, kind, now=now)
    if any(message.due_at <= now for message in planned):
        db.session.info.setdefault(_DUE_NOW, set()).add(event.rdv_id)


def _on_link(event: RdvEvent) -> bool:
    """A family's change on its link's page or by SMS reply, where lapins.family or lapins.notifications.replies
    recorded which guardian made it (`rdvs.link_actor_id`)."""
    return ((isinstance(event, RdvCancelled) and event.via in (CancellationChannel.LINK, CancellationChannel.SMS))
            or (isinstance(event, RdvMoved) and event.via == MoveChannel.LINK))


@events.in_transaction.connect_via(ParticipantAdded)
def plan_participant_messages(sender, *, event: ParticipantAdded, rdv: Rdv) -> None:
    """A family's confirmation and reminders for its place, in the transaction that gives it the place."""
    participation = db.session.get(Participation, event.participation_id)
    now = utcnow()
    if any(message.due_at <= now for message in outbox.plan_for_participation(rdv, participation,
                                                                              MessageKind.CREATED, now=now)):
        db.session.info.setdefault(_DUE_NOW, set()).add(event.rdv_id)


@events.in_transaction.connect_via(ParticipantCancelled)
def skip_participant_messages(sender, *, event: ParticipantCancelled, rdv: Rdv) -> None:
    """A cancelled place gets no more reminders; the other families of the session keep theirs."""
    outbox.skip_participation(db.session.get(Participation, event.participation_id))


@events.committed.connect
def send_due_now(sender, *, event: RdvEvent) -> None:
    """Messages due now (the confirmation) leave at once rather than at the next beat."""
    due = db.session.info.get(_DUE_NOW, set())
    if event.rdv_id in due:
        due.discard(event.rdv_id)
        outbox.kick()


@events.committed.connect_via(RdvCancelled)
def tell_agents_of_family_cancellation(sender, *, event: RdvCancelled) -> None:
    if event.by == Canceller.FAMILY:
        agent_emails.tell_agents_of_family_cancellation(event.rdv_id)


@events.committed.connect_via(RdvMoved)
def tell_agents_of_family_move(sender, *, event: RdvMoved) -> None:
    if event.via == MoveChannel.LINK:
        agent_emails.tell_agents_of_family_move(event.rdv_id, event.left.agent_ids if event.left else ())
