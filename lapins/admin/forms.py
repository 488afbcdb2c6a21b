"""The administration's forms: every field is checked, with a French message, before anything is stored."""
from __future__ import annotations

import math
import re

from wtforms import BooleanField, EmailField, IntegerField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Email, InputRequired, Length, NumberRange, Optional, ValidationError

from lapins.infra.forms import Form, place_name
from lapins.models import LocationType, Role
from lapins.models.motifs import CATALOGUE_FIELDS
from lapins.notifications import timing
from lapins.locale.phones import InvalidPhone, french_number

COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
MIN_DURATION, MAX_DURATION = 5, 480
MAX_CANCELLATION_HOURS = 720
MAX_FAMILY_MOVES = 10
MAX_HORIZON_WEEKS = 52


def one_line(value):
    """Spaces collapsed, as a name is shown on one line; control characters (a pasted tab, a newline) go too."""
    return " ".join(value.split()) if isinstance(value, str) else value


def no_markup(form, field) -> None:
    if field.data and re.search(r"[<>]", field.data):
        raise ValidationError("Les caractères < et > ne sont pas acceptés.")


def french_phone(raw: str, territory_number: str) -> str:
    """The E.164 form of a French number, fixed or mobile (the number a family calls), or ValidationError."""
    try:
        if len(raw) > 30:
            raise InvalidPhone()
        return french_number(raw, territory_number)
    except InvalidPhone:
        raise ValidationError("Numéro de téléphone invalide (exemples : 01 40 00 00 00, 0262 12 34 56).") from None


