"""Home visits with an address (issue 23.4): a usager's postal address entered on its form or through the API, bad
input refused in French with nothing stored, required to book a motif « à domicile », shown to agents (the day's
lists, the printed day, the rdv page), never sent to a family, exported and erased with the usager, and in an
agent's calendar feed only when they opted in to personal data."""
from __future__ import annotations

import html
import json
from datetime import UTC, date, datetime, time

import icalendar
import pytest
import time_machine
from sqlalchemy import func, select

from lapins.api.openapi import PREFIX
from lapins.auth import tokens
from lapins.booking import BookingError, book_rdv, move_rdv
from lapins.calendars import feeds
from lapins.models import AuditEvent, LocationType, Message, Rdv, Role, Usager
from tests.conftest import csrf_token_from
from tests.test_history_import import run

NOW = datetime(2026, 10, 19, 8, 0, tzinfo=UTC)  # Monday 10:00 in Paris
THURSDAY_10 = datetime(2026, 10, 22, 8, 0, tzinfo=UTC)
STREET, POSTCODE, COMMUNE, ACCESS = "12 rue des Lilas", "92000", "Nanterre", "Bât. B, 3e étage, code 4521"


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def service(factories):
    organisation = factories.OrganisationFactory(name="PMI Nanterre", phone="+33141371000",
                                                 territory__timezone="Europe/Paris", territory__number="92")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Les Pâquerettes",
                                 address="5 place de la Mairie, 92000 Nanterre")
    visit = factories.MotifFactory(organisation=organisation, name="Visite à domicile post-natale",
                                   location_type=LocationType.HOME, duration_minutes=60)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[visit], start_time=time(8),
                           end_time=time(18), weekdays=0b1111111)
    mother = factories.UsagerFactory(territory=organisation.territory, first_name="Aïcha", last_name="Benali",
                                     phone="+33612345678", sms_consent=True, email="aicha@example.fr",
                                     email_consent=True, organisations=[organisation])
    child = factories.UsagerFactory(territory=organisation.territory, first_name="Léa", last_name="Benali",
                                    phone=None, responsible=mother, birth_date=date(2026, 9, 2),
                                    organisations=[organisation])
    return type("Service", (), dict(organisation=organisation, lieu=lieu, visit=visit, agent=agent, mother=mother,
                                    child=child))


def give_address(db, usager: Usager) -> None:
    usager.address_street, usager.address_postcode, usager.address_commune = STREET, POSTCODE, COMMUNE
    usager.address_access = ACCESS
    db.session.commit()


def edit_form(client, usager: Usager, **overrides) -> dict:
    path = f"/usagers/{usager.id}/modifier"
    data = {"csrf_token": csrf_token_from(client.get(path).get_data(as_text=True)), "first_name": usager.first_name,
            "last_name": usager.last_name, "phone": "06 12 34 56 78", "email": "aicha@example.fr",
            "sms_consent": "y", "email_consent": "y", "address_street": STREET, "address_postcode": POSTCODE,
            "address_commune": COMMUNE, "address_access": ACCESS, "commune_insee": ""}
    return data | overrides


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return html.unescape(response.get_data(as_text=True))


# --- Entering it ------------------------------------------------------------------------------------------------

def test_the_address_is_entered_on_the_usager_form_and_shown_on_its_page(client, auth, service, db):
    auth.login(service.agent)
    response = client.post(f"/usagers/{service.mother.id}/modifier", data=edit_form(client, service.mother))
    assert response.status_code == 302
    db.session.expire_all()
    mother = db.session.get(Usager, service.mother.id)
    assert (mother.address_street, mother.address_postcode, mother.address_commune, mother.address_access) == (
        STREET, POSTCODE, COMMUNE, ACCESS)
    assert f"{STREET}, {POSTCODE} {COMMUNE}" in page(client, f"/usagers/{mother.id}")
    # A child without an address of its own lives at its responsible person's.
    assert "celle de son responsable" in page(client, f"/usagers/{service.child.id}")


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"address_street": "x" * 10_000}, "address_street", "200 caractères au plus"),
    ({"address_access": "code " * 2_000}, "address_access", "200 caractères au plus"),
    ({"address_street": "12 rue des Lilas\x00"}, "address_street", "Caractères invisibles"),
    ({"address_street": "12 rue\ndes Lilas"}, "address_street", "Caractères invisibles"),
    ({"address_access": "code\u202e1254"}, "address_access", "Caractères invisibles"),
    ({"address_commune": "Nan\tterre"}, "address_commune", "Caractères invisibles"),
    ({"address_postcode": "9200"}, "address_postcode", "5 chiffres"),
    ({"address_commune": ""}, "address_commune", "Saisissez la commune"),
    ({"address_street": ""}, "address_street", "Saisissez le numéro et la rue"),
    ({"address_commune": "<script>"}, "address_commune", "nom de la commune"),
])
def test_bad_addresses_are_refused_in_french_and_nothing_is_stored(client, auth, service, db, overrides, field,
                                                                   message):
    auth.login(service.agent)
    response = client.post(f"/usagers/{service.mother.id}/modifier",
                           data=edit_form(client, service.mother, **overrides))
    assert response.status_code == 422
    text = html.unescape(response.get_data(as_text=True))
    assert message in text and f'id="{field}-error"' in text
    db.session.expire_all()
    mother = db.session.get(Usager, service.mother.id)
    assert mother.address_street is None and mother.address_commune is None and mother.address_access is None


