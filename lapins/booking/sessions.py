"""Collective sessions (ateliers): an rdv with a capacity whose participants take places, each on their own.

A session is an `Rdv` with `max_participants`: its agents are booked like any rdv's (the same locks, overlap check
and `rdv_agents` busy times), so slot search, the agenda and calendar feeds and the statistics see it with no
special case. Its families are `Participation` rows, each with its status, messages and link. Every change here is
taken under the session's agents' booking locks (`booking.lock_agents`), so the places counted are those of the
moment: two families never get the last place, whether an agent adds them or they accept a waiting-list offer.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from lapins.booking import KEEP, BookingError, _check_request, _conflicts, busy_times, events, lock_agents, move_rdv
from lapins.infra.extensions import db
from lapins.locale.formatting import local_datetime
from lapins.models import (
    Agent, EntryStatus, Lieu, Motif, Rdv, RdvStatus, SlotOffer, Usager, WaitlistEntry, WaitlistSlot, utcnow,
)
from lapins.models.rdvs import (
    BookingChannel, CancellationChannel, Canceller, MoveChannel, Participation, ParticipationStatus,
    participation_usagers,
)
from lapins.models.waitlist import OfferStatus

MAX_CAPACITY = 500
MAX_REPEATS = 52  # a year of weekly sessions in one form


class SessionFull(BookingError):
    """No place left: the family may join the session's waiting list."""


class AgentsBusy(BookingError):
    """Sessions refused because their agents are busy then: `busy` lists, per date refused, the session's start and
    the first rdv in the way (agent_id, starts_at, ends_at), for the API to say which agent and when."""

    def __init__(self, message: str, busy: list[tuple[datetime, int, datetime, datetime]]) -> None:
        super().__init__(message)
        self.busy = busy


@contextmanager
def _changes() -> Iterator[Callable[[events.RdvEvent, Rdv], None]]:
    """One transaction telling several events (a repeated session is one per date): each is told inside it, all
    committed together, then announced. Any error rolls everything back: nothing half-stored."""
    done: list[events.RdvEvent] = []

    def tell(event: events.RdvEvent, rdv: Rdv) -> None:
        db.session.flush()
        events.record(event, rdv)
        done.append(event)

    try:
        yield tell
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    for event in done:
        events.announce(event)


def check_capacity(value: int | None) -> int:
    if value is None or value < 1:
        raise BookingError("Le nombre de places doit être d'au moins 1.")
    if value > MAX_CAPACITY:
        raise BookingError(f"Le nombre de places ne peut pas dépasser {MAX_CAPACITY}.")
    return value


def create_sessions(*, actor: Agent, motif: Motif, agents: list[Agent], lieu: Lieu | None, starts: list[datetime],
                    duration: timedelta, capacity: int, title: str | None = None,
                    notes: str | None = None, via: BookingChannel = BookingChannel.AGENDA) -> list[Rdv]:
    """Create one session per start (a weekly repeat gives several), all or none: a date whose agents are busy is
    listed in the refusal, and nothing is stored."""
    if not motif.collective:
        raise BookingError("Ce motif n'est pas collectif : choisissez un motif d'atelier ou de séance de groupe.")
    check_capacity(capacity)
    if not starts:
        raise BookingError("Choisissez au moins une date.")
    if len(starts) > MAX_REPEATS:
        raise BookingError(f"Une répétition compte au plus {MAX_REPEATS} séances.")
    tz = motif.organisation.territory.tz
    sessions: list[Rdv] = []
    with _changes() as tell:
        for starts_at in starts:
            _check_request(motif, agents, lieu, starts_at, starts_at + duration)
        lock_agents([agent.id for agent in agents])
        busy, sentences = [], []
        for starts_at in starts:
            rows = busy_times(agents, starts_at, starts_at + duration)
            if rows:
                busy.append((starts_at, rows[0].agent_id, rows[0].starts_at, rows[0].ends_at))
                sentences.append(f"le {local_datetime(starts_at, tz)} : "
                                 + _conflicts(agents, starts_at, starts_at + duration, exclude_rdv_id=None, tz=tz))
        if busy:
            raise AgentsBusy("Aucune séance n'a été créée, car ces dates sont déjà prises — " + " ; ".join(sentences),
                             busy)
        for starts_at in starts:
            session = Rdv(organisation_id=motif.organisation_id, created_by_id=actor.id,
                          booked_via=via, status=RdvStatus.UNKNOWN, motif=motif, lieu=lieu,
                          starts_at=starts_at, ends_at=starts_at + duration, max_participants=capacity,
                          places_taken=0, title=(title or "").strip()[:160] or None,
                          notes=(notes or "").strip() or None)
            session.set_agents(agents)
            db.session.add(session)
            db.session.flush()
            tell(events.RdvBooked(session.id, actor.id, via=via), session)
            sessions.append(session)
    return sessions


