"""The outbox: planning messages when rdvs change, claiming what is due, sending each message exactly once.

1. **Planning** (`plan_for_rdv`, called inside the booking's transaction by notifications.listeners): rows are added
   for each person to tell and each channel they consented to — a confirmation, change or cancellation due now, and
   the reminders of the rdv's current revision. Rows of an older revision still waiting are skipped, so a moved rdv
   is never reminded at its old time.
2. **Claiming** (`dispatch_due`, the beat's job every minute, also kicked right after a booking): due rows become
   `queued` in one conditional UPDATE, committed, and only then handed to the broker in batches. Nothing sits on
   the broker with a far-future ETA: the database is the schedule.
3. **Sending** (`send_batch`, the worker's task): each row is re-read; a row no longer `queued`, or already claimed,
   is left alone, so a task delivered twice sends nothing twice. The text is fixed and the claim committed *before*
   the provider is called; the outcome is committed right after (accepted sends together, within RECORD_EVERY).
   A live batch renews its claim while its sends run (`Claim`); a worker that dies in between leaves a claim that
   outlives its lease: `dispatch_due` then asks the provider whether the message left (`find_sent`) before sending
   it again. An answer that does not say whether the message left (none, a broken connection, any 5xx) keeps the
   claim the same way: such a row is never sent again, nor failed, before the provider has been asked. With a
   Redis fence (`fence`), a batch that stopped renewing it is known gone within seconds: its rows whose send never
   began are put back at once, the others asked about at once (`settle_dead_batches`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Connection, and_, bindparam, case, null, or_, select, update
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from lapins.infra.celery_app import is_database_unavailable, task_named, waiting_tasks
from lapins.infra.extensions import db
from lapins.models import (
    Agent, Channel, LocationType, Message, MessageKind, MessageStatus, OfferStatus, Organisation, Participation, Rdv,
    RdvStatus, Territory, Usager, utcnow,
)
from lapins.models.rdvs import CancellationChannel
from lapins.notifications import (
    backends, confirmation, experiment, fence, gsm, links, providers, sms_text, timing, webhooks,
)
from lapins.notifications.email import render_rdv_email
from lapins.notifications.offer_texts import offer_email, offer_sms
from lapins.notifications.backends import (
    Delivery, OutgoingEmail, OutgoingSms, PermanentError, ProviderAccount, TransientError,
)
from lapins.locale.phones import region_for
from lapins.infra.logs import safe_traceback

logger = logging.getLogger(__name__)

DISPATCH_TASK = "lapins.notifications.dispatch_due"
SEND_TASK = "lapins.notifications.send_batch"
REDACT_TASK = "lapins.notifications.redact_expired_codes"
CLAIM_CHUNK = 1000
MAX_ATTEMPTS = 8
LONGEST_RETRY = timedelta(minutes=30)
DISPATCH_BUDGET = timedelta(seconds=50)  # one beat run stops claiming after this; the next run goes on
RENEWALS_PER_LEASE = 5  # a batch renews its claim this often per lease while its sends run
FENCE_RENEW_EVERY = timedelta(seconds=fence.RENEW_EVERY_SECONDS)
PREPARE_PACKET = 10  # texts committed together, their sends begun, before the next ones are written
RECORD_PACKET = 10  # accepted sends recorded together, at the latest RECORD_EVERY after the last outcome
RECORD_EVERY = timedelta(seconds=0.1)
# After an answer that does not say whether the message left, find_sent is first asked this long after it: see
# _record_transient.
ANSWERED_RECHECK = timedelta(seconds=1)
STARTED = "Rendez-vous déjà commencé"
_MESSAGES = Message.__table__
TOO_LATE = "Non envoyé avant le début du rendez-vous"
STATUS_CALLBACK_PATH = "/webhooks/twilio/statut"  # lapins.notifications.webhooks


# --- Planning ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipient:
    usager: Usager
    channel: Channel


def recipients(rdv: Rdv) -> list[Recipient]:
    """Who is told of an rdv, on which channels: each usager and, for a child, its responsible adults (only the one
    the agent chose, « ne prévenir que … »); only with an address and consent; one message per address (two people
    sharing a phone get one SMS)."""
    return people_recipients(rdv.usagers, only=rdv.notify_only_id)


def people_recipients(usagers: Iterable[Usager], only: int | None = None) -> list[Recipient]:
    """`recipients` of these people (an rdv's usagers, a participation's family); `only`, a guardian's id, leaves
    out the other guardian of the same child."""
    people: list[Usager] = []
    for usager in usagers:
        guardians = usager.guardians
        if only is not None and any(guardian.id == only for guardian in guardians):
            guardians = [guardian for guardian in guardians if guardian.id == only]
        for person in (usager, *guardians):
            if person not in people:
                people.append(person)
    found, seen = [], set()
    for person in people:
        for channel, address in ((Channel.SMS, sms_address(person)), (Channel.EMAIL, email_address(person))):
            if address and (channel, address) not in seen:
                seen.add((channel, address))
                found.append(Recipient(person, channel))
    return found


def sms_address(usager: Usager) -> str | None:
    if usager.phone and usager.sms_consent and usager.phone_undeliverable_at is None:
        return usager.phone
    return None


def email_address(usager: Usager) -> str | None:
    return usager.email if usager.email and usager.email_consent else None


def reminder_offsets(rdv: Rdv) -> list[int]:
    text = rdv.motif.reminder_offsets or rdv.organisation.territory.reminder_offsets
    try:
        return timing.parse_offsets(text)
    except timing.InvalidOffsets:  # stored before validation existed: fall back to the default
        return [48]


def plan_for_rdv(rdv: Rdv, kind: MessageKind, *, now: datetime | None = None,
                 acted_by: int | None = None) -> list[Message]:
    """Add the messages an rdv event calls for to the session (the caller commits). Returns them. `acted_by`: the
    guardian who made the change on their own link (they get it on every channel) or by SMS reply (answered there);
    anyone else gets one notice, on their first channel (SMS before e-mail)."""
    now = now or utcnow()
    _skip_superseded(rdv, kind, now)
    if not rdv.motif.notify or rdv.starts_at <= now:
        return []
    if kind == MessageKind.CANCELLED and not family_told_of_cancellation(rdv):
        return []  # the family cancelled by SMS (answered there) or by telephone: it knows
    territory = rdv.organisation.territory
    planned: list[Message] = []
    told: set[int] = set()
    for recipient in recipients(rdv):
        if kind == MessageKind.CANCELLED and recipient.usager.id == acted_by and not is_family_receipt(rdv):
            continue  # a guardian who cancelled by SMS was answered there; the other one is told here
        if acted_by is None or recipient.usager.id == acted_by or recipient.usager.id not in told:
            told.add(recipient.usager.id)
            key = f"{kind}:{rdv.id}:{rdv.revision}:{recipient.channel}:{recipient.usager.id}"
            planned.append(_new_message(rdv, territory, recipient, kind, due=now, now=now, key=key))
        if kind in (MessageKind.CREATED, MessageKind.CHANGED):
            planned.extend(_reminders(rdv, territory, recipient, now))
    db.session.add_all(planned)
    return planned


def plan_for_participants(rdv: Rdv, kind: MessageKind, *, now: datetime | None = None) -> list[Message]:
    """A collective session changed for all (moved, cancelled by the service): each live participation is told
    once, with its own link and, after a move, its own reminders. Added to the session; the caller commits."""
    now = now or utcnow()
    return [message for participation in rdv.live_participations
            for message in plan_for_participation(rdv, participation, kind, now=now)]


def plan_for_participation(rdv: Rdv, participation: Participation, kind: MessageKind, *,
                           now: datetime | None = None) -> list[Message]:
    """One family's messages about its place in a collective session (rdv): its confirmation and reminders (the
    usual offsets), a change or the session's cancellation. Keys carry the participation, so a family added again
    after cancelling its place is planned anew. Added to the session; the caller commits."""
    now = now or utcnow()
    if not rdv.motif.notify or rdv.starts_at <= now or (kind != MessageKind.CANCELLED and not participation.is_live):
        return []
    territory = rdv.organisation.territory
    tag = f"{rdv.revision}p{participation.id}"
    planned: list[Message] = []
    for recipient in people_recipients([participation.usager, *participation.usagers]):
        planned.append(_new_message(rdv, territory, recipient, kind, due=now, now=now, participation=participation,
                                    key=f"{kind}:{rdv.id}:{tag}:{recipient.channel}:{recipient.usager.id}"))
        if kind in (MessageKind.CREATED, MessageKind.CHANGED):
            planned.extend(_reminders(rdv, territory, recipient, now, participation=participation))
    db.session.add_all(planned)
    return planned


def skip_participation(participation: Participation, *, now: datetime | None = None) -> None:
    """A family's place was cancelled: its messages still waiting are not sent (the session's others are)."""
    now = now or utcnow()
    db.session.execute(
        update(Message).where(Message.participation_id == participation.id, Message.status == MessageStatus.PENDING)
        .values(status=MessageStatus.SKIPPED, error="Place annulée", updated_at=now)
        .execution_options(synchronize_session=False))


def left_out(rdv: Rdv, usager: Usager) -> bool:
    """Whether the agent chose to tell only the other guardian of the rdv's child (« ne prévenir que … »), set after
    this person's messages were planned."""
    only = rdv.notify_only_id
    return only is not None and usager.id != only and usager not in rdv.usagers and any(
        usager in child.guardians and any(guardian.id == only for guardian in child.guardians)
        for child in rdv.usagers)


