"""The day-before confirmation round: which families are asked to reply OUI, and what agents see of the answers.

A family at risk — a usager of the rdv with a past no-show, or whose last rdv before this one was cancelled late by
the family (less than LATE_CANCELLATION before it) — gets its last reminder (J-1) with « Répondez OUI pour
confirmer », even where the territory does not ask everyone. Replies need a sender that takes them
(`Territory.sms_takes_replies`); lapins.notifications.replies records OUI in `rdvs.confirmed_at`. Nothing here
cancels anything: the « À confirmer » page (lapins.agenda.confirmations) lets an agent free a slot after a call.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select

from lapins.infra.extensions import db
from lapins.models import Channel, Message, MessageKind, MessageStatus, Rdv, RdvStatus, Territory
from lapins.models.rdvs import rdv_usagers

# As the statistics count a late cancellation (lapins.stats.figures.LATE_CANCELLATION_HOURS).
LATE_CANCELLATION = timedelta(hours=48)
FAILED_STATUSES = (MessageStatus.FAILED, MessageStatus.UNDELIVERABLE)


@dataclass(frozen=True)
class Risk:
    usager_id: int
    why: str  # "noshow" or "late_cancellation"
    at: datetime  # the start of the rdv missed or cancelled late


def risks(usager_ids: Iterable[int], *, before: datetime, exclude_rdv_id: int | None = None) -> dict[int, Risk]:
    """The usagers among these at risk for an rdv starting at `before`: their latest no-show before it, else their
    last rdv before it when it was cancelled late by the family. One query for the two rules."""
    ids = sorted(set(usager_ids))
    if not ids:
        return {}
    earlier = (select(rdv_usagers.c.usager_id.label("usager_id"), Rdv.status, Rdv.starts_at, Rdv.cancelled_at,
                      func.row_number().over(partition_by=rdv_usagers.c.usager_id,
                                             order_by=(Rdv.starts_at.desc(), Rdv.id.desc())).label("rank"))
               .join(Rdv, Rdv.id == rdv_usagers.c.rdv_id)
               .where(rdv_usagers.c.usager_id.in_(ids), Rdv.starts_at < before))
    if exclude_rdv_id is not None:
        earlier = earlier.where(Rdv.id != exclude_rdv_id)
    earlier = earlier.subquery()
    rows = db.session.execute(
        select(earlier.c.usager_id, earlier.c.status, earlier.c.starts_at, earlier.c.cancelled_at, earlier.c.rank)
        .where((earlier.c.status == RdvStatus.NOSHOW) | (earlier.c.rank == 1))
        .order_by(earlier.c.usager_id, earlier.c.rank)).all()
    found: dict[int, Risk] = {}
    for usager_id, status, starts_at, cancelled_at, rank in rows:
        if usager_id in found:
            continue
        if status == RdvStatus.NOSHOW:
            found[usager_id] = Risk(usager_id, "noshow", starts_at)
        elif (rank == 1 and status == RdvStatus.EXCUSED and cancelled_at is not None
              and starts_at - cancelled_at < LATE_CANCELLATION):
            found[usager_id] = Risk(usager_id, "late_cancellation", starts_at)
    return found


def rdv_at_risk(rdv: Rdv) -> bool:
    return bool(risks([usager.id for usager in rdv.usagers], before=rdv.starts_at, exclude_rdv_id=rdv.id))


def asks_to_confirm(rdv: Rdv, territory: Territory, *, last_reminder: bool) -> bool:
    """Whether this reminder asks the family to reply OUI: every reminder where the territory asks everyone, the
    last one (J-1) of a family at risk otherwise; never where replies cannot reach the territory."""
    if not territory.sms_takes_replies:
        return False
    if territory.sms_confirm_everyone:
        return True
    return last_reminder and rdv_at_risk(rdv)


@dataclass(frozen=True)
class Delivery:
    """The fate of the SMS reminders of one rdv, for the « À confirmer » list."""

    failed: str | None  # the provider's or outbox's reason of the latest failed reminder, when none left since
    sent_at: datetime | None  # the latest reminder that left


def reminder_deliveries(rdv_ids: Iterable[int]) -> dict[int, Delivery]:
    """Per rdv, the latest SMS reminder that left and the latest one that failed (only when none left after it)."""
    ids = sorted(set(rdv_ids))
    if not ids:
        return {}
    rows = db.session.execute(
        select(Message.rdv_id, Message.status, Message.error, Message.sent_at, Message.updated_at)
        .where(Message.rdv_id.in_(ids), Message.kind == MessageKind.REMINDER, Message.channel == Channel.SMS,
               Message.status.in_((MessageStatus.SENT, MessageStatus.DELIVERED, *FAILED_STATUSES)))
        .order_by(Message.rdv_id, Message.updated_at, Message.id)).all()
    found: dict[int, Delivery] = {}
    for rdv_id, status, error, sent_at, _updated_at in rows:
        before = found.get(rdv_id, Delivery(failed=None, sent_at=None))
        if status in FAILED_STATUSES:
            found[rdv_id] = Delivery(failed=error or "Échec d'envoi", sent_at=before.sent_at)
        else:
            found[rdv_id] = Delivery(failed=None, sent_at=sent_at)
    return found


def live_rdvs_between(lieu_id: int, start: datetime, end: datetime) -> list[Rdv]:
    return list(db.session.scalars(
        select(Rdv).where(and_(Rdv.lieu_id == lieu_id, Rdv.starts_at >= start, Rdv.starts_at < end,
                               Rdv.status.not_in((RdvStatus.EXCUSED, RdvStatus.REVOKED))))
        .order_by(Rdv.starts_at, Rdv.id)))
