"""Collective sessions through the API: read like rdvs (with their places), families added and their places cancelled,
attendance and capacity, all through lapins.booking.sessions: the agenda's rules and French refusals, under its locks.

Sessions are created and cancelled as a whole in the agenda (a cancelled session is `POST /rdvs/{id}/cancel`, since a
session is an rdv); the ids in the path are checked by lapins.policies like an rdv's.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from lapins import policies
from lapins.api import render
from lapins.api.rdvs import kept_usager_id, one, rdv_filters
from lapins.api.routing import ApiError, implements, invalid, page
from lapins.booking import BookingError
from lapins.booking import sessions as booking_sessions
from lapins.infra.extensions import db
from lapins.models import Agent, Participation, ParticipationStatus, Rdv, Usager, utcnow
from lapins.models.rdvs import BookingChannel, CancellationChannel, participation_usagers


def _session(actor: Agent, session_id: int, action: str = "view") -> Rdv:
    """The session named in the path (already authorised by the routing); an individual rdv is no session: 404."""
    session = db.session.get(Rdv, session_id)
    policies.authorize(actor, action, session)
    if not session.is_session:
        raise ApiError(404, "Séance introuvable : ce rendez-vous n'est pas une séance collective (GET /api/v1/rdvs).")
    return session


def _refused(error: BookingError) -> ApiError:
    extra = {"session_full": True} if isinstance(error, booking_sessions.SessionFull) else {}
    return ApiError(409, error.message, **extra)


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