def rdv_link_for(rdv: Rdv, usager: Usager | None) -> str:
    """The rdv's link for this person: a guardian of a child with two gets their own (links.guardian_token)."""
    if usager is not None and usager in rdv.guardians and any(len(child.guardians) > 1 for child in rdv.usagers):
        return links.family_url(rdv.id, usager.id)
    return links.family_url(rdv.id)


def family_told_of_cancellation(rdv: Rdv) -> bool:
    """Whether a cancelled rdv is told to the family: the service's cancellation, the family's on its link (a
    receipt), or one guardian's SMS reply (the other guardian told, lapins.notifications.replies)."""
    return rdv.status == RdvStatus.REVOKED or is_family_receipt(rdv) or (
        not rdv.is_live and rdv.cancelled_via == CancellationChannel.SMS and rdv.link_actor_id is not None)


def is_family_receipt(rdv: Rdv) -> bool:
    """A cancellation the family made on its link's page: it gets a short receipt saying the slot goes to another
    family (issue 19.12), where an SMS reply ANNULER is answered by SMS already."""
    return rdv.status != RdvStatus.REVOKED and rdv.cancelled_via == CancellationChannel.LINK


def plan_reminders(rdv: Rdv, *, now: datetime | None = None) -> list[Message]:
    """Only the reminders of an rdv whose family was told elsewhere (an rdv imported from the territory's previous
    tool, lapins.onboarding.history). Added to the session; the caller commits."""
    now = now or utcnow()
    if not rdv.motif.notify or not rdv.is_live or rdv.starts_at <= now:
        return []
    territory = rdv.organisation.territory
    planned = [message for recipient in recipients(rdv) for message in _reminders(rdv, territory, recipient, now)]
    db.session.add_all(planned)
    return planned


def plan_missing_reminders(rdv: Rdv, *, now: datetime | None = None) -> list[Message]:
    """The reminders still ahead that someone told of the rdv lacks: a guardian told again after « ne prévenir que
    … » left them out. Those already planned (any status) are kept as they are. Added to the session."""
    now = now or utcnow()
    if not rdv.motif.notify or not rdv.is_live or rdv.starts_at <= now:
        return []
    territory = rdv.organisation.territory
    planned_keys = set(db.session.scalars(select(Message.dedupe_key).where(Message.rdv_id == rdv.id,
                                                                            Message.dedupe_key.is_not(None))))
    planned = [message for recipient in recipients(rdv) for message in _reminders(rdv, territory, recipient, now)
               if message.dedupe_key not in planned_keys]
    db.session.add_all(planned)
    return planned


def _reminders(rdv: Rdv, territory: Territory, recipient: Recipient, now: datetime,
               participation: Participation | None = None) -> list[Message]:
    planned = []
    # A participant's reminders: the revision tagged with the participation, the key keeping its six parts.
    tag = f"{rdv.revision}p{participation.id}" if participation is not None else f"{rdv.revision}"
    for hours in reminder_offsets(rdv):
        due = reminder_at(rdv, territory, hours, recipient.channel, now)
        if due is None:
            continue  # booked too late for this reminder: the confirmation tells the family
        planned.append(_new_message(
            rdv, territory, recipient, MessageKind.REMINDER, due=due, now=now, participation=participation,
            key=f"reminder:{rdv.id}:{tag}:{hours}:{recipient.channel}:{recipient.usager.id}"))
    return planned


def reminder_at(rdv: Rdv, territory: Territory, hours: int, channel: Channel, now: datetime) -> datetime | None:
    """When the reminder `hours` before the rdv goes out on this channel, None when it is no longer ahead. An SMS
    due in the quiet hours goes the evening before they begin, never later (timing.reminder_time)."""
    due = timing.reminder_due(rdv.starts_at, hours, territory.tz)
    if channel != Channel.SMS:
        return due if due > now else None
    return timing.reminder_time(due, now=now, tz=territory.tz, quiet_start=territory.quiet_hours_start,
                                quiet_end=territory.quiet_hours_end)


def plan_manual_reminder(rdv: Rdv, actor: Agent, *, now: datetime | None = None) -> list[Message]:
    """An agent asked for a reminder now (quiet hours still hold SMS until the morning)."""
    now = now or utcnow()
    if not rdv.motif.notify or not rdv.is_live or rdv.starts_at <= now:
        return []
    territory = rdv.organisation.territory
    planned = [_new_message(rdv, territory, recipient, MessageKind.REMINDER, due=now, now=now, key=None, actor=actor)
               for recipient in recipients(rdv)]
    db.session.add_all(planned)
    return planned


def _new_message(rdv: Rdv, territory: Territory, recipient: Recipient, kind: MessageKind, *, due: datetime,
                 now: datetime, key: str | None, actor: Agent | None = None,
                 participation: Participation | None = None) -> Message:
    if recipient.channel == Channel.SMS:
        due = timing.civil_time(due, now=now, tz=territory.tz, quiet_start=territory.quiet_hours_start,
                                quiet_end=territory.quiet_hours_end, deadline=rdv.starts_at)
    return Message(territory_id=territory.id, rdv=rdv, usager=recipient.usager, channel=recipient.channel, kind=kind,
                   due_at=due, expires_at=rdv.starts_at, dedupe_key=key, status=MessageStatus.PENDING,
                   created_by_id=actor.id if actor else None, participation=participation)


def _skip_superseded(rdv: Rdv, kind: MessageKind, now: datetime) -> None:
    """Messages still waiting that this event makes wrong: all of them on a cancellation, the older revisions'
    on a change (the reminders and a confirmation not yet sent, which would give the old time)."""
    if rdv.id is None or kind == MessageKind.CREATED:
        return
    reason = "Rendez-vous annulé" if kind == MessageKind.CANCELLED else "Rendez-vous modifié entre-temps"
    db.session.execute(
        update(Message)
        .where(Message.rdv_id == rdv.id, Message.status == MessageStatus.PENDING)
        .values(status=MessageStatus.SKIPPED, error=reason, updated_at=now)
        .execution_options(synchronize_session=False)
    )


# --- Claiming (beat) --------------------------------------------------------------------------------------------

def kick() -> None:
    """Ask the worker to dispatch now (after a booking's commit) instead of waiting for the next beat."""
    try:
        task_named(DISPATCH_TASK).delay()
    except Exception:  # the broker being down must not fail a booking: the beat will dispatch when it is back
        logger.warning("Outbox: broker unreachable, messages wait for the next beat", exc_info=True)


def enqueue_batch(ids: list[int]) -> None:
    task_named(SEND_TASK).delay(ids)


