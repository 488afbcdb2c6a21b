"""The slot engine (créneaux): pure functions over intervals — no Flask, no session, no I/O."""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

import holidays as holidays_package

Interval = tuple[datetime, datetime]
"""A half-open [start, end) span between two aware UTC datetimes."""

ONE_DAY = timedelta(days=1)
SLOT_GRID = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIDNIGHT = time(0)


# --- Recurrences -------------------------------------------------------------------------------------------------

class DayException(NamedTuple):
    """One date of a weekly recurrence removed (no times) or held at other local hours, within that day."""

    day: date
    start_time: time | None = None
    end_time: time | None = None

    @property
    def removed(self) -> bool:
        return self.start_time is None


@dataclass(frozen=True)
class Recurrence:
    """Local-time recurrence on `weekdays` (bitmask, Monday = bit 0) every `every_n_weeks` weeks from `first_day`.

    `weekdays == 0` is a one-off span instead: from first_day at start_time to last_day at end_time, continuously.
    A weekly end_time not after start_time ends the next day (00:00 means "until midnight").
    `exceptions` remove some dates or give them other hours (a plage's « cette date seulement »).
    """

    first_day: date
    last_day: date | None
    start_time: time
    end_time: time
    weekdays: int
    every_n_weeks: int = 1
    exceptions: tuple[DayException, ...] = ()

    def __post_init__(self) -> None:
        if self.every_n_weeks < 1:
            raise ValueError(f"every_n_weeks must be at least 1, got {self.every_n_weeks}")

    @property
    def is_one_off(self) -> bool:
        return self.weekdays == 0

    @property
    def is_overnight(self) -> bool:
        return not self.is_one_off and self.end_time <= self.start_time

    @property
    def is_within_day(self) -> bool:
        """Weekly, each occurrence inside its own day: the common plage d'ouverture."""
        return not self.is_one_off and self.start_time < self.end_time

    def occurs_on(self, day: date) -> bool:
        """True when a weekly occurrence starts on `day` (never for a one-off span), its exceptions applied."""
        if not self.recurs_on(day):
            return False
        if not self.exceptions:
            return True
        exception = self.exception_on(day)
        return exception is None or not exception.removed

    def exception_on(self, day: date) -> DayException | None:
        return next((exception for exception in self.exceptions if exception.day == day), None)

    def times_on(self, day: date) -> tuple[time, time]:
        """The local hours of the occurrence starting on `day`: its exception's, else the pattern's."""
        exception = self.exception_on(day) if self.exceptions else None
        if exception is not None and not exception.removed:
            return exception.start_time, exception.end_time
        return self.start_time, self.end_time

    def recurs_on(self, day: date) -> bool:
        """True when the weekly pattern falls on `day`, whatever its exceptions say."""
        if self.is_one_off or day < self.first_day or (self.last_day is not None and day > self.last_day):
            return False
        if not (self.weekdays >> day.weekday()) & 1:
            return False
        if self.every_n_weeks == 1:
            return True
        first_monday = self.first_day - timedelta(days=self.first_day.weekday())
        return (day - first_monday).days // 7 % self.every_n_weeks == 0

    def touches(self, day: date) -> bool:
        """True when an occurrence runs during part of local `day`."""
        if self.is_one_off:
            return self.first_day <= day <= (self.last_day or self.first_day)
        return self.occurs_on(day) or (self.is_overnight and self.occurs_on(day - ONE_DAY))

    def days(self, start: date, end: date) -> Iterator[date]:
        """Occurrence dates in [start, end]; for a one-off span, every day from its first to its last day."""
        if self.is_one_off:
            yield from _date_range(max(start, self.first_day), min(end, self.last_day or self.first_day))
            return
        last = end if self.last_day is None else min(end, self.last_day)
        for day in _date_range(max(start, self.first_day), last):
            if self.occurs_on(day):
                yield day


