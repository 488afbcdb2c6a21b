"""Writing agents' rdvs to their CalDAV calendar through a durable queue (`caldav_pushes`), like the outbox.

1. **Planning** (`plan`, in the booking's transaction, from listeners.py): one row per change and connected
   calendar of the rdv's agents, those it had before the change included. Committed with the booking or not at all.
2. **Claiming** (`deliver_due`, kicked after the commit and run by the beat every minute): a calendar is taken by
   one worker at a time (a lease on its `caldav_accounts` row, so its changes arrive in order), its due rows read in
   order.
3. **Writing**: the rdv is written *as it is now* under its stable UID (a PUT), or deleted when it is cancelled,
   gone, or no longer the agent's. The rows are marked done only after the server said yes: a worker dying in
   between leaves them pending, and writing them again changes nothing (same UID, same object). A failure is kept
   on the row and on the calendar (the agent reads it) and retried with backoff; the rdv's later rows wait behind it.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update

from lapins.calendars import ics
from lapins.calendars.caldav_client import Calendar, CalendarError
from lapins.infra import crypto
from lapins.infra.celery_app import task_named
from lapins.infra.extensions import db
from lapins.models import Rdv, utcnow
from lapins.models.calendars import CaldavAccount, CaldavPush, PushStatus

logger = logging.getLogger(__name__)

PUSH_TASK = "lapins.calendars.push_due"
BACKOFF = (timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15),
           timedelta(hours=1), timedelta(hours=3), timedelta(hours=6), timedelta(hours=12))
MAX_ATTEMPTS = len(BACKOFF) + 1
LEASE = timedelta(minutes=5)
PER_RUN = 500
KEPT_DONE = timedelta(days=30)  # written rows are kept this long (for a person looking into a complaint), then deleted


def plan(rdv_id: int, agent_ids: Iterable[int]) -> int:
    """Adds a row for each connected calendar of these agents (the caller's transaction commits them)."""
    accounts = list(db.session.scalars(
        select(CaldavAccount.id).where(CaldavAccount.agent_id.in_(sorted(set(agent_ids))))))
    db.session.add_all(CaldavPush(account_id=account_id, rdv_id=rdv_id) for account_id in accounts)
    return len(accounts)


def plan_all(account: CaldavAccount, now: datetime | None = None) -> int:
    """A newly connected calendar receives the agent's rdvs of the coming months."""
    window = ics.Window.around(now)
    rdvs = ics.agent_rdvs(account.agent_id, ics.Window(max(window.start, (now or utcnow())), window.end))
    db.session.add_all(CaldavPush(account_id=account.id, rdv_id=rdv.id) for rdv in rdvs if rdv.is_live)
    return len(rdvs)


def kick() -> None:
    try:
        task_named(PUSH_TASK).delay()
    except Exception:  # the broker being down must not fail a booking: the beat writes it within a minute
        logger.warning("CalDAV: broker unreachable, changes wait for the next beat", exc_info=True)


def deliver_due(now: datetime | None = None) -> dict[str, int]:
    """Writes the due changes of every calendar not being written by another worker; counts by outcome."""
    now = now or utcnow()
    db.session.execute(delete(CaldavPush).where(CaldavPush.status == PushStatus.DONE,
                                                CaldavPush.done_at < now - KEPT_DONE))
    accounts = list(db.session.scalars(
        select(CaldavPush.account_id).where(CaldavPush.status == PushStatus.PENDING,
                                            CaldavPush.next_attempt_at <= now).distinct()))
    db.session.commit()
    counts = {"written": 0, "deleted": 0, "retry": 0, "failed": 0}
    for account_id in sorted(accounts):
        if _claim(account_id, now):
            try:
                _deliver_account(account_id, now, counts)
            finally:
                db.session.rollback()
                db.session.execute(update(CaldavAccount).where(CaldavAccount.id == account_id)
                                   .values(lease_until=None))
                db.session.commit()
    return counts


def _claim(account_id: int, now: datetime) -> bool:
    claimed = db.session.execute(
        update(CaldavAccount)
        .where(CaldavAccount.id == account_id,
               or_(CaldavAccount.lease_until.is_(None), CaldavAccount.lease_until <= now))
        .values(lease_until=now + LEASE).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return claimed == 1


def connection(account: CaldavAccount) -> Calendar:
    return Calendar(account.url, account.username, crypto.decrypt(account.password_encrypted))


def _deliver_account(account_id: int, now: datetime, counts: dict[str, int]) -> None:
    account = db.session.get(CaldavAccount, account_id)
    rows = list(db.session.scalars(
        select(CaldavPush).where(CaldavPush.account_id == account_id, CaldavPush.status == PushStatus.PENDING)
        .order_by(CaldavPush.id).limit(PER_RUN)))
    if not rows or rows[0].next_attempt_at > now:
        return  # the oldest change is waiting for its retry: the later ones wait behind it, in order
    try:
        calendar = connection(account)
    except crypto.InvalidToken:
        _failed(account, rows, now, CalendarError("Le mot de passe enregistré ne peut plus être lu : "
                                                  "reconnectez votre agenda."), counts)
        return
    by_rdv: dict[int, list[CaldavPush]] = {}
    for row in rows:
        by_rdv.setdefault(row.rdv_id, []).append(row)
    for rdv_id, changes in by_rdv.items():
        try:
            outcome = _write(calendar, account, rdv_id)
        except CalendarError as error:
            _failed(account, changes, now, error, counts)
            return
        finished = utcnow()
        db.session.execute(update(CaldavPush).where(CaldavPush.id.in_([row.id for row in changes]))
                           .values(status=PushStatus.DONE, done_at=finished, last_error=None)
                           .execution_options(synchronize_session=False))
        account.last_success_at = finished
        db.session.commit()
        counts[outcome] += 1


def _write(calendar: Calendar, account: CaldavAccount, rdv_id: int) -> str:
    rdv = db.session.get(Rdv, rdv_id)
    uid = ics.rdv_uid(rdv_id)
    if rdv is None or not rdv.is_live or account.agent_id not in {link.agent_id for link in rdv.agent_links}:
        calendar.delete(uid)
        return "deleted"
    territory = rdv.organisation.territory
    calendar.put(uid, ics.single_rdv_calendar(rdv, territory.tz, with_family_names=account.with_personal_data))
    return "written"


def _failed(account: CaldavAccount, rows: list[CaldavPush], now: datetime, error: CalendarError,
            counts: dict[str, int]) -> None:
    for row in rows:
        row.attempts += 1
        row.last_error = error.message[:255]
        if row.attempts >= MAX_ATTEMPTS:
            row.status = PushStatus.FAILED
        else:
            row.next_attempt_at = now + BACKOFF[row.attempts - 1]
    account.last_error, account.last_error_at = error.message[:255], utcnow()
    db.session.commit()
    logger.warning("CalDAV account %s: %d change(s) not written (%s)", account.id, len(rows),
                   "given up" if rows[0].status == PushStatus.FAILED else "will retry")
    counts["failed" if rows[0].status == PushStatus.FAILED else "retry"] += 1


def pending_count(account_id: int) -> int:
    return len(list(db.session.scalars(select(CaldavPush.id).where(CaldavPush.account_id == account_id,
                                                                   CaldavPush.status == PushStatus.PENDING))))


def retry_now(account_id: int) -> None:
    """After a reconnection: failed and waiting rows are due again at once."""
    db.session.execute(update(CaldavPush).where(CaldavPush.account_id == account_id,
                                                CaldavPush.status != PushStatus.DONE)
                       .values(status=PushStatus.PENDING, attempts=0, next_attempt_at=utcnow())
                       .execution_options(synchronize_session=False))
