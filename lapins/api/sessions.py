"""Collective sessions through the API: created (a repeat in one request), moved, cancelled as a whole, read like rdvs
(with their places), families added, put on a full session's waiting list and their places cancelled, attendance and
capacity, all through lapins.booking.sessions (and booking.cancel_rdv, a session being an rdv): the agenda's rules and
French refusals, under its locks. The ids in the path are checked by lapins.policies like an rdv's.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from lapins import policies
from lapins.api import render
from lapins.api.rdvs import kept_usager_id, one, rdv_filters
from lapins.api.routing import ApiError, implements, invalid, page
from lapins.booking import KEEP, BookingError, cancel_rdv
from lapins.booking import sessions as booking_sessions
from lapins.infra.extensions import db
from lapins.locale.localtime import NonexistentLocalTime, to_local, to_utc
from lapins.models import (
    Agent, Lieu, Motif, Participation, ParticipationStatus, Rdv, RdvStatus, Usager, WaitlistEntry, utcnow,
)
from lapins.models.rdvs import BookingChannel, CancellationChannel, MoveChannel, participation_usagers
from lapins.waitlist import entries as waitlist_entries


def _session(actor: Agent, session_id: int, action: str = "view") -> Rdv:
    """The session named in the path (already authorised by the routing); an individual rdv is no session: 404."""
    session = db.session.get(Rdv, session_id)
    policies.authorize(actor, action, session)
    if not session.is_session:
        raise ApiError(404, "Séance introuvable : ce rendez-vous n'est pas une séance collective (GET /api/v1/rdvs).")
    return session


def _refused(error: BookingError) -> ApiError:
    extra = {"session_full": True} if isinstance(error, booking_sessions.SessionFull) else {}
    if isinstance(error, booking_sessions.AgentsBusy):
        extra["busy"] = [{"starts_at": render.instant(starts_at), "agent_id": agent_id,
                          "busy_from": render.instant(busy_from), "busy_until": render.instant(busy_until)}
                         for starts_at, agent_id, busy_from, busy_until in error.busy]
    return ApiError(409, error.message, **extra)


def _agents(actor: Agent, ids: list[int]) -> list[Agent]:
    return [one(actor, Agent, agent_id, "agent_ids") for agent_id in dict.fromkeys(ids)]


@implements("createSessions")
def create_sessions(actor: Agent, *, query: dict, body: dict):
    motif = one(actor, Motif, body["motif_id"], "motif_id", "book")
    if not motif.collective:
        raise invalid({"motif_id": "Ce motif n'est pas collectif : choisissez un motif d'atelier ou de séance de "
                                   "groupe (POST /api/v1/rdvs pour un rendez-vous individuel)."})
    lieu = one(actor, Lieu, body.get("lieu_id"), "lieu_id")
    agents = _agents(actor, body["agent_ids"])
    tz = motif.organisation.territory.tz
    first = to_local(body["starts_at"], tz)
    every = body.get("every_n_weeks", 1)
    try:
        # Each one at the same wall-clock time, as the agenda's repeat: 10:00 stays 10:00 across a change of time.
        starts = [to_utc(first.date() + timedelta(weeks=every * index), first.time(), tz)
                  for index in range(body.get("count", 1))]
    except NonexistentLocalTime as error:
        raise invalid({"starts_at": str(error)}) from None
    try:
        created = booking_sessions.create_sessions(
            actor=actor, motif=motif, agents=agents, lieu=lieu, starts=starts,
            duration=timedelta(minutes=body.get("duration_minutes") or motif.duration_minutes),
            capacity=body["capacity"], title=body.get("title"), notes=body.get("notes"), via=BookingChannel.API)
    except BookingError as error:
        raise _refused(error) from None
    return {"items": [_answer(session.id) for session in created]}, 201


@implements("updateSession")
def update_session(actor: Agent, *, session_id: int, query: dict, body: dict):
    session = _session(actor, session_id, "edit")
    agents = _agents(actor, body["agent_ids"]) if "agent_ids" in body else None
    lieu = one(actor, Lieu, body["lieu_id"], "lieu_id") if "lieu_id" in body else KEEP
    starts_at = body.get("starts_at", session.starts_at)
    minutes = body.get("duration_minutes")
    duration = timedelta(minutes=minutes) if minutes is not None else session.ends_at - session.starts_at
    try:
        booking_sessions.move_session(actor=actor, session=session, starts_at=starts_at, duration=duration,
                                      lieu=lieu, agents=agents, title=(body["title"] or "") if "title" in body else None,
                                      notes=(body["notes"] or "") if "notes" in body else None, via=MoveChannel.API,
                                      revision=body.get("revision"))
    except BookingError as error:
        raise _refused(error) from None
    return _answer(session.id), 200


@implements("cancelSession")
def cancel_session(actor: Agent, *, session_id: int, query: dict, body: dict):
    session = _session(actor, session_id, "edit")
    reason = body["reason"].strip()
    if not reason:
        raise invalid({"reason": "Indiquez la raison : chaque famille inscrite la reçoit."})
    try:
        cancel_rdv(actor=actor, rdv=session, status=RdvStatus.REVOKED, reason=reason, via=CancellationChannel.API)
    except BookingError as error:
        raise _refused(error) from None
    return _answer(session.id), 200


def _waiting(entry: WaitlistEntry, position: int | None) -> dict:
    return {"id": entry.id, "session_id": entry.session_id, "usager_id": entry.usager_id,
            "organisation_id": entry.organisation_id, "status": entry.status.value,
            "created_at": render.instant(entry.created_at), "position": position}


@implements("listSessionWaitlist")
def list_waitlist(actor: Agent, *, session_id: int, query: dict, body: None):
    session = _session(actor, session_id)
    waiting = waitlist_entries.session_entries(session)  # a session's queue is short: read whole, then paged
    first = (query["page"] - 1) * query["per_page"]
    shown = waiting[first:first + query["per_page"]]
    return {"items": [_waiting(entry, first + index) for index, entry in enumerate(shown, 1)],
            "page": query["page"], "per_page": query["per_page"], "total": len(waiting)}, 200


@implements("joinSessionWaitlist")
def join_waitlist(actor: Agent, *, session_id: int, query: dict, body: dict):
    session = _session(actor, session_id, "book")
    usager = one(actor, Usager, body["usager_id"], "usager_id", "edit")
    try:
        entry = waitlist_entries.add_for_session(actor, usager, session)
    except waitlist_entries.EntryError as error:
        raise ApiError(409, error.message) from None
    waiting = waitlist_entries.session_entries(session)
    return _waiting(entry, next(index for index, each in enumerate(waiting, 1) if each.id == entry.id)), 201


@implements("withdrawFromSessionWaitlist")
def withdraw_from_waitlist(actor: Agent, *, session_id: int, query: dict, body: dict):
    session = _session(actor, session_id, "book")
    usager = one(actor, Usager, body["usager_id"], "usager_id", "edit")
    entry = next((each for each in waitlist_entries.session_entries(session) if each.usager_id == usager.id), None)
    if entry is None:
        raise ApiError(409, "Cette personne n'attend pas de place dans cette séance.")
    try:
        waitlist_entries.withdraw(actor, entry)
    except waitlist_entries.EntryError as error:
        raise ApiError(409, error.message) from None
    return _waiting(entry, None), 200


def _answer(session_id: int) -> dict:
    """The session read whole, as it is now: its participations and their people in two queries, not one per row."""
    db.session.expire_all()  # what booking committed, participations included
    session = db.session.scalars(select(Rdv).where(Rdv.id == session_id).options(
        selectinload(Rdv.participations).selectinload(Participation.usagers), selectinload(Rdv.agent_links),
        selectinload(Rdv.usagers))).one()
    return render.session(session, booking_sessions.held_places(session.id, utcnow()))


@implements("listSessions")
def list_sessions(actor: Agent, *, query: dict, body: None):
    statement = rdv_filters(policies.session_scope(actor), query)
    if "motif_id" in query:
        statement = statement.where(Rdv.motif_id == query["motif_id"])
    if "usager_id" in query:  # the kept file's places, as for rdvs
        statement = statement.where(Rdv.id.in_(
            select(Participation.rdv_id)
            .join(participation_usagers, participation_usagers.c.participation_id == Participation.id)
            .where(participation_usagers.c.usager_id == kept_usager_id(query["usager_id"]),
                   Participation.status != ParticipationStatus.EXCUSED)))
    if query.get("with_places_left"):
        statement = booking_sessions.with_free_places(statement, utcnow())
    statement = statement.options(selectinload(Rdv.agent_links), selectinload(Rdv.usagers),
                                  selectinload(Rdv.organisation))
    found = page(statement.order_by(Rdv.starts_at, Rdv.id), query, lambda session: session)
    held = booking_sessions.held_places_of([session.id for session in found["items"]], utcnow())
    found["items"] = [render.session(session, held[session.id], participations=False) for session in found["items"]]
    return found, 200


@implements("getSession")
def get_session(actor: Agent, *, session_id: int, query: dict, body: None):
    return _answer(_session(actor, session_id).id), 200


@implements("listParticipations")
def list_participations(actor: Agent, *, query: dict, body: None, session_id: int):
    session = _session(actor, session_id)
    statement = (select(Participation).where(Participation.rdv_id == session.id)
                 .options(selectinload(Participation.usagers), selectinload(Participation.rdv)))
    if "status" in query:
        statement = statement.where(Participation.status == ParticipationStatus(query["status"]))
    return page(statement.order_by(Participation.id), query, render.participation), 200


@implements("createParticipation")
def create_participation(actor: Agent, *, session_id: int, query: dict, body: dict):
    session = _session(actor, session_id, "book")
    usagers = [one(actor, Usager, usager_id, "usager_ids", "edit") for usager_id in dict.fromkeys(body["usager_ids"])]
    try:
        participation = booking_sessions.add_participant(actor=actor, session=session, usagers=usagers,
                                                         via=BookingChannel.API)
    except BookingError as error:
        raise _refused(error) from None
    return render.participation(db.session.get(Participation, participation.id)), 201


def _participation(actor: Agent, participation_id: int, action: str) -> Participation:
    participation = db.session.get(Participation, participation_id)
    policies.authorize(actor, action, participation)
    return participation


@implements("getParticipation")
def get_participation(actor: Agent, *, participation_id: int, query: dict, body: None):
    return render.participation(_participation(actor, participation_id, "view")), 200


@implements("cancelParticipation")
def cancel_participation(actor: Agent, *, participation_id: int, query: dict, body: None):
    participation = _participation(actor, participation_id, "edit")
    try:
        booking_sessions.cancel_participation(actor=actor, participation=participation, via=CancellationChannel.API)
    except BookingError as error:
        raise _refused(error) from None
    db.session.expire_all()
    return render.participation(db.session.get(Participation, participation_id)), 200


@implements("setSessionCapacity")
def set_capacity(actor: Agent, *, session_id: int, query: dict, body: dict):
    session = _session(actor, session_id, "edit")
    try:
        booking_sessions.set_capacity(actor=actor, session=session, capacity=body["capacity"])
    except BookingError as error:
        raise _refused(error) from None
    return _answer(session.id), 200


@implements("setSessionAttendance")
def set_attendance(actor: Agent, *, session_id: int, query: dict, body: dict):
    session = _session(actor, session_id, "edit")
    known = {participation.id for participation in session.participations}
    unknown = [str(i) for i in dict.fromkeys(body["present_ids"]) if i not in known]
    if unknown:
        raise invalid({"present_ids": f"Inscription inconnue dans cette séance : {', '.join(unknown[:5])} "
                                      f"(GET /api/v1/sessions/{session.id}/participations)."})
    try:
        booking_sessions.set_attendance(actor=actor, session=session, present=set(body["present_ids"]))
    except BookingError as error:
        raise _refused(error) from None
    return _answer(session.id), 200
