"""A usager's data on the family's request: the export (page and JSON file) for any agent of its organisations, the
erasure for their administrators only, after a confirmation, all or nothing."""
from __future__ import annotations

import html
import json
from datetime import date, datetime, time, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from lapins.booking import book_rdv
from lapins.models import (
    Channel, Message, MessageKind, MessageStatus, Rdv, Role, SmsReplyRound, Usager, WaitlistEntry,
)
from lapins.models.rdvs import RdvLinkCheck, rdv_usagers
from lapins.privacy import retention
from tests.conftest import csrf_token_from
from tests.test_stats import table_row

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)  # Monday 19 October 2026, 10:00 in Paris
PHONE = "+33687654321"


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def clinic(factories, db):
    territory = factories.TerritoryFactory(timezone="Europe/Paris")
    organisation = factories.OrganisationFactory(territory=territory, name="PMI Roubaix")
    other = factories.OrganisationFactory(territory=territory, name="PMI Tourcoing")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Épeule", address="5 rue de l'Épeule")
    other_lieu = factories.LieuFactory(organisation=other, name="Centre PMI Bourgogne")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson")
    other_motif = factories.MotifFactory(organisation=other, name="Vaccination")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    other_agent = factories.AgentFactory(organisation=other, organisation__role=Role.ADMIN)
    for who, where, what in ((agent, lieu, motif), (other_agent, other_lieu, other_motif)):
        factories.PlageFactory(agent=who, lieu=where, motifs=[what],
                               first_day=date(2026, 1, 1), start_time=time(8), end_time=time(18), weekdays=0b1111111)
    mother = factories.UsagerFactory(territory=territory, organisations=[organisation], first_name="Clémence",
                                     last_name="Vandewalle", phone=PHONE, email="clemence.v@example.fr",
                                     email_consent=True, birth_date=date(1993, 4, 2))
    child = factories.UsagerFactory(territory=territory, organisations=[organisation], first_name="Timéo",
                                    last_name="Vandewalle", phone=None, responsible=mother,
                                    birth_date=date(2026, 2, 11))
    past = book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[child], lieu=lieu,
                    starts_at=datetime(2026, 10, 13, 9, 30, tzinfo=PARIS))
    coming = book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[child], lieu=lieu,
                      starts_at=datetime(2026, 10, 23, 9, 30, tzinfo=PARIS))
    past.notes = "Vu avec sa mère"
    db.session.add(RdvLinkCheck(rdv_id=coming.id, failures=1))
    entry = factories.WaitlistEntryFactory(organisation=organisation, motif=motif, usager=child, rdv=coming)
    db.session.add(SmsReplyRound(territory_id=territory.id, phone=PHONE, rdv_ids=str(coming.id),
                                 expires_at=NOW + timedelta(hours=6)))
    db.session.commit()
    return SimpleNamespace(territory=territory, organisation=organisation, other=other, motif=motif,
                           other_motif=other_motif, lieu=lieu, other_lieu=other_lieu, agent=agent, admin=admin, other_agent=other_agent,
                           mother=mother, child=child, past=past.id, coming=coming.id, entry=entry.id)