class PhoneForm(Form):
    """A form with an optional phone field, normalised in the territory's numbering plan into `phone_e164`."""

    phone = StringField("Téléphone (facultatif)", filters=[one_line],
                        validators=[Optional(), Length(max=30, message="Numéro de téléphone trop long.")])

    def __init__(self, *args, territory_number: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.territory_number = territory_number
        self.phone_e164: str | None = None

    def validate_phone(self, field) -> None:
        self.phone_e164 = french_phone(field.data, self.territory_number) if field.data else None


class OrganisationForm(PhoneForm):
    name = StringField("Nom de l'organisation", filters=[one_line], validators=[
        DataRequired("Saisissez le nom de l'organisation."), Length(max=160, message="160 caractères au plus."),
        no_markup])


class LieuForm(PhoneForm):
    name = StringField("Nom du lieu", filters=[one_line], validators=[
        DataRequired("Saisissez le nom du lieu."), Length(max=160, message="160 caractères au plus."), no_markup,
        place_name])
    address = StringField("Adresse", filters=[one_line], validators=[
        DataRequired("Saisissez l'adresse du lieu."), Length(max=255, message="255 caractères au plus."), no_markup])
    active = BooleanField("Lieu ouvert (proposé à la prise de rendez-vous)", default=True)
    online_booking = BooleanField("Réservable en ligne par les familles (pour les motifs qui le sont)", default=True)
    latitude = StringField("Latitude (facultatif)", filters=[one_line])
    longitude = StringField("Longitude (facultatif)", filters=[one_line])

    def validate_latitude(self, field) -> None:
        field.data = _degrees(field.data, 90, "La latitude", "48.8566")

    def validate_longitude(self, field) -> None:
        field.data = _degrees(field.data, 180, "La longitude", "2.3522")
        if (self.latitude.data is None) != (field.data is None) and not self.latitude.errors:
            raise ValidationError("Indiquez la latitude et la longitude, ou aucune des deux.")

    def position_into(self, lieu) -> None:
        """Online booking and the position onto the lieu (saved with the rest of the form)."""
        lieu.online_booking, lieu.latitude, lieu.longitude = (self.online_booking.data, self.latitude.data,
                                                              self.longitude.data)


def _degrees(raw, bound: int, what: str, example: str) -> float | None:
    """Decimal degrees within ±bound (a comma accepted for the point), or None when left empty."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        value = float(str(raw).replace(",", ".")) if len(str(raw)) <= 20 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not -bound <= value <= bound:
        raise ValidationError(f"{what} s'écrit en degrés décimaux, de -{bound} à {bound} (exemple : {example}).")
    return value


class WholeNumberField(IntegerField):
    """An integer typed in a box, with a French message when it is not one (or is absurdly long)."""

    def process_formdata(self, valuelist):
        if not valuelist or not valuelist[0].strip():
            self.data = None
            return
        try:
            self.data = int(valuelist[0].strip()) if len(valuelist[0]) <= 12 else None
        except ValueError:
            self.data = None
        if self.data is None:
            raise ValueError("Saisissez un nombre entier (exemple : 30).")


class KeptNumberField(WholeNumberField):
    """A whole number that a form posted without it (a script written for an older release) leaves as it was."""

    def process_formdata(self, valuelist):
        if valuelist:
            super().process_formdata(valuelist)


LOCATION_CHOICES = [SelectChoice(kind.value, kind.label) for kind in LocationType]


def _known_location(form, field) -> None:
    if field.data not in {kind.value for kind in LocationType}:
        raise ValidationError("Choisissez où se tient le rendez-vous parmi la liste.")


MAX_ONLINE_MIN_HOURS = 720
MAX_ONLINE_MAX_DAYS = 365


class OnlineBookingFields(Form):
    """A motif's online booking (issue 15), in a fieldset of its own on the motif's form."""

    online_bookable = BooleanField("Réservable en ligne par les familles", default=False)
    online_min_hours = KeptNumberField("Pas avant (heures après la réservation)", default=2, validators=[
        NumberRange(0, MAX_ONLINE_MIN_HOURS, f"Indiquez un nombre d'heures de 0 à {MAX_ONLINE_MIN_HOURS}.")])
    online_max_days = KeptNumberField("Pas après (jours après la réservation)", default=42, validators=[
        NumberRange(1, MAX_ONLINE_MAX_DAYS, f"Indiquez un nombre de jours de 1 à {MAX_ONLINE_MAX_DAYS}.")])
    sectorised = BooleanField("Sectorisé : proposé seulement dans les lieux qui servent l'adresse de la famille",
                              default=False)
    online_for_self = BooleanField("Pour la personne elle-même (prénatal, planification familiale) : pas d'enfant "
                                   "demandé", default=False)

    def validate_online_max_days(self, field) -> None:
        low, high = self.online_min_hours.data, field.data
        if low is not None and high is not None and low >= high * 24:
            raise ValidationError(f"Le délai maximum ({high} jours) doit dépasser le délai minimum ({low} heures).")

    def online_booking_into(self, motif) -> None:
        """The fieldset's values onto the motif (saved with the rest of the form)."""
        motif.online_bookable, motif.sectorised = self.online_bookable.data, self.sectorised.data
        motif.online_for_self = self.online_for_self.data
        if self.online_min_hours.data is not None:
            motif.online_min_hours = self.online_min_hours.data
        if self.online_max_days.data is not None:
            motif.online_max_days = self.online_max_days.data


class MotifForm(OnlineBookingFields):
    name = StringField("Nom du motif", filters=[one_line], validators=[
        DataRequired("Saisissez le nom du motif."), Length(max=160, message="160 caractères au plus."), no_markup])
    duration_minutes = WholeNumberField("Durée (minutes)", default=30, validators=[
        InputRequired("Saisissez la durée en minutes."),
        NumberRange(MIN_DURATION, MAX_DURATION, f"La durée va de {MIN_DURATION} à {MAX_DURATION} minutes.")])
    location_type = SelectField("Lieu du rendez-vous", choices=LOCATION_CHOICES, default=LocationType.ON_SITE.value,
                                validate_choice=False,
                                validators=[DataRequired("Choisissez où se tient le rendez-vous."), _known_location])
    color = StringField("Couleur dans l'agenda", default="#000091", filters=[one_line],
                        validators=[DataRequired("Choisissez une couleur.")], render_kw={"type": "color"})
    cancellation_limit_hours = WholeNumberField("Annulation par la famille possible jusqu'à (heures avant)", default=4,
                                                validators=[
        InputRequired("Saisissez un nombre d'heures (0 : jusqu'au dernier moment)."),
        NumberRange(0, MAX_CANCELLATION_HOURS, f"Indiquez un nombre d'heures de 0 à {MAX_CANCELLATION_HOURS}.")])
    move_limit_hours = KeptNumberField("Changement de date par la famille possible jusqu'à (heures avant)", default=24,
                                       validators=[NumberRange(0, MAX_CANCELLATION_HOURS, "Indiquez un nombre "
                                                               f"d'heures de 0 à {MAX_CANCELLATION_HOURS}.")])
    family_moves_max = KeptNumberField("Changements de date par la famille, par rendez-vous", default=2, validators=[
        NumberRange(0, MAX_FAMILY_MOVES, f"Indiquez un nombre de 0 à {MAX_FAMILY_MOVES} (0 : jamais en ligne).")])
    booking_horizon_weeks = KeptNumberField("Créneaux proposés aux familles sur (semaines)", default=8, validators=[
        NumberRange(1, MAX_HORIZON_WEEKS, f"Indiquez un nombre de semaines de 1 à {MAX_HORIZON_WEEKS}.")])
    reminder_offsets = StringField("Rappels (heures avant, facultatif)", filters=[one_line], validators=[
        Optional(), Length(max=40, message="40 caractères au plus.")])
    notify = BooleanField("Prévenir les familles (confirmation, changements, rappels)", default=True)
    # Issue 23.2: a motif never named where another person may read.
    discreet = BooleanField("Motif discret : ne jamais le nommer dans les messages aux familles", default=False)
    active = BooleanField("Motif actif (proposé à la prise de rendez-vous)", default=True)
    # « Collectif » (issue 16): sessions with places rather than one family per slot.
    collective = BooleanField("Motif collectif (ateliers, séances de groupe avec un nombre de places)")
    places_per_person = BooleanField("Compter une place par personne (un parent et son bébé : 2 places) plutôt "
                                     "qu'une par famille")

    def catalogue_values(self) -> dict:
        """The values of the fields a catalogue entry defines (lapins.models.motifs.CATALOGUE_FIELDS)."""
        return {name: self[name].data for name in CATALOGUE_FIELDS}

    def validate_color(self, field) -> None:
        if not COLOR.fullmatch(field.data or ""):
            raise ValidationError("La couleur s'écrit #RRGGBB (exemple : #000091).")

    def validate_reminder_offsets(self, field) -> None:
        try:
            hours = timing.parse_offsets(field.data)
        except timing.InvalidOffsets as error:
            raise ValidationError(str(error)) from None
        field.data = ",".join(str(hour) for hour in hours) or None


ROLE_CHOICES = [SelectChoice(role.value, role.label) for role in (Role.AGENT, Role.SECRETARY, Role.ADMIN)]


def _known_role(form, field) -> None:
    if field.data not in {role.value for role in Role}:
        raise ValidationError("Choisissez un rôle parmi la liste.")


def email_field(label: str, missing: str) -> EmailField:
    return EmailField(label, filters=[one_line], validators=[
        DataRequired(missing), Length(max=254, message="254 caractères au plus."),
        Email("Adresse électronique invalide (exemple : prenom.nom@departement.fr).")])


class InvitationForm(Form):
    email = email_field("Adresse électronique", "Saisissez l'adresse électronique de l'agent.")
    first_name = StringField("Prénom", filters=[one_line], validators=[
        DataRequired("Saisissez le prénom."), Length(max=80, message="80 caractères au plus."), no_markup])
    last_name = StringField("Nom", filters=[one_line], validators=[
        DataRequired("Saisissez le nom."), Length(max=80, message="80 caractères au plus."), no_markup])
    role = SelectField("Rôle dans l'organisation", choices=ROLE_CHOICES, default=Role.AGENT.value,
                       validate_choice=False, validators=[_known_role])


class RoleForm(Form):
    role = SelectField("Rôle", choices=ROLE_CHOICES, validate_choice=False, validators=[_known_role])


class TerritoryAdminForm(Form):
    email = email_field("Adresse électronique de l'agent",
                        "Saisissez l'adresse électronique d'un agent du territoire.")


class ConfirmForm(Form):
    """A bare POST form: its CSRF token is the whole point."""