def test_the_api_reads_and_writes_the_address_and_refuses_bad_ones(client, service, db):
    _, token = tokens.create(service.agent, "Logiciel du centre")
    headers = {"Authorization": f"Bearer {token}"}
    answer = client.patch(f"{PREFIX}/usagers/{service.mother.id}", headers=headers, json={
        "address_street": STREET, "address_postcode": POSTCODE, "address_commune": COMMUNE,
        "commune_insee": "92050", "address_access": ACCESS})
    assert answer.status_code == 200, answer.json
    assert (answer.json["address_street"], answer.json["commune_insee"]) == (STREET, "92050")
    assert client.get(f"{PREFIX}/usagers/{service.mother.id}", headers=headers).json["address_commune"] == COMMUNE
    # The other fields are kept when only the phone changes.
    kept = client.patch(f"{PREFIX}/usagers/{service.mother.id}", headers=headers, json={"phone": "0612345679"})
    assert kept.status_code == 200 and kept.json["address_access"] == ACCESS

    for body in ({"address_street": "12 rue\x07 des Lilas"}, {"address_access": "x" * 10_000},
                 {"commune_insee": "ABCDE"}, {"address_street": None}):
        refused = client.patch(f"{PREFIX}/usagers/{service.mother.id}", headers=headers, json=body)
        assert refused.status_code == 422, (body, refused.json)
        assert refused.json["message"] and all(message for message in refused.json.get("fields", {}).values())
    db.session.expire_all()
    assert db.session.get(Usager, service.mother.id).address_street == STREET  # nothing half-stored

    described = json.dumps(client.get(f"{PREFIX}/openapi.json").json)
    assert all(name in described for name in ("address_street", "address_postcode", "commune_insee"))


# --- Booking ----------------------------------------------------------------------------------------------------

def test_a_home_visit_needs_an_address_on_the_form_the_api_and_booking(client, auth, service, db):
    auth.login(service.agent)
    path = f"/rdvs/nouveau?usager_id={service.child.id}"
    data = {"csrf_token": csrf_token_from(client.get(path).get_data(as_text=True)),
            "usager_ids": [str(service.child.id)], "motif_id": str(service.visit.id), "lieu_id": "",
            "agent_ids": [str(service.agent.id)], "day": "2026-10-22", "start_time": "10:00"}
    refused = client.post(path, data=data)
    assert refused.status_code == 422
    assert "visite à domicile : renseignez d'abord l'adresse de Léa Benali" in html.unescape(
        refused.get_data(as_text=True))

    _, token = tokens.create(service.agent, "Logiciel du centre")
    api = client.post(f"{PREFIX}/rdvs", headers={"Authorization": f"Bearer {token}"}, json={
        "motif_id": service.visit.id, "agent_ids": [service.agent.id], "usager_ids": [service.child.id],
        "starts_at": "2026-10-22T08:00:00Z"})
    assert api.status_code == 409 and "renseignez d'abord l'adresse" in api.json["message"]
    assert db.session.scalar(select(func.count(Rdv.id))) == 0
    assert db.session.scalar(select(func.count(Message.id))) == 0

    give_address(db, service.mother)  # the child's responsible person's address is where the visit goes
    booked = client.post(path, data=data | {"csrf_token": csrf_token_from(client.get(path).get_data(as_text=True))})
    assert booked.status_code == 302
    rdv = db.session.scalar(select(Rdv))
    assert rdv.home_address.one_line == f"{STREET}, {POSTCODE} {COMMUNE}"


def test_changing_an_rdv_to_a_home_motif_needs_the_address_too(service, db, factories):
    consultation = factories.MotifFactory(organisation=service.organisation, name="Pesée")
    factories.PlageFactory(agent=service.agent, lieu=service.lieu, first_day=date(2026, 1, 1),
                           motifs=[consultation], start_time=time(8), end_time=time(18), weekdays=0b1111111)
    rdv = book_rdv(actor=service.agent, motif=consultation, agents=[service.agent], usagers=[service.child],
                   lieu=service.lieu, starts_at=THURSDAY_10)
    with pytest.raises(BookingError, match="renseignez d'abord l'adresse"):
        move_rdv(actor=service.agent, rdv=rdv, starts_at=rdv.starts_at, motif=service.visit)
    db.session.refresh(rdv)
    assert rdv.motif_id == consultation.id


# --- Where it is shown, and where never ---------------------------------------------------------------------------

@pytest.fixture()
def home_visit(service, db):
    give_address(db, service.mother)
    return book_rdv(actor=service.agent, motif=service.visit, agents=[service.agent], usagers=[service.child],
                    lieu=service.lieu, starts_at=THURSDAY_10)


