"""Booking rules: every rdv is created, moved and cancelled here, so that no agent is ever booked twice.

What follows a change (messages, offers of a freed slot, e-mails to agents) is not done here: each change is told
as an event (`lapins.booking.events`) that the other rooms listen to.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from lapins.booking import events
from lapins.infra.extensions import db
from lapins.locale.formatting import local_time
from lapins.models import Agent, Lieu, LocationType, Motif, Rdv, RdvAgent, RdvStatus, Usager, utcnow
from lapins.models.rdvs import (
    CANCELLED_STATUSES, BookingChannel, CancellationChannel, Canceller, MoveChannel, RdvMove,
)
from lapins.slots import availability

MAX_DURATION = timedelta(hours=12)
KEEP = object()  # "leave this attribute as it is" when moving an rdv


class BookingError(Exception):
    """A booking refused for a reason the agent can read; `can_force` when an explicit override may pass it."""

    def __init__(self, message: str, *, can_force: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.can_force = can_force


class RdvChanged(BookingError):
    """The rdv is no longer the revision its mover saw: another move (or a replayed form) came first."""


class CollectiveMotif(BookingError):
    """A collective motif's rdvs are sessions with places (booking.sessions), never one family's rdv; nor does a
    session take an individual motif. `code` is the API's machine-readable name of the refusal."""

    code = "collective_motif"


COLLECTIVE_REFUSAL = "Ce motif est collectif : créez une séance ou inscrivez la famille à une séance."


def book_rdv(
    *,
    actor: Agent | None,
    motif: Motif,
    agents: list[Agent],
    usagers: list[Usager],
    starts_at: datetime,
    lieu: Lieu | None = None,
    ends_at: datetime | None = None,
    notes: str | None = None,
    force: bool = False,
    via: BookingChannel = BookingChannel.AGENDA,
    notify_only: Usager | None = None,
) -> Rdv:
    """Book an rdv; `actor` is the agent booking it (in the agenda or through the API), or None for a family
    accepting an offered slot (`via` OFFER) or booking online with its number checked (`via` ONLINE). `notify_only`:
    the one guardian of its child to tell (« ne prévenir que … »), known before its confirmation is planned."""
    if (actor is None) != (via in (BookingChannel.OFFER, BookingChannel.ONLINE)):
        raise ValueError("an agent books in the agenda or through the API, a family by taking an offer or online")
    if motif.collective:
        raise CollectiveMotif(COLLECTIVE_REFUSAL)
    _check_usagers(motif, usagers)
    rdv = Rdv(organisation_id=motif.organisation_id, created_by_id=actor.id if actor is not None else None,
              booked_via=via, status=RdvStatus.UNKNOWN, notify_only=notify_only)
    rdv.usagers = list(usagers)
    return _schedule(actor, rdv, motif=motif, agents=agents, lieu=lieu, starts_at=starts_at,
                     ends_at=ends_at or starts_at + timedelta(minutes=motif.duration_minutes), notes=notes, force=force)


def move_rdv(
    *,
    actor: Agent | None,
    rdv: Rdv,
    starts_at: datetime,
    ends_at: datetime | None = None,
    agents: list[Agent] | None = None,
    lieu: Lieu | None | object = KEEP,
    motif: Motif | None = None,
    notes: str | None = None,
    force: bool = False,
    via: MoveChannel = MoveChannel.AGENDA,
    revision: int | None = None,
) -> Rdv:
    """Change the time, agents, lieu or motif of a live rdv; the duration is kept unless an end is given.

    An agent moves it in the agenda or through the API; a family (no actor) by accepting an offer or on its link's
    page, where the move is recorded (`RdvMove`). `revision`, when given, is the one the mover saw: if the rdv has
    changed since (a replayed form, a second tab), RdvChanged is raised and nothing changes.
    """
    if (actor is None) != (via in (MoveChannel.OFFER, MoveChannel.LINK)):
        raise ValueError("an agent moves an rdv in the agenda or through the API, a family by an offer or its link")
    if not rdv.is_live:
        raise BookingError("Ce rendez-vous est annulé : il ne peut plus être déplacé.")
    if motif is not None and motif.id != rdv.motif_id:
        _check_home_address(motif, rdv.usagers)
    motif = motif or rdv.motif
    return _schedule(
        actor, rdv, motif=motif, agents=agents if agents is not None else rdv.agents,
        lieu=rdv.lieu if lieu is KEEP else lieu, starts_at=starts_at,
        ends_at=ends_at or starts_at + (rdv.ends_at - rdv.starts_at), notes=rdv.notes if notes is None else notes,
        force=force, via=via, revision=revision,
    )


