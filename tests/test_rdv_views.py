"""Agents book, see, edit, cancel and fill in rdvs through the agenda pages."""
from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from lapins.models import Message, MessageKind, Rdv, RdvStatus, Role
from lapins.notifications import links, outbox
from tests.conftest import csrf_token_from

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)  # Monday, 08:00 in Paris


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def clinic(factories):
    organisation = factories.OrganisationFactory()
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=NOW.date(), motifs=[motif])
    usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Awa", last_name="Diallo")
    return type("Clinic", (), dict(organisation=organisation, lieu=lieu, motif=motif, agent=agent, usager=usager))


def rdv_form(client, clinic, **overrides):
    page = client.get(f"/rdvs/nouveau?usager_id={clinic.usager.id}&agent_id={clinic.agent.id}")
    data = {
        "csrf_token": csrf_token_from(page.get_data(as_text=True)),
        "usager_ids": [clinic.usager.id], "motif_id": clinic.motif.id, "lieu_id": clinic.lieu.id,
        "agent_ids": [clinic.agent.id], "day": "2026-03-03", "start_time": "09:30", "duration": "", "notes": "",
    }
    data.update(overrides)
    return data


def test_booking_from_the_form_creates_the_rdv_in_local_time(client, auth, clinic, db):
    auth.login(clinic.agent)
    response = client.post("/rdvs/nouveau", data=rdv_form(client, clinic))
    assert response.status_code == 302
    rdv = db.session.scalar(db.select(Rdv))
    assert rdv.starts_at == datetime(2026, 3, 3, 9, 30, tzinfo=PARIS)
    page = client.get(response.location).get_data(as_text=True)
    assert "mardi 3 mars 2026 à 09h30" in page and "Awa Diallo" in page


def test_the_form_is_prefilled_from_a_calendar_selection(client, auth, clinic):
    auth.login(clinic.agent)
    starts = datetime(2026, 3, 3, 10, 0, tzinfo=PARIS).astimezone(timezone.utc).isoformat()
    page = client.get("/rdvs/nouveau", query_string={"agent_id": clinic.agent.id, "starts_at": starts,
                                                      "motif_id": clinic.motif.id}).get_data(as_text=True)
    assert 'value="2026-03-03"' in page and 'value="10:00"' in page


def test_double_booking_from_the_form_is_refused_and_offers_the_override(client, auth, clinic, db):
    auth.login(clinic.agent)
    client.post("/rdvs/nouveau", data=rdv_form(client, clinic))
    # The same family and motif again: confirmed as a second rdv, the agent's conflict is still refused apart.
    response = client.post("/rdvs/nouveau", data=rdv_form(client, clinic, start_time="09:45", confirm_unusual="y"))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "a déjà un rendez-vous de 09h30 à 10h00" in page and 'name="confirm_unusual" value="y"' in page
    assert "malgré l&#39;alerte" in page or "malgré l'alerte" in page
    assert db.session.query(Rdv).count() == 1
    forced = client.post("/rdvs/nouveau", data=rdv_form(client, clinic, start_time="09:45", force="y",
                                                         confirm_unusual="y"))
    assert forced.status_code == 302 and db.session.query(Rdv).count() == 2


@pytest.mark.parametrize(("field", "value", "message"), [
    ("motif_id", "999999", "Motif inconnu"),
    ("motif_id", "abc", "Motif inconnu"),
    ("lieu_id", "999999", "Lieu inconnu"),
    ("agent_ids", "999999", "Agent inconnu"),
    ("usager_ids", "999999", "Usager inconnu"),
    ("day", "31/02/2026", "Saisissez une date valide"),
    ("start_time", "25:99", "Saisissez une heure valide"),
    ("start_time", "16:00", "en dehors des plages d&#39;ouverture"),
    ("duration", "-5", "entre 5 et 720 minutes"),
    ("duration", "douze", "La durée doit être comprise entre 5 et 720 minutes."),
    ("notes", "x" * 5000, "2 000 caractères au plus"),
])
def test_bad_input_gets_a_french_message_and_stores_nothing(client, auth, clinic, db, field, value, message):
    auth.login(clinic.agent)
    response = client.post("/rdvs/nouveau", data=rdv_form(client, clinic, **{field: value}))
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.query(Rdv).count() == 0


