"""The forms of collective sessions (ateliers): create (with a weekly repeat), move or edit, add a family, attendance,
places, cancel."""
from wtforms import IntegerField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.widgets import HiddenInput
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from lapins.booking.sessions import MAX_CAPACITY, MAX_REPEATS
from lapins.infra.forms import DayField, Form, Given, HourField, int_or_zero, within_years


class SessionForm(Form):
    """Choices are filled by the view from the agent's scope; ids outside it are refused with a French message."""

    motif_id = SelectField("Motif collectif", coerce=int_or_zero, validate_choice=False,
                           validators=[InputRequired("Choisissez un motif collectif.")])
    lieu_id = SelectField("Lieu", coerce=int_or_zero, validate_choice=False, validators=[Optional()])
    agent_ids = SelectMultipleField("Animée par", coerce=int_or_zero, validate_choice=False,
                                    validators=[DataRequired("Choisissez au moins un agent.")])
    title = StringField("Titre (facultatif)", validators=[Optional(), Length(max=160, message="160 caractères au plus.")])
    day = DayField("Date de la (première) séance", [Given("Indiquez la date de la séance."), within_years],
                   render_kw={"type": "date"})
    start_time = HourField("Heure de début", [Given("Indiquez l'heure de la séance.")])
    duration = IntegerField("Durée (minutes)", validators=[
        InputRequired("Indiquez la durée de la séance."),
        NumberRange(min=5, max=720, message="La durée doit être comprise entre 5 et 720 minutes.")])
    capacity = IntegerField("Nombre de places", validators=[
        InputRequired("Indiquez le nombre de places."),
        NumberRange(min=1, max=MAX_CAPACITY, message=f"Le nombre de places doit être compris entre 1 et {MAX_CAPACITY}.")])
    weeks = IntegerField("Nombre de séances (une par semaine, même jour, même heure)", default=1, validators=[
        InputRequired("Indiquez le nombre de séances (1 pour une séance unique)."),
        NumberRange(min=1, max=MAX_REPEATS, message=f"Entre 1 et {MAX_REPEATS} séances.")])
    notes = TextAreaField("Description (visible des agents)", validators=[
        Optional(), Length(max=2000, message="2 000 caractères au plus.")])


class SessionEditForm(Form):
    """Move a session or edit its title and description; its motif and places are kept (places: their own form).
    `revision` is the session's when the form was drawn: a move made meanwhile refuses this one."""

    lieu_id = SessionForm.lieu_id
    agent_ids = SessionForm.agent_ids
    title = SessionForm.title
    day = DayField("Date de la séance", [Given("Indiquez la date de la séance."), within_years],
                   render_kw={"type": "date"})
    start_time = SessionForm.start_time
    duration = SessionForm.duration
    notes = SessionForm.notes
    revision = IntegerField(widget=HiddenInput(), validators=[InputRequired("Rechargez la page de la séance.")])


class ParticipantForm(Form):
    usager_ids = SelectMultipleField("Personnes inscrites", coerce=int_or_zero, validate_choice=False,
                                     validators=[DataRequired("Choisissez au moins une personne à inscrire.")])


class WaitForm(Form):
    usager_id = IntegerField("Usager", validators=[InputRequired("Choisissez un usager.")])


class ParticipationForm(Form):
    """One participation of the session, named in the form (not the URL): cancelling one place."""

    participation_id = IntegerField("Inscription", validators=[InputRequired("Inscription inconnue.")])


class AttendanceForm(Form):
    present = SelectMultipleField("Présents", coerce=int_or_zero, validate_choice=False)


class CapacityForm(Form):
    capacity = IntegerField("Nombre de places", validators=[
        InputRequired("Indiquez le nombre de places."),
        NumberRange(min=1, max=MAX_CAPACITY, message=f"Le nombre de places doit être compris entre 1 et {MAX_CAPACITY}.")])


class CancelSessionForm(Form):
    reason = StringField("Raison (envoyée à chaque famille)", validators=[
        DataRequired("Indiquez la raison : chaque famille inscrite la reçoit."),
        Length(max=255, message="255 caractères au plus.")])
