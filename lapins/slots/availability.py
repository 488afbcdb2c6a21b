"""Free slots and opening hours read from the database: the I/O side of lapins.slots.engine."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import (
    CompoundSelect, Date, Integer, Row, Select, String, Time, bindparam, cast, literal_column, null, or_, select,
    union_all,
)
from sqlalchemy.engine import Connection

from lapins.infra.database import DriverQuery
from lapins.infra.extensions import db
from lapins.models import Absence, Agent, Lieu, Motif, Organisation, PlageOuverture, RdvAgent, Territory, utcnow
from lapins.models.calendars import BusyBlock
from lapins.models.plages import PlageException, plage_motifs
from lapins.models.types import UTCDateTime
from lapins.slots.engine import (
    ONE_DAY, DayException, Interval, Opening, Recurrence, Slot, contains, free_slots, holiday_names, local_dates, local_day_bounds,
    local_midnight, merge, occurrences, public_holidays, subtract,
)

# An rdv never lasts more than a day: bounding starts_at from below keeps the (agent_id, starts_at) index usable.
LONGEST_RDV = ONE_DAY

_PLAGE, _ABSENCE, _BUSY, _EXCEPTION = 1, 2, 3, 4


class OpeningInterval(NamedTuple):
    starts_at: datetime
    ends_at: datetime
    plage_id: int
    lieu_id: int | None
    agent_id: int
    title: str
    lieu_name: str | None


class AbsenceInterval(NamedTuple):
    starts_at: datetime
    ends_at: datetime
    absence_id: int
    agent_id: int
    title: str
    imported: bool = False  # a busy time read from the agent's own calendar (absence_id is then its block's id)


class HolidayInterval(NamedTuple):
    starts_at: datetime
    ends_at: datetime
    name: str


# --- Searching slots ---------------------------------------------------------------------------------------------

def first_available(*, territory: Territory, motif: Motif, lieu_id: int | None = None, agent_id: int | None = None,
                    start: datetime | None = None, weeks: int = 13, limit: int = 10) -> list[Slot]:
    """The first `limit` free slots for `motif` across the territory within `weeks` weeks of `start` (default now).

    Rdvs are read window by window (see search_windows): one query for the plages, absences and rdvs of the first
    eight local days, then one per further window that holds an opening.
    """
    start = start or utcnow()
    duration = timedelta(minutes=motif.duration_minutes)
    windows = search_windows(territory.tz, start, weeks)
    scope = _Scope.build(territory, motif.id, lieu_id, agent_id, windows[0][0], windows[-1][1])
    rows = _fetch(scope, busy_window=windows[0])
    found: list[Slot] = []
    for index, window in enumerate(windows):
        if not rows.openings:
            break
        if index:
            if not rows.opens_between(territory, window):
                continue
            rows.busy = _fetch_busy(rows.agent_ids, window)
        found += rows.free_slots(territory, duration, window, limit - len(found))
        if len(found) >= limit:
            break
    return found


def free_slots_between(*, territory: Territory, motif: Motif, start: datetime, end: datetime,
                       lieu_id: int | None = None, agent_id: int | None = None,
                       agent_ids: Iterable[int] | None = None, duration: timedelta | None = None) -> list[Slot]:
    """Every free slot for `motif` in [start, end), earliest first: of the motif's duration, or of `duration`."""
    scope = _Scope.build(territory, motif.id, lieu_id, agent_id, start, end, agent_ids=agent_ids)
    rows = _fetch(scope, busy_window=(start, end))
    return rows.free_slots(territory, duration or timedelta(minutes=motif.duration_minutes), (start, end), None)