def test_a_skipped_local_time_is_refused(client, auth, clinic, factories, db):
    """29 March 2026: 02:30 does not exist in Paris."""
    auth.login(clinic.agent)
    response = client.post("/rdvs/nouveau", data=rdv_form(client, clinic, day="2026-03-29", start_time="02:30"))
    assert "changement d&#39;heure" in response.get_data(as_text=True)
    assert db.session.query(Rdv).count() == 0


def test_posting_without_csrf_stores_nothing(client, auth, clinic, db):
    auth.login(clinic.agent)
    data = rdv_form(client, clinic)
    del data["csrf_token"]
    assert client.post("/rdvs/nouveau", data=data).status_code == 400
    assert db.session.query(Rdv).count() == 0


def test_cancel_by_the_family_is_recorded_with_reason(client, auth, clinic, factories, db):
    rdv = factories.RdvFactory(motif=clinic.motif, lieu=clinic.lieu, agents=[clinic.agent],
                               starts_at=datetime(2026, 3, 3, 9, 0, tzinfo=PARIS))
    auth.login(clinic.agent)
    page = client.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    response = client.post(f"/rdvs/{rdv.id}/annuler", data={
        "csrf_token": csrf_token_from(page), "status": "excused", "reason": "Enfant malade"})
    assert response.status_code == 302
    db.session.refresh(rdv)
    assert rdv.status == RdvStatus.EXCUSED and rdv.cancel_reason == "Enfant malade"
    assert rdv.cancelled_by_id == clinic.agent.id
    assert "Annulé par l&#39;usager" in client.get(f"/rdvs/{rdv.id}").get_data(as_text=True)


def test_the_agent_must_say_who_cancelled_nothing_is_chosen_for_them(client, auth, clinic, factories, db):
    rdv = factories.RdvFactory(motif=clinic.motif, lieu=clinic.lieu, agents=[clinic.agent],
                               starts_at=datetime(2026, 3, 3, 9, 0, tzinfo=PARIS))
    auth.login(clinic.agent)
    page = client.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    choices = page.split('id="qui-annule"')[1].split("</fieldset>")[0]
    assert 'value="excused" required>' in choices and "checked" not in choices
    response = client.post(f"/rdvs/{rdv.id}/annuler", data={"csrf_token": csrf_token_from(page), "reason": ""})
    assert response.status_code == 302
    db.session.refresh(rdv)
    assert rdv.status == RdvStatus.UNKNOWN and rdv.cancelled_at is None
    assert "Indiquez qui annule le rendez-vous." in client.get(f"/rdvs/{rdv.id}").get_data(as_text=True)


def test_past_unknown_rdvs_are_listed_to_fill_and_leave_the_list_once_marked(client, auth, clinic, factories, db):
    past = factories.RdvFactory(motif=clinic.motif, lieu=clinic.lieu, agents=[clinic.agent],
                                starts_at=datetime(2026, 2, 27, 9, 0, tzinfo=PARIS))
    future = factories.RdvFactory(motif=clinic.motif, lieu=clinic.lieu, agents=[clinic.agent],
                                  starts_at=datetime(2026, 3, 4, 9, 0, tzinfo=PARIS))
    past.usagers = [clinic.usager]
    db.session.commit()
    auth.login(clinic.agent)
    page = client.get("/rdvs/a-renseigner").get_data(as_text=True)
    assert f"/rdvs/{past.id}" in page and f"/rdvs/{future.id}\"" not in page
    assert '<th scope="col">Agent(s)</th>' in page and f"<td>{clinic.agent.full_name}</td>" in page
    client.post(f"/rdvs/{past.id}/statut", data={"csrf_token": csrf_token_from(page), "status": "noshow",
                                                  "back": "a-renseigner"})
    db.session.refresh(past)
    assert past.status == RdvStatus.NOSHOW
    to_fill, _, filled_today = client.get("/rdvs/a-renseigner").get_data(as_text=True).partition("titre-renseignes")
    assert f"/rdvs/{past.id}\"" not in to_fill and f"/rdvs/{past.id}\"" in filled_today
    # Undone the same day: back in the list, audited as a status change by this agent.
    client.post(f"/rdvs/{past.id}/statut", data={"csrf_token": csrf_token_from(page), "status": "unknown",
                                                  "back": "a-renseigner"})
    to_fill, _, filled_today = client.get("/rdvs/a-renseigner").get_data(as_text=True).partition("titre-renseignes")
    assert f"/rdvs/{past.id}\"" in to_fill and not filled_today


