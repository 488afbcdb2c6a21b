"""Plages d'ouverture and absences through the API: listed, created, changed and deleted by those who manage the
agent, with the agenda's own forms and services (their French messages, their conflict checks)."""
from __future__ import annotations

from sqlalchemy.orm import selectinload

from lapins import policies
from lapins.agenda import schedule_services as services
from lapins.agenda.schedule_forms import ONE_OFF, WEEKLY, AbsenceForm, PlageForm
from lapins.api import render
from lapins.api.forms import formdata, validated
from lapins.api.routing import ApiError, implements, page
from lapins.infra.extensions import db
from lapins.models import Absence, Agent, PlageOuverture

RECURRENCE_FIELDS = ("first_day", "last_day", "start_time", "end_time", "weekdays", "every_n_weeks")
PLAGE_FIELDS = ("title", "lieu_id", "motif_ids", *RECURRENCE_FIELDS)
ABSENCE_FIELDS = ("title", *RECURRENCE_FIELDS)


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


def _changed(current: dict, body: dict, fields: tuple[str, ...]) -> dict:
    """What a PATCH makes of a plage or absence, as the API shows them: the body's fields over the current ones."""
    return {name: body[name] if name in body else current[name] for name in fields}


def _saved_plage(actor: Agent, agent: Agent, plage: PlageOuverture, values: dict) -> PlageOuverture:
    """The plage validated by the agenda's form and stored; a changed plage keeps its closed lieu, disabled motifs."""
    kept = plage if plage.id else None
    form = validated(PlageForm(formdata=formdata(values), meta={"csrf": False},
                               lieux=services.lieux_for(actor, agent, keep=kept.lieu if kept else None),
                               motifs=services.motifs_for(actor, agent, keep=kept.motifs if kept else None)))
    try:
        return services.save_plage(actor, plage, form.values())
    except services.ScheduleConflict as conflict:
        raise ApiError(409, conflict.message) from None


def _saved_absence(absence: Absence, values: dict) -> Absence:
    values = values | {"kind": WEEKLY if values.get("weekdays") else ONE_OFF}
    form = validated(AbsenceForm(formdata=formdata(values), meta={"csrf": False}))
    return services.save_absence(absence, form.values())


@implements("listPlages")
def list_plages(actor: Agent, *, query: dict, body: None):
    statement = policies.plage_scope(actor).options(selectinload(PlageOuverture.motifs),
                                                    selectinload(PlageOuverture.exceptions))
    if "agent_id" in query:
        statement = statement.where(PlageOuverture.agent_id == query["agent_id"])
    return page(statement.order_by(PlageOuverture.id), query, render.plage), 200


@implements("createPlage")
def create_plage(actor: Agent, *, query: dict, body: dict):
    agent = _managed_agent(actor, body["agent_id"])
    values = _recurrence_values(body) | {name: body[name] for name in ("title", "lieu_id", "motif_ids")}
    return render.plage(_saved_plage(actor, agent, PlageOuverture(agent_id=agent.id), values)), 201


@implements("updatePlage")
def update_plage(actor: Agent, *, plage_id: int, query: dict, body: dict):
    plage = _target(actor, PlageOuverture, plage_id)
    values = _changed(render.plage(plage), body, PLAGE_FIELDS)
    return render.plage(_saved_plage(actor, plage.agent, plage, values)), 200


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
    absence = _saved_absence(Absence(agent_id=agent.id), _recurrence_values(body) | {"title": body["title"]})
    return render.absence(absence), 201


@implements("updateAbsence")
def update_absence(actor: Agent, *, absence_id: int, query: dict, body: dict):
    absence = _target(actor, Absence, absence_id)
    return render.absence(_saved_absence(absence, _changed(render.absence(absence), body, ABSENCE_FIELDS))), 200


@implements("deleteAbsence")
def delete_absence(actor: Agent, *, absence_id: int, query: dict, body: None):
    services.delete(_target(actor, Absence, absence_id))
    return None, 204