def covering_opening(*, agent_ids: Iterable[int], motif_id: int, lieu_id: int | None, starts_at: datetime,
                     ends_at: datetime, territory: Territory) -> bool:
    """True when [starts_at, ends_at) lies inside an opening offering the motif (at lieu_id if given) of every
    agent, off public holidays and outside their absences."""
    wanted = set(agent_ids)
    if not wanted or ends_at <= starts_at:
        return False
    tz = territory.tz
    days = list(local_dates(tz, starts_at, ends_at))
    if public_holidays(territory.holiday_subdivision, {day.year for day in days}) & set(days):
        return False
    rows = _fetch(_Scope.build(territory, motif_id, lieu_id, None, starts_at, ends_at, agent_ids=wanted))
    return all(rows.covers(agent, tz, days, (starts_at, ends_at)) for agent in wanted)


def search_windows(tz: ZoneInfo, start: datetime, weeks: int) -> list[Interval]:
    """The windows first_available reads rdvs for, in turn, up to `weeks` weeks: today and the next seven local
    days, then windows ending 32, 128... local days on.

    A round trip costs more than a week of rdvs (the benchmark's département: 0.1 ms for PostgreSQL to read 130
    rdvs, a few ms per extra statement on a busy machine), so the first window holds a whole week of working days
    whatever day the search starts on, and each further one is four times as long: most searches take one query,
    the farthest three (issue 15; with today and tomorrow, then doubling, a search took 2.4 queries on average).
    """
    if weeks < 1:
        raise ValueError("weeks must be at least 1")
    start_day = start.astimezone(tz).date()
    horizon = 7 * weeks
    ends = [min(8, horizon)]
    while ends[-1] < horizon:
        ends.append(min(4 * ends[-1], horizon))
    boundaries = [start] + [local_midnight(start_day + timedelta(days=days), tz) for days in ends]
    return [(lower, upper) for lower, upper in zip(boundaries, boundaries[1:]) if lower < upper]


# --- Benchmark floor ---------------------------------------------------------------------------------------------

def examined_end(slots: Sequence[Slot], *, territory: Territory, start: datetime, weeks: int = 13,
                 limit: int = 10) -> datetime:
    """Where first_available stopped reading rdvs, given what it returned (to time fetch_rows_for_floor fairly)."""
    windows = search_windows(territory.tz, start, weeks)
    if not slots or len(slots) < limit:
        return windows[-1][1]
    return next(upper for _, upper in windows if slots[-1].ends_at <= upper)


def fetch_rows_for_floor(*, territory: Territory, motif: Motif, start: datetime, end: datetime,
                         lieu_id: int | None = None, agent_id: int | None = None) -> list[Row[Any]]:
    """The benchmark's floor: in one query, every row a search over [start, end) reads.

    That is the plages offering the motif (recurrence columns) and their exceptions, their agents' absences, and
    those agents' live rdv_agents rows overlapping [start, end). With end = examined_end(...) these are the rows
    first_available read.
    """
    scope = _Scope.build(territory, motif.id, lieu_id, agent_id, start, end)
    return list(db.session.execute(_search_statement(*scope.shape, True), scope.params | _busy_params((start, end))))


# --- Calendars' background ---------------------------------------------------------------------------------------

def opening_intervals(agent_ids: int | Iterable[int], tz: ZoneInfo, start: datetime,
                      end: datetime) -> list[OpeningInterval]:
    """The agents' plage occurrences overlapping [start, end), whatever their motifs."""
    first_day, last_day = _local_day_span(tz, start, end)
    params = {"agent_ids": _id_list(agent_ids)} | _day_params(first_day, last_day)
    rows = db.session.execute(_openings_statement(), params).all()
    exceptions = _exceptions_of([row.id for row in rows], first_day, last_day)
    return sorted(OpeningInterval(begin, finish, row.id, row.lieu_id, row.agent_id, row.title, row.lieu_name)
                  for row in rows
                  for begin, finish in _spans(row, tz, first_day, last_day, start, end, exceptions.get(row.id)))


