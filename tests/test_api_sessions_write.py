"""Collective sessions created, moved and cancelled through the API v1, and families put on a full session's waiting
list, as another system of the département does them: the agenda's rules (its repeat at the same local time, its
agents' agendas, the capacity's bounds, the organisation's own lieux and agents), the same webhooks and audit rows,
each family told once (one SMS segment) of a new time or of the cancellation, with its reminders planned again."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.api.openapi import PREFIX, document
from lapins.booking import book_rdv, sessions
from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.models import (
    AuditEvent, Message, MessageKind, MessageStatus, Participation, Rdv, RdvStatus, SlotOffer, WaitlistEntry,
)
from lapins.models.webhooks import Webhook, WebhookDelivery
from lapins.notifications import gsm, links, outbox
from tests.test_api_sessions import NOW, Pmi, tuesday, z


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def pmi(factories):
    pmi = Pmi(factories)
    pmi.organisation.territory.reminder_offsets = "48,24"
    db.session.add(Webhook(organisation_id=pmi.organisation.id, url="http://127.0.0.1:9/hook",
                           secret_encrypted=crypto.encrypt("s")))
    db.session.commit()
    return pmi


def count(model, *where) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def create(client, pmi, **fields):
    body = {"motif_id": pmi.motif.id, "agent_ids": [pmi.agent.id], "lieu_id": pmi.lieu.id,
            "starts_at": z(tuesday()), "capacity": 8, "title": "Massage bébé"} | fields
    return client.post(f"{PREFIX}/sessions", json=body, headers=pmi.headers)


def messages(participation_id: int, kind: MessageKind) -> list[Message]:
    db.session.expire_all()
    return list(db.session.scalars(select(Message).where(Message.participation_id == participation_id,
                                                         Message.kind == kind).order_by(Message.due_at)))


# --- Creating -----------------------------------------------------------------------------------------------------


def test_a_repeat_every_two_weeks_keeps_its_local_hour_across_the_change_of_time(client, pmi):
    response = create(client, pmi, count=3, every_n_weeks=2, duration_minutes=60, notes="Apporter une serviette")
    assert response.status_code == 201, response.json
    items = response.json["items"]
    # 3, 17 and 31 March: the last one after the spring change, still 10:00 in Paris.
    assert [item["starts_at_local"] for item in items] == [
        "2026-03-03T10:00:00+01:00", "2026-03-17T10:00:00+01:00", "2026-03-31T10:00:00+02:00"]
    assert [item["starts_at"] for item in items] == [z(tuesday(0)), z(tuesday(2)), z(tuesday(4))]
    first = items[0]
    assert (first["max_participants"], first["places_left"], first["duration_minutes"]) == (8, 8, 60)
    assert (first["title"], first["notes"], first["booked_via"]) == ("Massage bébé", "Apporter une serviette", "api")
    # As the agenda's sessions: one `rdv.created` webhook and one audit row each, the agent's agenda taken.
    ids = [item["id"] for item in items]
    assert count(WebhookDelivery, WebhookDelivery.event == "rdv.created") == 3
    assert count(AuditEvent, AuditEvent.object_type == "rdv", AuditEvent.object_id.in_(ids),
                 AuditEvent.action == "created") == 3
    over = client.post(f"{PREFIX}/rdvs", headers=pmi.headers, json={
        "motif_id": pmi.individual.id, "agent_ids": [pmi.agent.id], "usager_ids": pmi.family(0),
        "lieu_id": pmi.lieu.id, "starts_at": z(tuesday(2) + timedelta(minutes=30))})
    assert over.status_code == 409 and "déjà un rendez-vous" in over.json["message"]


def test_a_busy_agent_refuses_the_whole_repeat_naming_who_and_when_and_stores_nothing(client, pmi):
    busy = book_rdv(actor=pmi.agent, motif=pmi.individual, agents=[pmi.agent], usagers=[pmi.families[0][0]],
                    lieu=pmi.lieu, starts_at=tuesday(1) + timedelta(minutes=30), force=True)
    before = count(Rdv), count(WebhookDelivery), count(AuditEvent)
    response = create(client, pmi, count=3)
    assert response.status_code == 409
    assert "Aucune séance n'a été créée" in response.json["message"]
    assert "le mardi 10 mars 2026 à 10h00" in response.json["message"] and pmi.agent.full_name in \
        response.json["message"]
    assert response.json["busy"] == [{"starts_at": z(tuesday(1)), "agent_id": pmi.agent.id,
                                      "busy_from": z(busy.starts_at), "busy_until": z(busy.ends_at)}]
    assert (count(Rdv), count(WebhookDelivery), count(AuditEvent)) == before


def test_bad_values_are_422_on_their_field_with_nothing_stored(client, pmi, factories):
    neighbour = Pmi(factories, name="PMI Voisine", territory=pmi.organisation.territory)
    cases = [
        ({"capacity": 0}, "capacity"), ({"capacity": 501}, "capacity"), ({"count": 53}, "count"),
        ({"every_n_weeks": 0}, "every_n_weeks"), ({"motif_id": pmi.individual.id}, "motif_id"),
        ({"motif_id": neighbour.motif.id}, "motif_id"), ({"lieu_id": neighbour.lieu.id}, "lieu_id"),
        ({"agent_ids": [neighbour.agent.id]}, "agent_ids"), ({"starts_at": "mardi"}, "starts_at"),
        # 2:30 on 29 March does not exist in Paris: the repeat lands on it.
        ({"starts_at": "2026-03-22T01:30:00Z", "count": 2}, "starts_at"),
    ]
    for fields, field in cases:
        response = create(client, pmi, **fields)
        assert response.status_code == 422, (fields, response.json)
        assert field in response.json["fields"], (fields, response.json)
    assert "pas collectif" in create(client, pmi, motif_id=pmi.individual.id).json["fields"]["motif_id"]
    assert count(Rdv) == 0


# --- Cancelling a whole session ------------------------------------------------------------------------------------


def test_a_cancelled_session_tells_each_registered_family_once_with_the_reason(app, client, pmi):
    session = pmi.session(week=1)
    kept = [sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[i])).id
            for i in (0, 1)]
    gone = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[2]))
    sessions.cancel_participation(actor=pmi.agent, participation=gone)
    assert client.post(f"{PREFIX}/sessions/{session.id}/cancel", json={"reason": "  "},
                       headers=pmi.headers).status_code == 422
    response = client.post(f"{PREFIX}/sessions/{session.id}/cancel", json={"reason": "Animatrice malade"},
                           headers=pmi.headers)
    assert response.status_code == 200, response.json
    assert (response.json["status"], response.json["cancel_reason"], response.json["cancelled_via"]) == \
        ("revoked", "Animatrice malade", "api")
    for participation_id in kept:
        [cancelled] = messages(participation_id, MessageKind.CANCELLED)
        with app.test_request_context():
            text = outbox.compose_sms(cancelled)
        assert "Motif : Animatrice malade." in text and links.place_token(participation_id) in text
        assert gsm.segments(text) == 1, text
        assert {m.status for m in messages(participation_id, MessageKind.REMINDER)} == {MessageStatus.SKIPPED}
    assert messages(gone.id, MessageKind.CANCELLED) == []
    again = client.post(f"{PREFIX}/sessions/{session.id}/cancel", json={"reason": "Encore"}, headers=pmi.headers)
    assert again.status_code == 409 and "déjà annulé" in again.json["message"]
    assert len(messages(kept[0], MessageKind.CANCELLED)) == 1
    assert count(WebhookDelivery, WebhookDelivery.event == "rdv.cancelled") == 1


# --- The waiting list of a full session ----------------------------------------------------------------------------


def test_a_family_joins_a_full_sessions_waiting_list_in_order_and_only_when_full(client, pmi):
    session = pmi.session(capacity=1)
    url = f"{PREFIX}/sessions/{session.id}/waitlist"
    early = client.post(url, json={"usager_id": pmi.families[1][0].id}, headers=pmi.headers)
    assert early.status_code == 409 and "Il reste 1 place" in early.json["message"]
    sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0]))
    first = client.post(url, json={"usager_id": pmi.families[1][0].id}, headers=pmi.headers)
    second = client.post(url, json={"usager_id": pmi.families[2][0].id}, headers=pmi.headers)
    assert (first.status_code, second.status_code) == (201, 201), (first.json, second.json)
    assert (first.json["position"], second.json["position"]) == (1, 2)
    assert first.json["session_id"] == session.id and first.json["status"] == "active"
    twice = client.post(url, json={"usager_id": pmi.families[1][0].id}, headers=pmi.headers)
    assert twice.status_code == 409 and "déjà sur la file d'attente" in twice.json["message"]
    registered = client.post(url, json={"usager_id": pmi.families[0][0].id}, headers=pmi.headers)
    assert registered.status_code == 409 and "déjà inscrit" in registered.json["message"]
    assert count(WaitlistEntry, WaitlistEntry.session_id == session.id) == 2
    listed = client.get(url, headers=pmi.headers).json
    assert [(item["usager_id"], item["position"]) for item in listed["items"]] == [
        (pmi.families[1][0].id, 1), (pmi.families[2][0].id, 2)] and listed["total"] == 2
    second_page = client.get(url, query_string={"per_page": 1, "page": 2}, headers=pmi.headers).json
    assert [(item["usager_id"], item["position"]) for item in second_page["items"]] == [(pmi.families[2][0].id, 2)]
    # The place freed goes to the first of them.
    [place] = db.session.scalars(select(Participation).where(Participation.rdv_id == session.id)).all()
    assert client.post(f"{PREFIX}/participations/{place.id}/cancel", headers=pmi.headers).status_code == 200
    held = client.get(f"{PREFIX}/sessions/{session.id}", headers=pmi.headers).json
    assert (held["places_held"], held["places_left"]) == (1, 0)


def test_a_family_withdrawn_from_a_session_s_waiting_list_is_never_offered_the_freed_place(client, pmi):
    session = pmi.session(capacity=1)
    url = f"{PREFIX}/sessions/{session.id}/waitlist"
    sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0]))
    for family in (pmi.families[1], pmi.families[2]):
        assert client.post(url, json={"usager_id": family[0].id}, headers=pmi.headers).status_code == 201
    left = client.post(f"{url}/withdraw", json={"usager_id": pmi.families[1][0].id}, headers=pmi.headers)
    assert left.status_code == 200, left.json
    assert (left.json["status"], left.json["position"]) == ("withdrawn", None)
    listed = client.get(url, headers=pmi.headers).json
    assert [(item["usager_id"], item["position"]) for item in listed["items"]] == [(pmi.families[2][0].id, 1)]
    again = client.post(f"{url}/withdraw", json={"usager_id": pmi.families[1][0].id}, headers=pmi.headers)
    assert again.status_code == 409 and "n'attend pas de place" in again.json["message"]
    # The place freed goes to the family still waiting.
    [place] = db.session.scalars(select(Participation).where(Participation.rdv_id == session.id)).all()
    assert client.post(f"{PREFIX}/participations/{place.id}/cancel", headers=pmi.headers).status_code == 200
    [offer] = db.session.scalars(select(SlotOffer)).all()
    assert offer.usager_id == pmi.families[2][0].id


# --- Moving a session ----------------------------------------------------------------------------------------------


def test_a_moved_session_tells_each_family_once_and_plans_its_reminders_again(app, client, pmi):
    session = pmi.session(week=1)
    kept = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0])).id
    gone = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[1]))
    sessions.cancel_participation(actor=pmi.agent, participation=gone)
    response = client.patch(f"{PREFIX}/sessions/{session.id}", headers=pmi.headers,
                            json={"starts_at": z(tuesday(1, hour=14)), "duration_minutes": 120})
    assert response.status_code == 200, response.json
    assert (response.json["starts_at_local"], response.json["duration_minutes"]) == \
        ("2026-03-10T14:00:00+01:00", 120)
    [changed] = messages(kept, MessageKind.CHANGED)
    with app.test_request_context():
        text = outbox.compose_sms(changed)
    assert "mar. 10/03 à 14h" in text and links.place_token(kept) in text and gsm.segments(text) == 1, text
    reminders = messages(kept, MessageKind.REMINDER)
    assert {m.status for m in reminders if m.expires_at == tuesday(1)} == {MessageStatus.SKIPPED}
    assert [m for m in reminders if m.expires_at == tuesday(1, hour=14) and m.status == MessageStatus.PENDING]
    assert messages(gone.id, MessageKind.CHANGED) == []
    assert count(WebhookDelivery, WebhookDelivery.event == "rdv.updated") == 1
    # A title only: no family is told again.
    retitled = client.patch(f"{PREFIX}/sessions/{session.id}", json={"title": "Massage et portage"},
                            headers=pmi.headers)
    assert retitled.status_code == 200 and retitled.json["title"] == "Massage et portage"
    assert len(messages(kept, MessageKind.CHANGED)) == 1


def test_a_move_onto_a_busy_agent_or_an_individual_rdv_is_refused_and_nothing_changes(client, pmi):
    session = pmi.session(week=1)
    place = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0])).id
    book_rdv(actor=pmi.agent, motif=pmi.individual, agents=[pmi.agent], usagers=[pmi.families[2][0]],
             lieu=pmi.lieu, starts_at=tuesday(1, hour=15), force=True)
    response = client.patch(f"{PREFIX}/sessions/{session.id}", json={"starts_at": z(tuesday(1, hour=14))},
                            headers=pmi.headers)
    assert response.status_code == 409 and "déjà un rendez-vous de 15h00" in response.json["message"]
    past = client.patch(f"{PREFIX}/sessions/{session.id}", json={"starts_at": z(NOW - timedelta(days=1))},
                        headers=pmi.headers)
    assert past.status_code == 409 and "à venir" in past.json["message"]
    db.session.expire_all()
    assert db.session.get(Rdv, session.id).starts_at == tuesday(1)
    assert messages(place, MessageKind.CHANGED) == []
    individual = db.session.scalar(select(Rdv).where(Rdv.max_participants.is_(None)))
    assert client.patch(f"{PREFIX}/sessions/{individual.id}", json={"title": "x"},
                        headers=pmi.headers).status_code == 404


def test_a_move_sent_with_the_revision_read_is_refused_once_the_session_changed_meanwhile(client, pmi):
    session = pmi.session(week=1)
    place = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0])).id
    read = client.get(f"{PREFIX}/sessions/{session.id}", headers=pmi.headers).json
    first = client.patch(f"{PREFIX}/sessions/{session.id}", headers=pmi.headers,
                         json={"starts_at": z(tuesday(1, hour=14)), "revision": read["revision"]})
    assert first.status_code == 200 and first.json["revision"] == read["revision"] + 1
    # A second client, from the same reading: refused, the first move stands, no family told twice.
    second = client.patch(f"{PREFIX}/sessions/{session.id}", headers=pmi.headers,
                          json={"starts_at": z(tuesday(1, hour=16)), "revision": read["revision"]})
    assert second.status_code == 409 and "a changé entre-temps" in second.json["message"]
    db.session.expire_all()
    assert db.session.get(Rdv, session.id).starts_at == tuesday(1, hour=14)
    assert len(messages(place, MessageKind.CHANGED)) == 1
    bad = client.patch(f"{PREFIX}/sessions/{session.id}", headers=pmi.headers, json={"revision": "deux"})
    assert bad.status_code == 422 and "revision" in bad.json["fields"]


def test_another_organisations_token_cannot_move_cancel_or_wait_in_a_session(client, pmi, factories):
    session = pmi.session(capacity=1)
    sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0]))
    neighbour = Pmi(factories, name="PMI Voisine", territory=pmi.organisation.territory)
    for method, path, body in (
            ("PATCH", f"/sessions/{session.id}", {"title": "Pris"}),
            ("POST", f"/sessions/{session.id}/cancel", {"reason": "Pris"}),
            ("POST", f"/sessions/{session.id}/waitlist", {"usager_id": neighbour.families[0][0].id}),
            ("POST", f"/sessions/{session.id}/waitlist/withdraw", {"usager_id": neighbour.families[0][0].id}),
            ("GET", f"/sessions/{session.id}/waitlist", None)):
        answer = client.open(f"{PREFIX}{path}", method=method, json=body, headers=neighbour.headers)
        assert answer.status_code == 404, (method, path, answer.json)
    db.session.expire_all()
    kept = db.session.get(Rdv, session.id)
    assert (kept.status, kept.title) == (RdvStatus.UNKNOWN, "Massage bébé")
    assert count(WaitlistEntry) == 0


def test_the_document_declares_the_new_operations(client):
    paths = document()["paths"]
    assert "post" in paths[f"{PREFIX}/sessions"] and "patch" in paths[f"{PREFIX}/sessions/{{session_id}}"]
    assert "post" in paths[f"{PREFIX}/sessions/{{session_id}}/cancel"]
    assert {"get", "post"} <= set(paths[f"{PREFIX}/sessions/{{session_id}}/waitlist"])
    assert "post" in paths[f"{PREFIX}/sessions/{{session_id}}/waitlist/withdraw"]
    created = paths[f"{PREFIX}/sessions"]["post"]
    assert set(created["responses"]) >= {"201", "409", "422"}
    body = created["requestBody"]["content"]["application/json"]["schema"]
    assert {"count", "every_n_weeks", "capacity", "title", "notes"} <= set(body["properties"])
    page = client.get(f"{PREFIX}/docs").get_data(as_text=True)
    assert "/sessions/{session_id}/waitlist" in page and "collective_motif" in page
