from wtforms import (
    BooleanField, IntegerField, RadioField, SelectChoice, SelectField, SelectMultipleField, StringField, TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from lapins.infra.forms import DayField, Form, Given, HourField, int_or_zero, within_years
from lapins.models import RdvStatus


class RdvForm(Form):
    """Choices are filled by the view from the agent's scope; ids outside it are refused with a French message."""

    motif_id = SelectField("Motif", coerce=int_or_zero, validate_choice=False,
                           validators=[InputRequired("Choisissez un motif.")])
    lieu_id = SelectField("Lieu", coerce=int_or_zero, validate_choice=False, validators=[Optional()])
    agent_ids = SelectMultipleField("Agent(s)", coerce=int_or_zero, validate_choice=False,
                                    validators=[DataRequired("Choisissez au moins un agent.")])
    usager_ids = SelectMultipleField("Usager(s)", coerce=int_or_zero, validate_choice=False,
                                     validators=[DataRequired("Choisissez au moins un usager.")])
    day = DayField("Date", [Given("Indiquez la date du rendez-vous."), within_years], render_kw={"type": "date"})
    start_time = HourField("Heure de début", [Given("Indiquez l'heure du rendez-vous.")])
    duration = IntegerField("Durée (minutes)", validators=[
        Optional(), NumberRange(min=5, max=720, message="La durée doit être comprise entre 5 et 720 minutes."),
    ])
    notes = TextAreaField("Notes (visibles des agents seulement)", validators=[
        Optional(), Length(max=2000, message="2 000 caractères au plus."),
    ])
    notify_only_id = SelectField("Qui prévenir ?", coerce=int_or_zero, validate_choice=False, validators=[Optional()])
    force = BooleanField("Je confirme ce rendez-vous malgré l'alerte ci-dessus")
    # Apart from `force`: confirming a date in the past or a second rdv must not also pass a conflict unseen.
    confirm_unusual = BooleanField("Je confirme ce rendez-vous malgré l'avertissement ci-dessus")


class NotifyOnlyForm(Form):
    """« Ne prévenir que … » on the rdv page: which guardian of the child gets the rdv's messages (0: both)."""

    notify_only_id = SelectField("Qui prévenir ?", coerce=int_or_zero, validate_choice=False, validators=[Optional()])


class CancelForm(Form):
    status = RadioField("Qui annule ?", choices=[
        SelectChoice(RdvStatus.EXCUSED.value, "L'usager (annulation excusée)"),
        SelectChoice(RdvStatus.REVOKED.value, "Le service (rendez-vous annulé par le service)"),
    ], validators=[InputRequired("Indiquez qui annule le rendez-vous.")])
    reason = StringField("Raison (facultatif)", validators=[Optional(), Length(max=255, message="255 caractères au plus.")])


class ReminderForm(Form):
    """The "send a reminder now" button: only its CSRF token."""


class OutcomeForm(Form):
    status = RadioField("Statut", choices=[
        SelectChoice(RdvStatus.SEEN.value, "Vu"),
        SelectChoice(RdvStatus.NOSHOW.value, "Absent non excusé"),
        SelectChoice(RdvStatus.UNKNOWN.value, "À renseigner"),
    ], validators=[InputRequired("Choisissez un statut.")])


class SlotSearchForm(Form):
    class Meta:
        csrf = False  # a GET search that changes nothing

    motif_id = SelectField("Motif", coerce=int_or_zero, validate_choice=False, validators=[InputRequired("Choisissez un motif.")])
    lieu_id = SelectField("Lieu", coerce=int_or_zero, validate_choice=False, validators=[Optional()])
    agent_id = SelectField("Agent", coerce=int_or_zero, validate_choice=False, validators=[Optional()])
    from_day = DayField("À partir du", [Optional(), within_years], render_kw={"type": "date"})


class SmsPreviewForm(Form):
    """What the booking form's SMS preview is drawn from; anything unreadable just gives no preview."""

    class Meta:
        csrf = False  # a GET that changes nothing

    motif_id = IntegerField(validators=[Optional()])
    lieu_id = IntegerField(validators=[Optional()])
    day = DayField("Date", [Optional(), within_years])
    start_time = HourField("Heure", [Optional()])