def absence_intervals(agent_ids: int | Iterable[int], tz: ZoneInfo, start: datetime,
                      end: datetime) -> list[AbsenceInterval]:
    """The agents' absence occurrences overlapping [start, end)."""
    first_day, last_day = _local_day_span(tz, start, end)
    params = {"agent_ids": _id_list(agent_ids)} | _day_params(first_day, last_day)
    rows = db.session.execute(_absences_statement(), params)
    return sorted(AbsenceInterval(begin, finish, row.id, row.agent_id, row.title)
                  for row in rows for begin, finish in _spans(row, tz, first_day, last_day, start, end))


def background_rows(agent_id: int, tz: ZoneInfo, start: datetime, end: datetime,
                    connection: Connection | None = None) -> tuple[Row[Any], ...]:
    """One agent's plages (with their lieu's name), absences and imported busy times in [start, end), in one query:
    an agenda's background, for background_intervals."""
    first_day, last_day = _local_day_span(tz, start, end)
    # On a Core connection (the session's unless given): plain rows, without the ORM's processing (a hot path).
    return tuple((connection or db.session.connection()).execute(
        _background_statement(),
        {"agent_id": agent_id, "busy_start": start, "busy_end": end} | _day_params(first_day, last_day)).all())


def background_records(agent_id: int, tz: ZoneInfo, start: datetime, end: datetime) -> Sequence[Any]:
    """background_rows read by the driver itself (DriverQuery.records): the events feed's, on its hot path."""
    first_day, last_day = _local_day_span(tz, start, end)
    return _background_query().records(agent_id=agent_id, busy_start=start, busy_end=end,
                                       **_day_params(first_day, last_day))


@cache
def _background_query() -> DriverQuery:
    return DriverQuery(_background_statement())


def background_intervals(rows: Iterable[Row[Any]], agent_id: int, tz: ZoneInfo, start: datetime,
                         end: datetime) -> tuple[list[OpeningInterval], list[AbsenceInterval]]:
    """The plage and absence occurrences of background_rows overlapping [start, end), as opening_intervals and
    absence_intervals give them."""
    first_day, last_day = _local_day_span(tz, start, end)
    openings: list[OpeningInterval] = []
    absences: list[AbsenceInterval] = []
    exceptions: dict[int, list[DayException]] = defaultdict(list)
    for row in rows:
        if row.kind == _EXCEPTION:
            exceptions[row.id].append(DayException(row.first_day, row.start_time, row.end_time))
    for row in rows:
        if row.kind == _EXCEPTION:
            continue
        if row.kind == _BUSY:  # a busy time of the agent's own calendar: instants, no recurrence
            if row.starts_at < end and row.ends_at > start:
                absences.append(AbsenceInterval(row.starts_at, row.ends_at, row.id, agent_id, BusyBlock.LABEL, True))
            continue
        changed = {exception.day for exception in exceptions.get(row.id, ()) if not exception.removed} \
            if row.kind == _PLAGE else set()
        for begin, finish in _spans(row, tz, first_day, last_day, start, end,
                                    exceptions.get(row.id) if row.kind == _PLAGE else None):
            if row.kind == _PLAGE:
                # A date at other hours says so in the grid, so that the agent does not take it for the usual ones.
                title = f"{row.title} (horaires de ce jour)" if begin.astimezone(tz).date() in changed else row.title
                openings.append(OpeningInterval(begin, finish, row.id, row.lieu_id, agent_id, title, row.lieu_name))
            else:
                absences.append(AbsenceInterval(begin, finish, row.id, agent_id, row.title))
    return sorted(openings), sorted(absences)


def _spans(row: Row[Any], tz: ZoneInfo, first_day: date, last_day: date, start: datetime,
           end: datetime, exceptions: Sequence[DayException] | None = None) -> list[Interval]:
    """The occurrences of a plage (with its exceptions) or absence row that overlap [start, end)."""
    recurrence = _recurrence(row)
    if exceptions:
        recurrence = replace(recurrence, exceptions=tuple(exceptions))
    return [(begin, finish) for begin, finish in occurrences(recurrence, tz, first_day, last_day)
            if begin < end and finish > start]


