"""Busy times read back from agents' CalDAV calendars: their own events (not those Lapins wrote) become busy blocks
that take free slots away, labelled « Occupé (agenda personnel) »; only their times are kept.

Each run (the beat's job every few minutes) asks the server what changed since the last sync token (RFC 6578); when
nothing did, nothing is read. When something did, or the server has no sync tokens, the events of the window are
read by time range (recurrences expanded here) and the agent's blocks replaced, in one transaction; and once a day
whatever the token says, as the window moves. An event
deleted there is gone from the blocks at the next run. A server that fails leaves the blocks as they were.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone

import icalendar
import recurring_ical_events
from sqlalchemy import delete, select

from lapins.calendars import ics, push
from lapins.calendars.caldav_client import CalendarError
from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.slots.engine import to_utc
from lapins.models import utcnow
from lapins.models.calendars import BusyBlock, CaldavAccount

logger = logging.getLogger(__name__)

READ_TASK = "lapins.calendars.read_busy"
DAYS_AHEAD = ics.DAYS_AHEAD
# The window moves with the days: events entering it changed nothing on the server, so it is read whole daily.
FULL_READ_EVERY = timedelta(days=1)


def read_all(now: datetime | None = None) -> dict[str, int]:
    counts = {"unchanged": 0, "read": 0, "failed": 0}
    for account_id in list(db.session.scalars(select(CaldavAccount.id).order_by(CaldavAccount.id))):
        counts[read_account(account_id, now)] += 1
    return counts


def read_account(account_id: int, now: datetime | None = None) -> str:
    now = now or utcnow()
    account = db.session.get(CaldavAccount, account_id)
    if account is None:
        return "unchanged"
    try:
        calendar = push.connection(account)
        changes = calendar.changes_since(account.sync_token)
        if (changes is not None and not changes.changed and account.busy_read_at is not None
                and now - account.busy_read_at < FULL_READ_EVERY):
            return "unchanged"
        start, end = now - timedelta(days=1), now + timedelta(days=DAYS_AHEAD)
        blocks = busy_intervals(calendar.events_between(start, end), ics.agent_territory(account.agent), start, end)
    except (CalendarError, crypto.InvalidToken) as error:
        db.session.rollback()
        message = error.message if isinstance(error, CalendarError) else "Mot de passe illisible : reconnectez."
        account.last_error, account.last_error_at = f"Lecture des indisponibilités : {message}"[:255], utcnow()
        db.session.commit()
        logger.warning("CalDAV account %s: busy times not read", account_id)
        return "failed"
    _replace(account, [(begin, finish) for begin, finish in blocks if finish > start and begin < end])
    account.sync_token = changes.token if changes is not None else None
    account.busy_read_at = now
    db.session.commit()
    return "read"


def _replace(account: CaldavAccount, blocks: list[tuple[datetime, datetime]]) -> None:
    """The account's blocks become `blocks`; untouched when they are the same (no new agenda stamp for nothing)."""
    current = db.session.scalars(select(BusyBlock).where(BusyBlock.account_id == account.id)).all()
    if sorted((block.starts_at, block.ends_at) for block in current) == sorted(blocks):
        return
    db.session.execute(delete(BusyBlock).where(BusyBlock.account_id == account.id))
    db.session.add_all(BusyBlock(account_id=account.id, agent_id=account.agent_id, starts_at=begin, ends_at=finish)
                       for begin, finish in sorted(set(blocks)))


def busy_intervals(objects: list[bytes], territory, start: datetime,
                   end: datetime) -> list[tuple[datetime, datetime]]:
    """The busy times of calendar objects between start and end, recurrences expanded here: Lapins' own events,
    transparent and cancelled ones left out; all-day events are whole local days of the territory."""
    tz = territory.tz if territory is not None else timezone.utc
    found = []
    for data in objects:
        try:
            occurrences = recurring_ical_events.of(icalendar.Calendar.from_ical(data)).between(start, end)
        except Exception:  # one unreadable object (bad syntax, a rule the library refuses) must not hide the others
            logger.warning("A calendar object could not be read as busy time; it is left out")
            continue
        for event in occurrences:
            if ics.is_lapins_event(event):
                continue
            if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
                continue
            if str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue
            interval = _interval(event, tz)
            if interval is not None:
                found.append(interval)
    return found


def _interval(event, tz) -> tuple[datetime, datetime] | None:
    start = event.get("DTSTART")
    if start is None:
        return None
    begin = start.dt
    end = event.get("DTEND")
    if end is not None:
        finish = end.dt
    elif event.get("DURATION") is not None:
        finish = begin + event.get("DURATION").dt
    else:
        finish = begin + (timedelta(days=1) if not isinstance(begin, datetime) else timedelta(0))
    begin, finish = _instant(begin, tz), _instant(finish, tz)
    return (begin, finish) if begin < finish else None


def _instant(value: date | datetime, tz) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating time: the territory's wall clock
            value = value.replace(tzinfo=tz)
        return value.astimezone(timezone.utc)
    return to_utc(value, time(0), tz) if hasattr(tz, "key") else datetime.combine(value, time(0), timezone.utc)