def export_of(client, usager_id: int) -> dict:
    response = client.get(f"/usagers/{usager_id}/donnees.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert "attachment" in response.headers["Content-Disposition"]
    return json.loads(response.get_data(as_text=True))


def erase(client, usager_id: int, last_name: str, confirm: bool = True, token: str | None = None):
    url = f"/usagers/{usager_id}/effacer"
    if token is None:
        token = csrf_token_from(client.get(url).get_data(as_text=True))
    data = {"last_name": last_name, **({"confirm": "y"} if confirm else {})}
    if token:
        data["csrf_token"] = token
    return client.post(url, data=data)


def usager_exists(db, usager_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(Usager, usager_id) is not None


# --- Export ------------------------------------------------------------------------------------------------------

def test_an_agent_downloads_the_familys_data_with_its_rdvs_messages_and_waiting_list(client, auth, clinic):
    auth.login(clinic.agent)
    data = export_of(client, clinic.mother.id)

    assert data["usager"]["last_name"] == "Vandewalle" and data["usager"]["phone"] == PHONE
    assert data["usager"]["email"] == "clemence.v@example.fr" and data["usager"]["birth_date"] == "1993-04-02"
    assert data["usager"]["consents"] == {"sms": True, "email": True}
    assert [relative["first_name"] for relative in data["relatives"]] == ["Timéo"]
    assert [(rdv["starts_at"], rdv["motif"], rdv["lieu"]["name"]) for rdv in data["rdvs"]] == [
        ("2026-10-13T09:30+02:00", "Pesée du nourrisson", "Centre PMI Épeule"),
        ("2026-10-23T09:30+02:00", "Pesée du nourrisson", "Centre PMI Épeule"),
    ]
    assert data["rdvs"][1]["for"] == ["Timéo Vandewalle"] and data["rdvs"][1]["status"] == "À venir"
    confirmations = [m for m in data["messages"] if m["kind"] == "Confirmation"]
    assert {m["channel"] for m in confirmations} == {"SMS", "E-mail"}
    assert all(m["text"] and m["to"] in (PHONE, "clemence.v@example.fr") for m in confirmations)
    assert [(entry["for"], entry["motif"], entry["status"]) for entry in data["waiting_list"]] == [
        ("Timéo Vandewalle", "Pesée du nourrisson", "En attente")]
    assert "notes" not in data["rdvs"][0]  # agents' notes are the service's to hand over, not a download's


def test_the_export_holds_only_what_the_agents_organisations_hold(client, auth, clinic, db):
    clinic.child.organisations.append(clinic.other)
    db.session.commit()
    elsewhere = book_rdv(actor=clinic.other_agent, motif=clinic.other_motif, agents=[clinic.other_agent],
                         usagers=[clinic.child], lieu=clinic.other_lieu,
                         starts_at=datetime(2026, 10, 26, 11, 0, tzinfo=PARIS))
    auth.login(clinic.agent)
    data = export_of(client, clinic.child.id)

    assert "Vaccination" not in json.dumps(data) and len(data["rdvs"]) == 2
    assert not any(m for m in data["messages"] if "26/10" in (m["text"] or ""))
    assert data["usager"]["organisations"] == ["PMI Roubaix"]
    ours = db.session.scalars(select(Message.id).where(Message.rdv_id.in_([clinic.past, clinic.coming]),
                                                       Message.status != MessageStatus.PENDING)).all()
    assert elsewhere.id and len(data["messages"]) == len(ours)


def test_the_export_page_is_readable_and_says_when_a_text_was_erased(client, auth, clinic, frozen_time):
    frozen_time.move_to(NOW + timedelta(days=200))
    retention.run()
    auth.login(clinic.agent)
    page = client.get(f"/usagers/{clinic.mother.id}/donnees")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "Données personnelles de Clémence Vandewalle" in text and "Timéo Vandewalle" in text
    assert "2026-10-23 09:30" in text and "Centre PMI Épeule" in text
    assert "Texte effacé" in text
    assert f'href="/usagers/{clinic.mother.id}/donnees.json"' in text


def test_the_usager_page_links_to_the_export_and_only_admins_see_the_erasure(client, auth, clinic):
    auth.login(clinic.agent)
    page = client.get(f"/usagers/{clinic.mother.id}").get_data(as_text=True)
    assert f"/usagers/{clinic.mother.id}/donnees" in page and "/effacer" not in page
    auth.logout()
    auth.login(clinic.admin)
    assert f"/usagers/{clinic.mother.id}/effacer" in client.get(f"/usagers/{clinic.mother.id}").get_data(as_text=True)


def test_another_organisation_gets_404_for_the_export_and_the_erasure(client, auth, clinic, db):
    auth.login(clinic.other_agent)
    for url in (f"/usagers/{clinic.mother.id}/donnees", f"/usagers/{clinic.mother.id}/donnees.json",
                f"/usagers/{clinic.mother.id}/effacer", "/usagers/999999/donnees.json"):
        assert client.get(url).status_code == 404, url
    page = client.get("/usagers")  # a page of its own, for a valid token
    response = client.post(f"/usagers/{clinic.mother.id}/effacer", data={
        "csrf_token": csrf_token_from(page.get_data(as_text=True)), "last_name": "Vandewalle", "confirm": "y"})
    assert response.status_code == 404 and usager_exists(db, clinic.mother.id)


# --- Erasure -----------------------------------------------------------------------------------------------------

def test_an_agent_who_is_not_admin_gets_403_and_nothing_is_erased(client, auth, clinic, db):
    auth.login(clinic.agent)
    assert client.get(f"/usagers/{clinic.mother.id}/effacer").status_code == 403
    page = client.get(f"/usagers/{clinic.mother.id}")
    response = client.post(f"/usagers/{clinic.mother.id}/effacer", data={
        "csrf_token": csrf_token_from(page.get_data(as_text=True)), "last_name": "Vandewalle", "confirm": "y"})
    assert response.status_code == 403 and usager_exists(db, clinic.mother.id)


def test_the_admin_erases_the_family_rdvs_stay_for_the_statistics_without_naming_anyone(client, auth, clinic, db):
    auth.login(clinic.admin)
    url = f"/statistiques/organisation/{clinic.organisation.id}?du=2026-10&au=2026-10"
    figures = table_row(client.get(url).get_data(as_text=True), "2026-10")
    page = client.get(f"/usagers/{clinic.mother.id}/effacer").get_data(as_text=True)
    assert "Clémence Vandewalle sera supprimé(e) de Lapins, avec 1 proche (Timéo Vandewalle)" in page
    assert "2 rendez-vous ne nommeront plus personne" in page and "dont 1 à venir" in page

    mother_id, child_id = clinic.mother.id, clinic.child.id

    response = erase(client, mother_id, "  vandewallé ")

    assert response.status_code == 302 and response.headers["Location"].endswith("/usagers")
    assert "Les données de l'usager ont été effacées." in html.unescape(client.get("/usagers").get_data(as_text=True))
    assert not usager_exists(db, mother_id) and not usager_exists(db, child_id)
    past, coming = db.session.get(Rdv, clinic.past), db.session.get(Rdv, clinic.coming)
    assert past is not None and coming is not None and past.usagers == [] and coming.usagers == []
    assert past.notes is None
    assert not db.session.scalars(select(rdv_usagers.c.rdv_id)).all()
    messages = db.session.scalars(select(Message).where(Message.rdv_id.in_([clinic.past, coming.id]))).all()
    assert messages and all(m.body is None and m.to_address is None and m.usager_id is None for m in messages)
    sent = [m for m in messages if m.kind == MessageKind.CREATED]
    assert sent and all(m.status == MessageStatus.SENT for m in sent)  # still counted
    assert all(m.segments for m in sent if m.channel == Channel.SMS)
    reminders = [m for m in messages if m.kind == MessageKind.REMINDER and m.rdv_id == coming.id]
    assert reminders and all(m.status == MessageStatus.SKIPPED for m in reminders)  # nobody left to remind
    assert db.session.get(WaitlistEntry, clinic.entry) is None
    assert db.session.get(RdvLinkCheck, clinic.coming) is None
    assert not db.session.scalars(select(SmsReplyRound)).all()
    assert table_row(client.get(url).get_data(as_text=True), "2026-10") == figures
    assert "Vandewalle" not in client.get(f"/rdvs/{coming.id}").get_data(as_text=True)


def test_a_usager_also_followed_elsewhere_is_only_taken_out_of_this_organisation(client, auth, clinic, db):
    clinic.child.organisations.append(clinic.other)
    db.session.commit()
    elsewhere = book_rdv(actor=clinic.other_agent, motif=clinic.other_motif, agents=[clinic.other_agent],
                         usagers=[clinic.child], lieu=clinic.other_lieu,
                         starts_at=datetime(2026, 10, 26, 11, 0, tzinfo=PARIS))
    auth.login(clinic.admin)
    page = client.get(f"/usagers/{clinic.child.id}/effacer").get_data(as_text=True)
    assert "est aussi suivi(e) par une autre organisation" in page and "seulement retirée de la vôtre" in page

    response = erase(client, clinic.child.id, "Vandewalle")

    assert response.status_code == 302
    assert "il reste suivi par une autre organisation" in html.unescape(client.get("/usagers").get_data(as_text=True))
    assert usager_exists(db, clinic.child.id) and usager_exists(db, clinic.mother.id)
    child = db.session.get(Usager, clinic.child.id)
    assert [organisation.name for organisation in child.organisations] == ["PMI Tourcoing"]
    assert db.session.get(Rdv, clinic.coming).usagers == [] and db.session.get(Rdv, elsewhere.id).usagers == [child]
    assert db.session.get(WaitlistEntry, clinic.entry) is None
    auth.logout()
    auth.login(clinic.other_agent)
    assert [rdv["motif"] for rdv in export_of(client, child.id)["rdvs"]] == ["Vaccination"]


@pytest.mark.parametrize(("last_name", "confirm", "message"), [
    ("Dupont", True, "Ce nom ne correspond pas au nom de famille"),
    ("", True, "Saisissez le nom de famille"),
    ("Vandewalle", False, "Cochez la case pour confirmer"),
])
def test_without_a_full_confirmation_nothing_is_erased(client, auth, clinic, db, last_name, confirm, message):
    auth.login(clinic.admin)
    response = erase(client, clinic.mother.id, last_name, confirm=confirm)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert usager_exists(db, clinic.mother.id) and db.session.get(WaitlistEntry, clinic.entry) is not None


def test_without_the_csrf_token_nothing_is_erased(client, auth, clinic, db):
    auth.login(clinic.admin)
    response = erase(client, clinic.mother.id, "Vandewalle", token="")
    assert response.status_code == 400
    assert usager_exists(db, clinic.mother.id) and db.session.get(Rdv, clinic.coming).usagers


def test_an_erasure_that_fails_half_way_leaves_everything_as_it_was(client, auth, clinic, db, monkeypatch):
    from lapins.privacy import erasure

    def broken(statement):
        if "usagers" in str(statement) and "DELETE" in str(statement).upper():
            raise RuntimeError("disque plein")
        return original(statement)

    original = erasure.execute_bulk
    monkeypatch.setattr(erasure, "execute_bulk", broken)
    auth.login(clinic.admin)
    response = erase(client, clinic.mother.id, "Vandewalle")
    assert response.status_code == 500
    assert usager_exists(db, clinic.mother.id) and db.session.get(Rdv, clinic.coming).usagers
    assert db.session.get(WaitlistEntry, clinic.entry) is not None
    assert all(m.body is not None for m in db.session.scalars(select(Message).where(
        Message.status == MessageStatus.SENT)))
