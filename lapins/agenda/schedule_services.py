"""Plages d'ouverture and absences: overlap rules, what an agent may pick, saving, and French descriptions."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from math import lcm
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from lapins.slots import engine as slots
from lapins.infra.extensions import db
from lapins.locale.formatting import long_date, short_date
from lapins.models import Absence, Agent, Lieu, Motif, PlageOuverture
from lapins.policies import agent_scope, can, lieu_scope, motif_scope, plage_scope

WEEKDAY_NAMES = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
DEFAULT_TZ = ZoneInfo("Europe/Paris")


class ScheduleConflict(Exception):
    """A plage refused because the agent already works elsewhere then; the message names the other plage."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class PlageValues:
    title: str
    lieu: Lieu
    motifs: list[Motif]
    recurrence: slots.Recurrence


@dataclass(frozen=True)
class AbsenceValues:
    title: str
    recurrence: slots.Recurrence


# --- Recurrences -------------------------------------------------------------------------------------------------


def weekdays_mask(days: list[int]) -> int:
    mask = 0
    for day in days:
        mask |= 1 << day
    return mask


def weekdays_list(mask: int) -> list[int]:
    return [day for day in range(7) if mask & (1 << day)]


def first_common_day(a: slots.Recurrence, b: slots.Recurrence) -> date | None:
    """The first day on which both weekly recurrences occur (per the slot engine's `occurs_on`), or None.

    Both patterns repeat every lcm(n_a, n_b) weeks, so if a common day exists in the shared date range, one exists
    within the first lcm weeks of it: scanning at most 12 weeks of days answers exactly, even for open-ended plages.
    """
    if not a.weekdays & b.weekdays:
        return None
    start = max(a.first_day, b.first_day)
    ends = [last for last in (a.last_day, b.last_day) if last is not None]
    end = min(ends) if ends else None
    period_days = lcm(a.every_n_weeks, b.every_n_weeks) * 7
    for offset in range(period_days):
        day = start + timedelta(days=offset)
        if end is not None and day > end:
            return None
        if a.occurs_on(day) and b.occurs_on(day):
            return day
    return None


def times_overlap(a: slots.Recurrence, b: slots.Recurrence) -> bool:
    return a.start_time < b.end_time and b.start_time < a.end_time


def first_overlapping_day(a: slots.Recurrence, b: slots.Recurrence) -> date | None:
    """The first day on which both recurrences are open at overlapping hours, their exceptions applied, or None.

    Past their last exception both patterns repeat every lcm weeks again: scanning up to one such period after it
    answers exactly (exceptions are few and within a few years)."""
    if not a.exceptions and not b.exceptions:
        return first_common_day(a, b) if times_overlap(a, b) else None
    if not a.weekdays & b.weekdays:
        return None
    start = max(a.first_day, b.first_day)
    ends = [last for last in (a.last_day, b.last_day) if last is not None]
    last_exception = max([exception.day for exception in a.exceptions + b.exceptions] + [start])
    end = min(ends + [last_exception + timedelta(weeks=lcm(a.every_n_weeks, b.every_n_weeks))])
    day = start
    while day <= end:
        if a.occurs_on(day) and b.occurs_on(day):
            (a_start, a_end), (b_start, b_end) = a.times_on(day), b.times_on(day)
            if a_start < b_end and b_start < a_end:
                return day
        day += timedelta(days=1)
    return None


def find_overlapping_plage(
    agent_id: int, recurrence: slots.Recurrence, exclude_id: int | None = None
) -> tuple[PlageOuverture, date] | None:
    """Another plage of the same agent, in any organisation, that shares at least one local time slot (exceptions
    applied: a date removed from a plage overlaps nothing)."""
    query = select(PlageOuverture).where(PlageOuverture.agent_id == agent_id).order_by(PlageOuverture.first_day)
    if exclude_id is not None:
        query = query.where(PlageOuverture.id != exclude_id)
    for other in db.session.scalars(query):
        day = first_overlapping_day(recurrence, other.recurrence)
        if day is not None:
            return other, day
    return None


# --- What an actor may pick ---------------------------------------------------------------------------------------