def cancel_rdv(
    *,
    actor: Agent | None,
    rdv: Rdv,
    status: RdvStatus,
    reason: str | None,
    via: CancellationChannel = CancellationChannel.AGENDA,
    by: Canceller | None = None,
) -> Rdv:
    """Cancel a live rdv, recording who (an agent, the family, the system), when, through which channel and why.

    Every channel goes through here: agents on the rdv page (`actor`, channel agenda), the family from its link or
    by SMS (no actor, always EXCUSED), the API or the system. `by` defaults to the agent when there is an actor,
    to the family on the link and SMS channels, else to the system.
    """
    by = by or (Canceller.AGENT if actor is not None else
                Canceller.FAMILY if via in (CancellationChannel.LINK, CancellationChannel.SMS) else Canceller.SYSTEM)
    if status not in CANCELLED_STATUSES:
        raise BookingError("Motif d'annulation inconnu.")
    if (by == Canceller.AGENT) != (actor is not None):
        raise ValueError("an agent's cancellation names its agent, and only an agent's")
    if by == Canceller.FAMILY and status != RdvStatus.EXCUSED:
        raise ValueError("a family's cancellation is EXCUSED")
    if not rdv.is_live:
        raise BookingError("Ce rendez-vous est déjà annulé.")
    with _transaction() as commit:
        # A conditional UPDATE first: of two cancellations at the same moment (the family on its link, an agent on
        # the rdv page), exactly one passes; the row lock (or SQLite's write lock) is held until commit.
        claimed = db.session.execute(
            update(Rdv).where(Rdv.id == rdv.id, Rdv.status.not_in(CANCELLED_STATUSES))
            .values(status=status), execution_options={"synchronize_session": False},
        ).rowcount
        if not claimed:
            raise BookingError("Ce rendez-vous est déjà annulé.")
        rdv.status = status
        rdv.cancelled_at = utcnow()
        rdv.cancelled_by_id = actor.id if actor is not None else None
        rdv.cancelled_by_party = by
        rdv.cancelled_via = via
        rdv.cancel_reason = (reason or "").strip()[:255] or None
        rdv.revision += 1
        commit(events.RdvCancelled(rdv.id, rdv.cancelled_by_id, by=by, via=via), rdv)
    return rdv


def cancellation_deadline(rdv: Rdv) -> datetime:
    """Until when the family may cancel by itself (link, SMS): the motif's limit before the rdv."""
    return rdv.starts_at - timedelta(hours=rdv.motif.cancellation_limit_hours)


def move_deadline(rdv: Rdv) -> datetime:
    """Until when the family may move its rdv by itself (link): the motif's limit before the rdv."""
    return rdv.starts_at - timedelta(hours=rdv.motif.move_limit_hours)


def family_moves(rdv_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(RdvMove).where(RdvMove.rdv_id == rdv_id))


def family_move_refusal(rdv: Rdv, now: datetime) -> str | None:
    """Why the family may not move this rdv itself now (it must call), or None when it may."""
    return move_refusal(live=rdv.is_live, moves_max=rdv.motif.family_moves_max,
                        limit_hours=rdv.motif.move_limit_hours, starts_at=rdv.starts_at,
                        moves_done=lambda: family_moves(rdv.id), now=now)


