"""Plages d'ouverture and absences through the API: listed, created and deleted by those who manage the agent."""
from __future__ import annotations

from sqlalchemy.orm import selectinload

from lapins import policies
from lapins.agenda import schedule_services as services
from lapins.agenda.schedule_forms import ONE_OFF, WEEKLY, AbsenceForm, PlageForm
from lapins.api import render
from lapins.api.forms import formdata, validated
from lapins.api.routing import ApiError, implements, page
from lapins.extensions import db
from lapins.models import Absence, Agent, PlageOuverture

RECURRENCE_FIELDS = ("first_day", "last_day", "start_time", "end_time", "weekdays", "every_n_weeks")


def _managed_agent(actor: Agent, agent_id: int) -> Agent:
    """The agent whose schedule is changed: 404 outside the actor's organisations, 403 when not theirs to manage."""
    agent = db.session.get(Agent, agent_id)
    policies.authorize(actor, "manage_schedule", agent)
    return agent


def _target(actor: Agent, model, target_id: int):
    target = db.session.get(model, target_id)
    policies.authorize(actor, "manage_schedule", target)
    return target


def _recurrence_values(body: dict) -> dict:
    return {name: body.get(name) for name in RECURRENCE_FIELDS} | {"every_n_weeks": body.get("every_n_weeks", 1)}


@implements("listPlages")
def list_plages(actor: Agent, *, query: dict, body: None):
    statement = policies.plage_scope(actor).options(selectinload(PlageOuverture.motifs))
    if "agent_id" in query:
        statement = statement.where(PlageOuverture.agent_id == query["agent_id"])
    return page(statement.order_by(PlageOuverture.id), query, render.plage), 200


@implements("createPlage")
def create_plage(actor: Agent, *, query: dict, body: dict):
    agent = _managed_agent(actor, body["agent_id"])
    form = PlageForm(formdata=formdata(_recurrence_values(body) | {
        "title": body["title"], "lieu_id": body["lieu_id"], "motif_ids": body["motif_ids"],
    }), meta={"csrf": False}, lieux=services.lieux_for(actor, agent), motifs=services.motifs_for(actor, agent))
    validated(form)
    try:
        plage = services.save_plage(actor, PlageOuverture(agent_id=agent.id), form.values())
    except services.ScheduleConflict as conflict:
        raise ApiError(409, conflict.message) from None
    return render.plage(plage), 201


@implements("deletePlage")
def delete_plage(actor: Agent, *, plage_id: int, query: dict, body: None):
    services.delete(_target(actor, PlageOuverture, plage_id))
    return None, 204


@implements("listAbsences")
def list_absences(actor: Agent, *, query: dict, body: None):
    statement = policies.absence_scope(actor)
    if "agent_id" in query:
        statement = statement.where(Absence.agent_id == query["agent_id"])
    return page(statement.order_by(Absence.id), query, render.absence), 200


@implements("createAbsence")
def create_absence(actor: Agent, *, query: dict, body: dict):
    agent = _managed_agent(actor, body["agent_id"])
    values = _recurrence_values(body) | {"title": body["title"], "kind": WEEKLY if body.get("weekdays") else ONE_OFF}
    form = validated(AbsenceForm(formdata=formdata(values), meta={"csrf": False}))
    absence = services.save_absence(Absence(agent_id=agent.id), form.values())
    return render.absence(absence), 201


@implements("deleteAbsence")
def delete_absence(actor: Agent, *, absence_id: int, query: dict, body: None):
    services.delete(_target(actor, Absence, absence_id))
    return None, 204
