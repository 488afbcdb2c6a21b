"""Local wall-clock time of a territory ⇄ UTC instants, refusing times that a DST change skips."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo


class NonexistentLocalTime(ValueError):
    pass


def to_utc(day: date, clock: time, tz: ZoneInfo) -> datetime:
    local = datetime.combine(day, clock, tzinfo=tz)
    instant = local.astimezone(timezone.utc)
    if instant.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise NonexistentLocalTime(f"{clock:%H:%M} n'existe pas le {day:%d/%m/%Y} (changement d'heure).")
    return instant


def to_local(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz)