def test_editing_an_rdv_moves_it(client, auth, clinic, factories, db):
    rdv = factories.RdvFactory(motif=clinic.motif, lieu=clinic.lieu, agents=[clinic.agent],
                               starts_at=datetime(2026, 3, 3, 9, 0, tzinfo=PARIS))
    rdv.usagers = [clinic.usager]
    db.session.commit()
    auth.login(clinic.agent)
    page = client.get(f"/rdvs/{rdv.id}/modifier").get_data(as_text=True)
    assert 'value="09:00"' in page
    data = rdv_form(client, clinic, start_time="11:00", duration="30")
    data["csrf_token"] = csrf_token_from(page)
    assert client.post(f"/rdvs/{rdv.id}/modifier", data=data).status_code == 302
    db.session.refresh(rdv)
    assert rdv.starts_at == datetime(2026, 3, 3, 11, 0, tzinfo=PARIS)


def test_an_agent_of_another_organisation_gets_404_on_an_rdv(client, auth, clinic, factories):
    rdv = factories.RdvFactory(motif=clinic.motif, lieu=clinic.lieu, agents=[clinic.agent])
    stranger = factories.AgentFactory(organisation=factories.OrganisationFactory())
    auth.login(stranger)
    for path in (f"/rdvs/{rdv.id}", f"/rdvs/{rdv.id}/modifier"):
        assert client.get(path).status_code == 404
    page = client.get("/usagers").get_data(as_text=True)
    assert client.post(f"/rdvs/{rdv.id}/annuler", data={"csrf_token": csrf_token_from(page),
                                                         "status": "revoked"}).status_code == 404


def test_booking_for_a_usager_of_another_organisation_is_refused(client, auth, clinic, factories, db):
    foreign = factories.UsagerFactory(organisations=[factories.OrganisationFactory()])
    auth.login(clinic.agent)
    response = client.post("/rdvs/nouveau", data=rdv_form(client, clinic, usager_ids=[foreign.id]))
    assert response.status_code == 422 and "Usager inconnu" in response.get_data(as_text=True)
    assert db.session.query(Rdv).count() == 0


def test_slot_search_lists_first_free_slots_with_a_booking_link(client, auth, clinic):
    auth.login(clinic.agent)
    page = client.get("/creneaux", query_string={"motif_id": clinic.motif.id}).get_data(as_text=True)
    assert "lundi 2 mars 2026 à 09h00" in page
    assert "Réserver" in page and "Centre PMI Belleville" in page


def test_slot_search_with_an_unknown_motif_explains(client, auth, clinic):
    auth.login(clinic.agent)
    page = client.get("/creneaux", query_string={"motif_id": "424242"}).get_data(as_text=True)
    assert "Motif inconnu" in page


def test_booking_in_the_past_asks_for_a_confirmation_first(client, auth, clinic, db):
    auth.login(clinic.agent)
    response = client.post("/rdvs/nouveau", data=rdv_form(client, clinic, day="2026-02-27", start_time="09:30"))
    assert response.status_code == 422 and db.session.query(Rdv).count() == 0
    page = response.get_data(as_text=True)
    assert "Ce rendez-vous commence dans le passé (vendredi 27 février 2026 à 09h30)" in page
    assert "Je confirme ce rendez-vous malgré l&#39;avertissement ci-dessus" in page
    # Confirmed: the next alert (before the agent's opening hours began) is asked about on its own.
    data = rdv_form(client, clinic, day="2026-02-27", start_time="09:30", confirm_unusual="y")
    response = client.post("/rdvs/nouveau", data=data)
    assert response.status_code == 422 and "en dehors des plages" in response.get_data(as_text=True)
    assert "dans le passé" not in response.get_data(as_text=True)
    assert client.post("/rdvs/nouveau", data={**data, "force": "y"}).status_code == 302
    assert db.session.query(Rdv).count() == 1