def manageable_agents(actor: Agent) -> list[Agent]:
    """Agents whose schedule `actor` may manage: themselves, plus colleagues when admin or secretary."""
    agents = db.session.scalars(agent_scope(actor).options(selectinload(Agent.roles))).all()
    return [agent for agent in agents if can(actor, "manage_schedule", agent)]


def lieux_for(actor: Agent, agent: Agent, keep: Lieu | None = None) -> list[Lieu]:
    """Open lieux the actor may see in the organisations the agent works for; `keep` keeps a plage's closed lieu."""
    query = lieu_scope(actor).where(Lieu.organisation_id.in_(agent.organisation_ids),
                                    or_(Lieu.active.is_(True), Lieu.id == (keep.id if keep else None)))
    return list(db.session.scalars(query.options(selectinload(Lieu.organisation))))


def motifs_for(actor: Agent, agent: Agent, keep: list[Motif] | None = None) -> list[Motif]:
    """Active motifs of the agent's organisations in the actor's scope; `keep` keeps a plage's disabled motifs."""
    query = motif_scope(actor).where(Motif.organisation_id.in_(agent.organisation_ids), Motif.active.is_(True))
    motifs = list(db.session.scalars(query.options(selectinload(Motif.organisation))))
    known = {motif.id for motif in motifs}
    extra = [motif for motif in keep or [] if motif.id not in known and can(actor, "view", motif)]
    return sorted(motifs + extra, key=lambda motif: (motif.organisation.name, motif.name))


# --- Saving -------------------------------------------------------------------------------------------------------


def lock_agent(agent_id: int) -> None:
    """Serialise schedule changes per agent (PostgreSQL row lock), so two tabs cannot create overlapping plages."""
    db.session.execute(select(Agent.id).where(Agent.id == agent_id).with_for_update())


def _apply_recurrence(target: PlageOuverture | Absence, recurrence: slots.Recurrence) -> None:
    target.first_day = recurrence.first_day
    target.last_day = recurrence.last_day
    target.start_time = recurrence.start_time
    target.end_time = recurrence.end_time
    target.weekdays = recurrence.weekdays
    target.every_n_weeks = recurrence.every_n_weeks


def conflict_message(actor: Agent, other: PlageOuverture, day: date) -> str:
    when = f"le {long_date(day)} de {hours(other.start_time)} à {hours(other.end_time)}"
    if can(actor, "view", other):
        where = f" ({other.lieu.name})" if other.lieu else ""
        return f"Cette plage chevauche la plage d'ouverture « {other.title} »{where} de cet agent, par exemple {when}."
    return f"Cette plage chevauche une plage d'ouverture de cet agent dans une autre organisation, par exemple {when}."


def save_plage(actor: Agent, plage: PlageOuverture, values: PlageValues) -> PlageOuverture:
    """Store the plage after checking the agent has no other plage at the same time; raises ScheduleConflict."""
    lock_agent(plage.agent_id)
    # Its dates removed or changed stay so (lapins.agenda.plage_exceptions): a date given to another plage is free.
    recurrence = replace(values.recurrence, exceptions=plage.recurrence.exceptions) if plage.id else values.recurrence
    overlap = find_overlapping_plage(plage.agent_id, recurrence, exclude_id=plage.id)
    if overlap is not None:
        db.session.rollback()
        raise ScheduleConflict(conflict_message(actor, *overlap))
    plage.title = values.title
    plage.lieu = values.lieu
    plage.organisation_id = values.lieu.organisation_id
    plage.motifs = list(values.motifs)
    _apply_recurrence(plage, values.recurrence)
    db.session.add(plage)
    db.session.commit()
    return plage


def save_absence(absence: Absence, values: AbsenceValues) -> Absence:
    absence.title = values.title
    _apply_recurrence(absence, values.recurrence)
    db.session.add(absence)
    db.session.commit()
    return absence


def delete(target: PlageOuverture | Absence) -> None:
    db.session.delete(target)
    db.session.commit()


# --- Listing ------------------------------------------------------------------------------------------------------