def _date_range(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += ONE_DAY


# --- Local wall time <-> UTC ------------------------------------------------------------------------------------

def to_utc(day: date, wall_time: time, tz: ZoneInfo) -> datetime:
    """The instant a local wall clock shows `wall_time` on `day`.

    fold=0 keeps it deterministic: an ambiguous time (autumn) is its first instance, a nonexistent one (spring)
    is read with the offset in force before the change, i.e. it lands just after the gap.
    """
    return datetime.combine(day, wall_time, tzinfo=tz).astimezone(UTC)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return to_utc(day, _MIDNIGHT, tz)


def local_day_bounds(day: date, tz: ZoneInfo) -> Interval:
    """The whole local day as a UTC interval (23 or 25 hours long on DST change days)."""
    return local_midnight(day, tz), local_midnight(day + ONE_DAY, tz)


def local_dates(tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[date]:
    """Local dates touched by [start, end)."""
    if end <= start:
        return
    yield from _date_range(start.astimezone(tz).date(), (end - timedelta(microseconds=1)).astimezone(tz).date())


def occurrences(recurrence: Recurrence, tz: ZoneInfo, start: date, end: date) -> list[Interval]:
    """Occurrences touching the local days [start, end], as aware UTC intervals, sorted; empty ones are dropped."""
    if recurrence.is_one_off:
        return _one_off_occurrence(recurrence, tz, start, end)
    first_day = start - ONE_DAY if recurrence.is_overnight else start
    lower, upper = local_midnight(start, tz), local_midnight(end + ONE_DAY, tz)
    found = []
    for day in recurrence.days(first_day, end):
        begin, finish = _weekly_occurrence(recurrence, day, tz)
        if begin < finish and begin < upper and finish > lower:
            found.append((begin, finish))
    return found


def _weekly_occurrence(recurrence: Recurrence, day: date, tz: ZoneInfo) -> Interval:
    start_time, end_time = recurrence.times_on(day)
    end_day = day + ONE_DAY if end_time <= start_time else day
    return to_utc(day, start_time, tz), to_utc(end_day, end_time, tz)


def _one_off_occurrence(recurrence: Recurrence, tz: ZoneInfo, start: date, end: date) -> list[Interval]:
    begin = to_utc(recurrence.first_day, recurrence.start_time, tz)
    finish = to_utc(recurrence.last_day or recurrence.first_day, recurrence.end_time, tz)
    touches = begin < local_midnight(end + ONE_DAY, tz) and finish > local_midnight(start, tz)
    return [(begin, finish)] if begin < finish and touches else []


# --- Interval algebra (half-open, sorted) -------------------------------------------------------------------------

def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping union; touching intervals are joined and empty ones dropped."""
    merged: list[Interval] = []
    for begin, end in sorted(intervals):
        if begin >= end:
            continue
        if merged and begin <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return merged


def subtract(intervals: Iterable[Interval], busy: Iterable[Interval]) -> list[Interval]:
    """What remains of each interval once every busy interval is removed, sorted."""
    return sorted(_subtract_merged(sorted(intervals), merge(busy)))


def _subtract_merged(intervals: Sequence[Interval], busy: Sequence[Interval]) -> list[Interval]:
    """`intervals` sorted by start, `busy` merged: then ends are sorted too and a single sweep suffices."""
    remaining: list[Interval] = []
    first_relevant = 0
    for begin, end in intervals:
        while first_relevant < len(busy) and busy[first_relevant][1] <= begin:
            first_relevant += 1
        cursor, index = begin, first_relevant
        while index < len(busy) and busy[index][0] < end:
            busy_begin, busy_end = busy[index]
            if busy_begin > cursor:
                remaining.append((cursor, busy_begin))
            cursor = max(cursor, busy_end)
            index += 1
        if cursor < end:
            remaining.append((cursor, end))
    return remaining


def contains(intervals: Iterable[Interval], inner: Interval) -> bool:
    """True when one of `intervals` holds all of `inner`."""
    return any(begin <= inner[0] and inner[1] <= end for begin, end in intervals)


def ceil_to_grid(moment: datetime, step: timedelta = SLOT_GRID) -> datetime:
    """The first step boundary (counted from the Unix epoch) at or after `moment`."""
    overshoot = (moment - _EPOCH) % step
    return moment if not overshoot else moment + (step - overshoot)


# --- Public holidays -------------------------------------------------------------------------------------------

def public_holidays(subdivision: str | None, years: Iterable[int]) -> set[date]:
    """French public holidays of those years, with the local ones of `subdivision` ("57", "6AE", "974"...)."""
    return {day for year in set(years) for day in _holiday_names(subdivision, year)}


def holiday_names(subdivision: str | None, years: Iterable[int]) -> dict[date, str]:
    """The same holidays with their French names, for calendars."""
    return {day: name for year in set(years) for day, name in _holiday_names(subdivision, year).items()}


@lru_cache(maxsize=256)
def _holiday_names(subdivision: str | None, year: int) -> dict[date, str]:
    return dict(holidays_package.France(subdiv=subdivision, years=year, language="fr"))


# --- Free slots ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Opening:
    """A plage d'ouverture as the engine sees it: who, where, when."""

    agent_id: int
    lieu_id: int | None
    plage_id: int
    recurrence: Recurrence


@dataclass(frozen=True)
class Slot:
    """A bookable créneau; slots sort by start then agent."""

    starts_at: datetime
    ends_at: datetime
    agent_id: int
    lieu_id: int | None
    plage_id: int

    @property
    def sort_key(self) -> tuple[datetime, int, int]:
        return self.starts_at, self.agent_id, self.plage_id

    def __lt__(self, other: Slot) -> bool:
        return self.sort_key < other.sort_key


def free_slots(
    openings: Sequence[Opening],
    busy: Mapping[int, Sequence[Interval]],
    absences: Mapping[int, Sequence[Recurrence]],
    holidays: Collection[date],
    tz: ZoneInfo,
    duration: timedelta,
    window_start: datetime,
    window_end: datetime,
    limit: int | None = None,
) -> list[Slot]:
    """Free slots of `duration` inside [window_start, window_end), earliest first, at most `limit` of them.

    Each free interval (opening occurrence minus absences, holidays and busy time) is cut from its start;
    nothing starts before window_start rounded up to 5 minutes. Days are walked one at a time, so a small
    `limit` only costs the first days that hold enough slots.
    """
    _require_aware(window_start, window_end)
    if duration <= timedelta(0):
        raise ValueError("a slot needs a positive duration")
    start = ceil_to_grid(window_start)
    plan = _DayPlanner(openings, busy, absences, tz)
    found: list[Slot] = []
    for day in local_dates(tz, start, window_end):
        if day in holidays:
            continue
        day_start, day_end = local_day_bounds(day, tz)
        wanted = None if limit is None else limit - len(found)
        found.extend(plan.slots_on(day, max(start, day_start), min(window_end, day_end), duration, wanted))
        if limit is not None and len(found) >= limit:
            break
    return found


def _require_aware(*moments: datetime) -> None:
    if any(moment.tzinfo is None for moment in moments):
        raise ValueError("naive datetime refused: pass aware datetimes")


class _DayPlanner:
    """Computes one local day at a time, remembering each agent's merged busy time and each local instant."""

    def __init__(self, openings: Sequence[Opening], busy: Mapping[int, Sequence[Interval]],
                 absences: Mapping[int, Sequence[Recurrence]], tz: ZoneInfo) -> None:
        self.tz = tz
        self.busy = busy
        self.absences = absences
        self.merged_busy: dict[int, tuple[list[Interval], list[datetime], list[datetime]]] = {}
        self.instants: dict[tuple[date, time], datetime] = {}
        within_day = [opening for opening in openings if opening.recurrence.is_within_day]
        # Only the weekdays in its bitmask can hold a within-day occurrence; the others may touch any day.
        self.spanning = [opening for opening in openings if not opening.recurrence.is_within_day]
        self.by_weekday = [[opening for opening in within_day if (opening.recurrence.weekdays >> weekday) & 1]
                           for weekday in range(7)]

    def slots_on(self, day: date, lower: datetime, upper: datetime, duration: timedelta,
                 wanted: int | None) -> list[Slot]:
        if lower >= upper:
            return []
        closed_by_agent: dict[int, list[Interval]] = {}
        found: list[tuple[datetime, int, int, datetime, int | None]] = []
        for opening in self.by_weekday[day.weekday()] + self.spanning:
            occurrences_today = self._clipped_occurrences(opening.recurrence, day, lower, upper)
            if not occurrences_today:
                continue
            if opening.agent_id not in closed_by_agent:
                closed_by_agent[opening.agent_id] = self._closed(opening.agent_id, day, lower, upper)
            free = _subtract_merged(occurrences_today, closed_by_agent[opening.agent_id])
            found += _cut(free, duration, opening, wanted)
        found.sort()
        return [Slot(begin, end, agent_id, lieu_id, plage_id)
                for begin, agent_id, plage_id, end, lieu_id in found[:wanted]]

    def _clipped_occurrences(self, recurrence: Recurrence, day: date, lower: datetime,
                             upper: datetime) -> list[Interval]:
        if recurrence.is_within_day:
            if not recurrence.occurs_on(day):
                return []
            start_time, end_time = recurrence.times_on(day)
            candidates = [(self._instant(day, start_time), self._instant(day, end_time))]
        else:
            candidates = occurrences(recurrence, self.tz, day, day)
        return [(max(begin, lower), min(end, upper)) for begin, end in candidates
                if begin < upper and end > lower and begin < end]

    def _instant(self, day: date, wall_time: time) -> datetime:
        key = day, wall_time
        if key not in self.instants:
            self.instants[key] = to_utc(day, wall_time, self.tz)
        return self.instants[key]

    def _closed(self, agent_id: int, day: date, lower: datetime, upper: datetime) -> list[Interval]:
        busy = self._busy_between(agent_id, lower, upper)
        if agent_id not in self.absences:
            return busy
        absent = [span for recurrence in self.absences[agent_id] for span in occurrences(recurrence, self.tz, day, day)]
        return merge(absent + busy) if absent else busy

    def _busy_between(self, agent_id: int, lower: datetime, upper: datetime) -> list[Interval]:
        if agent_id not in self.merged_busy:
            merged = merge(self.busy.get(agent_id, ()))
            self.merged_busy[agent_id] = merged, [begin for begin, _ in merged], [end for _, end in merged]
        merged, starts, ends = self.merged_busy[agent_id]
        first, past = bisect_right(ends, lower), bisect_left(starts, upper)
        return merged[first:past]


def _cut(free: Iterable[Interval], duration: timedelta, opening: Opening,
         wanted: int | None) -> list[tuple[datetime, int, int, datetime, int | None]]:
    """Slots laid end to end from the start of each free interval (at most `wanted`), as sortable tuples."""
    slots = []
    for begin, end in free:
        while begin + duration <= end and (wanted is None or len(slots) < wanted):
            slots.append((begin, opening.agent_id, opening.plage_id, begin + duration, opening.lieu_id))
            begin += duration
    return slots