def test_a_second_upcoming_rdv_for_the_same_child_and_motif_asks_for_a_confirmation(client, auth, clinic, factories,
                                                                                  db):
    first = factories.RdvFactory(motif=clinic.motif, lieu=clinic.lieu, agents=[clinic.agent],
                                 starts_at=datetime(2026, 3, 10, 9, 0, tzinfo=PARIS))
    first.usagers = [clinic.usager]
    db.session.commit()
    auth.login(clinic.agent)
    response = client.post("/rdvs/nouveau", data=rdv_form(client, clinic))
    assert response.status_code == 422 and db.session.query(Rdv).count() == 1
    assert ("Awa Diallo a déjà un rendez-vous « Consultation nourrisson » à venir, le mardi 10 mars 2026 à 09h00"
            in response.get_data(as_text=True))
    # Once the first one is cancelled, the second is booked without a question.
    first.status = RdvStatus.EXCUSED
    db.session.commit()
    assert client.post("/rdvs/nouveau", data=rdv_form(client, clinic)).status_code == 302
    assert db.session.query(Rdv).count() == 2


def test_the_undo_is_offered_for_the_day_only(client, auth, clinic, factories, db):
    past = factories.RdvFactory(motif=clinic.motif, lieu=clinic.lieu, agents=[clinic.agent],
                                starts_at=datetime(2026, 2, 27, 9, 0, tzinfo=PARIS))
    auth.login(clinic.agent)
    page = client.get("/rdvs/a-renseigner").get_data(as_text=True)
    client.post(f"/rdvs/{past.id}/statut", data={"csrf_token": csrf_token_from(page), "status": "seen",
                                                  "back": "a-renseigner"})
    assert "Annuler « Vu »" in client.get("/rdvs/a-renseigner").get_data(as_text=True)
    with time_machine.travel(datetime(2026, 3, 3, 7, 0, tzinfo=timezone.utc), tick=False):
        assert "Renseignés aujourd" not in client.get("/rdvs/a-renseigner").get_data(as_text=True)


def sms_preview_of(page: str) -> tuple[str, str]:
    text = re.search(r"data-sms-text>(.*?)</p>", page, re.S).group(1)
    segments = re.search(r"data-sms-segments>(.*?)</strong>", page, re.S).group(1)
    return html.unescape(text), segments


def test_the_booking_form_and_the_rdv_page_preview_the_sms_the_outbox_sends(client, auth, clinic, db):
    auth.login(clinic.agent)
    starts = datetime(2026, 3, 3, 9, 30, tzinfo=PARIS).astimezone(timezone.utc).isoformat()
    page = client.get("/rdvs/nouveau", query_string={"usager_id": clinic.usager.id, "agent_id": clinic.agent.id,
                                                      "motif_id": clinic.motif.id, "lieu_id": clinic.lieu.id,
                                                      "starts_at": starts}).get_data(as_text=True)
    preview, segments = sms_preview_of(page)
    # The composer may leave the motif out to keep one SMS, depending on the organisation's name.
    assert re.search(r"RDV confirmé le mar\. 03/03 à 9h30( \([^)]*\))?, Centre PMI Belleville", preview)
    assert segments == "1 SMS"
    # The JSON-free redraw the form's script asks for: same text for the same choices.
    fragment = client.get("/rdvs/apercu-sms", query_string={
        "motif_id": clinic.motif.id, "lieu_id": clinic.lieu.id, "day": "2026-03-03", "start_time": "09:30",
        "usager_ids": clinic.usager.id}).get_data(as_text=True)
    assert sms_preview_of(fragment) == (preview, segments)
    for query in ("motif_id=99999999999999999999&day=x", "usager_ids=99999999999999999999999&motif_id=-1",
                  "day=9999-12-31&start_time=25:99&motif_id=abc"):
        assert client.get(f"/rdvs/apercu-sms?{query}").status_code == 200
    assert client.get("/rdvs/nouveau?usager_id=99999999999999999999999").status_code == 200

    assert client.post("/rdvs/nouveau", data=rdv_form(client, clinic)).status_code == 302
    rdv = db.session.scalar(db.select(Rdv))
    message = db.session.scalar(db.select(Message).where(Message.kind == MessageKind.CREATED,
                                                         Message.channel == "sms"))
    sent = outbox.compose_sms(message)
    assert sent == preview.replace(links.family_url(outbox.PREVIEW_RDV_ID), links.family_url(rdv.id))

    reminder, reminder_segments = sms_preview_of(client.get(f"/rdvs/{rdv.id}").get_data(as_text=True))
    assert "03/03 à 9h30" in reminder and reminder_segments == "1 SMS"
