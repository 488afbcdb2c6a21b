"""REST API v1: a bearer token per agent, the agent's own permissions, the agenda's booking rules, a truthful document."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
import time_machine
from sqlalchemy import func, select
from werkzeug.serving import make_server

from lapins import create_app

from lapins.auth import tokens
from lapins.api.openapi import PREFIX, document
from lapins.infra.extensions import db
from lapins.models import Absence, AgentRole, ApiToken, PlageOuverture, Rdv, RdvStatus, Role, Usager
from lapins.models.audit import AuditEvent
from lapins.models.rdvs import BookingChannel, CancellationChannel

PARIS = ZoneInfo("Europe/Paris")
PUBLIC_API_ENDPOINTS = {"api.openapi_document", "api.docs"}
CLIENTS = 12


def next_monday() -> date:
    today = date.today()
    return today + timedelta(days=7 - today.weekday())


def at(day: date, hour: int, minute: int = 0) -> str:
    """The UTC instant of a Paris wall-clock time, as the API writes it."""
    instant = datetime.combine(day, time(hour, minute), PARIS).astimezone(timezone.utc)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


class Clinic:
    """One organisation with a lieu, a motif, a puéricultrice open Monday to Friday 9h-12h, a family, a token."""

    def __init__(self, factories, role: Role = Role.AGENT, territory=None):
        self.organisation = factories.OrganisationFactory(**({"territory": territory} if territory else {}))
        self.lieu = factories.LieuFactory(organisation=self.organisation)
        self.motif = factories.MotifFactory(organisation=self.organisation)
        self.agent = factories.AgentFactory(organisation=self.organisation, organisation__role=role)
        self.plage = factories.PlageFactory(agent=self.agent, lieu=self.lieu, motifs=[self.motif],
                                            first_day=date.today() - timedelta(days=7))
        self.usager = factories.UsagerFactory(territory=self.organisation.territory, organisations=[self.organisation])
        self.row, self.token = tokens.create(self.agent, "Logiciel du centre")
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def booking(self, hour: int = 10, **changes) -> dict:
        return {"motif_id": self.motif.id, "agent_ids": [self.agent.id], "usager_ids": [self.usager.id],
                "lieu_id": self.lieu.id, "starts_at": at(next_monday(), hour)} | changes


@pytest.fixture()
def clinic(factories):
    return Clinic(factories)


# --- Tokens -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer lap_inconnu", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000])
def test_a_request_without_a_valid_token_is_refused_with_401_in_french(client, clinic, header):
    response = client.get(f"{PREFIX}/rdvs", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized" and "Jeton" in response.json["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_or_a_deactivated_agent_gets_401(client, clinic, factories):
    assert client.get(f"{PREFIX}/rdvs", headers=clinic.headers).status_code == 200
    tokens.revoke(clinic.row.prefix)
    assert client.get(f"{PREFIX}/rdvs", headers=clinic.headers).status_code == 401

    other = Clinic(factories)
    other.agent.active = False
    db.session.commit()
    assert client.get(f"{PREFIX}/rdvs", headers=other.headers).status_code == 401


def test_the_token_is_kept_as_its_hash_only_and_its_use_is_dated(client, clinic):
    row = db.session.get(ApiToken, clinic.row.id)
    assert clinic.token not in (row.token_hash, row.prefix) and row.token_hash == tokens.hash_token(clinic.token)
    assert clinic.token.startswith(row.prefix) and row.last_used_at is None
    client.get(f"{PREFIX}/motifs", headers=clinic.headers)
    db.session.expire_all()
    assert db.session.get(ApiToken, clinic.row.id).last_used_at is not None


def test_the_cli_creates_a_token_shown_once_and_revokes_it_by_prefix(app, clinic, client):
    created = app.test_cli_runner().invoke(args=["api-token", "create", clinic.agent.email, "Export nocturne"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith("lap_")
    assert client.get(f"{PREFIX}/agents", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    revoked = app.test_cli_runner().invoke(args=["api-token", "revoke", token[:tokens.PREFIX_LENGTH]])
    assert revoked.exit_code == 0 and "révoqué" in revoked.output
    assert client.get(f"{PREFIX}/agents", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    unknown = app.test_cli_runner().invoke(args=["api-token", "create", "personne@example.fr", "x"])
    assert unknown.exit_code != 0 and "Aucun agent" in unknown.output


# --- Rdvs ---------------------------------------------------------------------------------------------------------


def test_an_agent_books_reads_moves_and_cancels_an_rdv_through_the_api(client, clinic):
    created = client.post(f"{PREFIX}/rdvs", json=clinic.booking(notes="Première pesée"), headers=clinic.headers)
    assert created.status_code == 201, created.json
    rdv = created.json
    assert rdv["starts_at"] == at(next_monday(), 10) and rdv["starts_at"].endswith("Z")
    assert rdv["starts_at_local"].startswith(f"{next_monday().isoformat()}T10:00:00+0")
    assert rdv["timezone"] == "Europe/Paris" and rdv["duration_minutes"] == 30 and rdv["booked_via"] == "api"
    assert db.session.get(Rdv, rdv["id"]).booked_via == BookingChannel.API

    read = client.get(f"{PREFIX}/rdvs/{rdv['id']}", headers=clinic.headers)
    assert read.status_code == 200 and read.json["usager_ids"] == [clinic.usager.id]

    moved = client.patch(f"{PREFIX}/rdvs/{rdv['id']}", json={"starts_at": at(next_monday(), 11)}, headers=clinic.headers)
    assert moved.status_code == 200, moved.json
    assert moved.json["starts_at"] == at(next_monday(), 11) and moved.json["duration_minutes"] == 30

    cancelled = client.post(f"{PREFIX}/rdvs/{rdv['id']}/cancel", json={"status": "revoked", "reason": "Grève"},
                            headers=clinic.headers)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "revoked"
    assert cancelled.json["cancelled_via"] == "api"
    stored = db.session.get(Rdv, rdv["id"])
    db.session.refresh(stored)
    assert stored.cancelled_via == CancellationChannel.API and stored.cancelled_by_id == clinic.agent.id
    again = client.post(f"{PREFIX}/rdvs/{rdv['id']}/cancel", json={"status": "revoked"}, headers=clinic.headers)
    assert again.status_code == 409 and again.json["message"] == "Ce rendez-vous est déjà annulé."
    # The audit trail names the agent and the API as the channel.
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "rdv",
                                                         AuditEvent.object_id == rdv["id"])).all()
    assert events and all(event.agent_id == clinic.agent.id for event in events)
    assert {event.via.value for event in events if event.via} == {"api"}


def test_a_patch_with_the_revision_read_applies_once_and_a_stale_one_changes_nothing(client, clinic):
    rdv = client.post(f"{PREFIX}/rdvs", json=clinic.booking(), headers=clinic.headers).json
    moved = client.patch(f"{PREFIX}/rdvs/{rdv['id']}", json={"starts_at": at(next_monday(), 11),
                                                             "revision": rdv["revision"]}, headers=clinic.headers)
    assert moved.status_code == 200 and moved.json["revision"] == rdv["revision"] + 1
    stale = client.patch(f"{PREFIX}/rdvs/{rdv['id']}", json={"starts_at": at(next_monday(), 14),
                                                             "revision": rdv["revision"]}, headers=clinic.headers)
    assert stale.status_code == 409 and "a changé entre-temps" in stale.json["message"]
    assert client.get(f"{PREFIX}/rdvs/{rdv['id']}", headers=clinic.headers).json["starts_at"] == at(next_monday(), 11)


def test_an_agent_says_through_the_api_whether_the_family_came(client, clinic):
    rdv_id = client.post(f"{PREFIX}/rdvs", json=clinic.booking(), headers=clinic.headers).json["id"]
    outcome = f"{PREFIX}/rdvs/{rdv_id}/outcome"
    early = client.post(outcome, json={"status": "seen"}, headers=clinic.headers)
    assert early.status_code == 409 and "n'a pas encore commencé" in early.json["message"]
    wrong = client.post(outcome, json={"status": "excused"}, headers=clinic.headers)
    assert wrong.status_code == 422 and "status" in wrong.json["fields"]

    with time_machine.travel(datetime.combine(next_monday(), time(12), PARIS), tick=False):
        for status in ("noshow", "seen"):
            answered = client.post(outcome, json={"status": status}, headers=clinic.headers)
            assert answered.status_code == 200 and answered.json["status"] == status
        assert client.get(f"{PREFIX}/rdvs/{rdv_id}", headers=clinic.headers).json["status"] == "seen"
        # A cancellation made by mistake: back to « à renseigner », its slot booked again.
        client.post(f"{PREFIX}/rdvs/{rdv_id}/cancel", json={"status": "revoked"}, headers=clinic.headers)
        restored = client.post(outcome, json={"status": "unknown"}, headers=clinic.headers)
        assert restored.status_code == 200 and restored.json["status"] == "unknown"
        assert restored.json["cancelled_via"] is None
    db.session.expire_all()
    assert db.session.get(Rdv, rdv_id).status == RdvStatus.UNKNOWN


def test_a_booking_over_another_rdv_is_refused_with_409_in_french_and_nothing_stored(client, clinic):
    assert client.post(f"{PREFIX}/rdvs", json=clinic.booking(), headers=clinic.headers).status_code == 201
    refused = client.post(f"{PREFIX}/rdvs", json=clinic.booking(starts_at=at(next_monday(), 10, 15)),
                          headers=clinic.headers)
    assert refused.status_code == 409
    assert "a déjà un rendez-vous de 10h00 à 10h30" in refused.json["message"]
    outside = client.post(f"{PREFIX}/rdvs", json=clinic.booking(hour=15), headers=clinic.headers)
    assert outside.status_code == 409 and "en dehors des plages d'ouverture" in outside.json["message"]
    assert db.session.scalar(select(func.count(Rdv.id))) == 1


@pytest.fixture()
def live_api(database_url):
    """A real threaded server on 127.0.0.1 with one puéricultrice, her plage, families and one token per secretary."""
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
    with app.app_context():
        clinic = Clinic(factories)
        secretaries = [factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.SECRETARY)
                       for _ in range(CLIENTS)]
        families = [factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation])
                    for _ in range(CLIENTS)]
        requests_ = [(tokens.create(secretary, "Logiciel")[1], clinic.booking(usager_ids=[family.id]))
                     for secretary, family in zip(secretaries, families)]
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}", requests_
    server.shutdown()
    with app.app_context():
        db.engine.dispose()


def test_simultaneous_api_bookings_of_one_slot_create_exactly_one_rdv(live_api):
    app, base, bookings = live_api
    start = threading.Barrier(len(bookings))

    def book(booking):
        token, body = booking
        start.wait()
        return requests.post(f"{base}{PREFIX}/rdvs", json=body, headers={"Authorization": f"Bearer {token}"},
                             timeout=60)

    with ThreadPoolExecutor(len(bookings)) as pool:
        responses = list(pool.map(book, bookings))
    assert sorted(response.status_code for response in responses) == [201] + [409] * (len(bookings) - 1)
    assert all("a déjà un rendez-vous de 10h00 à 10h30" in response.json()["message"]
               for response in responses if response.status_code == 409)
    with app.app_context():
        assert db.session.scalar(select(func.count(Rdv.id))) == 1


def test_rdvs_are_listed_with_filters_and_pages(client, clinic, factories):
    for hour in (9, 10, 11):
        assert client.post(f"{PREFIX}/rdvs", json=clinic.booking(hour=hour), headers=clinic.headers).status_code == 201
    Clinic(factories)  # another organisation's agent books nothing we could see
    listed = client.get(f"{PREFIX}/rdvs", query_string={"per_page": 2, "agent_id": clinic.agent.id},
                        headers=clinic.headers).json
    assert listed["total"] == 3 and len(listed["items"]) == 2 and listed["page"] == 1
    assert [item["starts_at"] for item in listed["items"]] == [at(next_monday(), 9), at(next_monday(), 10)]
    after = client.get(f"{PREFIX}/rdvs", query_string={"starts_after": at(next_monday(), 10), "status": "unknown"},
                       headers=clinic.headers).json
    assert after["total"] == 2
    bad = client.get(f"{PREFIX}/rdvs", query_string={"starts_after": "demain", "per_page": "1000"},
                     headers=clinic.headers)
    assert bad.status_code == 422 and set(bad.json["fields"]) == {"starts_after", "per_page"}
    assert "ISO 8601" in bad.json["fields"]["starts_after"]


@pytest.mark.parametrize("body, field", [
    ({"starts_at": "2026-01-05T09:30:00"}, "starts_at"),  # no time zone
    ({"starts_at": "lundi"}, "starts_at"),
    ({"starts_at": "1899-01-05T09:30:00Z"}, "starts_at"),
    ({"agent_ids": []}, "agent_ids"),
    ({"agent_ids": ["un"]}, "agent_ids"),
    ({"motif_id": True}, "motif_id"),
    ({"notes": "x" * 2001}, "notes"),
    ({"duration_minutes": 100000}, "duration_minutes"),
    ({"usager_ids": [2**31]}, "usager_ids"),
    ({"surprise": 1}, "surprise"),
])
def test_a_bad_value_gets_422_with_a_french_message_on_its_field(client, clinic, body, field):
    response = client.post(f"{PREFIX}/rdvs", json=clinic.booking(**body), headers=clinic.headers)
    assert response.status_code == 422, response.json
    assert field in response.json["fields"] and response.json["error"] == "invalid"
    assert db.session.scalar(select(func.count(Rdv.id))) == 0


def test_unreadable_or_oversized_bodies_get_400_or_413(client, clinic):
    broken = client.post(f"{PREFIX}/rdvs", data="{pas du json", headers=clinic.headers | {"Content-Type": "application/json"})
    assert broken.status_code == 400 and "JSON" in broken.json["message"]
    huge = client.post(f"{PREFIX}/rdvs", json=clinic.booking(notes="x" * 100_000), headers=clinic.headers)
    assert huge.status_code == 413
    not_object = client.post(f"{PREFIX}/rdvs", json=[1, 2], headers=clinic.headers)
    assert not_object.status_code == 422


def test_ids_of_another_organisation_or_territory_are_not_found(client, clinic, factories):
    neighbour = Clinic(factories, territory=clinic.organisation.territory)
    stranger = Clinic(factories)
    for other in (neighbour, stranger):
        rdv = client.post(f"{PREFIX}/rdvs", json=other.booking(), headers=other.headers).json
        assert client.get(f"{PREFIX}/rdvs/{rdv['id']}", headers=clinic.headers).status_code == 404
        assert client.patch(f"{PREFIX}/rdvs/{rdv['id']}", json={"notes": "x"}, headers=clinic.headers).status_code == 404
        assert client.post(f"{PREFIX}/rdvs/{rdv['id']}/cancel", json={"status": "revoked"},
                           headers=clinic.headers).status_code == 404
        assert client.get(f"{PREFIX}/usagers/{other.usager.id}", headers=clinic.headers).status_code == 404
        assert client.delete(f"{PREFIX}/plages/{other.plage.id}", headers=clinic.headers).status_code == 404
        # Their motif or family in a booking body: refused on the field, as the agenda's form does.
        refused = client.post(f"{PREFIX}/rdvs", json=clinic.booking(motif_id=other.motif.id), headers=clinic.headers)
        assert refused.status_code == 422 and "Motif inconnu" in refused.json["fields"]["motif_id"]
        listed = client.get(f"{PREFIX}/rdvs", query_string={"agent_id": other.agent.id}, headers=clinic.headers).json
        assert listed["total"] == 0
    assert client.get(f"{PREFIX}/rdvs/abc", headers=clinic.headers).status_code == 404
    assert client.get(f"{PREFIX}/rdvs/99999999999999999999", headers=clinic.headers).status_code == 404



def _rdv_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(Rdv.id)))


@pytest.mark.parametrize("what", ["agent of the other organisation", "deactivated agent", "lieu of the other organisation",
                                  "usager of the other territory"])
def test_an_agent_working_in_two_organisations_cannot_mix_them_in_one_booking(client, clinic, factories, what):
    """The API lets through every id the caller may see; an agent working in two organisations (or territories)
    sees both, so booking's own integrity guards are what refuses to mix them: 409, nothing stored."""
    neighbour = Clinic(factories, territory=clinic.organisation.territory)
    stranger = Clinic(factories)
    for other in (neighbour, stranger):
        clinic.agent.roles.append(AgentRole(organisation=other.organisation, role=Role.AGENT))
    deactivated = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    deactivated.active = False
    db.session.commit()
    body, message = {
        "agent of the other organisation": ({"agent_ids": [neighbour.agent.id]},
                                            "Un des agents choisis ne travaille pas dans l'organisation de ce motif."),
        "deactivated agent": ({"agent_ids": [deactivated.id]},
                              "Un des agents choisis ne travaille pas dans l'organisation de ce motif."),
        "lieu of the other organisation": ({"lieu_id": neighbour.lieu.id},
                                           "Ce lieu n'appartient pas à l'organisation de ce motif."),
        "usager of the other territory": ({"usager_ids": [stranger.usager.id]},
                                          "Un des usagers choisis n'appartient pas à ce territoire."),
    }[what]

    refused = client.post(f"{PREFIX}/rdvs", json=clinic.booking(**body), headers=clinic.headers)

    assert refused.status_code == 409, refused.json
    assert refused.json["message"] == message and refused.json["can_force"] is False
    assert _rdv_count() == 0
    if what == "usager of the other territory":
        return  # a move has a check of its own for usagers (422 on the field), tested below
    booked = client.post(f"{PREFIX}/rdvs", json=clinic.booking(), headers=clinic.headers)
    assert booked.status_code == 201, booked.json
    moved = client.patch(f"{PREFIX}/rdvs/{booked.json['id']}", json=body, headers=clinic.headers)
    assert moved.status_code == 409 and moved.json["message"] == message
    db.session.expire_all()
    rdv = db.session.get(Rdv, booked.json["id"])
    assert [agent.id for agent in rdv.agents] == [clinic.agent.id] and rdv.lieu_id == clinic.lieu.id


