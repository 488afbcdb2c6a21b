"""Rdvs through the API: listed, read, booked, moved and cancelled by lapins.booking, as in the agenda."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from lapins import policies
from lapins.slots import availability
from lapins.booking import COLLECTIVE_REFUSAL, BookingError, CollectiveMotif, book_rdv, cancel_rdv, move_rdv, set_outcome
from lapins.api import render
from lapins.api.routing import ApiError, implements, invalid, page
from lapins.infra.extensions import db
from lapins.locale.localtime import NonexistentLocalTime, to_utc
from lapins.models import Agent, Lieu, Motif, Rdv, RdvAgent, RdvStatus, Usager, utcnow
from lapins.models.rdvs import BookingChannel, CancellationChannel, MoveChannel, rdv_usagers

UNKNOWN = {
    "motif_id": "Motif inconnu : choisissez un motif de vos organisations (GET /api/v1/motifs).",
    "lieu_id": "Lieu inconnu : choisissez un lieu de vos organisations (GET /api/v1/lieux).",
    "agent_ids": "Agent inconnu : choisissez parmi les agents de vos organisations (GET /api/v1/agents).",
    "agent_id": "Agent inconnu : choisissez parmi les agents de vos organisations (GET /api/v1/agents).",
    "usager_ids": "Usager inconnu : choisissez parmi les usagers de vos organisations (GET /api/v1/usagers).",
    "usager_id": "Usager inconnu : choisissez parmi les usagers de vos organisations (GET /api/v1/usagers).",
    "responsible_id": "Usager inconnu : choisissez parmi les usagers de vos organisations (GET /api/v1/usagers).",
}


def _loaded(statement):
    return statement.options(selectinload(Rdv.usagers), selectinload(Rdv.agent_links),
                             selectinload(Rdv.organisation))


def _rdv(actor: Agent, rdv_id: int, action: str = "view") -> Rdv:
    rdv = db.session.get(Rdv, rdv_id)
    policies.authorize(actor, action, rdv)
    return rdv


def one(actor: Agent, model, object_id: int | None, field: str, action: str = "view"):
    """The object named by an id of the body or the query, if the actor may act on it; else a 422 on that field."""
    if object_id is None:
        return None
    obj = db.session.get(model, object_id)
    if obj is None or not policies.can(actor, action, obj):
        raise invalid({field: UNKNOWN[field]})
    return obj


def _many(actor: Agent, model, ids: list[int], field: str, action: str = "view") -> list:
    return [one(actor, model, object_id, field, action) for object_id in dict.fromkeys(ids)]


def rdv_filters(statement, query: dict):
    """The filters a list of rdvs and a list of sessions share: times, agent, lieu, status."""
    if "starts_after" in query:
        statement = statement.where(Rdv.starts_at >= query["starts_after"])
    if "starts_before" in query:
        statement = statement.where(Rdv.starts_at < query["starts_before"])
    if "agent_id" in query:
        statement = statement.where(Rdv.id.in_(select(RdvAgent.rdv_id).where(RdvAgent.agent_id == query["agent_id"])))
    if "lieu_id" in query:
        statement = statement.where(Rdv.lieu_id == query["lieu_id"])
    if "status" in query:
        statement = statement.where(Rdv.status == RdvStatus(query["status"]))
    return statement


def kept_usager_id(usager_id: int):
    """A merged file's id goes on naming its person: the kept file's id (a scalar subquery)."""
    return select(func.coalesce(Usager.merged_into_id, Usager.id)).where(Usager.id == usager_id).scalar_subquery()


@implements("listRdvs")
def list_rdvs(actor: Agent, *, query: dict, body: None):
    statement = rdv_filters(policies.rdv_scope(actor), query)
    if "usager_id" in query:
        statement = statement.where(Rdv.id.in_(
            select(rdv_usagers.c.rdv_id).where(rdv_usagers.c.usager_id == kept_usager_id(query["usager_id"]))))
    return page(_loaded(statement.order_by(Rdv.starts_at, Rdv.id)), query, render.rdv), 200


@implements("getRdv")
def get_rdv(actor: Agent, *, rdv_id: int, query: dict, body: None):
    return render.rdv(_rdv(actor, rdv_id)), 200


def _ends_at(starts_at: datetime, minutes: int | None) -> datetime | None:
    return starts_at + timedelta(minutes=minutes) if minutes is not None else None


def _refused(error: BookingError) -> ApiError:
    if isinstance(error, CollectiveMotif):  # not a conflict of the moment: this request can never pass
        return ApiError(422, error.message, code=error.code, fields={"motif_id": error.message})
    return ApiError(409, error.message, can_force=error.can_force)


@implements("createRdv")
def create_rdv(actor: Agent, *, query: dict, body: dict):
    motif = one(actor, Motif, body["motif_id"], "motif_id", "book")
    lieu = one(actor, Lieu, body.get("lieu_id"), "lieu_id")
    agents = _many(actor, Agent, body["agent_ids"], "agent_ids")
    usagers = _many(actor, Usager, body["usager_ids"], "usager_ids", "edit")
    starts_at = body["starts_at"]
    try:
        rdv = book_rdv(actor=actor, motif=motif, agents=agents, usagers=usagers, starts_at=starts_at, lieu=lieu,
                       ends_at=_ends_at(starts_at, body.get("duration_minutes")), notes=body.get("notes"),
                       via=BookingChannel.API)
    except BookingError as error:
        raise _refused(error) from None
    return render.rdv(rdv), 201


@implements("updateRdv")
def update_rdv(actor: Agent, *, rdv_id: int, query: dict, body: dict):
    rdv = _rdv(actor, rdv_id, "edit")
    if rdv.is_session and "usager_ids" in body:  # its families have places, never the rdv's own usagers
        raise invalid({"usager_ids": f"Une séance collective n'a pas d'usagers : inscrivez les familles "
                                     f"(POST /api/v1/sessions/{rdv.id}/participations)."})
    motif = one(actor, Motif, body.get("motif_id"), "motif_id", "book") or rdv.motif
    lieu = one(actor, Lieu, body["lieu_id"], "lieu_id") if "lieu_id" in body else rdv.lieu
    agents = _many(actor, Agent, body["agent_ids"], "agent_ids") if "agent_ids" in body else None
    usagers = _many(actor, Usager, body["usager_ids"], "usager_ids", "edit") if "usager_ids" in body else None
    starts_at = body.get("starts_at", rdv.starts_at)
    minutes = body.get("duration_minutes")
    if minutes is None and "motif_id" in body and motif.id != rdv.motif_id:
        minutes = motif.duration_minutes
    if usagers is not None and any(usager.territory_id != motif.organisation.territory_id for usager in usagers):
        raise invalid({"usager_ids": "Un des usagers choisis n'appartient pas à ce territoire."})
    try:
        if usagers is not None:
            rdv.usagers = usagers  # written with the move, or rolled back with it
        move_rdv(actor=actor, rdv=rdv, starts_at=starts_at, ends_at=_ends_at(starts_at, minutes), agents=agents,
                 lieu=lieu, motif=motif, notes=body.get("notes", rdv.notes) or "", via=MoveChannel.API,
                 revision=body.get("revision"))
    except BookingError as error:
        db.session.rollback()
        raise _refused(error) from None
    return render.rdv(rdv), 200


@implements("cancelRdv")
def cancel(actor: Agent, *, rdv_id: int, query: dict, body: dict):
    rdv = _rdv(actor, rdv_id, "edit")
    try:
        cancel_rdv(actor=actor, rdv=rdv, status=RdvStatus(body["status"]), reason=body.get("reason"),
                   via=CancellationChannel.API)
    except BookingError as error:
        raise _refused(error) from None
    return render.rdv(db.session.get(Rdv, rdv_id)), 200


@implements("setRdvOutcome")
def set_rdv_outcome(actor: Agent, *, rdv_id: int, query: dict, body: dict):
    rdv = _rdv(actor, rdv_id, "edit")
    try:
        set_outcome(actor=actor, rdv=rdv, status=RdvStatus(body["status"]))
    except BookingError as error:
        raise _refused(error) from None
    return render.rdv(db.session.get(Rdv, rdv_id)), 200


@implements("searchSlots")
def search_slots(actor: Agent, *, query: dict, body: None):
    motif = one(actor, Motif, query["motif_id"], "motif_id", "book")
    if not motif.active:
        raise invalid({"motif_id": "Ce motif n'est plus proposé."})
    if motif.collective:  # its times are sessions (GET /sessions?with_places_left=true), never slots for an rdv
        raise _refused(CollectiveMotif(COLLECTIVE_REFUSAL))
    lieu = one(actor, Lieu, query.get("lieu_id"), "lieu_id")
    agent = one(actor, Agent, query.get("agent_id"), "agent_id")
    territory = motif.organisation.territory
    start = utcnow()
    if "from" in query:
        try:
            start = max(start, to_utc(query["from"], datetime.min.time(), territory.tz))
        except NonexistentLocalTime:
            pass  # a midnight skipped by a DST change: from now on
    found = availability.first_available(territory=territory, motif=motif, lieu_id=lieu.id if lieu else None,
                                         agent_id=agent.id if agent else None, start=start, limit=query["limit"])
    tz = territory.tz
    return {"items": [{
        "starts_at": render.instant(slot.starts_at), "ends_at": render.instant(slot.ends_at),
        "starts_at_local": render.local(slot.starts_at, tz), "ends_at_local": render.local(slot.ends_at, tz),
        "timezone": tz.key, "agent_id": slot.agent_id, "lieu_id": slot.lieu_id, "motif_id": motif.id,
        "plage_id": slot.plage_id,
    } for slot in found]}, 200