def dispatch_due(now: datetime | None = None, *, enqueue=None) -> int:
    """Claim every due message, commit, then hand them to the broker. Returns how many were handed over."""
    enqueue = enqueue or enqueue_batch
    started = utcnow()
    settle_dead_batches(now)
    recover_stale_claims(now)
    handed = 0
    for ids in _lost_batches(now):
        enqueue(ids)
        handed += len(ids)
    while utcnow() - started < DISPATCH_BUDGET:
        claimed = claim_due(now or utcnow(), CLAIM_CHUNK)
        for ids in _chunks(claimed, current_app.config["OUTBOX_BATCH_SIZE"]):
            enqueue(ids)
        handed += len(claimed)
        if len(claimed) < CLAIM_CHUNK:
            break
    return handed


def due_ids(now: datetime, limit: int) -> list[int]:
    """The scan: ids of pending messages due by `now` (index ix_messages_status_due), the nearest deadline first:
    of a backlog longer than `limit`, the first chunk holds the rdvs about to begin, whatever their due time, and
    a second dispatcher running at once (a booking's kick) takes the next ones."""
    query = (select(Message.id).where(Message.status == MessageStatus.PENDING, Message.due_at <= now)
             .order_by(Message.expires_at.asc().nulls_last(), Message.due_at).limit(limit))
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(db.session.scalars(query))


