"""What a family may do from its link: the identity check (with its limit of wrong tries), moving and cancelling."""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, or_, select, update

from lapins.booking import (
    BookingError, RdvChanged, cancel_rdv, cancellation_deadline, family_move_refusal, move_rdv,
)
from lapins.infra.extensions import db
from lapins.models import Agent, Rdv, RdvStatus
from lapins.models.rdvs import CancellationChannel, MoveChannel, RdvLinkCheck
from lapins.slots import picker
from lapins.slots.engine import ceil_to_grid

PREFIX_LETTERS = 3
MAX_FAILURES = 5
LOCK_DURATION = timedelta(minutes=15)
SESSION_KEY = "family_checked_rdvs"
SESSION_KEPT = 20  # rdv ids remembered per browser: a family has a few rdvs, never hundreds
MOVE_ATTEMPTS = 3  # with "any agent of the lieu", a time taken from one agent may still be free with another


# --- Identity check ----------------------------------------------------------------------------------------------

def letters_of(text: str) -> str:
    """Lower-case letters without accents, spaces or punctuation: « N'Diaye-Éloi » → « ndiayeeloi »."""
    folded = unicodedata.normalize("NFKD", text.casefold()).replace("œ", "oe").replace("æ", "ae")
    return "".join(char for char in folded if char.isalpha() and not unicodedata.combining(char))


def family_names(rdv: Rdv) -> list[str]:
    """The last names a family may give: each usager's and, for a child, each responsible adult's."""
    names = []
    for usager in rdv.usagers:
        for person in (usager, *usager.guardians):
            if person.last_name not in names:
                names.append(person.last_name)
    return names


def identity_matches(rdv: Rdv, typed: str) -> bool:
    return names_match(family_names(rdv), typed)


def names_match(names: Iterable[str], typed: str) -> bool:
    """The first letters of one of the names (at least 3, or the whole name if shorter)."""
    given = letters_of(typed or "")
    if not given:
        return False
    for name in names:
        letters = letters_of(name)
        if letters and len(given) >= min(PREFIX_LETTERS, len(letters)) and letters.startswith(given):
            return True
    return False


def is_checked(session: MutableMapping, rdv_id: int) -> bool:
    return rdv_id in session.get(SESSION_KEY, [])


def remember_check(session: MutableMapping, rdv_id: int) -> None:
    """Kept in the signed session cookie: this browser passed the check for this rdv."""
    checked = [i for i in session.get(SESSION_KEY, []) if i != rdv_id]
    session[SESSION_KEY] = (checked + [rdv_id])[-SESSION_KEPT:]


# --- Wrong tries ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Try:
    """A guess allowed to be checked: how many it makes in a row, and the lock it set if it is the last allowed."""
    failures: int
    locked_until: datetime | None

    @property
    def tries_left(self) -> int:
        return max(MAX_FAILURES - self.failures, 0)


def locked_until(rdv_id: int, now: datetime) -> datetime | None:
    """When the check of this rdv opens again, if too many wrong tries locked it."""
    until = db.session.scalar(select(RdvLinkCheck.locked_until).where(RdvLinkCheck.rdv_id == rdv_id))
    return until if until is not None and until > now else None


def take_try(rdv_id: int, now: datetime) -> Try | None:
    """Count a guess as a wrong try before it is checked, and commit; None when the check is locked.

    Reading the lock, checking the guess, then counting it let simultaneous guesses all be checked before any was
    counted. Here one UPDATE takes the try only while the check is open, and the MAX_FAILURES-th sets the lock in the
    same statement: PostgreSQL's row lock and SQLite's write lock make simultaneous guesses take their turns, so no
    more than MAX_FAILURES are ever checked per LOCK_DURATION. A right guess then clears the count (forget_failures).
    Wrong tries count in a row, and are forgotten LOCK_DURATION after the last one or once the lock is over.
    """
    _insert_row_if_missing(rdv_id)
    check = RdvLinkCheck
    in_a_row = and_(check.locked_until.is_(None), check.last_failure_at.is_not(None),
                    check.last_failure_at > now - LOCK_DURATION)
    counted = case((in_a_row, check.failures + 1), else_=1)
    taken = db.session.execute(
        update(check)
        .where(check.rdv_id == rdv_id, or_(check.locked_until.is_(None), check.locked_until <= now),
               or_(~in_a_row, check.failures < MAX_FAILURES))
        .values(failures=counted, last_failure_at=now,
                locked_until=case((counted >= MAX_FAILURES, now + LOCK_DURATION), else_=None))
        .returning(check.failures, check.locked_until),
        execution_options={"synchronize_session": False}).first()
    db.session.commit()
    return Try(failures=taken.failures, locked_until=taken.locked_until) if taken is not None else None


def forget_failures(rdv_id: int) -> None:
    db.session.execute(update(RdvLinkCheck).where(RdvLinkCheck.rdv_id == rdv_id)
                       .values(failures=0, last_failure_at=None, locked_until=None),
                       execution_options={"synchronize_session": False})
    db.session.commit()