def test_moving_an_rdv_to_a_family_of_another_territory_is_refused_on_the_field(client, clinic, factories):
    stranger = Clinic(factories)
    clinic.agent.roles.append(AgentRole(organisation=stranger.organisation, role=Role.AGENT))
    db.session.commit()
    booked = client.post(f"{PREFIX}/rdvs", json=clinic.booking(), headers=clinic.headers).json
    moved = client.patch(f"{PREFIX}/rdvs/{booked['id']}", json={"usager_ids": [stranger.usager.id]},
                         headers=clinic.headers)
    assert moved.status_code == 422
    assert moved.json["fields"]["usager_ids"] == "Un des usagers choisis n'appartient pas à ce territoire."
    db.session.expire_all()
    assert [usager.id for usager in db.session.get(Rdv, booked["id"]).usagers] == [clinic.usager.id]


def test_restoring_through_the_api_over_an_rdv_booked_meanwhile_is_refused_with_409(client, clinic, factories):
    first = client.post(f"{PREFIX}/rdvs", json=clinic.booking(), headers=clinic.headers).json
    client.post(f"{PREFIX}/rdvs/{first['id']}/cancel", json={"status": "excused"}, headers=clinic.headers)
    other = factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation])
    taken = client.post(f"{PREFIX}/rdvs", json=clinic.booking(usager_ids=[other.id]), headers=clinic.headers)
    assert taken.status_code == 201

    restored = client.post(f"{PREFIX}/rdvs/{first['id']}/outcome", json={"status": "unknown"}, headers=clinic.headers)

    assert restored.status_code == 409
    assert restored.json["message"].startswith("Impossible de rétablir ce rendez-vous : ")
    assert client.get(f"{PREFIX}/rdvs/{first['id']}", headers=clinic.headers).json["status"] == "excused"

