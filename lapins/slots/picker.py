"""The public slot picker: the free times a family may choose, day by day, for one motif at one lieu.

A family moving its rdv uses it (lapins.family); online booking will too. The first page shows the first
FIRST_DAYS local days that have a free time, the next ones a week at a time, up to the horizon. Each day is cut
from its local midnight, whatever the time of the request, so a time shown on a page is found again when the family
chooses it (`choice_at`), however late it does.

The pages are public and asked for all day, so what they show is kept per process on the territory's agenda stamp and
those of the agents it may show (lapins.models.agenda_stamps: every change to rdvs, plages, absences, motifs, lieux
draws new ones, in the same transaction), with the scope's bounds on the 5-minute grid: a page shows what the stamps
read before it allowed.
`choice_at`, which decides a move, always reads the database. `page(..., kept_only=True)` answers only from what is
kept (None otherwise): for the family pages' fast path (lapins.family.fast_picker), which leaves any reading to Flask.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import bindparam, select

from lapins.infra.database import DriverQuery
from lapins.infra.extensions import db
from lapins.models import Agent, Motif, PlageOuverture, Territory
from lapins.models.plages import plage_motifs
from lapins.slots import availability
from lapins.slots.engine import ONE_DAY, Slot, local_midnight

FIRST_DAYS = 3
FIRST_SPAN_DAYS = 8
WEEK = 7
KEPT_PAGES = 4096  # then emptied: a département's families ask for a few thousand different weeks at most

_kept: dict[tuple, tuple[Day, ...]] = {}


class NotKept(Exception):
    """A page asked for with kept_only=True would have to read the database."""


@dataclass(frozen=True)
class Scope:
    """What may be picked: free times of `motif` at `lieu_id` in [start, end), of every agent of `agent_ids` at once
    (a family keeping its agents), or of any one agent offering the motif there when `agent_ids` is None."""

    territory: Territory  # or a row with the same id, agenda_stamp and tz (lapins.family.fast_picker)
    motif: Motif  # or a row with the same id
    lieu_id: int | None
    agent_ids: tuple[int, ...] | None
    start: datetime
    end: datetime
    preferred_agent_ids: tuple[int, ...] = ()  # among free agents, these first (the family's own)
    # (agent id, agenda stamp) of every agent whose times the scope may show (agent_stamps): with the territory's
    # stamp, what the kept pages are kept on.
    agent_stamps: tuple[tuple[int, str], ...] = ()
    # How long each time offered lasts: the motif's when None; a family's move, its rdv's own (set by its agent).
    duration: timedelta | None = None

    def key(self, first: date, last: date) -> tuple:
        territory = self.territory
        return (territory.id, territory.agenda_stamp, self.agent_stamps, self.motif.id, self.lieu_id, self.agent_ids,
                self.start, self.end, self.preferred_agent_ids, self.duration, first, last)

    @property
    def first_day(self) -> date:
        return self.start.astimezone(self.territory.tz).date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).astimezone(self.territory.tz).date()


# Any agent offering the motif may be shown (a scope without agent_ids): who has a plage for it. Plages draw the
# territory's new stamp, so this list changes only with it; the agents' own stamps are read at every page.
MOTIF_AGENT_STAMPS = DriverQuery(
    select(Agent.id, Agent.agenda_stamp)
    .where(Agent.id.in_(select(PlageOuverture.agent_id).join(plage_motifs, plage_motifs.c.plage_id == PlageOuverture.id)
                        .where(plage_motifs.c.motif_id == bindparam("motif_id"))))
    .order_by(Agent.id)
)


def agent_stamps(motif_id: int, agent_ids: tuple[int, ...] | None) -> tuple[tuple[int, str], ...]:
    """The agenda stamps of the agents a scope may show: `agent_ids`, or any agent offering the motif (None)."""
    if agent_ids is None:
        return tuple((agent_id, stamp) for agent_id, stamp in MOTIF_AGENT_STAMPS.rows(motif_id=motif_id))
    return tuple((agent_id, stamp) for agent_id, stamp in db.session.execute(
        select(Agent.id, Agent.agenda_stamp).where(Agent.id.in_(agent_ids)).order_by(Agent.id)))


def agent_stamps_by_lieu(motif_ids: list[int]) -> dict[tuple[int, int], tuple[tuple[int, str], ...]]:
    """The agenda stamps of the agents with a plage for each motif at each lieu, by (motif id, lieu id), in one
    query: all a scope of that motif and lieu without agent_ids may show (its times come from those plages only),
    so that a booking with an agent of another lieu keeps that scope's pages (the online search)."""
    found: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
    if not motif_ids:
        return {}
    for motif_id, lieu_id, agent_id, stamp in db.session.execute(
            select(plage_motifs.c.motif_id, PlageOuverture.lieu_id, Agent.id, Agent.agenda_stamp)
            .join(PlageOuverture, PlageOuverture.agent_id == Agent.id)
            .join(plage_motifs, plage_motifs.c.plage_id == PlageOuverture.id)
            .where(plage_motifs.c.motif_id.in_(motif_ids)).distinct()
            .order_by(plage_motifs.c.motif_id, PlageOuverture.lieu_id, Agent.id)):
        found[motif_id, lieu_id].append((agent_id, stamp))
    return {key: tuple(stamps) for key, stamps in found.items()}