def _exceptions_of(plage_ids: Sequence[int], first_day: date, last_day: date) -> dict[int, list[DayException]]:
    """The plages' exceptions on the local days [first_day, last_day] (and the day before, as _day_params)."""
    found: dict[int, list[DayException]] = defaultdict(list)
    if not plage_ids:
        return found
    exception = PlageException
    for plage_id, day, start_time, end_time in db.session.execute(
            select(exception.plage_id, exception.day, exception.start_time, exception.end_time)
            .where(exception.plage_id.in_(sorted(set(plage_ids))), *_exception_days(exception.day)),
            _day_params(first_day, last_day)):
        found[plage_id].append(DayException(day, start_time, end_time))
    return found


def holiday_intervals(territory: Territory, start: datetime, end: datetime) -> list[HolidayInterval]:
    """The territory's public holidays touching [start, end), each as its whole local day, with its French name."""
    return holidays_between(territory.holiday_subdivision, territory.tz, start, end)


def holidays_between(subdivision: str | None, tz: ZoneInfo, start: datetime, end: datetime) -> list[HolidayInterval]:
    """holiday_intervals for a territory's holiday subdivision and time zone."""
    days = list(local_dates(tz, start, end))
    names = holiday_names(subdivision, {day.year for day in days})
    return [HolidayInterval(*local_day_bounds(day, tz), names[day]) for day in days if day in names]


# --- What a search reads -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Scope:
    """Which plages a search reads: those offering the motif in the territory, narrowed by lieu or agents."""

    territory_id: int
    motif_id: int
    lieu_id: int | None
    agent_ids: frozenset[int] | None
    first_day: date
    last_day: date

    @classmethod
    def build(cls, territory: Territory, motif_id: int, lieu_id: int | None, agent_id: int | None,
              start: datetime, end: datetime, agent_ids: Iterable[int] | None = None) -> _Scope:
        if agent_id is not None:
            agent_ids = [agent_id]
        first_day, last_day = _local_day_span(territory.tz, start, end)
        return cls(territory.id, motif_id, lieu_id, None if agent_ids is None else frozenset(agent_ids),
                   first_day, last_day)

    @property
    def shape(self) -> tuple[bool, bool]:
        return self.lieu_id is not None, self.agent_ids is not None

    @property
    def params(self) -> dict[str, Any]:
        params = {"motif_id": self.motif_id, "territory_id": self.territory_id}
        params |= _day_params(self.first_day, self.last_day)
        if self.lieu_id is not None:
            params["lieu_id"] = self.lieu_id
        if self.agent_ids is not None:
            params["agent_ids"] = sorted(self.agent_ids)
        return params


@dataclass
class _Rows:
    """What a search read, shaped for the slot engine."""

    openings: list[Opening] = field(default_factory=list)
    absences: dict[int, list[Recurrence]] = field(default_factory=lambda: defaultdict(list))
    busy: dict[int, list[Interval]] = field(default_factory=lambda: defaultdict(list))

    @property
    def agent_ids(self) -> set[int]:
        return {opening.agent_id for opening in self.openings}

    def opens_between(self, territory: Territory, window: Interval) -> bool:
        return any(opening.recurrence.touches(day) for day in local_dates(territory.tz, *window)
                   for opening in self.openings)

    def free_slots(self, territory: Territory, duration: timedelta, window: Interval, limit: int | None) -> list[Slot]:
        tz = territory.tz
        first_day, last_day = _local_day_span(tz, *window)
        holidays = public_holidays(territory.holiday_subdivision, range(first_day.year, last_day.year + 1))
        return free_slots(self.openings, self.busy, self.absences, holidays, tz, duration, *window, limit)

    def covers(self, agent_id: int, tz: ZoneInfo, days: Sequence[date], wanted: Interval) -> bool:
        openings = [span for opening in self.openings if opening.agent_id == agent_id
                    for span in occurrences(opening.recurrence, tz, days[0], days[-1])]
        absent = [span for recurrence in self.absences.get(agent_id, ())
                  for span in occurrences(recurrence, tz, days[0], days[-1])]
        return contains(subtract(openings, merge(absent)), wanted)


