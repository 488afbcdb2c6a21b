"""Collective sessions through the API v1, as another system of the département meets them: sessions read like rdvs
with their places, families added with the agenda's refusals (a full session is a 409 and nothing is stored), places
cancelled, attendance and capacity; another organisation's token reaches none of it; each participation change is a
webhook, delivered to a real loopback endpoint."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
import time_machine
from sqlalchemy import func, select
from werkzeug.serving import make_server

from lapins import create_app
from lapins.api.openapi import PREFIX, document
from lapins.auth import tokens
from lapins.booking import sessions
from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.integrations import delivery
from lapins.models import Message, OfferStatus, Participation, ParticipationStatus, Rdv, Role, SlotOffer
from lapins.models.webhooks import Webhook
from lapins.waitlist import entries as waitlist_entries
from tests.test_webhooks import Receiver

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)  # Monday 2 March 2026, 09:00 in Paris


def tuesday(week: int = 0, hour: int = 10) -> datetime:
    return datetime.combine(NOW.date() + timedelta(days=1 + 7 * week), time(hour), PARIS).astimezone(timezone.utc)


def z(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Pmi:
    """An organisation running « Atelier massage bébé » (collective, one place per family), its puéricultrice with an
    API token, four families (a mother and her baby), and its sessions on Tuesdays at 10:00."""

    def __init__(self, factories, name: str = "PMI Belleville", territory=None, role: Role = Role.AGENT):
        self.organisation = factories.OrganisationFactory(name=name, **({"territory": territory} if territory else {}))
        self.lieu = factories.LieuFactory(organisation=self.organisation, name=f"Centre {name}")
        self.motif = factories.MotifFactory(organisation=self.organisation, name="Atelier massage bébé",
                                            duration_minutes=90, collective=True)
        self.individual = factories.MotifFactory(organisation=self.organisation, name="Consultation")
        self.agent = factories.AgentFactory(organisation=self.organisation, organisation__role=role)
        self.families = []
        for index, last_name in enumerate(["Payet", "Grondin", "Técher", "Fontaine"]):
            parent = factories.UsagerFactory(territory=self.organisation.territory, organisations=[self.organisation],
                                             first_name="Marie", last_name=last_name, phone=f"+3361234567{index}")
            baby = factories.UsagerFactory(territory=self.organisation.territory, organisations=[self.organisation],
                                           first_name=f"Bébé{index}", last_name=last_name, phone=None,
                                           sms_consent=False, responsible=parent)
            self.families.append((parent, baby))
        db.session.commit()
        self.headers = {"Authorization": f"Bearer {tokens.create(self.agent, 'SI PMI')[1]}"}

    def session(self, capacity: int = 3, week: int = 0) -> Rdv:
        return sessions.create_sessions(actor=self.agent, motif=self.motif, agents=[self.agent], lieu=self.lieu,
                                        starts=[tuesday(week)], duration=timedelta(minutes=90), capacity=capacity,
                                        title="Massage bébé")[0]

    def family(self, index: int) -> list[int]:
        return [usager.id for usager in self.families[index]]


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def pmi(factories):
    return Pmi(factories)


def add(client, pmi, session_id: int, usager_ids: list[int]):
    return client.post(f"{PREFIX}/sessions/{session_id}/participations", json={"usager_ids": usager_ids},
                       headers=pmi.headers)


def fresh(session_id: int) -> Rdv:
    """The session as the database has it now (each request of the test client had its own ORM session)."""
    db.session.expire_all()
    return db.session.get(Rdv, session_id)


def participations_of(session_id: int) -> list[Participation]:
    db.session.expire_all()
    return list(db.session.scalars(select(Participation).where(Participation.rdv_id == session_id)
                                   .order_by(Participation.id)))


# --- Reading ------------------------------------------------------------------------------------------------------


def test_sessions_are_listed_and_read_with_their_places_and_participations(client, pmi, factories):
    session = pmi.session(capacity=3)
    later = pmi.session(capacity=2, week=1)
    individual = factories.RdvFactory(motif=pmi.individual, lieu=pmi.lieu, agents=[pmi.agent],
                                      usagers=[pmi.families[3][0]], starts_at=tuesday(hour=15))
    assert add(client, pmi, session.id, pmi.family(0)).status_code == 201
    for index in (1, 2):
        assert add(client, pmi, later.id, pmi.family(index)).status_code == 201

    listed = client.get(f"{PREFIX}/sessions", headers=pmi.headers)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json["items"]] == [session.id, later.id]  # the individual rdv is no session
    first = listed.json["items"][0]
    places = (first["max_participants"], first["places_taken"], first["places_left"], first["places_held"])
    assert places == (3, 1, 2, 0)
    assert first["title"] == "Massage bébé" and first["starts_at"] == z(tuesday())
    assert first["starts_at_local"] == "2026-03-03T10:00:00+01:00" and first["duration_minutes"] == 90

    def ids(**query) -> list[int]:
        answer = client.get(f"{PREFIX}/sessions", query_string=query, headers=pmi.headers)
        assert answer.status_code == 200, answer.json
        return [item["id"] for item in answer.json["items"]]

    assert ids(with_places_left="true") == [session.id]  # the later one is full (2/2)
    assert ids(usager_id=pmi.families[1][1].id) == [later.id]  # the baby of the second family
    assert ids(starts_after=z(tuesday(week=1) - timedelta(hours=1))) == [later.id]
    assert ids(motif_id=pmi.individual.id) == []
    assert ids(agent_id=pmi.agent.id, lieu_id=pmi.lieu.id) == [session.id, later.id]

    read = client.get(f"{PREFIX}/sessions/{session.id}", headers=pmi.headers)
    assert read.status_code == 200
    [place] = read.json["participations"]
    parent, baby = pmi.families[0]
    assert place["usager_id"] == parent.id and sorted(place["usager_ids"]) == sorted([parent.id, baby.id])
    assert place["status"] == "registered" and place["status_label"] == "Inscrit" and place["places"] == 1
    assert place["booked_via"] == "api" and place["session_id"] == session.id

    # The rdv representation carries the capacity: an individual rdv has none.
    as_rdv = client.get(f"{PREFIX}/rdvs/{session.id}", headers=pmi.headers).json
    assert (as_rdv["max_participants"], as_rdv["places_taken"], as_rdv["title"]) == (3, 1, "Massage bébé")
    plain = client.get(f"{PREFIX}/rdvs/{individual.id}", headers=pmi.headers).json
    assert (plain["max_participants"], plain["places_taken"], plain["title"]) == (None, 0, None)
    missing = client.get(f"{PREFIX}/sessions/{individual.id}", headers=pmi.headers)
    assert missing.status_code == 404 and "pas une séance collective" in missing.json["message"]

    page = client.get(f"{PREFIX}/sessions/{later.id}/participations", query_string={"per_page": 1},
                      headers=pmi.headers)
    assert page.status_code == 200 and page.json["total"] == 2 and len(page.json["items"]) == 1
    assert page.json["items"][0]["usager_id"] == pmi.families[1][0].id


# --- Families' places ---------------------------------------------------------------------------------------------


def test_a_family_added_through_the_api_gets_its_own_confirmation_and_reminders(client, pmi):
    session = pmi.session()
    created = add(client, pmi, session.id, pmi.family(0))
    assert created.status_code == 201, created.json
    assert created.json["status"] == "registered" and created.json["booked_via"] == "api"
    assert fresh(session.id).places_taken == 1
    planned = db.session.scalars(select(Message).where(Message.participation_id == created.json["id"])).all()
    assert planned and {message.usager_id for message in planned} == {pmi.families[0][0].id}
    assert client.get(f"{PREFIX}/participations/{created.json['id']}", headers=pmi.headers).json == created.json


def test_a_place_freed_and_offered_to_the_waiting_list_is_held_not_left(client, pmi):
    """A cancelled place goes to the session's waiting family, held for its answer: the API says so, and does not
    give it to another family meanwhile."""
    session = pmi.session(capacity=1)
    first = add(client, pmi, session.id, pmi.family(0)).json
    waitlist_entries.add_for_session(pmi.agent, pmi.families[1][0], session)
    assert client.post(f"{PREFIX}/participations/{first['id']}/cancel", headers=pmi.headers).status_code == 200
    offer = db.session.scalar(select(SlotOffer))
    assert offer is not None and offer.status == OfferStatus.HELD and offer.usager_id == pmi.families[1][0].id

    read = client.get(f"{PREFIX}/sessions/{session.id}", headers=pmi.headers).json
    assert (read["places_taken"], read["places_held"], read["places_left"]) == (0, 1, 0)
    [listed] = client.get(f"{PREFIX}/sessions", headers=pmi.headers).json["items"]
    assert (listed["places_held"], listed["places_left"]) == (1, 0)
    assert client.get(f"{PREFIX}/sessions", query_string={"with_places_left": "true"},
                      headers=pmi.headers).json["items"] == []
    refused = add(client, pmi, session.id, pmi.family(2))
    assert refused.status_code == 409 and refused.json["session_full"] is True


def test_a_full_session_is_refused_with_409_saying_so_and_nothing_is_stored(client, pmi):
    session = pmi.session(capacity=1)
    assert add(client, pmi, session.id, pmi.family(0)).status_code == 201
    messages_before = db.session.scalar(select(func.count(Message.id)))

    refused = add(client, pmi, session.id, pmi.family(1))
    assert refused.status_code == 409
    assert refused.json["session_full"] is True
    assert "La séance est complète (1/1)" in refused.json["message"]
    assert "file d'attente" in refused.json["message"]
    assert len(participations_of(session.id)) == 1
    assert fresh(session.id).places_taken == 1
    assert db.session.scalar(select(func.count(Message.id))) == messages_before


@pytest.mark.parametrize("who, message", [
    ("two families", "Inscrivez une famille à la fois"),
    ("again", "Déjà inscrit à cette séance"),
])
def test_the_agenda_forms_refusals_are_409_in_french_with_nothing_stored(client, pmi, who, message):
    session = pmi.session()
    assert add(client, pmi, session.id, pmi.family(0)).status_code == 201
    usager_ids = pmi.family(1) + pmi.family(2) if who == "two families" else [pmi.families[0][1].id]
    refused = add(client, pmi, session.id, usager_ids)
    assert refused.status_code == 409 and message in refused.json["message"] and "session_full" not in refused.json
    assert len(participations_of(session.id)) == 1 and fresh(session.id).places_taken == 1


def test_a_cancelled_session_takes_nobody_and_bad_values_get_422(client, pmi):
    session = pmi.session()
    assert client.post(f"{PREFIX}/rdvs/{session.id}/cancel", json={"status": "revoked", "reason": "Puéricultrice "
                       "malade"}, headers=pmi.headers).status_code == 200
    refused = add(client, pmi, session.id, pmi.family(0))
    assert refused.status_code == 409 and "Cette séance est annulée" in refused.json["message"]
    for body, field in (({"usager_ids": []}, "usager_ids"), ({}, "usager_ids"), ({"usager_ids": [0]}, "usager_ids"),
                        ({"usager_ids": [99999]}, "usager_ids"), ({"usager_ids": ["1"]}, "usager_ids")):
        answer = client.post(f"{PREFIX}/sessions/{session.id}/participations", json=body, headers=pmi.headers)
        assert answer.status_code == 422 and field in answer.json["fields"], (body, answer.json)
    assert participations_of(session.id) == []


def test_a_place_is_cancelled_and_the_session_goes_on(client, pmi):
    session = pmi.session(capacity=2)
    first = add(client, pmi, session.id, pmi.family(0)).json
    assert add(client, pmi, session.id, pmi.family(1)).status_code == 201

    cancelled = client.post(f"{PREFIX}/participations/{first['id']}/cancel", headers=pmi.headers)
    assert cancelled.status_code == 200
    assert cancelled.json["status"] == "excused" and cancelled.json["cancelled_by"] == "agent"
    assert cancelled.json["cancelled_via"] == "api" and cancelled.json["cancelled_at"] == z(NOW)
    read = client.get(f"{PREFIX}/sessions/{session.id}", headers=pmi.headers).json
    assert read["status"] == "unknown" and (read["places_taken"], read["places_left"]) == (1, 1)
    assert [p["status"] for p in read["participations"]] == ["excused", "registered"]
    # The freed place is given again; a place already cancelled is not cancelled twice.
    assert add(client, pmi, session.id, pmi.family(2)).status_code == 201
    again = client.post(f"{PREFIX}/participations/{first['id']}/cancel", headers=pmi.headers)
    assert again.status_code == 409 and "déjà annulée" in again.json["message"]
    assert fresh(session.id).places_taken == 2


def test_capacity_is_never_lowered_below_the_places_taken(client, pmi):
    session = pmi.session(capacity=3)
    for index in (0, 1):
        assert add(client, pmi, session.id, pmi.family(index)).status_code == 201

    refused = client.post(f"{PREFIX}/sessions/{session.id}/capacity", json={"capacity": 1}, headers=pmi.headers)
    assert refused.status_code == 409
    assert "Impossible de passer à 1 place(s) : 2 sont déjà prises" in refused.json["message"]
    assert "personne n'est retiré" in refused.json["message"]
    assert fresh(session.id).max_participants == 3
    assert [p.status for p in participations_of(session.id)] == [ParticipationStatus.REGISTERED] * 2

    lowered = client.post(f"{PREFIX}/sessions/{session.id}/capacity", json={"capacity": 2}, headers=pmi.headers)
    assert lowered.status_code == 200 and (lowered.json["max_participants"], lowered.json["places_left"]) == (2, 0)
    full = add(client, pmi, session.id, pmi.family(2))
    assert full.status_code == 409 and full.json["session_full"] is True
    for capacity in (0, 501, "3", None):
        bad = client.post(f"{PREFIX}/sessions/{session.id}/capacity", json={"capacity": capacity},
                          headers=pmi.headers)
        assert bad.status_code == 422 and "capacity" in bad.json["fields"]
    assert fresh(session.id).max_participants == 2


def test_attendance_is_noted_once_the_session_has_started(client, pmi, frozen):
    session = pmi.session()
    came, missed = (add(client, pmi, session.id, pmi.family(index)).json for index in (0, 1))
    early = client.post(f"{PREFIX}/sessions/{session.id}/attendance", json={"present_ids": [came["id"]]},
                        headers=pmi.headers)
    assert early.status_code == 409 and "pas encore commencé" in early.json["message"]

    frozen.move_to(tuesday(hour=11))
    other = pmi.session(week=1)
    stranger = add(client, pmi, other.id, pmi.family(2)).json
    unknown = client.post(f"{PREFIX}/sessions/{session.id}/attendance", json={"present_ids": [stranger["id"]]},
                          headers=pmi.headers)
    assert unknown.status_code == 422
    assert "Inscription inconnue dans cette séance" in unknown.json["fields"]["present_ids"]
    assert {p.status for p in participations_of(session.id)} == {ParticipationStatus.REGISTERED}

    noted = client.post(f"{PREFIX}/sessions/{session.id}/attendance", json={"present_ids": [came["id"]]},
                        headers=pmi.headers)
    assert noted.status_code == 200, noted.json
    assert {p["id"]: p["status"] for p in noted.json["participations"]} == {came["id"]: "present",
                                                                          missed["id"]: "absent"}
    assert noted.json["status"] == "seen"
    present = client.get(f"{PREFIX}/sessions/{session.id}/participations", query_string={"status": "present"},
                         headers=pmi.headers).json
    assert [p["id"] for p in present["items"]] == [came["id"]]


# --- Permissions --------------------------------------------------------------------------------------------------


def test_another_organisations_token_never_reads_or_writes_a_session(client, pmi, factories):
    session = pmi.session(capacity=3)
    place = add(client, pmi, session.id, pmi.family(0)).json
    neighbour = Pmi(factories, name="PMI Voisine", territory=pmi.organisation.territory)
    theirs = neighbour.session()

    listed = client.get(f"{PREFIX}/sessions", query_string={"per_page": 100}, headers=neighbour.headers).json
    assert [item["id"] for item in listed["items"]] == [theirs.id]
    for method, path, body in (
            ("GET", f"/sessions/{session.id}", None),
            ("GET", f"/sessions/{session.id}/participations", None),
            ("POST", f"/sessions/{session.id}/participations", {"usager_ids": neighbour.family(0)}),
            ("POST", f"/sessions/{session.id}/capacity", {"capacity": 1}),
            ("POST", f"/sessions/{session.id}/attendance", {"present_ids": []}),
            ("GET", f"/participations/{place['id']}", None),
            ("POST", f"/participations/{place['id']}/cancel", None)):
        answer = client.open(f"{PREFIX}{path}", method=method, json=body, headers=neighbour.headers)
        assert answer.status_code == 404, (method, path, answer.json)
    # Nor can our token put the neighbour's family in our session.
    mixed = add(client, pmi, session.id, neighbour.family(1))
    assert mixed.status_code == 422 and "Usager inconnu" in mixed.json["fields"]["usager_ids"]

    kept = fresh(session.id)
    assert (kept.max_participants, kept.places_taken) == (3, 1)
    assert [p.status for p in participations_of(session.id)] == [ParticipationStatus.REGISTERED]


# --- Webhooks -----------------------------------------------------------------------------------------------------


@pytest.fixture()
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_each_participation_change_is_a_webhook_and_other_organisations_hear_nothing(client, pmi, factories,
                                                                                    receiver, frozen):
    webhook = Webhook(organisation_id=pmi.organisation.id, url=receiver.url, secret_encrypted=crypto.encrypt("s"))
    neighbour = Pmi(factories, name="PMI Voisine", territory=pmi.organisation.territory)
    elsewhere = Receiver()
    try:
        db.session.add_all([webhook, Webhook(organisation_id=neighbour.organisation.id, url=elsewhere.url,
                                             secret_encrypted=crypto.encrypt("t"))])
        db.session.commit()
        session = pmi.session(capacity=3)
        first = add(client, pmi, session.id, pmi.family(0)).json
        second = add(client, pmi, session.id, pmi.family(1)).json
        assert client.post(f"{PREFIX}/participations/{second['id']}/cancel", headers=pmi.headers).status_code == 200
        assert client.post(f"{PREFIX}/sessions/{session.id}/capacity", json={"capacity": 5},
                           headers=pmi.headers).status_code == 200
        frozen.move_to(tuesday(hour=11))
        assert client.post(f"{PREFIX}/sessions/{session.id}/attendance", json={"present_ids": [first["id"]]},
                           headers=pmi.headers).status_code == 200
        delivery.deliver_due()

        bodies = [json.loads(item["body"]) for item in receiver.received]
        events = [body["event"] for body in bodies]
        assert events == ["rdv.created", "participation.created", "participation.created",
                          "participation.cancelled", "rdv.updated", "participation.attendance", "rdv.updated"]
        created = bodies[0]["data"]
        assert (created["id"], created["max_participants"], created["title"]) == (session.id, 3, "Massage bébé")
        added = bodies[1]["data"]
        parent, baby = pmi.families[0]
        assert added["id"] == first["id"] and added["session_id"] == session.id
        assert added["usager_id"] == parent.id and added["usager_ids"] == sorted([parent.id, baby.id])
        assert added["status"] == "registered" and added["booked_via"] == "api"
        assert added["organisation_id"] == pmi.organisation.id
        cancelled = bodies[3]["data"]
        assert cancelled["id"] == second["id"] and cancelled["status"] == "excused"
        assert cancelled["cancelled_by"] == "agent" and cancelled["cancelled_via"] == "api"
        assert bodies[4]["data"]["max_participants"] == 5
        assert bodies[5]["data"]["id"] == first["id"] and bodies[5]["data"]["status"] == "present"
        assert elsewhere.received == []
    finally:
        elsewhere.server.shutdown()
        elsewhere.server.server_close()


def test_a_family_cancelling_on_its_link_is_announced_too(pmi, receiver):
    """The family's own link cancels through the same booking service: the webhook does not depend on the API."""
    from lapins.models.rdvs import CancellationChannel

    db.session.add(Webhook(organisation_id=pmi.organisation.id, url=receiver.url, secret_encrypted=crypto.encrypt("s")))
    db.session.commit()
    session = pmi.session()
    place = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0]))
    sessions.cancel_participation(actor=None, participation=place, via=CancellationChannel.LINK)
    delivery.deliver_due()
    cancelled = json.loads(receiver.received[-1]["body"])
    assert cancelled["event"] == "participation.cancelled"
    assert cancelled["data"]["cancelled_by"] == "family" and cancelled["data"]["cancelled_via"] == "link"