def claim_due(now: datetime, limit: int) -> list[int]:
    """Mark up to `limit` due messages queued and commit; only ids this call moved are returned (two beats or a
    beat and a booking's kick never both claim one), the nearest deadline first (`by_deadline`)."""
    ids = due_ids(now, limit)
    if not ids:
        db.session.commit()
        return []
    claimed = db.session.execute(
        update(Message)
        .where(Message.id.in_(ids), Message.status == MessageStatus.PENDING)
        .values(status=MessageStatus.QUEUED, queued_at=now, updated_at=now)
        .returning(Message.id, Message.expires_at)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return by_deadline(claimed)


def by_deadline(rows: Iterable[tuple[int, datetime | None]]) -> list[int]:
    """Ids of (id, expires_at) rows, the one whose rdv begins first in front, those without a deadline last: the
    batches reach the broker, and the workers, in this order. After a backlog (an outage, a queue lost) the
    reminders of the rdvs about to begin go out before those of the rdvs in two days, not behind them."""
    def deadline(row: tuple[int, datetime | None]) -> tuple:
        message_id, expires_at = row
        return (expires_at is None, expires_at.replace(tzinfo=None) if expires_at else datetime.max, message_id)

    return [message_id for message_id, _expires_at in sorted(rows, key=deadline)]


def _lost_batches(now: datetime | None) -> Iterator[list[int]]:
    """Queued rows never picked up (the broker lost the task, e.g. Redis restarted without persistence): handed over
    again, all of them in this run, CLAIM_CHUNK rows per transaction. The task is idempotent, so a duplicate on the
    broker sends nothing twice. Rows are taken for lost after the lease; when the broker's send queue is empty,
    after one dispatch interval already: nothing can be waiting for them there (at worst a worker holds their task
    and finds them claimed)."""
    now = now or utcnow()
    lease = timedelta(seconds=current_app.config["OUTBOX_CLAIM_LEASE_SECONDS"])
    if waiting_tasks() == 0:
        lease = min(lease, timedelta(seconds=current_app.config["OUTBOX_DISPATCH_SECONDS"]))
    after = 0
    while True:
        query = (select(Message.id, Message.expires_at)
                 .where(Message.status == MessageStatus.QUEUED, Message.claimed_at.is_(None),
                        Message.queued_at < now - lease, Message.id > after)
                 .order_by(Message.id).limit(CLAIM_CHUNK))
        if db.session.get_bind().dialect.name == "postgresql":
            # A row a batch is claiming right now is not lost; waiting for it, the UPDATE below and the batch's
            # claim (_FIX) locked the same rows in different orders and PostgreSQL killed one as a deadlock.
            query = query.with_for_update(skip_locked=True)
        rows = db.session.execute(query).all()
        if rows:
            db.session.execute(update(Message).where(Message.id.in_([row[0] for row in rows])).values(queued_at=now)
                               .execution_options(synchronize_session=False))
        db.session.commit()
        yield from _chunks(by_deadline(rows), current_app.config["OUTBOX_BATCH_SIZE"])
        if len(rows) < CLAIM_CHUNK:
            return
        after = rows[-1][0]


def recover_stale_claims(now: datetime | None = None) -> int:
    """Claims older than the lease belong to a worker that died mid-send, or to an unclear answer whose time to be
    looked into has come: ask the provider whether the message left; record it as sent if so, otherwise put it back
    to be sent again — not before a lease after an unclear answer (`unsure_since`): until then it is asked again."""
    now = now or utcnow()
    lease = timedelta(seconds=current_app.config["OUTBOX_CLAIM_LEASE_SECONDS"])
    stale = db.session.scalars(
        select(Message).where(Message.status == MessageStatus.QUEUED, Message.claimed_at < now - lease)
        .order_by(Message.id).limit(CLAIM_CHUNK)).all()
    # Each claim is settled only if it is still the one read here: another dispatch (the beat and a booking's kick)
    # may have settled it while the provider was being asked, and the message been sent again since.
    claims = [(message, message.id, message.claimed_at, message.attempts, message.unsure_since) for message in stale]
    answers = _find_all_sent([(message, claimed_at) for message, _id, claimed_at, _attempts, _unsure in claims])
    for (message, message_id, claimed_at, attempts, unsure_since), found in zip(claims, answers):
        if isinstance(found, TransientError):
            logger.warning("Message %s: provider not reachable to check an interrupted send (%s)", message_id,
                           found.code or "no code")
            continue
        if found is not None:
            values = _sent_values(found, claimed_at)
        elif unsure_since is not None and now < unsure_since + lease:
            # Not there yet, though the provider may still be working on that request: asked again twice as long
            # after the answer as now, and at the latest a lease after it, when the message may leave again.
            values = {"claimed_at": _next_look(unsure_since, now, lease) - lease}
        elif attempts >= MAX_ATTEMPTS:
            values = {"status": MessageStatus.FAILED, "claimed_at": None, "unsure_since": None,
                      "error": f"Abandon après {attempts} envois interrompus"}
        else:
            # What the last answer said (a 5xx, no answer) stays for the agents; a worker that died left none.
            values = {"status": MessageStatus.PENDING, "claimed_at": None, "claim_id": None, "queued_at": None,
                      "unsure_since": None, "due_at": _retry_time(message, now, now),
                      "error": message.error or "Envoi interrompu (worker arrêté) : nouvel essai"}
        db.session.execute(
            update(Message)
            .where(Message.id == message_id, Message.status == MessageStatus.QUEUED, Message.claimed_at == claimed_at)
            .values(**{**values, "updated_at": now})
            .execution_options(synchronize_session=False))
        db.session.commit()
    return len(stale)


def _next_look(unsure_since: datetime, now: datetime, lease: timedelta) -> datetime:
    """When to ask again about a message not found yet, though the provider may still be working on its request:
    twice as long after the unclear moment as now, and at the latest a lease after it, when it may leave again."""
    return min(unsure_since + max(2 * (now - unsure_since), 2 * ANSWERED_RECHECK), unsure_since + lease)


def settle_dead_batches(now: datetime | None = None) -> int:
    """Messages of batches the fence knows are gone (a worker killed, frozen or cut off for a few seconds): those
    whose send never began are put back at once (due now), none of them can begin any more; those that began are
    asked about at once (find_sent), recorded sent if the provider has them, and otherwise handled as after an
    unclear answer dated at the batch's last renewal: asked again, sent again a lease after it at the earliest, as
    without the fence. Claims without a fence, of another Redis run, or older than the lease are left to
    recover_stale_claims. Returns how many messages were settled."""
    config = current_app.config
    if not config.get("OUTBOX_FENCE_URL"):
        return 0
    now = now or utcnow()
    lease = timedelta(seconds=config["OUTBOX_CLAIM_LEASE_SECONDS"])
    rows = db.session.execute(
        select(Message.claim_id, Message.id, Message.claimed_at)
        .where(Message.status == MessageStatus.QUEUED, Message.claim_id.is_not(None), Message.unsure_since.is_(None),
               Message.claimed_at > now - lease)
        .order_by(Message.id).limit(CLAIM_CHUNK)).all()
    db.session.commit()
    claims: dict[str, dict[int, datetime]] = {}
    for claim_id, message_id, claimed_at in rows:
        claims.setdefault(claim_id, {})[message_id] = claimed_at
    settled = 0
    for claim_id, claimed in claims.items():
        begun = fence.settle_dead(config, claim_id, sorted(claimed))
        if begun is None:  # alive, or nothing can be concluded
            continue
        still = and_(Message.status == MessageStatus.QUEUED, Message.claim_id == claim_id,
                     Message.unsure_since.is_(None))
        never = [message_id for message_id in claimed if message_id not in begun]
        if never:
            settled += db.session.execute(
                update(Message).where(Message.id.in_(never), still)
                .values(status=MessageStatus.PENDING, claimed_at=None, claim_id=None, queued_at=None, due_at=now,
                        attempts=Message.attempts - 1, updated_at=now)
                .execution_options(synchronize_session=False)).rowcount
            db.session.commit()
        if not begun:
            continue
        messages = db.session.scalars(select(Message).where(Message.id.in_(sorted(begun)), still)).all()
        answers = _find_all_sent([(message, claimed[message.id]) for message in messages])
        for message, found in zip(messages, answers):
            renewed = claimed[message.id]
            if isinstance(found, Delivery):
                values = _sent_values(found, renewed)
            else:
                values = {"unsure_since": renewed, "claimed_at": _next_look(renewed, now, lease) - lease,
                          "error": "Envoi interrompu (worker arrêté) : vérification auprès du fournisseur"}
            settled += db.session.execute(
                update(Message).where(Message.id == message.id, still, Message.claimed_at == renewed)
                .values(**{**values, "claim_id": None, "updated_at": now})
                .execution_options(synchronize_session=False)
            ).rowcount
        db.session.commit()
    if settled:
        logger.info("Outbox: %d message(s) of a batch gone settled without waiting for the lease", settled)
    return settled


def _find_all_sent(claims: list[tuple[Message, datetime]]) -> list[Delivery | TransientError | None]:
    """find_sent for each (message, claimed_at), asked from the sending threads at once: one question after the
    other, hundreds of interrupted sends (a provider's 5xx for a while) took longer than the beat's interval to
    settle. The questions are prepared here (they read the database), only the provider is called in the threads.
    A TransientError in the answers: the provider could not be asked."""
    app = current_app._get_current_object()
    questions = []
    for message, claimed_at in claims:
        if message.channel != Channel.SMS or not message.body or not message.to_address:
            questions.append(None)
            continue
        outgoing = _outgoing_sms(message)
        try:
            finder = providers.sms_backend(account=outgoing.account)
        except TransientError as error:  # e.g. the territory's credentials unreadable: not asked, claim kept
            questions.append(error)
            continue
        questions.append((finder.find_sent, outgoing, claimed_at - timedelta(minutes=1)))
    pool = _send_pool(app.config["OUTBOX_SEND_THREADS"])
    futures = [pool.submit(_ask, app, *question) if isinstance(question, tuple) else question
               for question in questions]
    answers = []
    for future in futures:
        if future is None or isinstance(future, TransientError):
            answers.append(future)
            continue
        try:
            answers.append(future.result())
        except TransientError as error:
            answers.append(error)
    return answers


def _ask(app, find_sent, outgoing: OutgoingSms, since: datetime) -> Delivery | None:
    with app.app_context():
        return find_sent(outgoing, since=since)


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


# --- Sending (worker) -------------------------------------------------------------------------------------------

class Claim:
    """A batch's claim on its rows: `claimed_at` moves forward at each renewal (the batch's heartbeat, while its sends
    run), and every value it took is kept in `tokens`, since a row the batch is done with keeps the one it had then."""

    def __init__(self, at: datetime, earlier: Iterable[datetime] = ()) -> None:
        self.tokens = [*earlier, at]
        self.renewed_at = at
        self.fence: str | None = None  # its name in the fence (outbox.fence), when there is one
        self.fence_renewed_at = at

    @property
    def current(self) -> datetime:
        return self.tokens[-1]

    def renew(self, ids: list[int], connection: Connection) -> None:
        at = utcnow()
        connection.execute(update(Message)
                           .where(Message.id.in_(ids), Message.status == MessageStatus.QUEUED,
                                  Message.claimed_at == self.current)
                           .values(claimed_at=at))
        connection.commit()
        self.tokens.append(at)
        self.renewed_at = at

    def holds(self):
        return Message.claimed_at.in_(self.tokens)

    def keep_alive(self, config) -> None:
        """Renew the batch's `alive` in the fence, at most every FENCE_RENEW_EVERY."""
        if self.fence is not None and utcnow() - self.fence_renewed_at >= FENCE_RENEW_EVERY:
            self.fence_renewed_at = utcnow()
            fence.renew(config, self.fence)


class SendInterrupted(Exception):
    """The database went away during a batch (the cause). What the task's retry may take back under the claims
    `tokens`: `not_begun`, the ids whose send never began, and `delivered`, {id: (provider id, segments)} of the SMS
    the provider took whose outcome could not be recorded. The others (a send under way or without a clear answer)
    keep their claim for recover_stale_claims, which asks the provider once the lease is over."""

    def __init__(self, tokens: list[datetime], not_begun: list[int], delivered: dict[int, tuple[str, int | None]]):
        super().__init__(f"batch interrupted: {len(not_begun)} not begun, {len(delivered)} delivered")
        self.tokens, self.not_begun, self.delivered = tokens, not_begun, delivered


def send_batch(ids: Iterable[int], *, earlier_claims: Iterable[datetime] = (), resume: Iterable[int] = (),
               delivered: dict[int, tuple[str, int | None]] | None = None) -> dict[str, int]:
    """Send the queued messages among `ids`; returns counts per outcome (for logs and benchmarks).

    The rows are read, checked and given their text, then claimed by the UPDATE that writes it (`_fix`: only rows
    still queued and unclaimed are taken, so a duplicate task sends nothing), committed, and only then sent. A task
    retried after losing the database (SendInterrupted) passes the claims it held (`earlier_claims`), `resume` (rows
    whose send never began: taken back) and `delivered` (recorded as sent, without a new request).
    """
    claim = Claim(utcnow(), earlier_claims)
    not_begun, outcomes = set(ids), {}
    try:
        if delivered:
            _record_delivered(delivered, claim)
        return _send_batch(sorted(set(ids)), claim, set(resume), not_begun, outcomes)
    except Exception as error:
        if not is_database_unavailable(error):
            raise
        raise SendInterrupted(claim.tokens, sorted(not_begun), {**(delivered or {}), **outcomes}) from error


def _record_delivered(delivered: dict[int, tuple[str, int | None]], claim: Claim) -> None:
    at = utcnow()
    for message_id, (provider_id, segments) in delivered.items():
        db.session.execute(
            update(Message).where(Message.id == int(message_id), Message.status == MessageStatus.QUEUED, claim.holds())
            .values(**_sent_values(Delivery(provider_id, segments), at)).execution_options(synchronize_session=False))
    db.session.commit()


def _send_batch(ids: list[int], claim: Claim, resume: set[int], not_begun: set[int],
                delivered: dict[int, tuple[str, int | None]]) -> dict[str, int]:
    now = claimed_at = claim.current
    resumed: set[int] = set()
    app = current_app._get_current_object()
    claim.fence = fence.open_claim(app.config)
    if resume:
        resumed = set(db.session.scalars(
            update(Message)
            .where(Message.id.in_(sorted(resume)), Message.status == MessageStatus.QUEUED, claim.holds())
            .values(claimed_at=claimed_at, claim_id=claim.fence, updated_at=now)
            .returning(Message.id)
            .execution_options(synchronize_session=False)))
        db.session.commit()
    # What each text is written from, in two queries: the many-to-one relations joined (a selectin load each cost
    # a round trip and a statement of its own), the rdv's usagers by one selectin. Read before the claim: each row
    # is claimed by the statement that writes its text (_FIX), which takes only a row still unclaimed (or this
    # batch's own, resumed), so a duplicate task reads the rows but sends none of them.
    rdv = joinedload(Message.rdv)
    read = db.session.scalars(
        select(Message).where(Message.id.in_(ids)).order_by(Message.id)
        .options(joinedload(Message.usager), rdv.joinedload(Rdv.motif), rdv.joinedload(Rdv.lieu),
                 rdv.joinedload(Rdv.organisation).joinedload(Organisation.territory),
                 rdv.selectinload(Rdv.usagers))
    ).unique().all()
    # Picked here, not in the query: a condition on the status there made PostgreSQL read every queued row.
    messages = [message for message in read if message.status == MessageStatus.QUEUED
                and (message.claimed_at is None or message.id in resumed)]
    if not messages:
        db.session.commit()
        return {}
    counts: dict[str, int] = {}
    given_back: list[int] = []
    # The provider is called from OUTBOX_SEND_THREADS threads, so that one send hanging until its timeout does not
    # hold up the others; only this thread touches the database. One connection for the whole batch: through the
    # session, each message's commit would give it back to the pool, and the next one check it out again.
    lease = timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"])
    renew_every = lease / RENEWALS_PER_LEASE
    longest = timedelta(0)
    pool = _send_pool(app.config["OUTBOX_SEND_THREADS"])
    session = db.session()
    with db.engine.connect() as connection:
        pending = {}
        last_progress = utcnow()
        try:
            # Texts are fixed (committed) before any provider sees them, a packet at a time, so that the first
            # sends leave while the next texts are written. Between these commits the batch's objects are not
            # expired: reloading one would rerun the query's eager loads.
            expire_on_commit, session.expire_on_commit = session.expire_on_commit, False
            try:
                for packet in _chunks(messages, PREPARE_PACKET):
                    ready = _fix(packet, claim, now, counts)
                    for message, outgoing in ready:
                        try:
                            send = _sender(outgoing)
                        except Exception as error:  # noqa: BLE001 — e.g. a territory's credentials unreadable
                            _record_failure(message, outgoing, error, counts)
                            continue
                        # A send must be over before its claim can look abandoned: it begins only while the last
                        # renewal is less than (lease - its timeout) old; after the rdv started it is of no use to
                        # the family. Otherwise the message is given back, to be claimed (or skipped) by the next
                        # dispatch.
                        timeout = _timeout(outgoing, app.config)
                        longest = max(longest, timeout)
                        window = max(lease - timeout, lease / 4)  # a lease set too short still sends
                        pending[pool.submit(_attempt, app, send, outgoing, claim, window, message.expires_at)] = (
                            message, outgoing)
                        not_begun.discard(outgoing.message_id)
                    claim.keep_alive(app.config)  # a long preparation must not look like a dead batch
            finally:
                session.expire_on_commit = expire_on_commit
            session.expire_all()  # as after any commit: a failure is recorded on the rows as they are now
            accepted: list[int] = []  # sends the provider took, not yet recorded (their ids are in `delivered`)
            accepted_since = utcnow()
            while pending or accepted:
                wait = (RECORD_EVERY - (utcnow() - accepted_since) if accepted
                        else min(renew_every, FENCE_RENEW_EVERY) if claim.fence else renew_every)
                done, _ = (futures_wait(pending, timeout=max(wait.total_seconds(), 0), return_when=FIRST_COMPLETED)
                           if pending else (set(), None))
                for future in done:
                    message, outgoing = pending.pop(future)
                    outcome = future.result()
                    last_progress = utcnow()
                    if outcome is GIVEN_BACK:
                        given_back.append(outgoing.message_id)
                        not_begun.add(outgoing.message_id)
                    elif isinstance(outcome, Delivery):  # known until it is recorded, should the database fail
                        delivered[outgoing.message_id] = (outcome.provider_id, outcome.segments)
                        if not accepted:
                            accepted_since = last_progress
                        accepted.append(outgoing.message_id)
                    else:
                        _record_failure(message, outgoing, outcome, counts)
                stalled = utcnow() - last_progress
                # Accepted sends are written together (one statement, one commit), not one commit each: the
                # recording, not the sending, was what held a batch's thread.
                if accepted and (not pending or len(accepted) >= RECORD_PACKET
                                 or utcnow() - accepted_since >= RECORD_EVERY or stalled > longest + lease):
                    _record_sent(accepted, delivered, connection, counts)
                    accepted = []
                if stalled > longest + lease:
                    break  # a provider holding a send far past its timeout: see below
                # The heartbeat: the rows still to send keep their claim while the batch is alive and moving. A
                # send held past its timeout stops it, so that its claim runs out and find_sent settles it.
                if pending and stalled <= longest + renew_every and utcnow() - claim.renewed_at >= renew_every:
                    claim.renew([outgoing.message_id for _message, outgoing in pending.values()], connection)
                if pending and stalled <= longest + renew_every:
                    claim.keep_alive(app.config)
            for future, (_message, outgoing) in pending.items():
                if future.cancel():
                    given_back.append(outgoing.message_id)  # never begun
                else:
                    logger.warning("Message %s: send still under way long after its timeout, left to find_sent",
                                   outgoing.message_id)
                    counts["left to recovery"] = counts.get("left to recovery", 0) + 1
                    _drop_send_pool(pool)  # its held threads are not lent to the next batch
        except Exception:
            # The database went away: the sends under way end (within their timeout) and those the provider took
            # are remembered for the retry, which records them without sending them again.
            for future, (_message, outgoing) in pending.items():
                if not future.cancel():
                    outcome = _outcome_within(future, claim.renewed_at + lease)
                    if isinstance(outcome, Delivery):
                        delivered[outgoing.message_id] = (outcome.provider_id, outcome.segments)
            raise
        finally:
            for future, (_message, outgoing) in pending.items():
                if future.cancel():  # never begun: safe to take back (a no-op once the batch gave it back)
                    not_begun.add(outgoing.message_id)
        if given_back:
            counts["given back"] = _give_back(given_back, claim, connection)
    return counts


_send_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _send_pool(threads: int) -> ThreadPoolExecutor:
    """The sending threads of this process, kept from one batch to the next (starting them for each batch cost more
    than a send). Keyed by process id too: a pool made before a fork has no threads in the child."""
    key = (os.getpid(), threads)
    pool = _send_pools.get(key)
    if pool is None:
        pool = _send_pools[key] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="outbox")
    return pool