def test_free_slots_are_searched_from_a_day(client, clinic):
    response = client.get(f"{PREFIX}/slots", query_string={"motif_id": clinic.motif.id, "from": next_monday().isoformat(),
                                                          "limit": 3}, headers=clinic.headers)
    assert response.status_code == 200, response.json
    slots = response.json["items"]
    assert [slot["starts_at"] for slot in slots] == [at(next_monday(), 9), at(next_monday(), 9, 30),
                                                     at(next_monday(), 10)]
    assert slots[0]["agent_id"] == clinic.agent.id and slots[0]["starts_at_local"].endswith(("+01:00", "+02:00"))
    # The first slot booked through the API is no longer offered.
    client.post(f"{PREFIX}/rdvs", json=clinic.booking(starts_at=slots[0]["starts_at"]), headers=clinic.headers)
    again = client.get(f"{PREFIX}/slots", query_string={"motif_id": clinic.motif.id, "from": next_monday().isoformat(),
                                                       "limit": 1}, headers=clinic.headers).json["items"]
    assert again[0]["starts_at"] == at(next_monday(), 9, 30)
    missing = client.get(f"{PREFIX}/slots", headers=clinic.headers)
    assert missing.status_code == 422 and "motif_id" in missing.json["fields"]


# --- Usagers and referentials -------------------------------------------------------------------------------------