def test_agents_see_the_address_on_the_days_lists_the_printed_day_and_the_rdv(client, auth, service, home_visit):
    auth.login(service.agent)
    day = "2026-10-22"
    printed = page(client, f"/agenda/agents/{service.agent.id}/jour/imprimer?date={day}")
    assert STREET in printed and f"{POSTCODE} {COMMUNE}" in printed and ACCESS in printed
    assert "voir les notes" not in printed
    lieu_sheet = page(client, f"/agenda/lieux/{service.lieu.id}/jour/imprimer?date={day}")
    assert STREET in lieu_sheet and ACCESS in lieu_sheet
    assert f"À domicile : {STREET}, {POSTCODE} {COMMUNE} ({ACCESS})" in page(
        client, f"/agenda/lieux/{service.lieu.id}?date={day}")
    assert f"À domicile : {STREET}" in page(client, f"/agenda/agents/{service.agent.id}?date={day}&vue=jour")
    assert f"à domicile, {STREET}, {POSTCODE} {COMMUNE}" in page(client, f"/rdvs/{home_visit.id}")


def test_the_address_never_goes_into_a_familys_sms_or_email(service, home_visit, db):
    sent = list(db.session.scalars(select(Message).execution_options(populate_existing=True)))
    assert {message.channel.value for message in sent} >= {"sms", "email"}
    for message in sent:
        for text in (message.body or "", message.subject or ""):
            assert "Lilas" not in text and "4521" not in text and "étage" not in text


def test_the_feed_carries_the_address_only_when_the_agent_opted_in(client, service, home_visit, db):
    token = feeds.issue(service.agent)
    db.session.commit()

    def event():
        response = client.get(f"/calendrier/{token}.ics")
        assert response.status_code == 200
        (found,) = icalendar.Calendar.from_ical(response.data).walk("VEVENT")
        return found, response.data.decode().replace("\r\n ", "")

    found, raw = event()
    assert "LOCATION" not in found and "Lilas" not in raw and "Benali" not in raw
    feeds.set_family_names(service.agent.id, True)
    db.session.commit()
    found, raw = event()
    assert str(found["LOCATION"]) == f"{STREET}, {POSTCODE} {COMMUNE} ({ACCESS})"


# --- The usager's rights ----------------------------------------------------------------------------------------

def test_the_address_is_in_the_export_and_goes_with_an_erasure(client, auth, service, db):
    give_address(db, service.mother)
    auth.login(service.agent)
    exported = client.get(f"/usagers/{service.mother.id}/donnees.json")
    assert exported.status_code == 200
    assert json.loads(exported.get_data(as_text=True))["usager"]["address"] == {
        "street": STREET, "postcode": POSTCODE, "commune": COMMUNE, "commune_insee": None, "access": ACCESS}
    assert STREET in page(client, f"/usagers/{service.mother.id}/donnees")

    url = f"/usagers/{service.mother.id}/effacer"
    erased = client.post(url, data={"csrf_token": csrf_token_from(client.get(url).get_data(as_text=True)),
                                    "last_name": "Benali", "confirm": "y"})
    assert erased.status_code == 302
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Usager.id)).where(Usager.address_street.is_not(None))) == 0


def test_an_address_change_is_audited_without_its_value(client, auth, service, db):
    auth.login(service.agent)
    assert client.post(f"/usagers/{service.mother.id}/modifier",
                       data=edit_form(client, service.mother)).status_code == 302
    events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.object_id == service.mother.id)))
    changed = {change["field"] for event in events for change in event.changes}
    assert {"address_street", "address_commune", "address_access"} <= changed
    assert all("Lilas" not in json.dumps(event.changes) for event in events)
    history = page(client, f"/usagers/{service.mother.id}/historique")
    assert "adresse (rue)" in history and "Lilas" not in history


# --- Coming from the previous tool --------------------------------------------------------------------------------

def test_the_history_import_takes_the_address_columns_and_rejects_a_bad_one(app, tmp_path, factories, db):
    territory = factories.TerritoryFactory(number="59", name="Nord")
    factories.OrganisationFactory(territory=territory, name="PMI Lille")
    text = "\n".join([
        "id_usager;nom;prenom;adresse;code postal;commune;code INSEE;accès",
        f"F1;Benali;Aïcha;{STREET};59000;Lille;59350;{ACCESS}",
        "F2;Dupont;Marc;3 rue\u202edu Port;59000;Lille;;",
        "F3;Martin;Zoé;;;;;",
    ])
    result = run(app, tmp_path, text)
    assert "importées : 2" in result.output and "rejetées : 1" in result.output, result.output
    assert "Caractères invisibles" in result.output
    db.session.expire_all()
    imported = {usager.external_id: usager for usager in db.session.scalars(select(Usager))}
    assert set(imported) == {"F1", "F3"}
    assert (imported["F1"].address_street, imported["F1"].commune_insee, imported["F1"].address_access) == (
        STREET, "59350", ACCESS)
    assert imported["F3"].postal_address is None