def _fetch(scope: _Scope, busy_window: Interval | None = None) -> _Rows:
    """Plages, absences and (if asked) busy time of the scope, in one round trip."""
    params = scope.params | (_busy_params(busy_window) if busy_window else {})
    rows = _Rows()
    exceptions: dict[int, list[DayException]] = defaultdict(list)
    for kind, plage_id, agent_id, lieu_id, *recurrence, starts_at, ends_at in db.session.execute(
            _search_statement(*scope.shape, busy_window is not None), params):
        if kind == _PLAGE:
            rows.openings.append(Opening(agent_id, lieu_id, plage_id, Recurrence(*recurrence)))
        elif kind == _ABSENCE:
            rows.absences[agent_id].append(Recurrence(*recurrence))
        elif kind == _EXCEPTION:
            day, _, start_time, end_time, *_ = recurrence
            exceptions[plage_id].append(DayException(day, start_time, end_time))
        else:
            rows.busy[agent_id].append((starts_at, ends_at))
    if exceptions:
        rows.openings = [replace(opening, recurrence=replace(opening.recurrence,
                                                             exceptions=tuple(exceptions[opening.plage_id])))
                         if opening.plage_id in exceptions else opening for opening in rows.openings]
    return rows


def busy_intervals(agent_ids: Iterable[int], start: datetime, end: datetime) -> dict[int, list[Interval]]:
    """The agents' live rdvs and imported busy times overlapping [start, end), as intervals per agent."""
    return _fetch_busy(agent_ids, (start, end))


def _fetch_busy(agent_ids: Iterable[int], window: Interval) -> dict[int, list[Interval]]:
    busy: dict[int, list[Interval]] = defaultdict(list)
    for agent_id, starts_at, ends_at in db.session.execute(
            _busy_statement(), {"agent_ids": sorted(agent_ids)} | _busy_params(window)):
        busy[agent_id].append((starts_at, ends_at))
    return busy


# Statements are built once per shape and cached: building one costs more than running it.

@cache
def _search_statement(by_lieu: bool, by_agents: bool, with_busy: bool) -> CompoundSelect:
    """One UNION ALL of plages, their exceptions, absences and busy rows, told apart by `kind`, so a search costs
    one round trip. An exception's day travels in first_day.

    The plages offering the motif are a CTE: PostgreSQL computes them once for the other parts.
    """
    offering = _plages_select(by_lieu, by_agents, PlageOuverture.id.label("plage_id"), PlageOuverture.agent_id,
                              PlageOuverture.lieu_id, *_recurrence_columns(PlageOuverture)).cte("offering")
    agents = select(offering.c.agent_id)
    no_date, no_time, no_int = cast(null(), Date), cast(null(), Time), cast(null(), Integer)
    no_instant = cast(null(), UTCDateTime)
    parts = [
        select(literal_column(str(_PLAGE)).label("kind"), *offering.c, no_instant.label("starts_at"),
               no_instant.label("ends_at")),
        select(literal_column(str(_ABSENCE)), no_int, Absence.agent_id, no_int, *_recurrence_columns(Absence),
               no_instant, no_instant).where(Absence.agent_id.in_(agents), *_overlapping_scope(Absence)),
        select(literal_column(str(_EXCEPTION)), PlageException.plage_id, no_int, no_int, PlageException.day, no_date,
               PlageException.start_time, PlageException.end_time, no_int, no_int, no_instant, no_instant)
        .where(PlageException.plage_id.in_(select(offering.c.plage_id)), *_exception_days(PlageException.day)),
    ]
    if with_busy:
        parts.append(select(literal_column(str(_BUSY)), no_int, RdvAgent.agent_id, no_int, no_date, no_date,
                            no_time, no_time, no_int, no_int, RdvAgent.starts_at, RdvAgent.ends_at)
                     .where(RdvAgent.agent_id.in_(agents), *_busy_conditions()))
        parts.append(select(literal_column(str(_BUSY)), no_int, BusyBlock.agent_id, no_int, no_date, no_date,
                            no_time, no_time, no_int, no_int, BusyBlock.starts_at, BusyBlock.ends_at)
                     .where(BusyBlock.agent_id.in_(agents), *_imported_busy_conditions()))
    return union_all(*parts)