def test_usagers_are_created_searched_read_and_changed_with_the_forms_rules(client, clinic):
    created = client.post(f"{PREFIX}/usagers", json={"first_name": "Lina", "last_name": "Bernard",
                                                     "phone": "06 11 22 33 44", "sms_consent": True,
                                                     "birth_date": "2025-03-01"}, headers=clinic.headers)
    assert created.status_code == 201, created.json
    usager = created.json
    assert usager["phone"] == "+33611223344" and usager["sms_consent"] is True
    assert usager["organisation_ids"] == [clinic.organisation.id]
    found = client.get(f"{PREFIX}/usagers", query_string={"q": "bern"}, headers=clinic.headers).json
    assert [item["id"] for item in found["items"]] == [usager["id"]]
    changed = client.patch(f"{PREFIX}/usagers/{usager['id']}", json={"email": "lina@example.fr"}, headers=clinic.headers)
    assert changed.status_code == 200 and changed.json["email"] == "lina@example.fr"
    assert changed.json["phone"] == "+33611223344"
    refused = client.patch(f"{PREFIX}/usagers/{usager['id']}", json={"phone": "01 40 00 00 00", "email": "pas-un-mail"},
                           headers=clinic.headers)
    assert refused.status_code == 422
    assert "mobile" in refused.json["fields"]["phone"] and "invalide" in refused.json["fields"]["email"]
    assert db.session.get(Usager, usager["id"]).email == "lina@example.fr"
    hostile = client.post(f"{PREFIX}/usagers", json={"first_name": "<script>", "last_name": "x\x00y"},
                          headers=clinic.headers)
    assert hostile.status_code == 422 and "last_name" in hostile.json["fields"]
    blank = client.post(f"{PREFIX}/usagers", json={"first_name": "  ", "last_name": "Dupont"}, headers=clinic.headers)
    assert blank.status_code == 422 and blank.json["fields"]["first_name"] == "Saisissez le prénom."