def move_refusal(*, live: bool, moves_max: int, limit_hours: int, starts_at: datetime,
                 moves_done: Callable[[], int], now: datetime) -> str | None:
    """family_move_refusal from the rdv's values (the family pages' fast path reads them in one row); the moves
    already made are counted only when the rest allows the move."""
    if not live:
        return "Ce rendez-vous est annulé : il ne peut plus être déplacé."
    if moves_max == 0:
        return "Ce type de rendez-vous ne peut pas être déplacé en ligne."
    if now >= starts_at - timedelta(hours=limit_hours):
        return (f"Il est trop tard pour changer la date en ligne : c'est possible jusqu'à "
                f"{limit_hours} h avant le rendez-vous.")
    if moves_done() >= moves_max:
        return f"Ce rendez-vous a déjà été déplacé {moves_max} fois en ligne : pour le changer encore, il faut appeler."
    return None


def set_outcome(*, actor: Agent, rdv: Rdv, status: RdvStatus) -> Rdv:
    """Record what became of an rdv that has started: seen, no-show, or back to unknown."""
    if status not in (RdvStatus.SEEN, RdvStatus.NOSHOW, RdvStatus.UNKNOWN):
        raise BookingError("Statut inconnu.")
    if status != RdvStatus.UNKNOWN and rdv.starts_at > utcnow():
        raise BookingError("Ce rendez-vous n'a pas encore commencé : il ne peut pas être marqué vu ou absent.")
    restored = rdv.status.is_cancelled
    with _transaction() as commit:
        if restored:
            # Restoring a cancelled rdv books its slot again: the same guarantee as any booking.
            lock_agents([agent.id for agent in rdv.agents])
            conflicts = _conflicts(rdv.agents, rdv.starts_at, rdv.ends_at, exclude_rdv_id=rdv.id,
                                   tz=rdv.organisation.territory.tz)
            if conflicts:
                raise BookingError(f"Impossible de rétablir ce rendez-vous : {conflicts}")
            rdv.cancelled_at = rdv.cancelled_by_id = rdv.cancel_reason = None
            rdv.cancelled_via = rdv.cancelled_by_party = None
            rdv.status = status
            rdv.revision += 1
        rdv.status = status
        commit(events.RdvStatusSet(rdv.id, actor.id, status=status, restored=restored), rdv)
    return rdv


def _schedule(actor: Agent | None, rdv: Rdv, *, motif: Motif, agents: list[Agent], lieu: Lieu | None,
              starts_at: datetime, ends_at: datetime, notes: str | None, force: bool,
              via: MoveChannel = MoveChannel.AGENDA, revision: int | None = None) -> Rdv:
    if force and actor is None:
        raise ValueError("only an agent may book over a conflict")
    with _transaction() as commit:
        # Whatever path leads here (a form, the API, an offer, a family's link), an rdv's motif and its kind agree;
        # refused inside the transaction, so that what the caller changed on the rdv is rolled back too.
        if motif.collective and not rdv.is_session:
            raise CollectiveMotif(COLLECTIVE_REFUSAL)
        if rdv.is_session and not motif.collective:
            raise CollectiveMotif("Une séance collective garde un motif collectif : choisissez un motif d'atelier ou "
                                  "de séance de groupe.")
        _check_request(motif, agents, lieu, starts_at, ends_at)
        lock_agents([agent.id for agent in agents])
        if rdv.id is None:
            _refuse_merged_usagers(rdv.usagers)
        if revision is not None:
            _claim_revision(rdv, revision)
        conflicts = _conflicts(agents, starts_at, ends_at, exclude_rdv_id=rdv.id, tz=motif.organisation.territory.tz)
        if conflicts and not force:
            raise BookingError(conflicts, can_force=True)
        # A session is planned on its own, outside opening hours if need be (booking.sessions.create_sessions).
        outside = not rdv.is_session and not availability.covering_opening(
            agent_ids=[agent.id for agent in agents], motif_id=motif.id, lieu_id=lieu.id if lieu else None,
            starts_at=starts_at, ends_at=ends_at, territory=motif.organisation.territory,
        )
        if outside and not force:
            raise BookingError(
                "Ce créneau est en dehors des plages d'ouverture de l'agent pour ce motif"
                + (" dans ce lieu" if lieu else "") + ".",
                can_force=True,
            )
        new = rdv.id is None
        # The family is told again when what it must know changes: the time, the place, what the rdv is for.
        changed = not new and (rdv.starts_at != starts_at or rdv.lieu_id != (lieu.id if lieu else None)
                               or rdv.motif_id != motif.id)
        left = None if new else _time_left(rdv, agents, starts_at, ends_at)
        if via == MoveChannel.LINK:
            db.session.add(RdvMove(rdv_id=rdv.id, via=via, moved_at=utcnow(), from_starts_at=rdv.starts_at,
                                   to_starts_at=starts_at))
        rdv.motif, rdv.lieu, rdv.starts_at, rdv.ends_at = motif, lieu, starts_at, ends_at
        rdv.notes = (notes or "").strip() or None
        rdv.forced_by_id = actor.id if actor is not None and (conflicts or outside) else None
        rdv.set_agents(agents)
        db.session.add(rdv)
        if changed:
            rdv.revision += 1
        db.session.flush()
        actor_id = actor.id if actor is not None else None
        commit(events.RdvBooked(rdv.id, actor_id, via=rdv.booked_via) if new
               else events.RdvMoved(rdv.id, actor_id, family_told=changed, via=via, left=left), rdv)
    return rdv


