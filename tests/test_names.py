"""One rule for every person's and place's name — letters, spaces, apostrophes, hyphens, dots (digits too for a
place) — with the same French message on the agents' forms, in the CSV imports and in the API (issue 19.14)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from lapins.infra.forms import NAME_MESSAGE, PLACE_NAME_MESSAGE, name_problem
from lapins.models import Lieu, Role, Usager
from tests.conftest import csrf_token_from
from tests.test_api import PREFIX, Clinic
from tests.test_imports import csv_file, run

REFUSED = ["<b>Léa</b>", "Léa\x07", "Léa\u200b", "Jo;DROP", "Léa 2", "Tom_", "@dmin", "'-. ", "Lé\na"]
ACCEPTED = ["Léa", "Marie-Hélène", "N'Diaye", "N’Guessan", "St. Pierre", "Ngô Thị", "Ægir", "Łukasz",
            "Da Silva Dos Santos", "Le\u0301a"]


@pytest.mark.parametrize("name", ACCEPTED)
def test_real_names_are_accepted(name):
    assert name_problem(name) is None and name_problem(name, place=True) is None


@pytest.mark.parametrize("name", REFUSED)
def test_markup_control_characters_symbols_and_digits_are_refused_in_a_persons_name(name):
    assert name_problem(name) == NAME_MESSAGE


def test_a_place_may_have_digits_but_no_markup():
    assert name_problem("Centre PMI Paris 15e", place=True) is None
    assert name_problem("<i>Centre</i>", place=True) == PLACE_NAME_MESSAGE
    assert name_problem("2", place=True) == PLACE_NAME_MESSAGE  # at least one letter


def test_the_usager_form_refuses_markup_in_a_familys_name_with_the_message_on_the_field(client, auth, factories, db):
    organisation = factories.OrganisationFactory()
    auth.login(factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY))
    token = csrf_token_from(client.get("/usagers/nouveau").get_data(as_text=True))
    response = client.post("/usagers/nouveau", data={"csrf_token": token, "first_name": "<b>Léa</b>",
                                                     "last_name": "Payet", "phone": "", "email": ""})
    page = response.get_data(as_text=True)
    assert response.status_code in (200, 422) and NAME_MESSAGE.replace("'", "&#39;") in page
    assert "<b>Léa</b>" not in page
    assert db.session.scalar(select(func.count()).select_from(Usager)) == 0


def test_the_api_refuses_the_same_names_with_the_same_message(client, factories, db):
    clinic = Clinic(factories)
    response = client.post(f"{PREFIX}/usagers", headers=clinic.headers,
                           json={"first_name": "Léa", "last_name": "Payet<script>"})
    assert response.status_code == 422 and response.json["fields"]["last_name"] == NAME_MESSAGE
    assert client.post(f"{PREFIX}/usagers", headers=clinic.headers,
                       json={"first_name": "Léa", "last_name": "N'Diaye-Payet"}).status_code == 201


def test_the_imports_reject_the_line_with_the_same_message(app, db, factories, tmp_path):
    territory = factories.TerritoryFactory(number="59", name="Nord")
    factories.OrganisationFactory(territory=territory, name="PMI Lille")
    lieux = csv_file(tmp_path, 'nom,adresse,telephone\n<b>Centre</b>,"1 rue X, 59000 Lille",\n'
                               'Centre PMI 2,"2 rue X, 59000 Lille",\n', name="lieux.csv")
    result = run(app, "import-lieux", "59", "PMI Lille", lieux)
    assert "importées : 1" in result.output and "rejetées : 1" in result.output, result.output
    assert "Le nom : saisissez seulement des lettres, des chiffres" in result.output
    assert [lieu.name for lieu in db.session.scalars(select(Lieu))] == ["Centre PMI 2"]

    agents = csv_file(tmp_path, "email,prenom,nom,role\nclaire@pmi.example.fr,Claire,Mar\x01tin,agent\n",
                      name="agents.csv")
    result = run(app, "import-agents", "59", "PMI Lille", agents)
    assert "rejetées : 1" in result.output and "Le nom : saisissez seulement des lettres" in result.output


def test_the_lieu_form_refuses_a_place_name_with_the_same_message(client, auth, factories, db):
    organisation = factories.OrganisationFactory()
    auth.login(factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN))
    url = f"/admin/organisations/{organisation.id}/lieux/nouveau"
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    refused = client.post(url, data={"csrf_token": token, "name": "Centre PMI #12 @home",
                                     "address": "1 rue X, 59000 Lille", "phone": "", "active": "y"})
    assert refused.status_code in (200, 422)
    assert PLACE_NAME_MESSAGE.replace("'", "&#39;") in refused.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Lieu)) == 0
    accepted = client.post(url, data={"csrf_token": token, "name": "Centre PMI Paris 15e",
                                      "address": "1 rue X, 75015 Paris", "phone": "", "active": "y"})
    assert accepted.status_code == 302 and db.session.scalar(select(func.count()).select_from(Lieu)) == 1
