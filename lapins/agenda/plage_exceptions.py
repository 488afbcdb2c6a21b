"""Exceptions in a recurring plage: one date removed or changed (« cette date seulement »), or every date from one
on (« cette date et les suivantes »: the plage ends the day before and a new plage carries the change).

Nothing here moves or cancels an rdv: the rdvs that the new openings would leave out are listed first
(`rdvs_left_out`, read again under the agent's lock when the change is stored), the agent confirms, and they stay
where they are until the agent moves them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from lapins.agenda.schedule_services import (
    ScheduleConflict, conflict_message, describe_hours, find_overlapping_plage, lock_agent,
)
from lapins.infra.extensions import db
from lapins.locale.formatting import long_date
from lapins.models import Agent, Lieu, PlageException, PlageOuverture, Rdv, RdvAgent
from lapins.slots import engine as slots

ONLY_THIS_DATE, FROM_THIS_DATE = "seule", "suivantes"
REMOVE, CHANGE = "retirer", "modifier"


class ConfirmationNeeded(Exception):
    """Rdvs the change would leave out that the agent has not confirmed yet (nothing stored)."""

    def __init__(self, left_out: list[Rdv]) -> None:
        super().__init__(f"{len(left_out)} rdvs to confirm")
        self.left_out = left_out


@dataclass(frozen=True)
class ExceptionValues:
    day: date
    scope: str  # ONLY_THIS_DATE or FROM_THIS_DATE
    action: str  # REMOVE or CHANGE
    start_time: time | None = None
    end_time: time | None = None
    lieu: Lieu | None = None  # for CHANGE; the plage's own when it stays

    @property
    def removes(self) -> bool:
        return self.action == REMOVE


@dataclass(frozen=True)
class _Opening:
    """A recurrence and where it opens: what the plage opens before or after the change."""

    recurrence: slots.Recurrence
    lieu_id: int | None


def plage_timezone(plage: PlageOuverture) -> ZoneInfo:
    return plage.organisation.territory.tz


def date_problem(plage: PlageOuverture, day: date) -> str | None:
    """Why `day` cannot take an exception of this plage, in French, or None."""
    if day < plage.first_day or (plage.last_day is not None and day > plage.last_day):
        end = f"au {long_date(plage.last_day)}" if plage.last_day else "sans date de fin"
        return (f"Le {long_date(day)} est en dehors de la période de cette plage "
                f"(du {long_date(plage.first_day)} {end}).")
    if not plage.recurrence.recurs_on(day):
        return f"Le {long_date(day)} n'est pas une date de cette plage : choisissez l'un de ses jours d'ouverture."
    return None


def values_problem(plage: PlageOuverture, values: ExceptionValues) -> str | None:
    """A change that cannot be made as asked, in French, or None."""
    if values.scope == FROM_THIS_DATE and values.day == plage.first_day:
        return ("C'est la première date de cette plage : pour changer toutes ses dates, modifiez ou supprimez "
                "la plage elle-même.")
    return None


def _one_date(day: date, start_time: time, end_time: time) -> slots.Recurrence:
    return slots.Recurrence(day, day, start_time, end_time, 1 << day.weekday(), 1)


def _except(recurrence: slots.Recurrence, exception: slots.DayException | None, day: date) -> slots.Recurrence:
    """The recurrence with the exception of `day` replaced by `exception` (None: the date as the pattern has it)."""
    kept = tuple(other for other in recurrence.exceptions if other.day != day)
    return replace(recurrence, exceptions=kept + ((exception,) if exception else ()))


def _stays_at_lieu(plage: PlageOuverture, values: ExceptionValues) -> bool:
    return values.lieu is None or values.lieu.id == plage.lieu_id


def openings_after(plage: PlageOuverture, values: ExceptionValues) -> list[_Opening]:
    """What the plage (and the plage carrying the change, if any) opens once the change is made."""
    current = plage.recurrence
    day = values.day
    if values.scope == ONLY_THIS_DATE:
        if values.removes:
            return [_Opening(_except(current, slots.DayException(day), day), plage.lieu_id)]
        if _stays_at_lieu(plage, values):
            same = (values.start_time, values.end_time) == (plage.start_time, plage.end_time)
            exception = None if same else slots.DayException(day, values.start_time, values.end_time)
            return [_Opening(_except(current, exception, day), plage.lieu_id)]
        return [_Opening(_except(current, slots.DayException(day), day), plage.lieu_id),
                _Opening(_one_date(day, values.start_time, values.end_time), values.lieu.id)]
    earlier = replace(current, last_day=day - timedelta(days=1),
                      exceptions=tuple(exception for exception in current.exceptions if exception.day < day))
    if values.removes:
        return [_Opening(earlier, plage.lieu_id)]
    later = replace(current, first_day=day, start_time=values.start_time, end_time=values.end_time,
                    exceptions=tuple(exception for exception in current.exceptions if exception.day >= day))
    return [_Opening(earlier, plage.lieu_id), _Opening(later, (values.lieu or plage.lieu).id)]


def rdvs_left_out(plage: PlageOuverture, values: ExceptionValues) -> list[Rdv]:
    """The agent's live rdvs during the plage's openings concerned that the new openings would not hold (other
    hours, no opening, or another lieu), soonest first."""
    tz = plage_timezone(plage)
    before = [_Opening(plage.recurrence, plage.lieu_id)]
    after = openings_after(plage, values)
    lower = slots.local_midnight(values.day, tz)
    query = (select(Rdv).join(RdvAgent, RdvAgent.rdv_id == Rdv.id)
             .where(RdvAgent.agent_id == plage.agent_id, RdvAgent.live, RdvAgent.starts_at >= lower)
             .options(selectinload(Rdv.usagers), selectinload(Rdv.motif), selectinload(Rdv.lieu))
             .order_by(Rdv.starts_at, Rdv.id))
    last = values.day if values.scope == ONLY_THIS_DATE else plage.last_day
    if last is not None:
        query = query.where(RdvAgent.starts_at < slots.local_midnight(last + timedelta(days=1), tz))
    left_out = []
    for rdv in db.session.scalars(query).unique():
        day = rdv.starts_at.astimezone(tz).date()
        span = (rdv.starts_at, rdv.ends_at)
        if not any(_overlaps(occurrence, span) for occurrence in _spans(before, day, tz)):
            continue
        held = [occurrence for opening in after if rdv.lieu_id in (None, opening.lieu_id)
                for occurrence in slots.occurrences(opening.recurrence, tz, day, day)]
        if not slots.contains(held, span):
            left_out.append(rdv)
    return left_out


def _spans(openings: list[_Opening], day: date, tz: ZoneInfo) -> list[slots.Interval]:
    return [occurrence for opening in openings for occurrence in slots.occurrences(opening.recurrence, tz, day, day)]


def _overlaps(a: slots.Interval, b: slots.Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _other_plage_on(plage: PlageOuverture, day: date, start_time: time, end_time: time) -> PlageOuverture | None:
    """Another plage of the agent open on `day` at overlapping hours, its own exceptions applied."""
    others = db.session.scalars(select(PlageOuverture).where(
        PlageOuverture.agent_id == plage.agent_id, PlageOuverture.id != plage.id))
    for other in others:
        recurrence = other.recurrence
        if recurrence.occurs_on(day):
            other_start, other_end = recurrence.times_on(day)
            if start_time < other_end and other_start < end_time:
                return other
    return None


def _check_overlap(actor: Agent, plage: PlageOuverture, values: ExceptionValues) -> None:
    if values.removes:
        return
    if values.scope == ONLY_THIS_DATE:
        other = _other_plage_on(plage, values.day, values.start_time, values.end_time)
        if other is not None:
            raise ScheduleConflict(conflict_message(actor, other, values.day))
        return
    later = slots.Recurrence(values.day, plage.last_day, values.start_time, values.end_time, plage.weekdays,
                             plage.every_n_weeks)
    overlap = find_overlapping_plage(plage.agent_id, later, exclude_id=plage.id)
    if overlap is not None:
        raise ScheduleConflict(conflict_message(actor, *overlap))


def _carrying_plage(plage: PlageOuverture, values: ExceptionValues, first_day: date, last_day: date | None,
                    weekdays: int, every_n_weeks: int) -> PlageOuverture:
    lieu = values.lieu or plage.lieu
    return PlageOuverture(
        agent_id=plage.agent_id, organisation_id=lieu.organisation_id if lieu else plage.organisation_id,
        lieu=lieu, title=plage.title, motifs=list(plage.motifs), first_day=first_day, last_day=last_day,
        start_time=values.start_time, end_time=values.end_time, weekdays=weekdays, every_n_weeks=every_n_weeks)


def apply(actor: Agent, plage: PlageOuverture, values: ExceptionValues, confirmed: set[int]) -> tuple[str, list[Rdv]]:
    """Make the change, in one transaction; returns what was done, in French, and the rdvs left out.

    Under the agent's lock (booking takes it too), so that the rdvs left out are read as they are when the change is
    stored: ConfirmationNeeded when one of them is not among the `confirmed` ids; ScheduleConflict when the new hours
    overlap another plage of the agent. Either way nothing is stored."""
    lock_agent(plage.agent_id)
    try:
        _check_overlap(actor, plage, values)
        left_out = rdvs_left_out(plage, values)
        if not {rdv.id for rdv in left_out} <= confirmed:
            raise ConfirmationNeeded(left_out)
    except (ScheduleConflict, ConfirmationNeeded):
        db.session.rollback()
        raise
    day = values.day
    if values.scope == ONLY_THIS_DATE:
        summary = _apply_one_date(plage, values)
    else:
        later = [exception for exception in plage.exceptions if exception.day >= day]
        if values.removes:
            for exception in later:
                plage.exceptions.remove(exception)
            summary = f"Les dates à partir du {long_date(day)} sont retirées de la plage « {plage.title} »."
        else:
            carrying = _carrying_plage(plage, values, day, plage.last_day, plage.weekdays, plage.every_n_weeks)
            for exception in later:
                plage.exceptions.remove(exception)
                carrying.exceptions.append(PlageException(day=exception.day, start_time=exception.start_time,
                                                          end_time=exception.end_time))
            db.session.add(carrying)
            summary = (f"À partir du {long_date(day)}, la plage « {plage.title} » ouvre "
                       f"{describe_hours(values.start_time, values.end_time)}"
                       f"{_at(carrying.lieu)}.")
        plage.last_day = day - timedelta(days=1)
    db.session.commit()
    return summary, left_out


def _apply_one_date(plage: PlageOuverture, values: ExceptionValues) -> str:
    day = values.day
    exception = plage.exception_on(day)
    when = f"le {long_date(day)}"
    if not values.removes and _stays_at_lieu(plage, values) \
            and (values.start_time, values.end_time) == (plage.start_time, plage.end_time):
        if exception is not None:
            plage.exceptions.remove(exception)
        return f"La plage « {plage.title} » ouvre {when} aux heures habituelles."
    if exception is None:
        exception = PlageException(day=day)
        plage.exceptions.append(exception)
    if values.removes or not _stays_at_lieu(plage, values):
        exception.start_time = exception.end_time = None
    else:
        exception.start_time, exception.end_time = values.start_time, values.end_time
    if values.removes:
        return f"La plage « {plage.title} » n'ouvre pas {when}."
    if not _stays_at_lieu(plage, values):
        bit = 1 << day.weekday()
        db.session.add(_carrying_plage(plage, values, day, day, bit, 1))
    return (f"La plage « {plage.title} » ouvre {when} {describe_hours(values.start_time, values.end_time)}"
            f"{_at(values.lieu or plage.lieu)}.")


def _at(lieu: Lieu | None) -> str:
    return f" ({lieu.name})" if lieu else ""


def lieux_choices(lieux: list[Lieu], plage: PlageOuverture) -> list[Lieu]:
    """The lieux a date may move to: those of the plage's organisation (its motifs belong there)."""
    return [lieu for lieu in lieux if lieu.organisation_id == plage.organisation_id]