def _insert_row_if_missing(rdv_id: int) -> None:
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    db.session.execute(insert(RdvLinkCheck).values(rdv_id=rdv_id, failures=0).on_conflict_do_nothing())


# --- Cancelling ------------------------------------------------------------------------------------------------------

def can_cancel_online(rdv: Rdv, now: datetime) -> bool:
    return rdv.is_live and now < cancellation_deadline(rdv)


def cancel_from_link(rdv: Rdv, reason: str | None, now: datetime, guardian_id: int | None = None) -> Rdv:
    """The family cancels on its page: EXCUSED, through the link, no agent; refused after the motif's limit.
    `guardian_id`: the responsible adult whose own link it is (the other one is told), committed with the
    cancellation."""
    if not rdv.is_live:
        raise BookingError("Ce rendez-vous est déjà annulé.")
    if now >= cancellation_deadline(rdv):
        raise BookingError("Il est trop tard pour annuler ce rendez-vous en ligne.")
    rdv.link_actor_id = guardian_id
    return cancel_rdv(actor=None, rdv=rdv, status=RdvStatus.EXCUSED, reason=reason, via=CancellationChannel.LINK)


# --- Moving ----------------------------------------------------------------------------------------------------------

class SlotUnavailable(BookingError):
    """The time chosen is not (or no longer) one the picker offers: taken meanwhile, or never offered."""

    def __init__(self, taken: bool) -> None:
        super().__init__("Ce créneau vient d'être pris par une autre famille : choisissez-en un autre." if taken else
                         "Ce créneau n'est pas proposé (il est passé, trop proche ou trop lointain) : choisissez-en "
                         "un autre.")
        self.taken = taken


def picker_scope(rdv: Rdv, now: datetime) -> picker.Scope:
    """The times this rdv may move to: its motif and lieu, its agents (or, if the territory allows it and the rdv has
    one agent, any agent of the lieu), from the motif's change limit after now up to its booking horizon (both on the
    5-minute grid, so that the picker's pages are kept a few minutes: lapins.slots.picker), each as long as the rdv
    (an agent may have given it more or less time than its motif: a move keeps it)."""
    return scope_of(rdv.organisation.territory, rdv.motif, rdv.lieu_id,
                    tuple(sorted(link.agent_id for link in rdv.agent_links)), now, length=rdv.ends_at - rdv.starts_at)


def scope_of(territory, motif, lieu_id: int | None, agent_ids: tuple[int, ...], now: datetime,
             stamps: tuple[tuple[int, str], ...] | None = None, *, length: timedelta) -> picker.Scope:
    """picker_scope from the rdv's values: `territory` and `motif` are the models or rows with the same attributes
    (lapins.family.fast_picker reads them in one query, with the `stamps` of the rdv's agents)."""
    any_agent = territory.family_moves_any_agent and len(agent_ids) == 1
    shown = None if any_agent else agent_ids
    return picker.Scope(territory=territory, motif=motif, lieu_id=lieu_id, agent_ids=shown,
                        start=ceil_to_grid(now + timedelta(hours=motif.move_limit_hours)),
                        end=ceil_to_grid(now + timedelta(weeks=motif.booking_horizon_weeks)),
                        preferred_agent_ids=agent_ids,
                        agent_stamps=stamps if stamps is not None and shown is not None
                        else picker.agent_stamps(motif.id, shown), duration=length)


def move_from_link(rdv: Rdv, starts_at: datetime, agent_id: int | None, revision: int, now: datetime,
                   guardian_id: int | None = None) -> Rdv:
    """The family moves its rdv to a time the picker offers, checked again here and under booking's locks.

    Raises BookingError (the motif's limits), RdvChanged (the page was not of the rdv's current revision: a replayed
    form) or SlotUnavailable; nothing changes then.
    """
    refusal = family_move_refusal(rdv, now)
    if refusal:
        raise BookingError(refusal)
    scope = picker_scope(rdv, now)
    for _ in range(MOVE_ATTEMPTS):
        choice = picker.choice_at(scope, starts_at, agent_id)
        if choice is None:
            raise SlotUnavailable(taken=scope.start <= starts_at < scope.end)
        agents = list(db.session.scalars(select(Agent).where(Agent.id.in_(choice.agent_ids)).order_by(Agent.id)))
        rdv.link_actor_id = guardian_id  # again after a failed attempt's rollback; committed with the move
        try:
            return move_rdv(actor=None, rdv=rdv, starts_at=choice.starts_at, ends_at=choice.ends_at, agents=agents,
                            via=MoveChannel.LINK, revision=revision)
        except RdvChanged:
            raise
        except BookingError as error:
            if not error.can_force:
                raise
            agent_id = None  # booked meanwhile: the next free agent at that time, if any
    raise SlotUnavailable(taken=True)
