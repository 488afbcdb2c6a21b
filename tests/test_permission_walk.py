"""Every route, for every role, against the objects of another organisation and of another territory: 404 or 403,
and nothing changed.

The walk reads the application's URL map, so a route added later is walked too: a route whose URL takes an id
this file does not know fails the walk until its kind of object is added to OBJECT_OF_PARAMETER (or the route is
listed among the public ones, which are reached by a signed token instead of a session).
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

import pytest
from sqlalchemy import select

from lapins.booking import sessions
from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.models import (
    Absence, Agent, Export, ExportKind, ExportStatus, Lieu, Motif, MotifCatalogueEntry, Organisation, PlageOuverture, Rdv,
    RdvStatus, Role, Sector, Territory, Usager, WaitlistEntry,
)
from lapins.models.webhooks import DeliveryStatus, Webhook, WebhookDelivery
from tests.conftest import csrf_token_from

# Reached without a session: by a signed token (family pages, invitations), a Twilio signature, or nothing at all.
PUBLIC_BLUEPRINTS = {"family", "webhooks", "health", "vendor", "public"}  # public: the commune search, online booking
# The API's document and its docs page hold no data: they are read without a token.
PUBLIC_ENDPOINTS = {"api.openapi_document", "api.docs", "static", "auth.login", "auth.logout", "auth.accept_invitation", "auth.forgot_password",
                    "auth.reset_password", "auth.oidc_start", "auth.oidc_callback", "auth.oidc_signed_out",
                    "auth.oidc_leaving", "calendars.ics_feed"}  # the feed: its secret token is the key

# URL parameter → the kind of object it names ("target_id" is an organisation or a territory, after `kind`).
OBJECT_OF_PARAMETER = {
    "rdv_id": "rdv", "usager_id": "usager", "agent_id": "agent", "lieu_id": "lieu", "motif_id": "motif",
    "plage_id": "plage", "absence_id": "absence", "entry_id": "entry", "export_id": "export",
    "territory_id": "territory", "organisation_id": "organisation", "webhook_id": "webhook",
    "delivery_id": "delivery", "other_id": "usager", "sector_id": "sector",  # other_id: the second file of a merge
    "session_id": "session", "participation_id": "participation",  # a collective session (an rdv) and a family's place
    "catalogue_id": "catalogue",  # an entry of the territory's motif catalogue
    "guardian_id": "usager",  # a child's responsible adult
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
        atelier = factories.MotifFactory(organisation=org, name=f"Atelier {label}", collective=True)
        [session] = sessions.create_sessions(actor=agent, motif=atelier, agents=[agent], lieu=lieu,
                                             starts=[starts + timedelta(days=1)], duration=timedelta(minutes=60),
                                             capacity=3, title=f"Séance {label}")
        participation = sessions.add_participant(actor=agent, session=session, usagers=[usager])
        export = Export(requested_by=agent, territory=territory, organisation=org, kind=ExportKind.RDVS,
                        file_format="csv", params={}, status=ExportStatus.DONE, filename="rdvs.csv", content=b"x")
        webhook = Webhook(organisation=org, url="https://si.example.fr/hook", secret_encrypted=crypto.encrypt("s"))
        sector = Sector(territory=territory, name=f"Secteur {label}")
        catalogue = MotifCatalogueEntry(territory=territory, name=f"Catalogue {label}")
        db.session.add_all([export, webhook, sector, catalogue])
        db.session.flush()
        sent = WebhookDelivery(webhook_id=webhook.id, event="rdv.created", payload={}, status=DeliveryStatus.FAILED)
        db.session.add(sent)
        db.session.commit()
        return {"webhook": webhook, "delivery": sent, "organisation": org, "territory": territory, "lieu": lieu, "motif": motif, "agent": agent,
                "plage": plage, "absence": absence, "usager": usager, "rdv": rdv, "entry": entry, "export": export,
                "sector": sector, "session": session, "participation": participation, "catalogue": catalogue}

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
                # A sector or a catalogue entry is its territory's, not an organisation's.
                names_territory |= what in ("territory", "sector", "catalogue")
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
        # Its time, place, agents and title too (moved or edited from /seances/<id>/modifier, PATCH /sessions/<id>),
        # and the families waiting for it (POST /sessions/<id>/waitlist).
        "session": (lambda session: (session.status, session.max_participants, session.places_taken,
                                     [(p.id, p.status) for p in session.participations], session.starts_at,
                                     session.ends_at, session.lieu_id, session.title, session.notes,
                                     [a.id for a in session.agents], session.revision))(
            db.session.get(Rdv, objects["session"].id)),
        "session_waiting": sorted(db.session.scalars(select(WaitlistEntry.id).where(
            WaitlistEntry.session_id == objects["session"].id))),
        "motif": (db.session.get(Motif, objects["motif"].id).catalogue_id, db.session.get(Motif, objects["motif"].id).name),
        "catalogue": db.session.get(MotifCatalogueEntry, objects["catalogue"].id).name,
        "motifs": sorted(db.session.scalars(select(Motif.name).where(
            Motif.organisation_id == objects["organisation"].id))),
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


# --- Lists and searches: what a page shows without an id, not only what an id reaches -----------------------------

# Pages reached by an id of the actor's own are walked above; these are the lists and searches, with the queries that
# make them show the most. A list whose scope is dropped shows the other organisations' rows: their names and links.
LIST_QUERIES = {
    "agenda.usagers": {"q": "Famille"},
    "agenda.new_rdv": {"usager_q": "Famille"},
    "agenda.freed_slots_board": {"jours": 30},
    "audit.index": {"page": 1},
    "api.listUsagers": {"q": "Famille", "per_page": 100},
    "api.listRdvs": {"per_page": 100},
    "api.listAgents": {"per_page": 100},
    "api.listLieux": {"per_page": 100},
    "api.listMotifs": {"per_page": 100},
    "api.listPlages": {"per_page": 100},
    "api.listAbsences": {"per_page": 100},
    "api.listSessions": {"per_page": 100},
}
# API collection → the kind of object its items are (the ids checked in the JSON).
KIND_OF_COLLECTION = {"api.listUsagers": "usager", "api.listRdvs": "rdv", "api.listAgents": "agent",
                      "api.listLieux": "lieu", "api.listMotifs": "motif", "api.listPlages": "plage",
                      "api.listAbsences": "absence", "api.listSessions": "session"}
# Links to an object's own page, by kind: a link to another organisation's object is a row of theirs shown.
LINKS = {"rdv": "/rdvs/{}", "usager": "/usagers/{}", "agent": "/admin/agents/{}", "entry": "/file-d-attente/{}",
         "session": "/seances/{}"}


def _crowd(factories, objects: dict) -> None:
    """What the lists show beside the world's objects: an rdv past and not filled in (« à renseigner »), a cancelled
    rdv whose freed slot is held for the waiting family with its offer SMS, a reminder written to the family, a
    number Twilio refused (the territory's SMS page lists those)."""
    from lapins.models import Channel, Message, MessageKind, MessageStatus, OfferStatus, SlotOffer, WaitlistSlot
    from lapins.models.waitlist import SlotStatus

    now = datetime.now(timezone.utc).replace(microsecond=0)
    org, usager, agent, motif, lieu = (objects[k] for k in ("organisation", "usager", "agent", "motif", "lieu"))
    objects["past_rdv"] = factories.RdvFactory(motif=motif, lieu=lieu, agents=[agent], usagers=[usager],
                                               starts_at=now - timedelta(days=2))
    cancelled = factories.RdvFactory(motif=motif, lieu=lieu, agents=[agent], usagers=[usager],
                                     starts_at=now + timedelta(days=1), status=RdvStatus.REVOKED, cancelled_at=now)
    objects["cancelled_rdv"] = cancelled
    slot = WaitlistSlot(organisation_id=org.id, motif_id=motif.id, lieu_id=lieu.id, agent_id=agent.id,
                        starts_at=cancelled.starts_at, ends_at=cancelled.ends_at, source_rdv_id=cancelled.id,
                        status=SlotStatus.OPEN, created_at=now)
    slot.agents = [agent]
    offer = SlotOffer(slot=slot, entry=objects["entry"], usager_id=usager.id, status=OfferStatus.HELD,
                      offered_at=now, held_until=now + timedelta(minutes=30))
    db.session.add_all([slot, offer])
    db.session.flush()
    territory_id = org.territory_id
    db.session.add_all([
        Message(territory_id=territory_id, offer_id=offer.id, usager=usager, channel=Channel.SMS,
                kind=MessageKind.OFFER, status=MessageStatus.SENT, due_at=now, sent_at=now,
                to_address=usager.phone, body=f"Créneau libéré pour {usager.last_name}"),
        Message(territory_id=territory_id, rdv=objects["rdv"], usager=usager, channel=Channel.SMS,
                kind=MessageKind.REMINDER, status=MessageStatus.SENT, due_at=now - timedelta(hours=1),
                sent_at=now - timedelta(hours=1), to_address=usager.phone,
                body=f"Rappel : rdv de {usager.last_name} au {lieu.name}"),
    ])
    usager.phone_undeliverable_at, usager.phone_error = now, "Numéro de téléphone invalide."
    db.session.commit()


def _shows(objects: dict) -> tuple[list[str], dict[str, set[int]]]:
    """The names that tell an organisation's rows apart, and their ids by kind."""
    names = [objects["agent"].last_name, objects["lieu"].name, objects["motif"].name, objects["usager"].last_name]
    ids = {"rdv": {objects[key].id for key in ("rdv", "past_rdv", "cancelled_rdv", "session")}, "usager": {objects["usager"].id},
           "agent": {objects["agent"].id}, "lieu": {objects["lieu"].id}, "motif": {objects["motif"].id},
           "plage": {objects["plage"].id}, "absence": {objects["absence"].id}, "entry": {objects["entry"].id},
           "session": {objects["session"].id}}
    return names, ids


def _pages_showing_rows(app, own: dict, shared_usager) -> list[tuple]:
    """(rule, url, query) of every GET page and API collection: those without an id, plainly and searched; those
    with ids, on the actor's own objects (and on the family both organisations follow, for the usager's pages)."""
    adapter = app.url_map.bind("localhost")
    pages = []
    for rule in _walked_rules(app):
        if "GET" not in rule.methods:
            continue
        if not rule.arguments:
            url = adapter.build(rule.endpoint, {})
            pages += [(rule, url, {}), (rule, url, LIST_QUERIES.get(rule.endpoint, {}))]
            continue
        urls = _urls(app, rule, own)
        if "usager_id" in rule.arguments:
            urls += _urls(app, rule, {**own, "usager": shared_usager})
        pages += [(rule, url, {}) for url in urls]
    return pages


def _text(response) -> str:
    """A response as text; a spreadsheet (an export) as the XML inside it."""
    if "spreadsheetml" in response.headers.get("Content-Type", ""):
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(response.get_data())) as book:
            return "".join(book.read(name).decode() for name in book.namelist() if name.endswith(".xml"))
    return response.get_data(as_text=True)