def _drop_send_pool(pool: ThreadPoolExecutor) -> None:
    """A pool with a send held far past its timeout: the next batch gets new threads; the held one ends on its own."""
    for key, kept in list(_send_pools.items()):
        if kept is pool:
            del _send_pools[key]
    pool.shutdown(wait=False)


def _timeout(outgoing: OutgoingSms | OutgoingEmail, config) -> timedelta:
    """How long one send may wait for the provider, at most."""
    name = "TWILIO_TIMEOUT_SECONDS" if isinstance(outgoing, OutgoingSms) else "MAIL_TIMEOUT_SECONDS"
    return timedelta(seconds=float(config.get(name) or 15))


GIVEN_BACK = object()  # what _attempt returns for a send it did not begin


def _outcome_within(future, until: datetime):
    try:
        return future.result(timeout=max((until - utcnow()).total_seconds(), 0))
    except FuturesTimeout:
        return None


def _sender(outgoing: OutgoingSms | OutgoingEmail):
    """The provider's send for this message, picked here (it reads the app's settings), called in a thread."""
    if isinstance(outgoing, OutgoingSms):
        return providers.sms_backend(account=outgoing.account).send
    return providers.email_backend().send


def _attempt(app, send, outgoing: OutgoingSms | OutgoingEmail, claim: Claim, window: timedelta,
             deadline: datetime | None):
    """In a sending thread: the Delivery, the exception raised, or GIVEN_BACK for a send that must not begin now —
    too long after the claim's last renewal (it could still be under way when its claim looks abandoned, and
    recover_stale_claims would put the message back to leave twice) or once the rdv started."""
    at = utcnow()
    if at >= claim.renewed_at + window or (deadline is not None and at >= deadline):
        return GIVEN_BACK
    # Marked begun in the fence just before the request; refused once the batch is taken for gone (its other
    # messages may be on their way to another worker) or when the fence cannot say.
    if claim.fence is not None and not fence.begin(app.config, claim.fence, outgoing.message_id):
        return GIVEN_BACK
    try:
        with app.app_context():  # the providers read settings (an e-mail's links, its ICS organiser)
            return send(outgoing)
    except Exception as error:  # noqa: BLE001 — handed to the batch's thread, which records it
        return error