def test_motifs_lieux_and_agents_list_only_the_agents_organisations(client, clinic, factories):
    Clinic(factories, territory=clinic.organisation.territory)
    for resource, expected in (("motifs", clinic.motif.id), ("lieux", clinic.lieu.id), ("agents", clinic.agent.id)):
        listed = client.get(f"{PREFIX}/{resource}", headers=clinic.headers)
        assert listed.status_code == 200
        assert [item["id"] for item in listed.json["items"]] == [expected], resource


# --- Plages and absences ------------------------------------------------------------------------------------------


def plage_body(clinic, agent_id: int, **changes) -> dict:
    return {"agent_id": agent_id, "title": "Consultations du soir", "lieu_id": clinic.lieu.id,
            "motif_ids": [clinic.motif.id], "first_day": next_monday().isoformat(), "start_time": "14:00",
            "end_time": "17:00", "weekdays": [0, 2]} | changes


def test_an_agent_manages_its_own_plages_and_absences(client, clinic):
    created = client.post(f"{PREFIX}/plages", json=plage_body(clinic, clinic.agent.id), headers=clinic.headers)
    assert created.status_code == 201, created.json
    assert created.json["weekdays"] == [0, 2] and created.json["start_time"] == "14:00"
    overlapping = client.post(f"{PREFIX}/plages", json=plage_body(clinic, clinic.agent.id, start_time="11:00"),
                              headers=clinic.headers)
    assert overlapping.status_code == 409 and "chevauche" in overlapping.json["message"]
    backwards = client.post(f"{PREFIX}/plages", json=plage_body(clinic, clinic.agent.id, end_time="13:00"),
                            headers=clinic.headers)
    assert backwards.status_code == 422 and "après l'heure de début" in backwards.json["fields"]["end_time"]
    listed = client.get(f"{PREFIX}/plages", query_string={"agent_id": clinic.agent.id}, headers=clinic.headers).json
    assert listed["total"] == 2
    assert client.delete(f"{PREFIX}/plages/{created.json['id']}", headers=clinic.headers).status_code == 204
    assert db.session.get(PlageOuverture, created.json["id"]) is None

    absence = client.post(f"{PREFIX}/absences", json={"agent_id": clinic.agent.id, "title": "Formation",
                                                      "first_day": next_monday().isoformat(), "start_time": "09:00",
                                                      "end_time": "12:00"}, headers=clinic.headers)
    assert absence.status_code == 201, absence.json
    assert absence.json["weekdays"] == [] and absence.json["last_day"] == next_monday().isoformat()
    slots = client.get(f"{PREFIX}/slots", query_string={"motif_id": clinic.motif.id, "from": next_monday().isoformat(),
                                                       "limit": 1}, headers=clinic.headers).json["items"]
    assert slots[0]["starts_at"] > at(next_monday(), 12)  # the absent morning is not offered
    assert client.get(f"{PREFIX}/absences", headers=clinic.headers).json["total"] == 1
    assert client.delete(f"{PREFIX}/absences/{absence.json['id']}", headers=clinic.headers).status_code == 204
    assert db.session.get(Absence, absence.json["id"]) is None