def family_of(usagers: list[Usager]) -> Usager:
    """The responsible adult of the people added together: they must be one family (an adult and their relatives)."""
    if not usagers:
        raise BookingError("Choisissez au moins une personne à inscrire.")
    roots = {(usager.responsible or usager).id: (usager.responsible or usager) for usager in usagers}
    if len(roots) != 1:
        raise BookingError("Inscrivez une famille à la fois : ces personnes ne sont pas de la même famille.")
    return next(iter(roots.values()))


def _held(now: datetime, *columns):
    """Offers held now for sessions' places, counted (per the columns given)."""
    return (select(*columns, func.count()).select_from(SlotOffer)
            .join(WaitlistSlot, SlotOffer.slot_id == WaitlistSlot.id)
            .where(SlotOffer.status == OfferStatus.HELD, SlotOffer.held_until > now))


def held_places(session_id: int, now: datetime, *, except_offer_id: int | None = None) -> int:
    """Places held for waiting families who have been offered one and not answered yet (one place each)."""
    query = _held(now).where(WaitlistSlot.session_id == session_id)
    if except_offer_id is not None:
        query = query.where(SlotOffer.id != except_offer_id)
    return db.session.scalar(query) or 0


def held_places_of(session_ids: list[int], now: datetime) -> dict[int, int]:
    """`held_places` of several sessions in one query (a page of them), 0 for those with none."""
    held = dict(db.session.execute(_held(now, WaitlistSlot.session_id).where(WaitlistSlot.session_id.in_(session_ids))
                                   .group_by(WaitlistSlot.session_id)).all()) if session_ids else {}
    return {session_id: held.get(session_id, 0) for session_id in session_ids}


def with_free_places(statement, now: datetime):
    """Sessions of `statement` where an agent may still give a place now (`free_places` > 0), in SQL."""
    held = _held(now).where(WaitlistSlot.session_id == Rdv.id).correlate(Rdv).scalar_subquery()
    return statement.where(Rdv.places_taken + held < Rdv.max_participants)


def free_places(session: Rdv, now: datetime | None = None) -> int:
    """Places an agent (or an offer) may still give now: the capacity less the places taken and those held."""
    return max((session.max_participants or 0) - session.places_taken - held_places(session.id, now or utcnow()), 0)