def _give_back(ids: list[int], claim: Claim, connection: Connection) -> int:
    """Messages claimed by a batch that did not send them: pending and due again, as if never claimed."""
    at = utcnow()
    given = connection.execute(
        update(Message)
        .where(Message.id.in_(ids), Message.status == MessageStatus.QUEUED, claim.holds())
        .values(status=MessageStatus.PENDING, claimed_at=None, claim_id=None, queued_at=None, due_at=at,
                attempts=Message.attempts - 1, updated_at=at))
    connection.commit()
    return given.rowcount


# A row's claim and its text in one statement (one new row version, not two), run for a packet at once. It takes
# only a row still queued and unclaimed, or one this batch resumed (claimed_at its token already).
_OWN_ROW = and_(_MESSAGES.c.id == bindparam("message_id"), _MESSAGES.c.status == MessageStatus.QUEUED,
                or_(_MESSAGES.c.claimed_at.is_(None), _MESSAGES.c.claimed_at == bindparam("token")))
_FIRST_CLAIM = case((_MESSAGES.c.claimed_at.is_(None), 1), else_=0)
_FIX = (update(_MESSAGES).where(_OWN_ROW)
        .values(claimed_at=bindparam("token"), claim_id=bindparam("claim_id"),
                attempts=_MESSAGES.c.attempts + _FIRST_CLAIM, to_address=bindparam("to_address"),
                subject=bindparam("subject"), body=bindparam("body"), updated_at=bindparam("at")))
# A row no longer to send (skipped, or failed: _prepare says why), settled by the batch that took it.
_SETTLE = (update(_MESSAGES).where(_OWN_ROW)
           .values(status=bindparam("status"), error=bindparam("error"), claimed_at=None, claim_id=None,
                   attempts=_MESSAGES.c.attempts + _FIRST_CLAIM, updated_at=bindparam("at")))


def _fix(packet: list[Message], claim: Claim, now: datetime,
         counts: dict[str, int]) -> list[tuple[Message, OutgoingSms | OutgoingEmail]]:
    """Claim a packet's rows and fix their texts (or settle those no longer wanted), committed: the messages this
    batch now holds, with what to send. A row another batch took meanwhile is left to it, untouched."""
    session = db.session()
    token, at = claim.current, utcnow()
    values, texts, owned = {}, [], set()
    # _prepare's changes to the objects (a row skipped) are written by _SETTLE, guarded: never flushed unguarded,
    # not even by a query a later message's text runs.
    with session.no_autoflush:
        for message in packet:
            if message.claimed_at is None:  # read before its claim: its attempts as the claim will count them
                set_committed_value(message, "attempts", message.attempts + 1)
            fixed = _prepare(message, now)
            values[message.id] = {"status": message.status, "error": message.error} if fixed is None else fixed
            if fixed is not None:
                texts.append({"message_id": message.id, "token": token, "claim_id": claim.fence, "at": at, **fixed})
        if texts:
            # All taken, as nearly always: the count says so. Otherwise the rows that bear this batch's claim.
            if session.execute(_FIX, texts).rowcount == len(texts):
                owned = {row["message_id"] for row in texts}
            else:
                owned = set(session.scalars(select(Message.id).where(
                    Message.id.in_([row["message_id"] for row in texts]), Message.claimed_at == token)))
        for message_id, row in values.items():
            if "body" not in row and session.execute(_SETTLE, {"message_id": message_id, "token": token, "at": at,
                                                               **row}).rowcount:
                owned.add(message_id)
    ready = []
    for message in packet:
        if message.id not in owned:
            session.expunge(message)  # another batch's: nothing of this one is written on it
            continue
        row = values[message.id]
        # The objects hold the values as committed: the unit of work has nothing to flush.
        held = "body" in row
        for key, value in {**row, "claimed_at": token if held else None, "claim_id": claim.fence if held else None,
                           "updated_at": at}.items():
            set_committed_value(message, key, value)
        if "body" in row:
            ready.append((message, _outgoing(message)))
        else:
            counts[str(message.status)] = counts.get(str(message.status), 0) + 1
    session.commit()
    return ready


def _prepare(message: Message, now: datetime) -> dict | None:
    """Check the message is still wanted and fix its text and address: the values to write (`_FIX`). A
    message no longer wanted is skipped (or failed) on the model, and None returned."""
    reason = _why_not(message, now)
    if reason == STARTED and message.attempts > 1 and message.error:
        # Tried before and failed (Twilio down, a worker killed): agents must read why the family got nothing.
        message.status, message.claimed_at = MessageStatus.FAILED, None
        message.error = f"{TOO_LATE} : {message.error}"[:255]
        return None
    if reason:
        message.status, message.error, message.claimed_at = MessageStatus.SKIPPED, reason, None
        return None
    usager = message.usager
    fixed = {"to_address": message.to_address, "subject": message.subject, "body": message.body}
    if usager is not None:
        fixed["to_address"] = usager.phone if message.channel == Channel.SMS else usager.email
    if message.body is None:  # kept from an interrupted attempt: the provider may hold that exact text
        try:
            if message.channel == Channel.SMS:
                fixed["body"] = compose_sms(message)
            else:
                fixed["subject"], fixed["body"] = _email_subject_and_text(message)
        except Exception as error:  # a bug in a text must fail this message visibly, not the whole batch
            logger.error("Message %s: its text could not be written\n%s", message.id, safe_traceback(error))
            message.status, message.claimed_at = MessageStatus.FAILED, None
            message.error = "Erreur interne à la rédaction du message"
            return None
    return fixed


def _why_not(message: Message, now: datetime) -> str | None:
    if message.kind == MessageKind.OFFER:

        return _why_not_offer(message, now)
    if message.kind == MessageKind.PHONE_CODE:  # addressed and written at creation (lapins.public.online)
        return "Code expiré avant l'envoi" if message.expires_at <= now else None
    rdv, usager = message.rdv, message.usager
    if rdv is None or usager is None:
        return "Rendez-vous ou destinataire supprimé"
    if message.expires_at is not None and message.expires_at <= now:
        return STARTED
    if message.kind != MessageKind.CANCELLED and not rdv.is_live:
        return "Rendez-vous annulé"
    # A family's place in a session, cancelled after its reminder was claimed: the session itself is still live.
    if message.kind != MessageKind.CANCELLED and message.participation is not None and not message.participation.is_live:
        return "Place annulée"
    # A family's cancellation on its link or by one guardian's SMS is EXCUSED, and told too.
    if message.kind == MessageKind.CANCELLED and (rdv.is_live or not family_told_of_cancellation(rdv)):
        return "Rendez-vous rétabli"
    if left_out(rdv, usager):
        return "Messages limités à l'autre responsable (« ne prévenir que »)"
    if not rdv.motif.notify:
        return "Motif sans notification"
    if message.channel == Channel.SMS and sms_address(usager) is None:
        return "Pas de consentement SMS ou numéro invalide" if usager.phone else "Pas de numéro de mobile"
    if message.channel == Channel.EMAIL and email_address(usager) is None:
        return "Pas de consentement e-mail" if usager.email else "Pas d'adresse e-mail"
    return None


