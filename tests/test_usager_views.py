"""Agents find families by name or phone, create them with their children, and see their rdvs."""
from urllib.parse import quote

import pytest

from lapins.models import Role, Usager
from tests.conftest import csrf_token_from


@pytest.fixture()
def agent(factories):
    organisation = factories.OrganisationFactory(territory__number="974", territory__timezone="Indian/Reunion")
    return factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY)


def form_data(client, path="/usagers/nouveau", **overrides):
    data = {"csrf_token": csrf_token_from(client.get(path).get_data(as_text=True)), "first_name": "Maëlys",
            "last_name": "Payet", "birth_date": "1994-05-12", "phone": "0692 12 34 56", "email": "",
            "sms_consent": "y"}
    data.update(overrides)
    return data


def test_a_usager_is_created_with_a_reunion_mobile_stored_in_e164(client, auth, agent, db):
    auth.login(agent)
    response = client.post("/usagers/nouveau", data=form_data(client))
    assert response.status_code == 302
    usager = db.session.scalar(db.select(Usager))
    assert usager.phone == "+262692123456" and usager.sms_consent
    assert usager.organisations[0].id == agent.roles[0].organisation_id


def test_a_child_is_added_to_a_responsible_person(client, auth, agent, factories, db):
    parent = factories.UsagerFactory(territory=agent.roles[0].organisation.territory,
                                     organisations=[agent.roles[0].organisation])
    auth.login(agent)
    path = f"/usagers/nouveau?responsable={parent.id}"
    response = client.post(path, data=form_data(client, path, first_name="Noé", phone="", sms_consent="",
                                                 birth_date="2025-11-02"))
    assert response.status_code == 302
    db.session.refresh(parent)
    assert [child.first_name for child in parent.relatives] == ["Noé"]
    assert "Noé" in client.get(f"/usagers/{parent.id}").get_data(as_text=True)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"phone": "0262 41 00 00"}, "pas un numéro de mobile"),
    ({"phone": "12"}, "invalide"),
    ({"first_name": ""}, "Saisissez le prénom"),
    ({"last_name": "x" * 200}, "80 caractères au plus"),
    ({"birth_date": "2090-01-01"}, "doit être passée"),
    ({"birth_date": "pas une date"}, "date valide"),
    ({"email": "pas-un-courriel", "email_consent": "y"}, "Adresse électronique invalide"),
    ({"phone": "", "sms_consent": "y"}, "Saisissez un numéro de mobile"),
])
def test_bad_usager_input_is_refused_in_french_and_nothing_is_stored(client, auth, agent, db, overrides, message):
    auth.login(agent)
    response = client.post("/usagers/nouveau", data=form_data(client, **overrides))
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.query(Usager).count() == 0


def test_search_by_name_or_phone_finds_only_usagers_of_ones_organisations(client, auth, agent, factories):
    organisation = agent.roles[0].organisation
    factories.UsagerFactory(territory=organisation.territory, organisations=[organisation], first_name="Léa",
                            last_name="Hoarau", phone="+262692998877")
    factories.UsagerFactory(first_name="Léa", last_name="Hoarau-Autre", organisations=[factories.OrganisationFactory()])
    auth.login(agent)
    by_name = client.get("/usagers?q=hoar").get_data(as_text=True)
    assert "HOARAU Léa" in by_name and "HOARAU-AUTRE" not in by_name
    assert "HOARAU Léa" in client.get("/usagers?q=0692 99 88 77").get_data(as_text=True)
    assert "Aucun usager" in client.get("/usagers?q=%25").get_data(as_text=True)


def test_a_usager_of_another_organisation_is_not_found(client, auth, agent, factories):
    foreign = factories.UsagerFactory(organisations=[factories.OrganisationFactory()])
    auth.login(agent)
    assert client.get(f"/usagers/{foreign.id}").status_code == 404
    assert client.get(f"/usagers/{foreign.id}/modifier").status_code == 404
    assert client.get(f"/usagers/nouveau?responsable={foreign.id}").status_code == 404