def add_participant(*, actor: Agent | None, session: Rdv, usagers: list[Usager],
                    via: BookingChannel = BookingChannel.AGENDA) -> Participation:
    """Give a family its place(s) in a session. An agent adds them (`actor`), or a family with no actor: accepting a
    waiting-list offer (via OFFER: the offer was claimed in this same transaction, so its held place is no longer
    counted as held) or signing up on the online booking pages (via ONLINE, its number checked)."""
    if (actor is None) != (via in (BookingChannel.OFFER, BookingChannel.ONLINE)):
        raise ValueError("an agent adds a participant, a family only by taking an offer or online")
    if not session.is_session:
        raise BookingError("Ce rendez-vous n'est pas une séance collective.")
    family = family_of(usagers)
    territory_id = session.organisation.territory_id
    if any(usager.territory_id != territory_id for usager in usagers):
        raise BookingError("Une des personnes choisies n'appartient pas à ce territoire.")
    now = utcnow()
    with _changes() as tell:
        lock_agents([link.agent_id for link in session.agent_links])
        db.session.refresh(session)
        if not session.is_live:
            raise BookingError("Cette séance est annulée : on ne peut plus s'y inscrire.")
        if actor is None and session.starts_at <= now:
            raise BookingError("Cette séance a déjà commencé.")
        already = db.session.scalars(
            select(participation_usagers.c.usager_id)
            .join(Participation, Participation.id == participation_usagers.c.participation_id)
            .where(Participation.rdv_id == session.id, Participation.status != ParticipationStatus.EXCUSED,
                   participation_usagers.c.usager_id.in_([usager.id for usager in usagers]))).all()
        if already:
            names = ", ".join(usager.full_name for usager in usagers if usager.id in set(already))
            raise BookingError(f"Déjà inscrit à cette séance : {names}.")
        places = len(usagers) if session.motif.places_per_person else 1
        left = free_places(session, now)
        if places > left:
            if left == 0:
                raise SessionFull(f"La séance est complète ({session.places_taken}/{session.max_participants}) : "
                                  "inscrivez la famille sur la file d'attente de la séance.")
            raise BookingError(f"Il ne reste que {left} place(s) dans cette séance : cette inscription en compte "
                               f"{places}.")
        participation = Participation(rdv=session, usager=family, places=places, via=via,
                                      status=ParticipationStatus.REGISTERED, created_at=now,
                                      created_by_id=actor.id if actor is not None else None)
        participation.usagers = list(usagers)
        db.session.add(participation)
        session.places_taken += places
        # The family no longer waits for this session (an agent gave it a place, or it took an offered one).
        db.session.execute(update(WaitlistEntry).where(
            WaitlistEntry.session_id == session.id, WaitlistEntry.status == EntryStatus.ACTIVE,
            WaitlistEntry.usager_id.in_([usager.id for usager in usagers] + [family.id]))
            .values(status=EntryStatus.FULFILLED, closed_at=now).execution_options(synchronize_session=False))
        db.session.flush()
        tell(events.ParticipantAdded(session.id, actor.id if actor else None, participation_id=participation.id,
                                     via=via), session)
    return participation


def cancel_participation(*, actor: Agent | None, participation: Participation,
                         via: CancellationChannel = CancellationChannel.AGENDA) -> Participation:
    """Cancel one family's place; the session goes on and the place is free again (offered to its waiting list)."""
    by = Canceller.AGENT if actor is not None else Canceller.FAMILY
    if by == Canceller.FAMILY and via not in (CancellationChannel.LINK, CancellationChannel.SMS):
        raise ValueError("a family cancels its place from its link")
    session = participation.rdv
    now = utcnow()
    with _changes() as tell:
        lock_agents([link.agent_id for link in session.agent_links])
        # Of two cancellations at once (the family on its link, an agent on the session page), exactly one passes.
        claimed = db.session.execute(
            update(Participation).where(Participation.id == participation.id,
                                        Participation.status == ParticipationStatus.REGISTERED)
            .values(status=ParticipationStatus.EXCUSED, cancelled_at=now, cancelled_by_party=by, cancelled_via=via),
            execution_options={"synchronize_session": False}).rowcount
        if not claimed:
            raise BookingError("Cette place est déjà annulée, ou la présence a déjà été notée.")
        # The claim again through the ORM (the same values), as cancel_rdv does: the session's flush listeners (the
        # webhooks' `participation.cancelled`) see the change, which a bulk UPDATE hides from them.
        participation.status, participation.cancelled_at = ParticipationStatus.EXCUSED, now
        participation.cancelled_by_party, participation.cancelled_via = by, via
        db.session.refresh(session)
        session.places_taken = max(session.places_taken - participation.places, 0)
        tell(events.ParticipantCancelled(session.id, actor.id if actor else None,
                                         participation_id=participation.id, by=by, via=via), session)
    return participation