# --- The document -------------------------------------------------------------------------------------------------


def test_the_document_and_the_docs_pages_describe_sessions_participations_and_their_webhooks(client, auth, pmi,
                                                                                              factories):
    paths = document()["paths"]
    assert {f"{PREFIX}/sessions", f"{PREFIX}/sessions/{{session_id}}", f"{PREFIX}/sessions/{{session_id}}/capacity",
            f"{PREFIX}/sessions/{{session_id}}/attendance", f"{PREFIX}/sessions/{{session_id}}/participations",
            f"{PREFIX}/participations/{{participation_id}}",
            f"{PREFIX}/participations/{{participation_id}}/cancel"} <= set(paths)
    assert "409" in paths[f"{PREFIX}/sessions/{{session_id}}/participations"]["post"]["responses"]
    rdv = paths[f"{PREFIX}/rdvs/{{rdv_id}}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"max_participants", "places_taken", "title"} <= set(rdv["required"])
    page = client.get(f"{PREFIX}/docs").get_data(as_text=True)
    assert f"<code>{PREFIX}/sessions/{{session_id}}/participations</code>" in page and "session_full" in page
    admin = factories.AgentFactory(organisation=pmi.organisation, organisation__role=Role.ADMIN)
    auth.login(admin)
    hooks = client.get(f"/integrations/organisations/{pmi.organisation.id}/webhooks")
    assert hooks.status_code == 200
    text = hooks.get_data(as_text=True)
    for event in ("participation.created", "participation.cancelled", "participation.attendance", "max_participants",
                  "session_id"):
        assert f"<code>{event}</code>" in text, event


# --- Many clients for the last place ------------------------------------------------------------------------------

CLIENTS = 8


@pytest.fixture()
def live_session(database_url):
    """A real threaded server on 127.0.0.1; one session with one place left and a family per secretary's token."""
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
    with app.app_context():
        pmi = Pmi(factories)
        session = pmi.session(capacity=2)
        sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0]))
        calls = []
        for index in range(CLIENTS):
            secretary = factories.AgentFactory(organisation=pmi.organisation, organisation__role=Role.SECRETARY)
            family = factories.UsagerFactory(territory=pmi.organisation.territory, organisations=[pmi.organisation],
                                             last_name=f"Famille{index}")
            calls.append((tokens.create(secretary, "Logiciel")[1], family.id))
        session_id = session.id
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}", session_id, calls
    server.shutdown()
    with app.app_context():
        db.engine.dispose()


def test_many_clients_for_the_last_place_give_exactly_one(live_session):
    app, base, session_id, calls = live_session
    start = threading.Barrier(len(calls))

    def sign_up(call):
        token, usager_id = call
        start.wait()
        return requests.post(f"{base}{PREFIX}/sessions/{session_id}/participations", json={"usager_ids": [usager_id]},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)

    with ThreadPoolExecutor(len(calls)) as pool:
        responses = list(pool.map(sign_up, calls))
    assert sorted(response.status_code for response in responses) == [201] + [409] * (len(calls) - 1)
    assert all(response.json()["session_full"] for response in responses if response.status_code == 409)
    with app.app_context():
        assert db.session.scalar(select(func.count(Participation.id)).where(Participation.rdv_id == session_id)) == 2
        assert db.session.get(Rdv, session_id).places_taken == 2