def _claim_revision(rdv: Rdv, revision: int) -> None:
    """Lock the rdv's row and check it is still live at the revision its mover saw: of two moves from the same page
    (a replayed form, two tabs), the second waits for the first, then finds the revision changed and is refused."""
    row = db.session.execute(select(Rdv.revision, Rdv.status).where(Rdv.id == rdv.id).with_for_update()).one()
    if row.revision != revision or row.status in CANCELLED_STATUSES:
        raise RdvChanged("Ce rendez-vous a changé entre-temps (il vient peut-être d'être déplacé) : rien n'a été "
                         "modifié.")


def _time_left(rdv: Rdv, agents: list[Agent], starts_at: datetime, ends_at: datetime) -> events.TimeLeft | None:
    before = tuple(sorted(link.agent_id for link in rdv.agent_links))
    if (rdv.starts_at, rdv.ends_at) == (starts_at, ends_at) and before == tuple(sorted(a.id for a in agents)):
        return None
    return events.TimeLeft(rdv.organisation_id, rdv.motif_id, rdv.lieu_id, before, rdv.starts_at, rdv.ends_at)


@contextmanager
def _transaction() -> Iterator[Callable[[events.RdvEvent, Rdv], None]]:
    """The body of one change of an rdv, which ends with `commit(event, rdv)`: the event is told inside the
    transaction, which then commits, and told again once the block is left. Any error rolls it all back."""
    done: list[events.RdvEvent] = []

    def commit(event: events.RdvEvent, rdv: Rdv) -> None:
        events.record(event, rdv)
        db.session.commit()
        done.append(event)

    try:
        yield commit
    except BaseException:
        db.session.rollback()
        raise
    for event in done:
        events.announce(event)


def _check_request(motif: Motif, agents: list[Agent], lieu: Lieu | None, starts_at: datetime, ends_at: datetime) -> None:
    if not motif.active:
        raise BookingError("Ce motif n'est plus proposé.")
    if not agents:
        raise BookingError("Choisissez au moins un agent.")
    if any(motif.organisation_id not in agent.organisation_ids or not agent.active for agent in agents):
        raise BookingError("Un des agents choisis ne travaille pas dans l'organisation de ce motif.")
    if lieu is None and motif.location_type == LocationType.ON_SITE:
        raise BookingError("Choisissez le lieu du rendez-vous.")
    if lieu is not None and lieu.organisation_id != motif.organisation_id:
        raise BookingError("Ce lieu n'appartient pas à l'organisation de ce motif.")
    if lieu is not None and not lieu.active:
        raise BookingError(f"Le lieu « {lieu.name} » est fermé : choisissez-en un autre.")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValueError("booking times must be aware datetimes")
    if ends_at <= starts_at:
        raise BookingError("La fin du rendez-vous doit être après son début.")
    if ends_at - starts_at > MAX_DURATION:
        raise BookingError("Un rendez-vous ne peut pas durer plus de 12 heures.")