def test_an_agent_changes_a_plage_and_an_absence_with_the_agendas_rules(client, clinic, factories):
    """Only the fields sent change; the agenda's checks hold: no overlap, times in order, a colleague's is not one's."""
    plage = client.post(f"{PREFIX}/plages", json=plage_body(clinic, clinic.agent.id), headers=clinic.headers).json
    later = client.patch(f"{PREFIX}/plages/{plage['id']}", json={"start_time": "15:00", "weekdays": [0, 2, 4]},
                         headers=clinic.headers)
    assert later.status_code == 200, later.json
    assert (later.json["start_time"], later.json["end_time"], later.json["weekdays"]) == ("15:00", "17:00", [0, 2, 4])
    assert later.json["title"] == "Consultations du soir" and later.json["motif_ids"] == [clinic.motif.id]
    stored = db.session.get(PlageOuverture, plage["id"])
    db.session.refresh(stored)
    assert stored.start_time.strftime("%H:%M") == "15:00"

    # Into the clinic's mornings (Monday to Friday 9h-12h): refused, and nothing is stored.
    overlapping = client.patch(f"{PREFIX}/plages/{plage['id']}", json={"start_time": "11:00"}, headers=clinic.headers)
    assert overlapping.status_code == 409 and "chevauche" in overlapping.json["message"]
    backwards = client.patch(f"{PREFIX}/plages/{plage['id']}", json={"end_time": "14:30"}, headers=clinic.headers)
    assert backwards.status_code == 422 and "après l'heure de début" in backwards.json["fields"]["end_time"]
    db.session.refresh(stored)
    assert (stored.start_time.strftime("%H:%M"), stored.end_time.strftime("%H:%M")) == ("15:00", "17:00")

    absence = client.post(f"{PREFIX}/absences", json={"agent_id": clinic.agent.id, "title": "Formation",
                                                      "first_day": next_monday().isoformat(), "start_time": "09:00",
                                                      "end_time": "12:00"}, headers=clinic.headers).json
    weekly = client.patch(f"{PREFIX}/absences/{absence['id']}",
                          json={"title": "Temps partiel", "weekdays": [2], "last_day": None}, headers=clinic.headers)
    assert weekly.status_code == 200, weekly.json
    assert (weekly.json["title"], weekly.json["weekdays"], weekly.json["last_day"]) == ("Temps partiel", [2], None)
    assert weekly.json["first_day"] == next_monday().isoformat() and weekly.json["start_time"] == "09:00"

    colleague = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    theirs = factories.PlageFactory(agent=colleague, lieu=clinic.lieu, motifs=[clinic.motif])
    refused = client.patch(f"{PREFIX}/plages/{theirs.id}", json={"title": "À moi"}, headers=clinic.headers)
    assert refused.status_code == 403
    unknown = client.patch(f"{PREFIX}/plages/999999", json={"title": "Rien"}, headers=clinic.headers)
    assert unknown.status_code == 404