def _record_failure(message: Message, outgoing: OutgoingSms | OutgoingEmail, outcome: Exception,
                    counts: dict[str, int]) -> None:
    """Commit a failed send's outcome at once, through the model and the session (rare; the sends the provider
    took are recorded together by _record_sent)."""
    if isinstance(outcome, PermanentError):
        _record_permanent(message, outcome)
    elif isinstance(outcome, TransientError):
        _record_transient(message, outcome)
    else:  # a bug: recorded at once, not left to be mistaken for a dead worker's claim
        logger.error("Message %s: unexpected error while sending\n%s", outgoing.message_id,
                     safe_traceback(outcome))
        # It may have struck after the provider took the SMS: asked (find_sent) before a new attempt.
        _record_transient(message, TransientError(f"Erreur inattendue ({type(outcome).__name__})",
                                                  maybe_sent=isinstance(outgoing, OutgoingSms)))
    db.session.commit()
    status = str(message.status)
    counts[status] = counts.get(status, 0) + 1


# Built once: composing this UPDATE for each message cost more than sending the SMS. A status callback may come
# before the send returns (Brevo calls back from the request's own handling): the delivery it recorded is kept.
_RECORD_SENT = (
    update(_MESSAGES).where(_MESSAGES.c.id == bindparam("message_id"))
    .values(status=case((or_(*(_MESSAGES.c.status == settled for settled in sorted(webhooks.SETTLED, key=str))),
                         _MESSAGES.c.status), else_=MessageStatus.SENT),  # no IN (…): executemany refuses it
            provider_id=bindparam("provider_id"), segments=bindparam("segments"), sent_at=bindparam("at"),
            error=None, error_code=None, updated_at=bindparam("at")))
# The same, blanking a verification code's text as it is recorded sent (see _sent_values).
_RECORD_SENT_BLANKING_CODES = _RECORD_SENT.values(
    body=case((_MESSAGES.c.kind == MessageKind.PHONE_CODE, null()), else_=_MESSAGES.c.body))


def _record_sent(ids: list[int], delivered: dict[int, tuple[str, int | None]], connection: Connection,
                 counts: dict[str, int]) -> None:
    """Record as sent, in one commit, the messages the provider took; each leaves `delivered` once committed."""
    at = utcnow()
    blanking = current_app.config["SMS_BACKEND"] != "console"
    connection.execute(_RECORD_SENT_BLANKING_CODES if blanking else _RECORD_SENT, [
        {"message_id": message_id, "provider_id": delivered[message_id][0], "segments": delivered[message_id][1],
         "at": at} for message_id in ids])
    connection.commit()
    for message_id in ids:
        delivered.pop(message_id, None)
    counts[str(MessageStatus.SENT)] = counts.get(str(MessageStatus.SENT), 0) + len(ids)


def _sent_values(delivery: Delivery, at: datetime) -> dict:
    # A status callback may come before the send returns (Brevo calls back from the request's own handling): the
    # delivery it recorded is kept.
    status = case((Message.status.in_(webhooks.SETTLED), Message.status), else_=MessageStatus.SENT)
    values = {"status": status, "provider_id": delivery.provider_id, "segments": delivery.segments,
              "sent_at": at, "error": None, "error_code": None, "unsure_since": None, "updated_at": at}
    if current_app.config["SMS_BACKEND"] != "console":
        # A verification code's text is of no use once it has left (the row stays, for the counts): blanked in the
        # same UPDATE. Not before: find_sent needs it while the claim is in doubt. The console backend's dev inbox
        # is where a developer reads it, so there it waits for the code to expire (redact_expired_codes).
        values["body"] = case((Message.kind == MessageKind.PHONE_CODE, null()), else_=Message.body)
    return values


