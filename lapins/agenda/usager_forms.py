from datetime import date

from wtforms import BooleanField, DateField, EmailField, HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional, ValidationError

from lapins.infra.forms import Form, int_or_zero
from lapins.locale.addresses import AddressFields, problems as address_problems
from lapins.locale.phones import InvalidPhone, normalize_mobile

# The form's field of each part of lapins.locale.addresses.AddressFields.
ADDRESS_FIELDS = {"street": "address_street", "postcode": "address_postcode", "commune": "address_commune",
                  "commune_insee": "commune_insee", "access": "address_access"}


class UsagerForm(Form):
    organisation_id = SelectField("Organisation", coerce=int_or_zero)
    first_name = StringField("Prénom", validators=[DataRequired("Saisissez le prénom."), Length(max=80, message="80 caractères au plus.")])
    last_name = StringField("Nom", validators=[DataRequired("Saisissez le nom."), Length(max=80, message="80 caractères au plus.")])
    birth_date = DateField("Date de naissance", validators=[Optional()], format="%Y-%m-%d",
                           render_kw={"type": "date"})
    phone = StringField("Téléphone mobile", validators=[Optional(), Length(max=30, message="Numéro de téléphone trop long.")])
    email = EmailField("Adresse électronique", validators=[
        Optional(), Email("Adresse électronique invalide (exemple : nom@exemple.fr)."), Length(max=254),
    ])
    sms_consent = BooleanField("Accepte de recevoir des SMS (rappels de rendez-vous)")
    email_consent = BooleanField("Accepte de recevoir des courriels")
    # The postal address, for home visits (never sent in an SMS or an e-mail).
    address_street = StringField("Numéro et rue", render_kw={"autocomplete": "street-address"})
    address_postcode = StringField("Code postal", render_kw={"autocomplete": "postal-code", "inputmode": "numeric"})
    address_commune = StringField("Commune", render_kw={"autocomplete": "address-level2"})
    # Filled by the communes' list when the form offers one; kept as it is otherwise.
    commune_insee = HiddenField("Code INSEE de la commune")
    address_access = StringField("Indications d'accès (code, étage, bâtiment)")

    def __init__(self, *args, territory_number: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.territory_number = territory_number
        self.phone_e164: str | None = None
        self.address = AddressFields()

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        self.address = AddressFields.typed(**{part: getattr(self, name).data for part, name in ADDRESS_FIELDS.items()})
        for part, message in address_problems(self.address).items():
            getattr(self, ADDRESS_FIELDS[part]).errors.append(message)
            valid = False
        return valid

    def validate_birth_date(self, field):
        if field.data and not date(1900, 1, 1) <= field.data <= date.today():
            raise ValidationError("La date de naissance doit être passée (et postérieure à 1900).")

    def validate_phone(self, field):
        self.phone_e164 = None
        if field.data and field.data.strip():
            try:
                self.phone_e164 = normalize_mobile(field.data, self.territory_number)
            except InvalidPhone as error:
                raise ValidationError(str(error)) from None

    def validate_sms_consent(self, field):
        if field.data and not (self.phone.data or "").strip():
            raise ValidationError("Saisissez un numéro de mobile pour envoyer des SMS.")

    def validate_email_consent(self, field):
        if field.data and not (self.email.data or "").strip():
            raise ValidationError("Saisissez une adresse électronique pour envoyer des courriels.")


class UsagerWithChildForm(UsagerForm):
    """Creating a family from the booking form: the parent and, when the rdv is for a child, the child in one step."""

    child_first_name = StringField("Prénom de l'enfant", validators=[
        Optional(), Length(max=80, message="80 caractères au plus.")])
    child_last_name = StringField("Nom de l'enfant", validators=[
        Optional(), Length(max=80, message="80 caractères au plus.")])
    child_birth_date = DateField("Date de naissance de l'enfant", validators=[Optional()], format="%Y-%m-%d",
                                 render_kw={"type": "date"})

    def validate_child_birth_date(self, field):
        if field.data and not (self.child_first_name.data or "").strip():
            raise ValidationError("Saisissez le prénom de l'enfant, ou videz sa date de naissance.")
        if field.data and not date(1900, 1, 1) <= field.data <= date.today():
            raise ValidationError("La date de naissance de l'enfant doit être passée.")

    def validate_child_last_name(self, field):
        if (field.data or "").strip() and not (self.child_first_name.data or "").strip():
            raise ValidationError("Saisissez le prénom de l'enfant, ou videz son nom.")

    @property
    def has_child(self) -> bool:
        return bool((self.child_first_name.data or "").strip())


class ExistingGuardianForm(Form):
    """An existing file made a child's responsible adult, by its number (the one in its page's address)."""

    usager_id = StringField("N° de dossier du responsable", validators=[
        DataRequired("Saisissez le numéro du dossier de l'adulte (il figure dans l'adresse de sa page)."),
        Length(max=12, message="Numéro de dossier trop long.")])

    @property
    def number(self) -> int:
        text = (self.usager_id.data or "").strip().lstrip("n°").strip()
        return int(text) if text.isdigit() and len(text) <= 9 else 0


class GuardianRemovalForm(Form):
    """CSRF only: removing a responsible adult is a POST."""