def _territory_wide(rule, url: str) -> bool:
    """The figures of a whole territory (statistics and their files), for whoever oversees it: they name the
    agents, lieux and motifs of each of its organisations by design, never a family."""
    return rule.endpoint.startswith("stats.") and "/territoire/" in url


def _seen(rule, response, names: list[str], ids: dict[str, set[int]]) -> list[str]:
    """What of those rows a list shows: names anywhere in it, ids of items (API) or of links (pages)."""
    text = _text(response)
    seen = [f"name {name!r}" for name in names if name in text]
    if rule.endpoint in KIND_OF_COLLECTION and response.is_json:
        kind = KIND_OF_COLLECTION[rule.endpoint]
        seen += [f"{kind} {item['id']}" for item in response.json.get("items", []) if item["id"] in ids[kind]]
        if kind == "rdv":
            seen += [f"usager {u} in an rdv" for item in response.json.get("items", [])
                     for u in item.get("usager_ids", []) if u in ids["usager"]]
    else:
        seen += [f"link {LINKS[kind].format(i)}" for kind in LINKS for i in ids[kind]
                 if re.search(re.escape(LINKS[kind].format(i)) + r"(?![0-9])", text)]
    return seen


@pytest.mark.parametrize("role", [Role.ADMIN, Role.SECRETARY, Role.AGENT])
def test_no_list_or_search_shows_a_row_of_another_organisation_or_territory(app, client, auth, factories, worlds,
                                                                             role):
    """Every page and API collection reached without an id, searched where it searches: the actor's own rows are
    there (so the page did list), the other organisation's and the other territory's never are."""
    own, neighbour, stranger = worlds
    for objects in worlds:
        _crowd(factories, objects)
    # A family followed by both organisations of the territory: the actor sees it, never the neighbour's rdv of it.
    shared = factories.UsagerFactory(territory=own["territory"], organisations=[own["organisation"],
                                                                                 neighbour["organisation"]],
                                     last_name="FamilleCommune")
    shared_rdv = factories.RdvFactory(motif=neighbour["motif"], lieu=neighbour["lieu"], agents=[neighbour["agent"]],
                                      usagers=[shared], starts_at=datetime.now(timezone.utc) - timedelta(days=1))
    actor = factories.AgentFactory(organisation=own["organisation"], organisation__role=role)
    _login(client, auth, actor)
    bearer = _api_token(actor)
    forbidden_names, forbidden_ids = [], {kind: set() for kind in _shows(own)[1]}
    for others in (neighbour, stranger):
        names, ids = _shows(others)
        forbidden_names += names
        for kind, values in ids.items():
            forbidden_ids[kind] |= values
    forbidden_ids["rdv"].add(shared_rdv.id)
    own_names, own_ids = _shows(own)

    families_only = [stranger_name for stranger_name in _shows(stranger)[0]] + [neighbour["usager"].last_name]
    leaks, walked, listed_own = [], 0, set()
    for rule, url, query in _pages_showing_rows(app, own, shared):
        response = _open(client, rule, url, "GET", bearer=bearer, query_string=query,
                         follow_redirects=not rule.endpoint.startswith("api."))
        walked += 1
        if response.status_code >= 500:
            leaks.append(f"GET {url} {query} → {response.status_code}")
        names = families_only if _territory_wide(rule, url) else forbidden_names
        seen = _seen(rule, response, names, forbidden_ids)
        if seen:
            leaks.append(f"GET {url} {query} → {response.status_code} shows {seen}")
        if _seen(rule, response, own_names, own_ids):
            listed_own.add(rule.endpoint)

    assert walked > 100
    assert leaks == []
    # The walk did reach lists that show rows: the actor's own are there.
    expected = {"agenda.rdvs_to_fill", "agenda.usagers", "agenda.waitlist", "agenda.dev_inbox",
                "agenda.freed_slots_board", "agenda.usager_detail", "agenda.rdv_detail", "api.listRdvs",
                "api.listUsagers", "api.listAgents", "api.listMotifs", "api.listLieux", "api.listPlages",
                "api.listAbsences", "api.listSessions", "stats.home"}
    if role == Role.ADMIN:  # the territory's SMS page lists the numbers Twilio refused, for administrators
        expected |= {"agenda.my_territory_messages", "audit.index"}
    assert expected <= listed_own, sorted(expected - listed_own)
