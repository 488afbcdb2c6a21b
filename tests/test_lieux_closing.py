"""A lieu closed by its organisation's administrator: no new rdv and no free slot there; its rdvs stay to be moved."""
from __future__ import annotations

import html
from datetime import date

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.slots import availability
from lapins.booking import BookingError, book_rdv, cancel_rdv, move_rdv
from lapins.auth import tokens
from lapins.models import Rdv, RdvStatus, Role
from tests.conftest import csrf_token_from
from tests.test_calendar import NOW, PARIS, Clinic, feed, local, of_kind

TUESDAY = date(2026, 3, 24)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def clinic(factories):
    """Clinic's centre (Centre PMI Belleville) and a second one, both with the puéricultrice's mornings."""
    clinic = Clinic(factories)
    clinic.other_lieu = factories.LieuFactory(organisation=clinic.organisation, name="Centre PMI Ménilmontant")
    factories.PlageFactory(agent=clinic.colleague, lieu=clinic.other_lieu, title="Consultations",
                           first_day=date(2026, 1, 5), motifs=[clinic.motif])
    clinic.admin = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.ADMIN)
    return clinic


def close(client, auth, clinic, lieu, db) -> str:
    """The administrator unticks « Lieu ouvert » on the lieu's form; the message they read next."""
    auth.login(clinic.admin)
    url = f"/admin/lieux/{lieu.id}/modifier"
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    response = client.post(url, data={"csrf_token": token, "name": lieu.name, "address": lieu.address},
                           follow_redirects=True)
    assert response.status_code == 200
    db.session.expire_all()
    return html.unescape(response.get_data(as_text=True))


def lieux_of_first_slots(clinic, **search) -> set[int]:
    slots = availability.first_available(territory=clinic.organisation.territory, motif=clinic.motif, limit=10,
                                         **search)
    return {slot.lieu_id for slot in slots}


def test_closing_a_lieu_says_how_many_rdvs_remain_to_move_and_marks_it_closed(client, auth, clinic, db):
    clinic.rdv(local(PARIS, TUESDAY, 9, 30))
    page = close(client, auth, clinic, clinic.lieu, db)
    assert clinic.lieu.active is False
    assert "1 rendez-vous à venir y restent prévus : déplacez-les vers un autre lieu ou annulez-les." in page
    listing = html.unescape(client.get(f"/admin/organisations/{clinic.organisation.id}/lieux").get_data(as_text=True))
    assert "Fermé" in listing and "Ouvert" in listing
    form = client.get(f"/admin/lieux/{clinic.lieu.id}/modifier").get_data(as_text=True)
    assert 'name="active"' in form and "checked" not in form.split('name="active"')[1].split(">")[0]


def test_a_closed_lieu_gives_no_free_slot_and_its_reopening_gives_them_back(client, auth, clinic, db):
    assert lieux_of_first_slots(clinic) == {clinic.lieu.id, clinic.other_lieu.id}
    close(client, auth, clinic, clinic.lieu, db)
    assert lieux_of_first_slots(clinic) == {clinic.other_lieu.id}
    assert lieux_of_first_slots(clinic, lieu_id=clinic.lieu.id) == set()
    clinic.lieu.active = True
    db.session.commit()
    assert clinic.lieu.id in lieux_of_first_slots(clinic)


def test_no_new_rdv_at_a_closed_lieu_but_its_rdvs_can_be_cancelled_or_moved_elsewhere(client, auth, clinic, db):
    kept = clinic.rdv(local(PARIS, TUESDAY, 9, 30))
    other = clinic.rdv(local(PARIS, TUESDAY, 10, 30))
    close(client, auth, clinic, clinic.lieu, db)
    with pytest.raises(BookingError, match="Le lieu « Centre PMI Belleville » est fermé : choisissez-en un autre."):
        book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.usager],
                 lieu=clinic.lieu, starts_at=local(PARIS, TUESDAY, 11))
    with pytest.raises(BookingError, match="est fermé"):
        move_rdv(actor=clinic.agent, rdv=kept, starts_at=local(PARIS, TUESDAY, 11))
    db.session.rollback()
    moved = move_rdv(actor=clinic.colleague, rdv=kept, agents=[clinic.colleague], lieu=clinic.other_lieu,
                     starts_at=local(PARIS, TUESDAY, 9, 30))
    assert moved.lieu_id == clinic.other_lieu.id
    cancelled = cancel_rdv(actor=clinic.agent, rdv=other, status=RdvStatus.REVOKED, reason="Centre fermé")
    assert cancelled.status == RdvStatus.REVOKED


def test_the_forms_offer_open_lieux_only_and_a_plage_keeps_its_closed_lieu(client, auth, clinic, db):
    close(client, auth, clinic, clinic.lieu, db)
    booking_form = client.get(f"/rdvs/nouveau?agent_id={clinic.agent.id}").get_data(as_text=True)
    search_form = client.get("/creneaux").get_data(as_text=True)
    new_plage = client.get(f"/agents/{clinic.agent.id}/plages/nouvelle").get_data(as_text=True)
    edit_plage = client.get(f"/plages/{clinic.plage.id}/modifier").get_data(as_text=True)
    for page in (booking_form, search_form, new_plage):
        assert "Centre PMI Ménilmontant" in page and "Centre PMI Belleville" not in page
    assert "Centre PMI Belleville" in edit_plage  # not silently moved elsewhere by saving it again


def test_the_agenda_still_shows_the_rdvs_of_a_closed_lieu(client, auth, clinic, db):
    clinic.rdv(local(PARIS, TUESDAY, 9, 30))
    close(client, auth, clinic, clinic.lieu, db)
    auth.logout()
    auth.login(clinic.agent)
    [shown] = of_kind(feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").get_json(), "rdv")
    assert shown["extendedProps"]["lieu"] == "Centre PMI Belleville"
    lieux = html.unescape(client.get("/agenda/lieux").get_data(as_text=True))
    assert lieux.index("Centre PMI Ménilmontant") < lieux.index("Centre PMI Belleville") and "Fermé" in lieux


def test_the_api_lists_a_closed_lieu_as_such_and_refuses_to_book_there(client, auth, clinic, db):
    close(client, auth, clinic, clinic.lieu, db)
    _, token = tokens.create(clinic.agent, "Logiciel du centre")
    headers = {"Authorization": f"Bearer {token}"}
    listed = {lieu["id"]: lieu["active"] for lieu in client.get("/api/v1/lieux", headers=headers).json["items"]}
    assert listed == {clinic.lieu.id: False, clinic.other_lieu.id: True}
    refused = client.post("/api/v1/rdvs", headers=headers, json={
        "motif_id": clinic.motif.id, "agent_ids": [clinic.agent.id], "usager_ids": [clinic.usager.id],
        "lieu_id": clinic.lieu.id, "starts_at": (local(PARIS, TUESDAY, 11)).isoformat()})
    assert refused.status_code in (409, 422) and "est fermé" in refused.json["message"]
    assert db.session.scalar(select(func.count()).select_from(Rdv).where(Rdv.lieu_id == clinic.lieu.id)) == 0
