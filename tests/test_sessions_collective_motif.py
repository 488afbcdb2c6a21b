"""A collective motif never yields one family's rdv, whichever way is tried: the API's `POST /rdvs` and `PATCH /rdvs`
answer 422 `collective_motif` with nothing stored and no event (no message, audit row or webhook), booking refuses
it on every channel, the agenda's booking form, slot search and waiting-list form do not offer it, and the online and
waiting-list paths refuse it. A session keeps its collective motif in turn."""
from __future__ import annotations

import html
from datetime import time, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.api.openapi import PREFIX
from lapins.booking import BookingError, CollectiveMotif, book_rdv, cancel_rdv, move_rdv
from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.models import AuditEvent, Message, Motif, Rdv, RdvStatus, Role, WaitlistEntry
from lapins.models.rdvs import BookingChannel
from lapins.models.webhooks import Webhook, WebhookDelivery
from lapins.public import online
from lapins.waitlist import entries as waitlist_entries
from tests.conftest import csrf_token_from
from tests.test_api_sessions import NOW, PARIS, Pmi, tuesday, z

REFUSAL = "Ce motif est collectif : créez une séance ou inscrivez la famille à une séance."


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def pmi(factories):
    pmi = Pmi(factories)
    # Its agent opens Tuesdays to both motifs: the refusal is not a closed agenda's.
    factories.PlageFactory(agent=pmi.agent, lieu=pmi.lieu, motifs=[pmi.motif, pmi.individual],
                           first_day=NOW.date(), end_time=time(18))
    db.session.add(Webhook(organisation_id=pmi.organisation.id, url="http://127.0.0.1:9/hook",
                           secret_encrypted=crypto.encrypt("s")))
    db.session.commit()
    return pmi


def traces() -> tuple[int, int, int, int]:
    """What a booking leaves: rdvs, messages, audit rows, webhook deliveries."""
    db.session.expire_all()
    return tuple(db.session.scalar(select(func.count()).select_from(model))
                 for model in (Rdv, Message, AuditEvent, WebhookDelivery))


def test_post_rdvs_with_a_collective_motif_is_a_422_naming_it_and_leaves_nothing(client, pmi):
    before = traces()
    response = client.post(f"{PREFIX}/rdvs", headers=pmi.headers, json={
        "motif_id": pmi.motif.id, "agent_ids": [pmi.agent.id], "usager_ids": pmi.family(0), "lieu_id": pmi.lieu.id,
        "starts_at": z(tuesday())})
    assert response.status_code == 422
    assert response.json["error"] == "collective_motif"
    assert response.json["message"] == REFUSAL and response.json["fields"] == {"motif_id": REFUSAL}
    assert traces() == before
    # The same request with the individual motif passes: the refusal is the motif's, nothing else.
    response = client.post(f"{PREFIX}/rdvs", headers=pmi.headers, json={
        "motif_id": pmi.individual.id, "agent_ids": [pmi.agent.id], "usager_ids": pmi.family(0),
        "lieu_id": pmi.lieu.id, "starts_at": z(tuesday())})
    assert response.status_code == 201, response.json


def test_patch_cannot_turn_an_rdv_into_a_collective_one_nor_a_session_into_an_individual_one(client, pmi):
    rdv = book_rdv(actor=pmi.agent, motif=pmi.individual, agents=[pmi.agent], usagers=[pmi.families[0][0]],
                   lieu=pmi.lieu, starts_at=tuesday(hour=14))
    session = pmi.session()
    before = traces()
    response = client.patch(f"{PREFIX}/rdvs/{rdv.id}", headers=pmi.headers, json={"motif_id": pmi.motif.id})
    assert (response.status_code, response.json["error"]) == (422, "collective_motif")
    response = client.patch(f"{PREFIX}/rdvs/{session.id}", headers=pmi.headers, json={"motif_id": pmi.individual.id})
    assert (response.status_code, response.json["error"]) == (422, "collective_motif")
    assert "garde un motif collectif" in response.json["message"]
    response = client.patch(f"{PREFIX}/rdvs/{session.id}", headers=pmi.headers, json={"usager_ids": pmi.family(1)})
    assert response.status_code == 422 and "n'a pas d'usagers" in response.json["fields"]["usager_ids"]
    assert traces() == before
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).motif_id == pmi.individual.id
    assert db.session.get(Rdv, session.id).motif_id == pmi.motif.id


def test_the_slot_search_of_the_api_sends_a_collective_motif_to_its_sessions(client, pmi):
    response = client.get(f"{PREFIX}/slots", headers=pmi.headers, query_string={"motif_id": pmi.motif.id})
    assert (response.status_code, response.json["error"]) == (422, "collective_motif")
    assert client.get(f"{PREFIX}/slots", headers=pmi.headers,
                      query_string={"motif_id": pmi.individual.id}).json["items"]


@pytest.mark.parametrize("via", [BookingChannel.AGENDA, BookingChannel.API, BookingChannel.ONLINE,
                                 BookingChannel.OFFER])
def test_booking_refuses_a_collective_motif_on_every_channel(pmi, via):
    actor = None if via in (BookingChannel.ONLINE, BookingChannel.OFFER) else pmi.agent
    before = traces()
    with pytest.raises(CollectiveMotif, match="Ce motif est collectif"):
        book_rdv(actor=actor, motif=pmi.motif, agents=[pmi.agent], usagers=list(pmi.families[0]), lieu=pmi.lieu,
                 starts_at=tuesday(), via=via)
    assert traces() == before