def redact_expired_codes(now: datetime | None = None) -> int:
    """Blank the text of the verification codes that have expired, sent or not (the beat's job, every minute);
    never one whose claim is in doubt (`queued`: find_sent compares the text). The rows stay, for the counts."""
    now = now or utcnow()
    blanked = db.session.execute(
        update(Message).where(Message.kind == MessageKind.PHONE_CODE, Message.body.is_not(None),
                              Message.expires_at <= now, Message.status != MessageStatus.QUEUED)
        .values(body=None, updated_at=now).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return blanked


def _record_permanent(message: Message, error: PermanentError) -> None:
    message.status = MessageStatus.UNDELIVERABLE
    message.error, message.error_code = error.message[:255], error.code
    if message.channel == Channel.SMS:
        webhooks.flag_undeliverable_phone(message, error.message[:255], utcnow())


def _record_transient(message: Message, error: TransientError) -> None:
    now = utcnow()
    message.claim_id = None  # its batch is done with it: the lease and find_sent settle it from here
    message.error, message.error_code = error.message[:255], error.code
    if error.maybe_sent:
        # No answer, or one that does not say the message was refused (a 5xx, which a gateway may return after
        # the provider took it): the claim is kept, so the message is treated like an interrupted send — the
        # provider is asked (find_sent) before any new attempt, and the row is never failed while it holds it.
        # The claim is dated back so that its lease runs out when the provider is to be asked.
        lease = timedelta(seconds=current_app.config["OUTBOX_CLAIM_LEASE_SECONDS"])
        if error.answered:
            # The provider's own error answer leaves nothing under way: asked ANSWERED_RECHECK after it, doubled
            # at each attempt (a provider failing for a while is not hammered), at most a lease; sent again if
            # the provider has nothing.
            message.unsure_since = None
            message.claimed_at = now - lease + min(ANSWERED_RECHECK * 2 ** max(message.attempts - 1, 0), lease)
        else:
            # A gateway's page or a silence: the provider may have taken the SMS (found within seconds, then) or
            # still be working on the request. Asked after ANSWERED_RECHECK, then again and again; sent again
            # only once a whole lease has passed since this answer (recover_stale_claims).
            message.unsure_since = now
            message.claimed_at = now - lease + ANSWERED_RECHECK
        return
    message.claimed_at = None
    first_retry = timedelta(seconds=current_app.config["OUTBOX_RETRY_SECONDS"])
    retry_at = _retry_time(message, now + min(first_retry * 2 ** (message.attempts - 1), LONGEST_RETRY), now)
    if error.code in backends.OPERATOR_DOWN:
        # The operator sends for no one (no credit, credentials refused): not this message's fault, so never
        # failed for it. Pending until its deadline; the rdv's start then skips it (_prepare: failed as too late),
        # and a recovery brings the waiting ones forward (lapins.monitoring.delivery).
        message.status = MessageStatus.PENDING
        message.due_at = min(retry_at, message.expires_at) if message.expires_at is not None else retry_at
        return
    if message.attempts >= MAX_ATTEMPTS:
        message.status = MessageStatus.FAILED
        message.error = f"Abandon après {message.attempts} essais : {error.message}"[:255]
    elif message.expires_at is not None and retry_at >= message.expires_at:
        message.status = MessageStatus.FAILED
        message.error = f"{TOO_LATE} : {error.message}"[:255]
    else:
        message.status = MessageStatus.PENDING
        message.due_at = retry_at


def _retry_time(message: Message, at: datetime, now: datetime) -> datetime:
    """`at`, or for an SMS whose `at` falls in the territory's quiet hours, their end (or the evening before the
    deadline, timing.civil_time)."""
    if message.channel != Channel.SMS or message.rdv is None:
        return at
    territory = message.rdv.organisation.territory
    return timing.civil_time(at, now=now, tz=territory.tz, quiet_start=territory.quiet_hours_start,
                             quiet_end=territory.quiet_hours_end, deadline=message.expires_at)


def _why_not_offer(message: Message, now: datetime) -> str | None:
    """The outbox's check before sending an offer: still held, and the family still reachable."""
    offer, usager = message.offer, message.usager
    if offer is None or usager is None:
        return "Proposition ou destinataire supprimé"
    if offer.status != OfferStatus.HELD or offer.held_until <= now:
        return "Proposition close avant l'envoi"
    if message.channel == Channel.SMS and sms_address(usager) is None:
        return "Pas de consentement SMS ou numéro invalide" if usager.phone else "Pas de numéro de mobile"
    if message.channel == Channel.EMAIL and email_address(usager) is None:
        return "Pas de consentement e-mail" if usager.email else "Pas d'adresse e-mail"
    return None


# --- Texts ------------------------------------------------------------------------------------------------------

def compose_sms(message: Message) -> str:
    if message.kind == MessageKind.OFFER:
        return offer_sms(message.offer)
    rdv = message.rdv
    territory = rdv.organisation.territory
    two_way = message.kind == MessageKind.REMINDER and confirmation.asks_to_confirm(
        rdv, territory, last_reminder=_is_last_reminder(message))
    if message.participation is not None:
        place_link = links.place_url(message.participation.id)  # signed once, for both
        facts = participant_facts(_rdv_facts(rdv, message.kind, two_way=two_way, link=place_link),
                                  message.participation, place_link)
    else:
        facts = _rdv_facts(rdv, message.kind, two_way=two_way, link=rdv_link_for(rdv, message.usager))
    # A receipt to whoever cancelled on their link; the other guardian is told it is cancelled.
    receipt = is_family_receipt(rdv) and rdv.link_actor_id in (None, message.usager_id)
    if message.kind == MessageKind.CANCELLED and receipt:
        return sms_text.compose_receipt(facts)
    return sms_text.compose(facts)


# The link of an rdv not booked yet: the longest id of years to come, so a preview never undercounts its SMS.
PREVIEW_RDV_ID = 0xFFFFFF


@dataclass(frozen=True)
class SmsPreview:
    text: str
    septets: int
    segments: int
    encoding: str
    reachable: bool  # whether anyone of the rdv has a mobile and agreed to SMS


def preview_sms(rdv: Rdv, kind: MessageKind) -> SmsPreview:
    """The SMS of this kind the family would get for this rdv (booked or not yet, then without id), composed by
    compose_sms' own composer; a reminder is shown as the first one, without the confirmation question."""
    text = sms_text.compose(_rdv_facts(rdv, kind, two_way=False))
    reachable = any(recipient.channel == Channel.SMS for recipient in recipients(rdv))
    return SmsPreview(text, gsm.septets(text), gsm.segments(text), "GSM-7" if gsm.is_gsm7(text) else "UCS-2", reachable)


def _rdv_facts(rdv: Rdv, kind: MessageKind, *, two_way: bool, link: str | None = None) -> sms_text.SmsFacts:
    territory = rdv.organisation.territory
    person = next((usager.first_name for usager in rdv.usagers if usager.responsible_id is not None), None)
    return sms_text.SmsFacts(
        kind=str(kind),
        starts_at_local=rdv.starts_at.astimezone(territory.tz),
        motif="" if rdv.motif.discreet else rdv.motif.name,  # « Rendez-vous PMI » says enough
        location_type=str(rdv.motif.location_type),
        lieu_name=rdv.lieu.name if rdv.lieu else None,
        lieu_address=rdv.lieu.address if rdv.lieu and rdv.motif.location_type == LocationType.ON_SITE else None,
        phone=rdv.phone_to_call,
        region=region_for(territory.number),
        link=link or links.family_url(rdv.id if rdv.id is not None else PREVIEW_RDV_ID),
        organisation=rdv.organisation.label_in_sms,
        person=person,
        two_way=two_way,
        note=(experiment.reminder_note(rdv, territory) if kind == MessageKind.REMINDER
              else territory.sms_note(str(kind))),
        cost=territory.sms_cost_note,
    )


SESSION_REASON_CHARS = 60  # the reason a session was cancelled, kept short enough for the SMS to carry it


def participant_facts(facts: sms_text.SmsFacts, participation: Participation, link: str) -> sms_text.SmsFacts:
    """A collective session's SMS to one family: its own link (which cancels only its place), its child's name,
    and, when the service cancelled the session, why (in the note's place; dropped whole if it cannot fit). `link`:
    the place's link (links.place_url), signed once by the caller."""
    rdv = participation.rdv
    person = next((usager.first_name for usager in participation.usagers if usager.responsible_id is not None), None)
    note, phone = facts.note, facts.phone
    if facts.kind == "cancelled" and rdv.cancel_reason:
        # The reason in the phone's place, to stay in one segment: the link's page gives the phone.
        note, phone = f"Motif : {rdv.cancel_reason[:SESSION_REASON_CHARS]}", None
    # Never « répondez OUI ou ANNULER »: SMS replies find a family's rdvs by its usagers (notifications.replies), and
    # a place is cancelled on its own link, never the whole session by a reply.
    return replace(facts, link=link, person=person, note=note, phone=phone, two_way=False)


def _is_last_reminder(message: Message) -> bool:
    """The J-1 of a planned reminder (its key holds its offset, see plan_for_rdv); a reminder asked by an agent is
    taken as the last one."""
    hours = reminder_hours(message.dedupe_key)
    return hours is None or hours == min(reminder_offsets(message.rdv), default=hours)


def reminder_hours(key: str | None) -> int | None:
    """ "reminder:<rdv>:<revision>:<hours>:<channel>:<usager>" → hours; None for any other key."""
    parts = (key or "").split(":")
    return int(parts[3]) if len(parts) == 6 and parts[0] == "reminder" and parts[3].isdigit() else None


def _render_email(message: Message):
    if message.kind == MessageKind.OFFER:
        message.rendered_email = offer_email(message.offer)
        return message.rendered_email
    link = (links.place_url(message.participation_id) if message.participation_id is not None
            else rdv_link_for(message.rdv, message.usager))
    rendered = render_rdv_email(message.kind, message.rdv, link)
    message.rendered_email = rendered  # not a column: kept for this attempt, so the e-mail is written once
    return rendered


def _email_subject_and_text(message: Message) -> tuple[str, str]:
    rendered = _render_email(message)
    return rendered.subject, rendered.text


def _outgoing(message: Message) -> OutgoingSms | OutgoingEmail:
    return _outgoing_sms(message) if message.channel == Channel.SMS else _outgoing_email(message)


def _outgoing_sms(message: Message) -> OutgoingSms:
    territory = db.session.get(Territory, message.territory_id)
    operator = providers.operator_of(territory.sms_operator)
    callback = webhooks.status_callback_for(operator, message.id)
    # A Messaging Service is Twilio's: with another operator the territory's sender is the one.
    service = territory.twilio_messaging_service_sid if operator == "twilio" else None
    sender = territory.sms_sender if not service else None
    return OutgoingSms(message_id=message.id, to=message.to_address, body=message.body, sender=sender,
                       messaging_service_sid=service, status_callback=callback,
                       account=provider_account(territory, operator))


def provider_account(territory: Territory, operator: str | None = None) -> ProviderAccount | None:
    """The territory's operator and its own credentials of that operator when it stored them; None when it uses
    the deployment's operator and account (environment)."""
    operator = operator or providers.operator_of(territory.sms_operator)
    if operator == "twilio" and territory.has_twilio_credentials:
        return ProviderAccount(territory_id=territory.id, account_sid_encrypted=territory.twilio_account_sid_encrypted,
                               auth_token_encrypted=territory.twilio_auth_token_encrypted)
    if operator == "brevo" and territory.brevo_api_key_encrypted:
        return ProviderAccount(territory_id=territory.id, operator="brevo",
                               api_key_encrypted=territory.brevo_api_key_encrypted)
    if operator in providers.OPERATORS and operator != current_app.config["SMS_BACKEND"]:
        return ProviderAccount(territory_id=territory.id, operator=operator)
    return None


def _outgoing_email(message: Message) -> OutgoingEmail:
    rendered = getattr(message, "rendered_email", None) or _render_email(message)
    return OutgoingEmail(message_id=message.id, to=message.to_address, subject=message.subject or rendered.subject,
                         text=message.body or rendered.text, html=rendered.html, ics=rendered.ics,
                         ics_method=rendered.ics_method)


def history(rdv: Rdv) -> list[Message]:
    """An rdv's notification history, newest first, for agents."""
    return list(db.session.scalars(
        select(Message).where(Message.rdv_id == rdv.id).order_by(Message.created_at.desc(), Message.id.desc())))