def test_the_family_page_sums_up_no_shows_and_cancellations_late_ones_apart(client, auth, factories):
    from datetime import datetime, timedelta, timezone

    from lapins.models import RdvStatus

    organisation = factories.OrganisationFactory()
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    mother = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation])
    child = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation], responsible=mother)
    motif = factories.MotifFactory(organisation=organisation)
    start = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
    outcomes = [(RdvStatus.SEEN, None), (RdvStatus.NOSHOW, None), (RdvStatus.NOSHOW, None),
                (RdvStatus.EXCUSED, timedelta(hours=72)), (RdvStatus.EXCUSED, timedelta(hours=3)),
                (RdvStatus.REVOKED, timedelta(days=5))]
    for week, (status, notice) in enumerate(outcomes):
        starts_at = start + timedelta(weeks=week)
        factories.RdvFactory(motif=motif, usagers=[child], agents=[agent], starts_at=starts_at,
                             ends_at=starts_at + timedelta(minutes=30), status=status,
                             cancelled_at=starts_at - notice if notice else None)
    auth.login(agent)
    page = client.get(f"/usagers/{mother.id}").get_data(as_text=True)
    assert "1 venu" in page and "2 absences non excusées" in page
    assert "2 annulations par la famille, dont 1 moins de 48 h avant" in page
    assert "1 annulation par le service" in page


def test_a_child_found_by_name_or_by_the_parents_phone_shows_its_parent(client, auth, agent, factories):
    organisation = agent.roles[0].organisation
    parent = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Maëlys", last_name="Payet", phone="+262692123456")
    factories.UsagerFactory(territory=organisation.territory, organisations=[organisation], first_name="Noé",
                            last_name="Payet", phone=None, responsible=parent)
    auth.login(agent)
    by_phone = client.get("/usagers?q=0692 12 34 56").get_data(as_text=True)
    assert "PAYET Maëlys" in by_phone and "PAYET Noé" in by_phone
    booking = client.get("/rdvs/nouveau?usager_q=noé").get_data(as_text=True)
    assert "PAYET Noé" in booking and "enfant de Maëlys Payet" in booking


def test_a_new_family_and_its_child_from_the_booking_form_come_back_to_the_same_slot(client, auth, agent, db):
    auth.login(agent)
    slot = "/rdvs/nouveau?agent_id=1&starts_at=2026-03-03T08:30:00+00:00&motif_id=2"
    path = "/usagers/nouveau?next=" + quote(slot, safe="")
    page = client.get(path).get_data(as_text=True)
    assert "Le rendez-vous est pour un enfant ?" in page and "Enregistrer et revenir au rendez-vous" in page
    response = client.post(path, data=form_data(client, path, child_first_name="Noé", child_last_name="",
                                                 child_birth_date="2025-11-02"))
    assert response.status_code == 302
    child = db.session.scalar(db.select(Usager).where(Usager.first_name == "Noé"))
    assert child.last_name == "Payet" and child.responsible.first_name == "Maëlys"
    assert response.location == f"{slot}&usager_id={child.id}"


def test_a_childs_bad_details_are_refused_in_french_and_nothing_is_stored(client, auth, agent, db):
    auth.login(agent)
    path = "/usagers/nouveau?next=" + quote("/rdvs/nouveau?agent_id=1", safe="")
    response = client.post(path, data=form_data(client, path, child_first_name="", child_birth_date="2025-11-02"))
    assert response.status_code == 422
    assert "Saisissez le prénom de l&#39;enfant" in response.get_data(as_text=True)
    response = client.post(path, data=form_data(client, path, child_first_name="Noé", child_birth_date="2099-01-01"))
    assert response.status_code == 422 and "doit être passée" in response.get_data(as_text=True)
    assert db.session.query(Usager).count() == 0