@dataclass(frozen=True)
class Choice:
    starts_at: datetime
    ends_at: datetime
    agent_ids: tuple[int, ...]


@dataclass(frozen=True)
class Day:
    day: date
    choices: tuple[Choice, ...]


@dataclass(frozen=True)
class Page:
    """One page of the picker: its days, the first day of the week it shows (None for the first page), and the
    first day of the next page if there is one within the horizon."""

    days: tuple[Day, ...]
    first: date | None
    following: date | None


def page(scope: Scope, first: date | None = None, *, kept_only: bool = False) -> Page | None:
    """The first page (the first FIRST_DAYS days with a free time), or the week from `first`; with kept_only, None
    unless every day it shows is kept already."""
    try:
        if first is None or first <= scope.first_day:
            days = first_days(scope, kept_only=kept_only)
            following = days[-1].day + ONE_DAY if len(days) == FIRST_DAYS else None
            first = None
        else:
            days = days_between(scope, first, first + timedelta(days=WEEK - 1), kept_only=kept_only)
            following = first + timedelta(days=WEEK)
    except NotKept:
        return None
    return Page(days, first, following if following is not None and following <= scope.last_day else None)


def first_days(scope: Scope, count: int = FIRST_DAYS, *, kept_only: bool = False) -> tuple[Day, ...]:
    """The first `count` local days that have a free time: read a week and a day, then four times as long, as
    first_available reads (one query finds them most often: each query is a round trip)."""
    found: tuple[Day, ...] = ()
    first, span = scope.first_day, FIRST_SPAN_DAYS
    while first <= scope.last_day and len(found) < count:
        last = min(first + timedelta(days=span - 1), scope.last_day)
        found += days_between(scope, first, last, kept_only=kept_only)
        first, span = last + ONE_DAY, span * 4
    return found[:count]


def days_between(scope: Scope, first: date, last: date, *, kept_only: bool = False) -> tuple[Day, ...]:
    """The local days from `first` to `last` (included) that have a free time, in order (kept on the stamp)."""
    first, last = max(first, scope.first_day), min(last, scope.last_day)
    if first > last:
        return ()
    key = scope.key(first, last)
    days = _kept.get(key)  # one read: the online search's refresh thread may empty it meanwhile (kept_search)
    if days is None:
        if kept_only:
            raise NotKept
        if len(_kept) >= KEPT_PAGES:
            _kept.clear()
        days = _kept[key] = _read_days(scope, first, last)
    return days


def _read_days(scope: Scope, first: date, last: date) -> tuple[Day, ...]:
    tz = scope.territory.tz
    slots = availability.free_slots_between(
        territory=scope.territory, motif=scope.motif, lieu_id=scope.lieu_id, agent_ids=scope.agent_ids,
        start=local_midnight(first, tz), end=local_midnight(last + ONE_DAY, tz), duration=scope.duration)
    by_day: dict[date, list[Choice]] = defaultdict(list)
    for choice in _choices(scope, slots):
        by_day[choice.starts_at.astimezone(tz).date()].append(choice)
    return tuple(Day(day, tuple(choices)) for day, choices in sorted(by_day.items()))


def choice_at(scope: Scope, starts_at: datetime, agent_id: int | None = None) -> Choice | None:
    """The free time starting at `starts_at` as the picker shows it (with `agent_id` if it is free then), or None:
    taken, outside the scope's days and openings, or never offered at that minute."""
    if not scope.start <= starts_at < scope.end:
        return None
    day = starts_at.astimezone(scope.territory.tz).date()
    for found in _read_days(scope, max(day, scope.first_day), min(day, scope.last_day)):
        for choice in found.choices:
            if choice.starts_at == starts_at:
                return _with_agent(scope, choice, agent_id)
    return None


def _choices(scope: Scope, slots: list[Slot]) -> list[Choice]:
    """One choice per free time within the scope: the agents it needs all free then, or the first free agent."""
    by_time: dict[tuple[datetime, datetime], set[int]] = defaultdict(set)
    for slot in slots:
        if scope.start <= slot.starts_at < scope.end:
            by_time[slot.starts_at, slot.ends_at].add(slot.agent_id)
    choices = []
    for (starts_at, ends_at), free in sorted(by_time.items()):
        if scope.agent_ids is not None:
            if free >= set(scope.agent_ids):
                choices.append(Choice(starts_at, ends_at, scope.agent_ids))
            continue
        preferred = [agent_id for agent_id in scope.preferred_agent_ids if agent_id in free]
        choices.append(Choice(starts_at, ends_at, tuple(sorted(free, key=lambda agent_id: (
            agent_id not in preferred, agent_id)))))
    return choices


def _with_agent(scope: Scope, choice: Choice, agent_id: int | None) -> Choice:
    """In "any agent" mode a choice lists every free agent, preferred first; narrowed here to the one to book."""
    if scope.agent_ids is not None:
        return choice
    chosen = agent_id if agent_id in choice.agent_ids else choice.agent_ids[0]
    return Choice(choice.starts_at, choice.ends_at, (chosen,))
