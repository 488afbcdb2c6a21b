"""A form's error says, in French and on the form, what is expected — never WTForms' bare « N'est pas un entier
valide. » nor a 400 page (issue 19.15)."""
from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict
from wtforms import DateField, IntegerField, SelectChoice, SelectField
from wtforms.validators import NumberRange, Optional

from lapins.infra.forms import DayField, Form, within_years
from lapins.models import Role
from tests.conftest import csrf_token_from


class Sample(Form):
    class Meta:
        csrf = False

    minutes = IntegerField("Durée", validators=[Optional(), NumberRange(5, 240)])
    priority = IntegerField("Priorité", validators=[Optional(), NumberRange(0, 3, "Une priorité va de 0 à 3.")])
    count = IntegerField("Nombre", validators=[Optional()])
    day = DayField("Jour", [Optional(), within_years])
    born = DateField("Né le", validators=[Optional()], format="%Y-%m-%d")
    colour = SelectField("Couleur", choices=[SelectChoice("bleu", "Bleu")])


@pytest.mark.parametrize("field, value, message", [
    ("minutes", "1e309", "Saisissez un nombre entier entre 5 et 240."),
    ("minutes", "quinze", "Saisissez un nombre entier entre 5 et 240."),
    ("minutes", "999999", "Le nombre doit être compris entre 5 et 240."),
    ("priority", "-1e309", "Une priorité va de 0 à 3."),
    ("count", "12,5", "Saisissez un nombre entier, en chiffres (exemple : 30)."),
    ("day", "31/02/2026", "Saisissez une date valide (exemple : 05/01/2026)."),  # the field's own message stays
    ("day", "9999-12-31", "Saisissez une date entre 2000 et 2099."),
    ("born", "10000-01-01", "Saisissez une date valide (exemple : 05/01/2026)."),
    ("colour", "rouge", "Choisissez une des valeurs proposées dans la liste."),
])
def test_each_bad_value_gets_what_is_expected(app, field, value, message):
    with app.test_request_context(method="POST"):
        form = Sample(formdata=MultiDict({"colour": "bleu", field: value}))
        assert not form.validate()
        assert form[field].errors == [message]


def test_the_usager_forms_impossible_birth_date_is_told_on_the_form(client, auth, factories):
    organisation = factories.OrganisationFactory()
    auth.login(factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY))
    for value, message in (("9999-12-31", "La date de naissance doit être passée"),
                           ("31/12/9999", "Saisissez une date valide (exemple : 05/01/2026).")):
        token = csrf_token_from(client.get("/usagers/nouveau").get_data(as_text=True))
        response = client.post("/usagers/nouveau", data={"csrf_token": token, "first_name": "Léa",
                                                         "last_name": "Payet", "birth_date": value})
        page = response.get_data(as_text=True)
        assert response.status_code in (200, 422) and message in page and "Requête invalide" not in page
        assert "N&#39;est pas une date valide" not in page
