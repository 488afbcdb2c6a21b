"""Local wall-clock time of a territory ⇄ UTC instants, refusing times that a DST change skips."""
from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from lapins.slots import engine as slots


class NonexistentLocalTime(ValueError):
    pass


def to_utc(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """Like slots.to_utc, for a time a person typed: a time skipped by the spring change is refused, not moved."""
    instant = slots.to_utc(day, clock, tz)
    if instant.astimezone(tz).replace(tzinfo=None) != datetime.combine(day, clock):
        raise NonexistentLocalTime(f"{clock:%H:%M} n'existe pas le {day:%d/%m/%Y} (changement d'heure).")
    return instant


def to_local(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz)