def test_an_agent_cannot_manage_a_colleagues_plages_but_a_secretary_can(client, clinic, factories):
    colleague = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    plage = factories.PlageFactory(agent=colleague, lieu=clinic.lieu, motifs=[clinic.motif])
    assert client.post(f"{PREFIX}/plages", json=plage_body(clinic, colleague.id), headers=clinic.headers).status_code == 403
    assert client.delete(f"{PREFIX}/plages/{plage.id}", headers=clinic.headers).status_code == 403
    assert client.post(f"{PREFIX}/absences", json={"agent_id": colleague.id, "title": "Congés",
                                                   "first_day": next_monday().isoformat(), "start_time": "09:00",
                                                   "end_time": "12:00"}, headers=clinic.headers).status_code == 403
    assert db.session.get(PlageOuverture, plage.id) is not None

    secretary = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.SECRETARY)
    _, token = tokens.create(secretary, "Secrétariat")
    response = client.delete(f"{PREFIX}/plages/{plage.id}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 204


# --- The document -------------------------------------------------------------------------------------------------


def test_the_openapi_document_lists_exactly_the_api_routes(app, client):
    served = client.get(f"{PREFIX}/openapi.json")
    assert served.status_code == 200 and served.json["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, operations in served.json["paths"].items() for method in operations}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint not in PUBLIC_API_ENDPOINTS:
            path = rule.rule.replace("<", "{").replace(">", "}")
            routed |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == routed
    assert served.json == document()


def test_the_docs_page_shows_every_operation_with_a_curl_example(client):
    page = client.get(f"{PREFIX}/docs")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for path, operations in document()["paths"].items():
        for method in operations:
            assert f"{method.upper()}</span>\n      <code>{path}</code>" in text
    assert "curl -X POST" in text and "Authorization: Bearer" in text
    assert "https://" not in text.split("<body")[0].replace("https://lapins.example.fr", "")  # nothing from a CDN


def test_a_signed_in_session_without_a_token_does_not_open_the_api(client, auth, clinic):
    assert auth.login(clinic.agent).status_code == 302
    assert client.get(f"{PREFIX}/rdvs").status_code == 401
    assert client.post(f"{PREFIX}/rdvs", json=clinic.booking()).status_code == 401
    assert db.session.scalar(select(func.count(Rdv.id))) == 0
