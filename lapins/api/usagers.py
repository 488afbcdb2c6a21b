"""Usagers through the API: listed or searched, read, created and changed with the agenda's own form."""
from __future__ import annotations

from lapins import policies
from lapins.agenda.usager_forms import UsagerForm
from lapins.agenda.usagers import _actor_organisations, _fill, search_usagers
from lapins.api import render
from lapins.api.forms import formdata, validated
from lapins.api.rdvs import one
from lapins.api.routing import implements, invalid, page
from lapins.infra.extensions import db
from lapins.models import Agent, Usager

ADDRESS_FIELDS = ("address_street", "address_postcode", "address_commune", "commune_insee", "address_access")
FORM_FIELDS = ("first_name", "last_name", "birth_date", "phone", "email", "sms_consent", "email_consent",
               *ADDRESS_FIELDS)


def _usager(actor: Agent, usager_id: int, action: str = "view") -> Usager:
    usager = db.session.get(Usager, usager_id)
    policies.authorize(actor, action, usager)
    return usager


def _form(values: dict, territory_number: str) -> UsagerForm:
    form = UsagerForm(formdata=formdata(values), meta={"csrf": False}, territory_number=territory_number)
    del form.organisation_id
    return validated(form)


@implements("listUsagers")
def list_usagers(actor: Agent, *, query: dict, body: None):
    if query.get("q", "").strip():
        found = search_usagers(actor, query["q"], limit=query["per_page"])
        return {"items": [render.usager(usager, actor) for usager in found], "page": 1,
                "per_page": query["per_page"], "total": len(found)}, 200
    statement = policies.usager_scope(actor).order_by(Usager.last_name, Usager.first_name, Usager.id)
    return page(statement, query, lambda usager: render.usager(usager, actor)), 200


@implements("getUsager")
def get_usager(actor: Agent, *, usager_id: int, query: dict, body: None):
    usager = _usager(actor, usager_id)
    if usager.merged_into_id is not None:  # a tombstone: the kept file, saying which id was asked for
        return render.usager(_usager(actor, usager.merged_into_id), actor) | {"merged_from_id": usager.id}, 200
    return render.usager(usager, actor), 200


@implements("createUsager")
def create_usager(actor: Agent, *, query: dict, body: dict):
    organisations = _actor_organisations(actor)
    if "organisation_id" in body:
        organisation = next((org for org in organisations if org.id == body["organisation_id"]), None)
        if organisation is None:
            raise invalid({"organisation_id": "Organisation inconnue : choisissez l'une des vôtres."})
    elif len(organisations) == 1:
        organisation = organisations[0]
    else:
        raise invalid({"organisation_id": "Vous travaillez dans plusieurs organisations : indiquez laquelle."})
    responsible = one(actor, Usager, body.get("responsible_id"), "responsible_id", "edit")
    if responsible is not None and responsible.territory_id != organisation.territory_id:
        raise invalid({"responsible_id": "Ce responsable n'appartient pas au territoire de cette organisation."})
    form = _form({name: body.get(name) for name in FORM_FIELDS}, organisation.territory.number)
    usager = Usager(territory_id=organisation.territory_id, responsible=responsible, organisations=[organisation])
    _fill(usager, form)
    db.session.add(usager)
    db.session.commit()
    return render.usager(usager, actor), 201


@implements("updateUsager")
def update_usager(actor: Agent, *, usager_id: int, query: dict, body: dict):
    usager = _usager(actor, usager_id, "edit")
    current = {"first_name": usager.first_name, "last_name": usager.last_name, "birth_date": usager.birth_date,
               "phone": usager.phone, "email": usager.email, "sms_consent": usager.sms_consent,
               "email_consent": usager.email_consent} | {name: getattr(usager, name) for name in ADDRESS_FIELDS}
    form = _form(current | body, usager.territory.number)
    _fill(usager, form)
    db.session.commit()
    return render.usager(usager, actor), 200
