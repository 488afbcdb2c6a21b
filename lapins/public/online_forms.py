"""The online booking's forms: the need and the address (a GET, no CSRF), the family's details, the SMS code."""
from __future__ import annotations

from datetime import date

from wtforms import EmailField, HiddenField, RadioField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional, ValidationError

from lapins.infra.forms import DayField, Form, Given, int_or_zero, person_name
from lapins.locale.phones import InvalidPhone, normalize_mobile


class SearchForm(Form):
    class Meta:
        csrf = False  # a GET that changes nothing

    motif = RadioField("Votre besoin", coerce=int_or_zero, validate_choice=False)
    commune = StringField("Votre commune", validators=[Optional(), Length(max=120, message="120 caractères au plus.")])
    commune_code = HiddenField()
    rue = HiddenField(validators=[Optional(), Length(max=20, message="20 caractères au plus.")])  # a BAN street code
    voie = StringField("Votre rue", validators=[Optional(), Length(max=120, message="120 caractères au plus.")],
                       render_kw={"autocomplete": "address-line1"})


class DetailsForm(Form):
    last_name = StringField("Nom de famille", validators=[
        DataRequired("Saisissez votre nom de famille."), Length(max=80, message="80 caractères au plus.")],
        render_kw={"autocomplete": "family-name"})
    first_name = StringField("Votre prénom", validators=[
        DataRequired("Saisissez votre prénom."), Length(max=80, message="80 caractères au plus.")],
        render_kw={"autocomplete": "given-name"})
    child_first_name = StringField("Prénom de l'enfant", validators=[
        Length(max=80, message="80 caractères au plus."), person_name])
    birth_date = DayField("Date de naissance", validators=[Given("Saisissez la date de naissance (exemple : 05/01/2026).")],
                          render_kw={"type": "date"})
    phone = StringField("Téléphone mobile", validators=[
        DataRequired("Saisissez votre numéro de mobile : le code de vérification y est envoyé."),
        Length(max=30, message="Numéro de téléphone trop long.")],
        render_kw={"autocomplete": "tel", "inputmode": "tel"})
    email = EmailField("Adresse électronique (facultatif)", validators=[
        Optional(), Email("Adresse électronique invalide (exemple : nom@exemple.fr)."), Length(max=254)],
        render_kw={"autocomplete": "email"})
    # Left empty by people; robots filling every field are refused without saying why.
    site_web = StringField("Ne remplissez pas ce champ", render_kw={"autocomplete": "off", "tabindex": "-1"})

    def __init__(self, *args, territory_number: str, for_self: bool, today: date, **kwargs):
        super().__init__(*args, **kwargs)
        self.territory_number, self.for_self, self.today = territory_number, for_self, today
        self.phone_e164: str | None = None

    def validate_child_first_name(self, field):
        if not self.for_self and not (field.data or "").strip():
            raise ValidationError("Saisissez le prénom de l'enfant.")

    def validate_birth_date(self, field):
        if field.data is None:
            return
        if field.data > self.today:
            raise ValidationError("La date de naissance ne peut pas être dans le futur.")
        if field.data < date(1900, 1, 1):
            raise ValidationError("La date de naissance doit être postérieure à 1900.")

    def validate_phone(self, field):
        try:
            self.phone_e164 = normalize_mobile(field.data, self.territory_number)
        except InvalidPhone as error:
            raise ValidationError(str(error)) from None


class CodeForm(Form):
    code = StringField("Code reçu par SMS", validators=[DataRequired("Saisissez le code à 6 chiffres reçu par SMS.")],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "maxlength": "7"})


class ResendForm(Form):
    pass