@cache
def _busy_statement() -> CompoundSelect:
    """Live rdvs, and busy times read from the agents' own calendars (lapins.calendars.busy)."""
    agents = bindparam("agent_ids", expanding=True)
    return union_all(
        select(RdvAgent.agent_id, RdvAgent.starts_at, RdvAgent.ends_at).where(
            RdvAgent.agent_id.in_(agents), *_busy_conditions()),
        select(BusyBlock.agent_id, BusyBlock.starts_at, BusyBlock.ends_at).where(
            BusyBlock.agent_id.in_(agents), *_imported_busy_conditions()))


@cache
def _openings_statement() -> Select:
    plage = PlageOuverture
    return (
        select(plage.id, plage.agent_id, plage.lieu_id, plage.title, Lieu.name.label("lieu_name"),
               *_recurrence_columns(plage))
        .outerjoin(Lieu, Lieu.id == plage.lieu_id)
        .where(plage.agent_id.in_(bindparam("agent_ids", expanding=True)), *_overlapping_scope(plage))
    )


@cache
def _absences_statement() -> Select:
    return select(Absence.id, Absence.agent_id, Absence.title, *_recurrence_columns(Absence)).where(
        Absence.agent_id.in_(bindparam("agent_ids", expanding=True)), *_overlapping_scope(Absence))


@cache
def _background_statement() -> CompoundSelect:
    """One agent's plages (with their lieu's name), their exceptions (the day in first_day), absences and busy times
    read from their own calendar (lapins.calendars.busy), told apart by `kind`."""
    plage = PlageOuverture
    no_instant = cast(null(), UTCDateTime)
    no_recurrence = [cast(null(), Date), cast(null(), Date), cast(null(), Time), cast(null(), Time),
                     cast(null(), Integer), cast(null(), Integer)]
    return union_all(
        select(literal_column(str(_PLAGE)).label("kind"), plage.id, plage.lieu_id, plage.title,
               Lieu.name.label("lieu_name"), *_recurrence_columns(plage), no_instant.label("starts_at"),
               no_instant.label("ends_at"))
        .outerjoin(Lieu, Lieu.id == plage.lieu_id)
        .where(plage.agent_id == bindparam("agent_id"), *_overlapping_scope(plage)),
        select(literal_column(str(_ABSENCE)), Absence.id, cast(null(), Integer), Absence.title,
               cast(null(), String), *_recurrence_columns(Absence), no_instant, no_instant)
        .where(Absence.agent_id == bindparam("agent_id"), *_overlapping_scope(Absence)),
        select(literal_column(str(_BUSY)), BusyBlock.id, cast(null(), Integer), cast(null(), String),
               cast(null(), String), *no_recurrence, BusyBlock.starts_at, BusyBlock.ends_at)
        .where(BusyBlock.agent_id == bindparam("agent_id"),
               BusyBlock.starts_at < bindparam("busy_end", type_=UTCDateTime),
               BusyBlock.ends_at > bindparam("busy_start", type_=UTCDateTime)),
        select(literal_column(str(_EXCEPTION)), PlageException.plage_id, cast(null(), Integer), cast(null(), String),
               cast(null(), String), PlageException.day, cast(null(), Date), PlageException.start_time,
               PlageException.end_time, cast(null(), Integer), cast(null(), Integer), no_instant, no_instant)
        .join(plage, plage.id == PlageException.plage_id)
        .where(plage.agent_id == bindparam("agent_id"), *_exception_days(PlageException.day)),
    )