def agent_timezone(agent: Agent) -> ZoneInfo:
    """The time zone of the agent's first organisation: plages are entered in that territory's local time."""
    first_role = min(agent.roles, key=lambda role: role.organisation_id, default=None)
    return first_role.organisation.territory.tz if first_role else DEFAULT_TZ


def agent_today(agent: Agent) -> date:
    return datetime.now(agent_timezone(agent)).date()


def plages_of(actor: Agent, agent: Agent, today: date) -> list[PlageOuverture]:
    """The agent's plages as a week reads: by first weekday and hour; ended ones last."""
    query = (
        plage_scope(actor)
        .where(PlageOuverture.agent_id == agent.id)
        .options(selectinload(PlageOuverture.motifs), selectinload(PlageOuverture.lieu),
                 selectinload(PlageOuverture.exceptions))
    )
    plages = list(db.session.scalars(query))
    plages.sort(key=lambda plage: (
        period_status(plage, today) == "terminée", min(weekdays_list(plage.weekdays), default=7), plage.start_time,
        plage.first_day, plage.id,
    ))
    return plages


def absences_of(agent: Agent, today: date) -> tuple[list[Absence], list[Absence]]:
    """(upcoming or ongoing, soonest first; past, most recent first)."""
    absences = db.session.scalars(select(Absence).where(Absence.agent_id == agent.id)).all()
    upcoming = [absence for absence in absences if absence.last_day is None or absence.last_day >= today]
    past = [absence for absence in absences if absence.last_day is not None and absence.last_day < today]
    upcoming.sort(key=lambda absence: (absence.first_day, absence.start_time, absence.id))
    past.sort(key=lambda absence: (absence.last_day, absence.end_time, absence.id), reverse=True)
    return upcoming, past


def period_status(target: PlageOuverture | Absence, today: date) -> str:
    if target.last_day is not None and target.last_day < today:
        return "terminée"
    if target.first_day > today:
        return "à venir"
    return "en cours"


# --- French descriptions -----------------------------------------------------------------------------------------


def hours(value: time) -> str:
    return value.strftime("%Hh%M")


def describe_weekdays(mask: int) -> str:
    """« lundi, mardi et jeudi »"""
    names = [WEEKDAY_NAMES[day] for day in weekdays_list(mask)]
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} et {names[-1]}"


def describe_frequency(every_n_weeks: int) -> str:
    return "chaque semaine" if every_n_weeks == 1 else f"toutes les {every_n_weeks} semaines"


def describe_hours(start: time, end: time) -> str:
    return f"de {hours(start)} à {hours(end)}"


def describe_period(first_day: date, last_day: date | None) -> str:
    if last_day is None:
        return f"à partir du {short_date(first_day)}"
    if last_day == first_day:
        return f"le {short_date(first_day)}"
    return f"du {short_date(first_day)} au {short_date(last_day)}"


def describe_absence_span(absence: Absence) -> str:
    """A one-off absence: « du lundi 5 janvier 2026 à 14h00 au mardi 6 janvier 2026 à 12h00 »."""
    if absence.first_day == absence.last_day:
        return f"le {long_date(absence.first_day)} {describe_hours(absence.start_time, absence.end_time)}"
    return (
        f"du {long_date(absence.first_day)} à {hours(absence.start_time)} "
        f"au {long_date(absence.last_day)} à {hours(absence.end_time)}"
    )


def describe_recurrence(target: PlageOuverture | Absence) -> str:
    """« lundi et jeudi, toutes les 2 semaines, de 09h00 à 12h00 »"""
    return (
        f"{describe_weekdays(target.weekdays)}, {describe_frequency(target.every_n_weeks)}, "
        f"{describe_hours(target.start_time, target.end_time)}"
    )


def describe_absence(absence: Absence) -> str:
    if not absence.weekdays:
        return describe_absence_span(absence)
    return f"{describe_recurrence(absence)}, {describe_period(absence.first_day, absence.last_day)}"


TEMPLATE_HELPERS = {
    "describe_weekdays": describe_weekdays,
    "describe_frequency": describe_frequency,
    "describe_hours": describe_hours,
    "describe_period": describe_period,
    "describe_absence": describe_absence,
    "period_status": period_status,
}
