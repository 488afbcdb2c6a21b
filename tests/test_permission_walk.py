"""Every route, for every role, against the objects of another organisation and of another territory: 404 or 403,
and nothing changed.

The walk reads the application's URL map, so a route added later is walked too: a route whose URL takes an id
this file does not know fails the walk until its kind of object is added to OBJECT_OF_PARAMETER (or the route is
listed among the public ones, which are reached by a signed token instead of a session).
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest
from sqlalchemy import select

from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.models import (
    Absence, Agent, Export, ExportKind, ExportStatus, Lieu, Motif, Organisation, PlageOuverture, Rdv, RdvStatus, Role,
    Territory, Usager, WaitlistEntry,
)
from lapins.models.webhooks import DeliveryStatus, Webhook, WebhookDelivery
from tests.conftest import csrf_token_from

# Reached without a session: by a signed token (family pages, invitations), a Twilio signature, or nothing at all.
PUBLIC_BLUEPRINTS = {"family", "webhooks", "health", "vendor"}
# The API's document and its docs page hold no data: they are read without a token.
PUBLIC_ENDPOINTS = {"api.openapi_document", "api.docs", "static", "auth.login", "auth.logout", "auth.accept_invitation", "auth.forgot_password",
                    "auth.reset_password"}

# URL parameter → the kind of object it names ("target_id" is an organisation or a territory, after `kind`).
OBJECT_OF_PARAMETER = {
    "rdv_id": "rdv", "usager_id": "usager", "agent_id": "agent", "lieu_id": "lieu", "motif_id": "motif",
    "plage_id": "plage", "absence_id": "absence", "entry_id": "entry", "export_id": "export",
    "territory_id": "territory", "organisation_id": "organisation", "webhook_id": "webhook",
    "delivery_id": "delivery",
}
KIND_OF_TARGET = {"organisation": "organisation", "territoire": "territory"}


def _world(factories, number: str, name: str):
    """A territory holding two organisations, each with every kind of object an agent could reach by its id."""
    territory = factories.TerritoryFactory(number=number, name=name)

    def organisation(label: str):
        org = factories.OrganisationFactory(territory=territory, name=f"PMI {label}")
        lieu = factories.LieuFactory(organisation=org, name=f"Centre {label}")
        motif = factories.MotifFactory(organisation=org, name=f"Motif {label}")
        agent = factories.AgentFactory(organisation=org, organisation__role=Role.AGENT, last_name=f"Agent{label}")
        plage = factories.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=date(2026, 1, 5))
        absence = factories.AbsenceFactory(agent=agent)
        usager = factories.UsagerFactory(territory=territory, organisations=[org], last_name=f"Famille{label}")
        starts = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3)
        rdv = factories.RdvFactory(motif=motif, lieu=lieu, agents=[agent], usagers=[usager], starts_at=starts)
        entry = factories.WaitlistEntryFactory(usager=usager, motif=motif, organisation=org)
        export = Export(requested_by=agent, territory=territory, organisation=org, kind=ExportKind.RDVS,
                        file_format="csv", params={}, status=ExportStatus.DONE, filename="rdvs.csv", content=b"x")
        webhook = Webhook(organisation=org, url="https://si.example.fr/hook", secret_encrypted=crypto.encrypt("s"))
        db.session.add_all([export, webhook])
        db.session.flush()
        sent = WebhookDelivery(webhook_id=webhook.id, event="rdv.created", payload={}, status=DeliveryStatus.FAILED)
        db.session.add(sent)
        db.session.commit()
        return {"webhook": webhook, "delivery": sent, "organisation": org, "territory": territory, "lieu": lieu, "motif": motif, "agent": agent,
                "plage": plage, "absence": absence, "usager": usager, "rdv": rdv, "entry": entry, "export": export}

    return organisation


@pytest.fixture()
def worlds(factories):
    here = _world(factories, "971", "Guadeloupe")
    own, neighbour = here("Mienne"), here("Voisine")
    stranger = _world(factories, "974", "La Réunion")("Lointaine")
    return own, neighbour, stranger


def _walked_rules(app):
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        blueprint = rule.endpoint.split(".")[0] if "." in rule.endpoint else None
        if blueprint in PUBLIC_BLUEPRINTS or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        yield rule


def _urls(app, rule, objects: dict, *, skip_territory: bool = False) -> list[str]:
    """The URLs of a rule with every id pointing at `objects` (several when it names an organisation or a territory
    by `kind`); an empty list when the rule takes no id."""
    params = set(rule.arguments)
    if not params:
        return []
    unknown = params - set(OBJECT_OF_PARAMETER) - {"kind", "target_id", "file_format"}
    assert not unknown, (f"{rule.endpoint} ({rule.rule}) takes {sorted(unknown)}: say in OBJECT_OF_PARAMETER which "
                         "object it names, so that the permission walk covers it")
    adapter = app.url_map.bind("localhost")
    kinds = list(KIND_OF_TARGET) if "kind" in params else [None]
    urls = []
    for kind in kinds:
        values, names_territory = {}, False
        for param in params:
            if param == "kind":
                values[param] = kind
            elif param == "file_format":
                values[param] = "csv"
            else:
                what = KIND_OF_TARGET[kind] if param == "target_id" else OBJECT_OF_PARAMETER[param]
                names_territory |= what == "territory"
                values[param] = objects[what].id
        if not (skip_territory and names_territory):
            urls.append(adapter.build(rule.endpoint, values))
    return urls


def _methods(rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def _snapshot(objects: dict) -> dict:
    db.session.expire_all()
    rdv, usager = db.session.get(Rdv, objects["rdv"].id), db.session.get(Usager, objects["usager"].id)
    return {
        "rdv": (rdv.status, rdv.starts_at, rdv.ends_at, rdv.lieu_id, rdv.notes, [a.id for a in rdv.agents],
                [u.id for u in rdv.usagers], rdv.revision),
        "usager": (usager.first_name, usager.last_name, usager.phone, usager.email, usager.birth_date),
        "plage": db.session.get(PlageOuverture, objects["plage"].id) is not None,
        "absence": db.session.get(Absence, objects["absence"].id) is not None,
        "entry": db.session.get(WaitlistEntry, objects["entry"].id).status,
        "agent": db.session.get(Agent, objects["agent"].id).active,
        "webhook": db.session.get(Webhook, objects["webhook"].id).active,
        "delivery": db.session.get(WebhookDelivery, objects["delivery"].id).status,
    }


def _login(client, auth, agent) -> str:
    assert auth.login(agent).status_code == 302
    return csrf_token_from(client.get("/usagers").get_data(as_text=True))


def _open(client, rule, url: str, method: str, *, csrf: str | None = None, bearer: str | None = None, **kwargs):
    """A request as the actor makes it: the API (blueprint `api`) with the actor's token and a JSON body, every
    other page with the session and, for a POST, its CSRF token."""
    if rule.endpoint.startswith("api."):
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        body = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}
        return client.open(url, method=method, headers=headers, **body, **kwargs)
    return client.open(url, method=method, data={"csrf_token": csrf} if method == "POST" and csrf else None, **kwargs)


def _api_token(agent) -> str:
    from lapins.auth.tokens import create

    return create(agent, "Parcours des permissions")[1]


@pytest.mark.parametrize("role", [Role.ADMIN, Role.SECRETARY, Role.AGENT])
def test_no_route_reaches_another_organisations_or_territorys_objects(app, client, auth, factories, worlds, role):
    own, neighbour, stranger = worlds
    actor = factories.AgentFactory(organisation=own["organisation"], organisation__role=role)
    token = _login(client, auth, actor)
    bearer = _api_token(actor)
    before = {"neighbour": _snapshot(neighbour), "stranger": _snapshot(stranger)}

    reached, walked = [], 0
    for rule in _walked_rules(app):
        for others, label in ((neighbour, "autre organisation"), (stranger, "autre territoire")):
            # The actor's own territory is the neighbour's too: reaching it is not a leak.
            for url in _urls(app, rule, others, skip_territory=others is neighbour):
                for method in _methods(rule):
                    response = _open(client, rule, url, method, csrf=token, bearer=bearer)
                    walked += 1
                    if response.status_code not in (403, 404):
                        reached.append(f"{method} {url} ({label}) → {response.status_code}")

    assert walked > 40  # the walk did walk (every route with an id, twice)
    assert reached == []
    assert {"neighbour": _snapshot(neighbour), "stranger": _snapshot(stranger)} == before


def test_the_walk_reaches_the_actors_own_objects(app, client, auth, factories, worlds):
    """The other side of the walk: with ids of its own organisation, an administrator gets each page. Without it the
    walk above could pass by building URLs that lead nowhere."""
    own, _, _ = worlds
    admin = factories.AgentFactory(organisation=own["organisation"], organisation__role=Role.ADMIN)
    own["export"].requested_by = admin
    db.session.commit()
    _login(client, auth, admin)
    bearer = _api_token(admin)

    refused = []
    for rule in _walked_rules(app):
        if "GET" not in rule.methods:
            continue
        for url in _urls(app, rule, own):
            response = _open(client, rule, url, "GET", bearer=bearer)
            if response.status_code in (403, 404) or response.status_code >= 500:
                refused.append(f"GET {url} → {response.status_code}")
    assert refused == []


def test_every_route_but_the_public_ones_asks_for_a_login(app, client, worlds):
    own, _, _ = worlds
    open_routes = []
    for rule in _walked_rules(app):
        for url in _urls(app, rule, own) or [app.url_map.bind("localhost").build(rule.endpoint, {})]:
            for method in _methods(rule):
                response = client.open(url, method=method)
                login_page = response.status_code == 302 and "/connexion" in response.headers["Location"]
                if not (login_page or response.status_code in (400, 401)):
                    open_routes.append(f"{method} {url} → {response.status_code}")
    assert open_routes == []


QUERY_IDS = ("agent_id", "lieu_id", "motif_id", "usager_id", "organisation_id", "territory_id")


def test_ids_of_other_organisations_in_the_query_string_show_nothing_of_theirs(app, client, auth, factories, worlds):
    """Pages that take ids in their query string (a new rdv for an agent, a slot search by lieu...) never show the
    names of another organisation's agents, lieux, motifs or families."""
    own, neighbour, stranger = worlds
    actor = factories.AgentFactory(organisation=own["organisation"], organisation__role=Role.ADMIN)
    _login(client, auth, actor)
    bearer = _api_token(actor)
    leaks = []
    for rule in _walked_rules(app):
        if rule.arguments or "GET" not in rule.methods:
            continue
        url = app.url_map.bind("localhost").build(rule.endpoint, {})
        for others in (neighbour, stranger):
            names = [others["agent"].last_name, others["lieu"].name, others["motif"].name, others["usager"].last_name,
                     others["organisation"].name]
            query = {param: others[OBJECT_OF_PARAMETER[param]].id for param in QUERY_IDS}
            response = _open(client, rule, url, "GET", bearer=bearer, query_string=query)
            text = response.get_data(as_text=True)
            if response.status_code >= 500 or any(name in text for name in names):
                leaks.append(f"GET {url} with ids of {others['organisation'].name} → {response.status_code}")
    assert leaks == []