def _check_usagers(motif: Motif, usagers: list[Usager]) -> None:
    if not usagers:
        raise BookingError("Choisissez au moins un usager.")
    territory_id = motif.organisation.territory_id
    if any(usager.territory_id != territory_id for usager in usagers):
        raise BookingError("Un des usagers choisis n'appartient pas à ce territoire.")
    _check_home_address(motif, usagers)


def _refuse_merged_usagers(usagers: list[Usager]) -> None:
    """Read the files again under a share lock: a merge locks both for update, so a booking either waits for it and
    finds the tombstone here, or makes the merge wait and its rdv follows the kept file (SQLite: the write lock)."""
    merged_into = db.session.scalars(select(Usager.merged_into_id).where(
        Usager.id.in_([usager.id for usager in usagers])).order_by(Usager.id).with_for_update(read=True)).all()
    if any(kept_id is not None for kept_id in merged_into):
        raise BookingError("Ce dossier vient d'être fusionné avec un autre : rouvrez la fiche de l'usager gardé "
                           "pour prendre le rendez-vous.")


def _check_home_address(motif: Motif, usagers: list[Usager]) -> None:
    """A home visit needs somewhere to go: one of its usagers' address (a child's is its responsible person's)."""
    if motif.location_type != LocationType.HOME or any(usager.postal_address for usager in usagers):
        return
    names = " ou de ".join(usager.full_name for usager in usagers[:2])
    raise BookingError(f"Ce motif est une visite à domicile : renseignez d'abord l'adresse de {names} "
                       "(fiche de l'usager, « Modifier »).")


def lock_agents(agent_ids: list[int]) -> None:
    """Serialise bookings per agent: row locks on PostgreSQL, the database write lock on SQLite.

    Taken before the overlap check, so two simultaneous bookings of one agent run one after the other and the
    second sees the first. Locks are taken in id order so that multi-agent bookings cannot deadlock.
    """
    connection = db.session.connection()
    if connection.dialect.name == "sqlite" and not connection.connection.driver_connection.in_transaction:
        # A deferred transaction would read first and fail to upgrade; IMMEDIATE takes the write lock now.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    for agent_id in sorted(set(agent_ids)):
        db.session.execute(
            update(Agent).where(Agent.id == agent_id).values(booking_version=Agent.booking_version + 1),
            execution_options={"synchronize_session": False},
        )


def busy_times(agents: list[Agent], starts_at: datetime, ends_at: datetime, exclude_rdv_id: int | None = None):
    """The live rdvs of these agents overlapping the time, as (agent_id, starts_at, ends_at) rows, earliest first."""
    query = (
        select(RdvAgent.agent_id, RdvAgent.starts_at, RdvAgent.ends_at)
        .where(
            RdvAgent.agent_id.in_([agent.id for agent in agents]),
            RdvAgent.live.is_(True),
            RdvAgent.starts_at < ends_at,
            RdvAgent.ends_at > starts_at,
            RdvAgent.starts_at > starts_at - MAX_DURATION,
        )
        .order_by(RdvAgent.starts_at)
    )
    if exclude_rdv_id is not None:
        query = query.where(RdvAgent.rdv_id != exclude_rdv_id)
    return db.session.execute(query).all()


def _conflicts(agents: list[Agent], starts_at: datetime, ends_at: datetime, exclude_rdv_id: int | None,
               tz: ZoneInfo) -> str:
    """A French sentence naming who is already busy, or an empty string."""
    rows = busy_times(agents, starts_at, ends_at, exclude_rdv_id)
    if not rows:
        return ""
    names = {agent.id: agent.full_name for agent in agents}
    busy = rows[0]
    return (f"{names[busy.agent_id]} a déjà un rendez-vous de {local_time(busy.starts_at, tz)} "
            f"à {local_time(busy.ends_at, tz)} sur ce créneau.")