def set_attendance(*, actor: Agent, session: Rdv, present: set[int]) -> Rdv:
    """Record who came: the registered or already marked participations in `present` are present, the others
    absent. Only once the session has started; a cancelled place keeps its status."""
    if not session.is_session:
        raise BookingError("Ce rendez-vous n'est pas une séance collective.")
    if session.starts_at > utcnow():
        raise BookingError("La séance n'a pas encore commencé : les présences se notent le jour même.")
    if not session.is_live:
        raise BookingError("Cette séance est annulée.")
    with _changes() as tell:
        for participation in session.participations:
            if participation.is_live:
                participation.status = (ParticipationStatus.PRESENT if participation.id in present
                                        else ParticipationStatus.ABSENT)
        # The session itself is « vu » once anyone came: the rdv's statistics count it as held.
        session.status = RdvStatus.SEEN if present & {p.id for p in session.live_participations} else RdvStatus.NOSHOW
        tell(events.AttendanceSet(session.id, actor.id), session)
    return session


def set_capacity(*, actor: Agent, session: Rdv, capacity: int) -> Rdv:
    """Change the number of places; never below the places taken and held (nobody is dropped silently)."""
    check_capacity(capacity)
    if not session.is_session:
        raise BookingError("Ce rendez-vous n'est pas une séance collective.")
    with _changes() as tell:
        lock_agents([link.agent_id for link in session.agent_links])
        db.session.refresh(session)
        needed = session.places_taken + held_places(session.id, utcnow())
        if capacity < needed:
            raise BookingError(f"Impossible de passer à {capacity} place(s) : {needed} sont déjà prises ou "
                               "proposées. Annulez d'abord des inscriptions : personne n'est retiré sans vous.")
        session.max_participants = capacity
        tell(events.CapacitySet(session.id, actor.id, capacity=capacity), session)
    return session


def move_session(*, actor: Agent, session: Rdv, starts_at: datetime, duration: timedelta,
                 lieu: Lieu | None | object = KEEP, agents: list[Agent] | None = None, title: str | None = None,
                 notes: str | None = None, revision: int | None = None,
                 via: MoveChannel = MoveChannel.AGENDA) -> Rdv:
    """Move a session (time, duration, lieu, agents) or edit its title and description, through booking's one move
    path (`move_rdv`: the agents' locks, their agendas checked, the revision the mover saw): a new time or place is
    told once to each family still registered, their reminders planned again and the old ones dropped; its places
    open to the waiting list follow it (lapins.waitlist.listeners). A session
    may sit outside opening hours, as when it was created; its agents' other rdvs may not be overlapped.
    `title`/`notes` None keep them."""
    if not session.is_session:
        raise BookingError("Ce rendez-vous n'est pas une séance collective.")
    if not session.is_live:
        raise BookingError("Cette séance est annulée : elle ne peut plus être modifiée.")
    now = utcnow()
    moved = starts_at != session.starts_at or starts_at + duration != session.ends_at
    if moved and session.starts_at <= now:
        raise BookingError("Cette séance a déjà commencé : elle ne peut plus être déplacée.")
    if moved and starts_at <= now:
        raise BookingError("Choisissez une date à venir pour la séance.")
    if title is not None:
        session.title = title.strip()[:160] or None  # written with the move, or rolled back with it
    try:
        move_rdv(actor=actor, rdv=session, starts_at=starts_at, ends_at=starts_at + duration, agents=agents,
                 lieu=lieu, notes=notes, via=via, revision=revision)
    except BookingError:
        db.session.rollback()
        raise
    return session