def test_an_rdv_moved_onto_a_collective_motif_is_refused_and_stays_as_it_was(pmi):
    rdv = book_rdv(actor=pmi.agent, motif=pmi.individual, agents=[pmi.agent], usagers=[pmi.families[0][0]],
                   lieu=pmi.lieu, starts_at=tuesday(hour=14))
    with pytest.raises(BookingError, match="Ce motif est collectif"):
        move_rdv(actor=pmi.agent, rdv=rdv, starts_at=tuesday(hour=15), motif=pmi.motif)
    db.session.expire_all()
    rdv = db.session.get(Rdv, rdv.id)
    assert (rdv.motif_id, rdv.starts_at) == (pmi.individual.id, tuesday(hour=14))


def test_the_agendas_forms_never_offer_a_collective_motif_and_refuse_a_hand_made_post(client, auth, pmi):
    auth.login(pmi.agent)
    for url in ("/rdvs/nouveau", "/creneaux", f"/usagers/{pmi.families[0][0].id}"):
        page = client.get(url).get_data(as_text=True)
        assert "Consultation" in page, url
        assert "Atelier massage bébé" not in page, url
    before = traces()
    form = client.get("/rdvs/nouveau").get_data(as_text=True)
    response = client.post("/rdvs/nouveau", data={
        "csrf_token": csrf_token_from(form), "motif_id": pmi.motif.id, "lieu_id": pmi.lieu.id,
        "agent_ids": [pmi.agent.id], "usager_ids": [pmi.families[0][0].id],
        "day": tuesday().astimezone(PARIS).date().isoformat(), "start_time": "10:00"})
    assert response.status_code == 422
    assert REFUSAL in html.unescape(response.get_data(as_text=True))
    assert traces() == before
    # A session's « modifier » of the rdv form leads to the session's own form.
    session = pmi.session()
    assert client.get(f"/rdvs/{session.id}/modifier").headers["Location"].endswith(f"/seances/{session.id}/modifier")


def test_a_collective_motif_has_no_motif_waiting_list(client, auth, pmi):
    parent = pmi.families[0][0]
    with pytest.raises(waitlist_entries.EntryError, match="Ce motif est collectif"):
        waitlist_entries.add_by_agent(pmi.agent, parent, pmi.motif, pmi.lieu, 0)
    with pytest.raises(waitlist_entries.EntryError, match="Ce motif est collectif"):
        waitlist_entries.add_online(parent, pmi.motif, pmi.lieu, NOW)
    auth.login(pmi.agent)
    page = client.get(f"/usagers/{parent.id}").get_data(as_text=True)
    response = client.post(f"/usagers/{parent.id}/file-d-attente", data={
        "csrf_token": csrf_token_from(page), "motif_id": pmi.motif.id, "lieu_id": pmi.lieu.id, "priority": 0})
    assert response.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(WaitlistEntry)) == 0


def test_the_online_booking_of_a_time_never_takes_a_collective_motif(pmi):
    with pytest.raises(online.OnlineError, match="Choisissez un motif dans la liste"):
        online.motif_of(pmi.organisation.territory, pmi.motif.id)
    # Asked as a collective motif, it is refused for another reason (not opened online): its kind passed.
    with pytest.raises(online.OnlineError) as refused:
        online.motif_of(pmi.organisation.territory, pmi.motif.id, collective=True)
    assert "Choisissez un motif dans la liste" not in refused.value.args[0]


def test_an_agent_cannot_force_a_collective_motif_into_an_rdv(pmi):
    with pytest.raises(CollectiveMotif):
        book_rdv(actor=pmi.agent, motif=pmi.motif, agents=[pmi.agent], usagers=[pmi.families[1][0]],
                 lieu=pmi.lieu, starts_at=tuesday() + timedelta(days=1), force=True)


def test_a_motif_with_rdvs_to_come_cannot_become_collective_nor_a_collective_one_individual(client, auth, factories):
    pmi = Pmi(factories, role=Role.ADMIN)
    rdv = book_rdv(actor=pmi.agent, motif=pmi.individual, agents=[pmi.agent], usagers=[pmi.families[0][0]],
                   lieu=pmi.lieu, starts_at=tuesday(hour=14), force=True)
    pmi.session()
    auth.login(pmi.agent)
    fields = {"name": "Consultation", "duration_minutes": "30", "location_type": "on_site", "color": "#18753C",
              "cancellation_limit_hours": "24", "move_limit_hours": "48", "family_moves_max": "1",
              "booking_horizon_weeks": "12", "notify": "y", "active": "y"}
    for motif, collective in ((pmi.individual, {"collective": "y"}), (pmi.motif, {})):
        url = f"/admin/motifs/{motif.id}/modifier"
        response = client.post(url, data={"csrf_token": csrf_token_from(client.get(url).get_data(as_text=True)),
                                          **fields, "name": motif.name, **collective})
        assert response.status_code == 422, motif.name
        assert "ne peut pas changer de nature" in html.unescape(response.get_data(as_text=True))
    db.session.expire_all()
    assert (db.session.get(Motif, pmi.individual.id).collective, db.session.get(Motif, pmi.motif.id).collective) == \
        (False, True)
    # Once its rdvs are cancelled, the motif may change.
    cancel_rdv(actor=pmi.agent, rdv=db.session.get(Rdv, rdv.id), status=RdvStatus.REVOKED, reason=None)
    url = f"/admin/motifs/{pmi.individual.id}/modifier"
    response = client.post(url, data={"csrf_token": csrf_token_from(client.get(url).get_data(as_text=True)),
                                      **fields, "collective": "y"})
    assert response.status_code == 302, html.unescape(response.get_data(as_text=True))
    db.session.expire_all()
    assert db.session.get(Motif, pmi.individual.id).collective is True
