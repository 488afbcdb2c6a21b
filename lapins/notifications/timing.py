"""When a message goes out: reminder offsets in local wall-clock time, and quiet hours. Pure functions.

A reminder "48 h before" an rdv on Monday 09:00 goes out on Saturday 09:00 *local time*, whatever DST did in
between: offsets are taken on the territory's wall clock, then converted to an instant. A reminder due in the quiet
hours goes *earlier* (the evening before they begin), never later: a reminder that arrives after the family has left
home is of no use (`reminder_time`). Other SMS (a confirmation, a retry) cannot go earlier and wait for the morning
(`civil_time`).

New territories remind 72 h and 24 h before (J-3 and J-1): in a randomised trial of 54,066 appointments, two
reminders (3 days and 1 day before) gave 4.4 % missed visits, against 5.8 % with the 3-day one alone and 5.3 % with
the 1-day one alone (Steiner et al., Am J Manag Care 2018).
"""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from lapins.slots.engine import to_utc

# New territories' offsets (Territory.reminder_offsets' default; quiet hours 20:00–08:30 there too). An existing
# territory keeps the offsets and quiet hours it stored.
DEFAULT_REMINDER_OFFSETS = "72,24"
# Why new territories remind twice, in French for the `territory create` command
# and the territory settings page.
REMINDERS_WHY = ("Rappels par défaut 72 h et 24 h avant le rendez-vous (J-3 et J-1), jamais la nuit (pas de SMS de "
                 "20h à 8h30 : un rappel tombant la nuit part la veille au soir, avant, jamais après). Pourquoi deux "
                 "rappels : dans un essai randomisé sur 54 066 rendez-vous (Steiner et al., Am J Manag Care 2018), "
                 "rappeler 3 jours et 1 jour avant a donné 4,4 % de rendez-vous manqués, contre 5,8 % avec le seul "
                 "rappel à 3 jours et 5,3 % avec le seul rappel à 1 jour ; chez les patients à risque, 20,5 % contre "
                 "25,0 % et 24,2 %.")
MAX_OFFSET_HOURS = 24 * 14
MAX_OFFSETS = 3
# A message held by quiet hours must still arrive this long before the rdv; otherwise it goes the evening before.
MIN_NOTICE = timedelta(hours=1)
# The evening fallback: this long before quiet hours begin.
EVENING_MARGIN = timedelta(minutes=30)


class InvalidOffsets(ValueError):
    """A French message an administrator can act on."""


def parse_offsets(text: str | None) -> list[int]:
    """ "48" or "72, 24" → [72, 24] (hours before the rdv, largest first, no duplicates)."""
    if text is None or not text.strip():
        return []
    hours: set[int] = set()
    for part in text.replace(";", ",").split(","):
        part = part.strip().lower().removesuffix("h").strip()
        if not part.isdigit():
            raise InvalidOffsets("Indiquez des nombres d'heures séparés par des virgules, par exemple « 72, 24 ».")
        value = int(part)
        if not 1 <= value <= MAX_OFFSET_HOURS:
            raise InvalidOffsets(f"Un rappel se programme entre 1 et {MAX_OFFSET_HOURS} heures avant le rendez-vous.")
        hours.add(value)
    if len(hours) > MAX_OFFSETS:
        raise InvalidOffsets(f"Pas plus de {MAX_OFFSETS} rappels par rendez-vous.")
    return sorted(hours, reverse=True)


def reminder_due(starts_at: datetime, offset_hours: int, tz: ZoneInfo) -> datetime:
    """The instant `offset_hours` before `starts_at` on the territory's wall clock."""
    wall = starts_at.astimezone(tz).replace(tzinfo=None) - timedelta(hours=offset_hours)
    return to_utc(wall.date(), wall.time(), tz)


def reminder_time(due: datetime, *, now: datetime, tz: ZoneInfo, quiet_start: time,
                  quiet_end: time) -> datetime | None:
    """When an SMS reminder due at `due` goes out: `due` itself outside quiet hours, otherwise EVENING_MARGIN
    before the quiet hours begin (earlier, not later); if that is already past, now when now is not in the quiet
    hours; otherwise None: the reminder is no longer ahead of the rdv (the confirmation just told the family)."""
    if due <= now:
        return None
    if not in_quiet_hours(due, tz, quiet_start, quiet_end):
        return due
    evening = _quiet_start_before(due, tz, quiet_start, quiet_end) - EVENING_MARGIN
    if evening > now:
        return evening
    return None if in_quiet_hours(now, tz, quiet_start, quiet_end) else now


def _quiet_start_before(instant: datetime, tz: ZoneInfo, quiet_start: time, quiet_end: time) -> datetime:
    """The start of the quiet hours `instant` falls in."""
    local = instant.astimezone(tz)
    day = local.date()
    if quiet_start > quiet_end and local.time() < quiet_end:  # after midnight of an overnight window
        day -= timedelta(days=1)
    return to_utc(day, quiet_start, tz)


def in_quiet_hours(instant: datetime, tz: ZoneInfo, quiet_start: time, quiet_end: time) -> bool:
    clock = instant.astimezone(tz).time()
    if quiet_start <= quiet_end:  # e.g. 13:00–14:00, an unusual but valid setting
        return quiet_start <= clock < quiet_end
    return clock >= quiet_start or clock < quiet_end


def civil_time(due: datetime, *, now: datetime, tz: ZoneInfo, quiet_start: time, quiet_end: time,
               deadline: datetime | None) -> datetime:
    """When an SMS due at `due` may go out: `due` itself outside quiet hours, otherwise the end of the quiet hours
    (the morning) if that still leaves MIN_NOTICE before `deadline`, otherwise just before they began (the evening
    before) if that is not past, otherwise at once: a late message beats none."""
    due = max(due, now)
    if not in_quiet_hours(due, tz, quiet_start, quiet_end):
        return due
    local = due.astimezone(tz)
    end_day = start_day = local.date()
    if quiet_start > quiet_end:  # overnight: 20:00 → 08:00
        if local.time() >= quiet_start:
            end_day = local.date() + timedelta(days=1)
        else:
            start_day = local.date() - timedelta(days=1)
    morning = to_utc(end_day, quiet_end, tz)
    if deadline is None or morning <= deadline - MIN_NOTICE:
        return morning
    evening = to_utc(start_day, quiet_start, tz) - EVENING_MARGIN
    return evening if evening >= now else due