def _plages_select(by_lieu: bool, by_agents: bool, *columns: Any) -> Select:
    plage = PlageOuverture
    statement = (
        select(*columns)
        .join(plage_motifs, plage_motifs.c.plage_id == plage.id)
        .join(Agent, Agent.id == plage.agent_id)
        .join(Organisation, Organisation.id == plage.organisation_id)
        .outerjoin(Lieu, Lieu.id == plage.lieu_id)  # none for home visits and phone calls
        .where(plage_motifs.c.motif_id == bindparam("motif_id"),
               Organisation.territory_id == bindparam("territory_id"), Agent.active,
               or_(plage.lieu_id.is_(None), Lieu.active), *_overlapping_scope(plage))
    )
    if by_lieu:
        statement = statement.where(plage.lieu_id == bindparam("lieu_id"))
    if by_agents:
        statement = statement.where(plage.agent_id.in_(bindparam("agent_ids", expanding=True)))
    return statement


def _busy_conditions() -> list[Any]:
    return [RdvAgent.live, RdvAgent.starts_at >= bindparam("busy_lookback", type_=UTCDateTime),
            RdvAgent.starts_at < bindparam("busy_end", type_=UTCDateTime),
            RdvAgent.ends_at > bindparam("busy_start", type_=UTCDateTime)]


def _imported_busy_conditions() -> list[Any]:
    # An event of an agent's own calendar may last days (a holiday): no lookback bound, only the overlap.
    return [BusyBlock.starts_at < bindparam("busy_end", type_=UTCDateTime),
            BusyBlock.ends_at > bindparam("busy_start", type_=UTCDateTime)]


def _busy_params(window: Interval) -> dict[str, datetime]:
    return {"busy_start": window[0], "busy_end": window[1], "busy_lookback": window[0] - LONGEST_RDV}


def _overlapping_scope(model: type[PlageOuverture] | type[Absence]) -> list[Any]:
    """Recurrences with an occurrence on the local days of _day_params."""
    return [model.first_day <= bindparam("last_day", type_=Date),
            or_(model.last_day.is_(None), model.last_day >= bindparam("day_before_first", type_=Date))]


def _exception_days(day_column: Any) -> list[Any]:
    """Exceptions on the local days of _day_params."""
    return [day_column >= bindparam("day_before_first", type_=Date), day_column <= bindparam("last_day", type_=Date)]


def _day_params(first_day: date, last_day: date) -> dict[str, date]:
    # A day earlier, for an occurrence running overnight into first_day.
    return {"last_day": last_day, "day_before_first": first_day - ONE_DAY}


def _recurrence_columns(model: type[PlageOuverture] | type[Absence]) -> list[Any]:
    return [model.first_day, model.last_day, model.start_time, model.end_time, model.weekdays, model.every_n_weeks]


def _recurrence(row: Row[Any]) -> Recurrence:
    return Recurrence(row.first_day, row.last_day, row.start_time, row.end_time, row.weekdays, row.every_n_weeks)


def _id_list(ids: int | Iterable[int]) -> list[int]:
    return [ids] if isinstance(ids, int) else sorted(set(ids))


def _local_day_span(tz: ZoneInfo, start: datetime, end: datetime) -> tuple[date, date]:
    """First and last local dates touched by [start, end) (just start's date when it is empty)."""
    first_day = start.astimezone(tz).date()
    return first_day, max(first_day, (end - timedelta(microseconds=1)).astimezone(tz).date())
