"""Forms for plages d'ouverture, their exceptions and absences: every refusal is a French message next to its field."""
from __future__ import annotations

from wtforms import HiddenField, RadioField, SelectChoice, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from lapins.slots import engine as slots
from lapins.agenda.plage_exceptions import CHANGE, FROM_THIS_DATE, ONLY_THIS_DATE, REMOVE, ExceptionValues
from lapins.agenda.schedule_services import WEEKDAY_NAMES, AbsenceValues, PlageValues, weekdays_list, weekdays_mask
from lapins.infra.forms import DayField, Form, Given, HourField, int_or_zero, strip, within_years
from lapins.models import Absence, Lieu, Motif, PlageOuverture

TITLE_MAX = 160  # the column's length
MAX_EVERY_N_WEEKS = 4
WEEKDAY_CHOICES = [SelectChoice(day, name.capitalize()) for day, name in enumerate(WEEKDAY_NAMES)]
FREQUENCY_CHOICES = [SelectChoice(1, "Chaque semaine")] + [
    SelectChoice(n, f"Toutes les {n} semaines") for n in range(2, MAX_EVERY_N_WEEKS + 1)
]

END_BEFORE_START = "L'heure de fin doit être après l'heure de début."
LAST_BEFORE_FIRST = "Le dernier jour ne peut pas être avant le premier jour."


class CheckboxesField(SelectMultipleField):
    """Several choices as a list of DSFR checkboxes (rendered by templates/agenda/schedule/_macros.html)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class RecurrenceForm(Form):
    """Fields shared by plages and absences: which days, how often, from when to when, at what local hours."""

    weekdays = CheckboxesField(
        "Jours de la semaine", coerce=int, choices=WEEKDAY_CHOICES,
        invalid_value_message="Jour de la semaine inconnu.",
        invalid_choice_message="Jour de la semaine inconnu.",
    )
    every_n_weeks = SelectField(
        "Fréquence", coerce=int, choices=FREQUENCY_CHOICES, default=1,
        invalid_value_message=f"Choisissez une fréquence entre 1 et {MAX_EVERY_N_WEEKS} semaines.",
        invalid_choice_message=f"Choisissez une fréquence entre 1 et {MAX_EVERY_N_WEEKS} semaines.",
    )
    first_day = DayField("Premier jour", [Given("Indiquez le premier jour."), within_years])
    last_day = DayField("Dernier jour", [Optional(), within_years])
    start_time = HourField("Heure de début", [Given("Indiquez l'heure de début.")])
    end_time = HourField("Heure de fin", [Given("Indiquez l'heure de fin.")])

    def check_days_in_order(self) -> bool:
        if self.first_day.data and self.last_day.data and self.last_day.data < self.first_day.data:
            self.last_day.errors.append(LAST_BEFORE_FIRST)
            return False
        return True

    def check_times_in_order(self) -> bool:
        if self.start_time.data and self.end_time.data and self.end_time.data <= self.start_time.data:
            self.end_time.errors.append(END_BEFORE_START)
            return False
        return True

    def check_some_weekday(self) -> bool:
        if not self.weekdays.errors and not self.weekdays.data:
            self.weekdays.errors.append("Cochez au moins un jour de la semaine.")
            return False
        return True

    def recurrence(self, *, weekly: bool = True) -> slots.Recurrence:
        last_day = self.last_day.data if weekly else (self.last_day.data or self.first_day.data)
        return slots.Recurrence(
            first_day=self.first_day.data,
            last_day=last_day,
            start_time=self.start_time.data,
            end_time=self.end_time.data,
            weekdays=weekdays_mask(self.weekdays.data) if weekly else 0,
            every_n_weeks=self.every_n_weeks.data if weekly else 1,
        )

    @staticmethod
    def recurrence_data(target: PlageOuverture | Absence) -> dict:
        return {
            "weekdays": weekdays_list(target.weekdays),
            "every_n_weeks": target.every_n_weeks,
            "first_day": target.first_day,
            "last_day": target.last_day,
            "start_time": target.start_time,
            "end_time": target.end_time,
        }


class PlageForm(RecurrenceForm):
    title = StringField("Titre", [
        DataRequired("Donnez un titre à la plage d'ouverture."),
        Length(max=TITLE_MAX, message=f"Le titre ne doit pas dépasser {TITLE_MAX} caractères."),
    ], filters=[strip])
    # Scopes are checked in validate_*: a posted id outside them gets a French message, like junk (coerced to 0).
    lieu_id = SelectField("Lieu", coerce=int_or_zero, validate_choice=False)
    motif_ids = CheckboxesField("Motifs", coerce=int_or_zero, validate_choice=False)

    def __init__(self, *args, lieux: list[Lieu], motifs: list[Motif], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lieux = {lieu.id: lieu for lieu in lieux}
        self.motifs = {motif.id: motif for motif in motifs}
        several = len({lieu.organisation_id for lieu in lieux} | {motif.organisation_id for motif in motifs}) > 1
        self.several_organisations = several
        self.lieu_id.choices = [SelectChoice(0, "Choisissez un lieu")] + [
            SelectChoice(lieu.id, lieu.name, optgroup=lieu.organisation.name if several else None) for lieu in lieux
        ]
        self.motif_ids.choices = [SelectChoice(motif.id, motif.name) for motif in motifs]
        self.lieu_id.flags.required = True  # checked by validate_lieu_id; the flag shows the asterisk

    @classmethod
    def for_plage(cls, plage: PlageOuverture, **kwargs) -> PlageForm:
        data = cls.recurrence_data(plage) | {
            "title": plage.title, "lieu_id": plage.lieu_id, "motif_ids": [motif.id for motif in plage.motifs],
        }
        return cls(data=data, **kwargs)

    def motif_groups(self) -> list[tuple[str, list]]:
        """The motif checkboxes grouped by organisation, for agents working in several."""
        groups: dict[str, list] = {}
        for option in self.motif_ids:
            motif = self.motifs[option.data]
            groups.setdefault(motif.organisation.name, []).append(option)
        return list(groups.items())

    def validate_lieu_id(self, field) -> None:
        if field.data not in self.lieux:
            raise ValidationError("Choisissez un lieu dans la liste.")

    def validate_motif_ids(self, field) -> None:
        if not field.data:
            raise ValidationError("Cochez au moins un motif.")
        if any(motif_id not in self.motifs for motif_id in field.data):
            raise ValidationError("Choisissez les motifs dans la liste.")

    def check_motifs_match_lieu(self) -> bool:
        lieu = self.lieux.get(self.lieu_id.data)
        if lieu is None or self.motif_ids.errors:
            return True
        foreign = [self.motifs[i].name for i in self.motif_ids.data if self.motifs[i].organisation_id != lieu.organisation_id]
        if foreign:
            self.motif_ids.errors.append(
                "Ces motifs n'appartiennent pas à l'organisation du lieu choisi "
                f"({lieu.organisation.name}) : {', '.join(foreign)}."
            )
            return False
        return True

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        checks = [self.check_some_weekday(), self.check_days_in_order(), self.check_times_in_order(),
                  self.check_motifs_match_lieu()]
        return valid and all(checks)

    def values(self) -> PlageValues:
        return PlageValues(
            title=self.title.data,
            lieu=self.lieux[self.lieu_id.data],
            motifs=[self.motifs[motif_id] for motif_id in dict.fromkeys(self.motif_ids.data)],
            recurrence=self.recurrence(),
        )


ONE_OFF, WEEKLY = "ponctuelle", "recurrente"


class AbsenceForm(RecurrenceForm):
    title = StringField("Titre", [
        DataRequired("Donnez un titre à l'absence (exemple : congés, formation)."),
        Length(max=TITLE_MAX, message=f"Le titre ne doit pas dépasser {TITLE_MAX} caractères."),
    ], filters=[strip])
    kind = RadioField(
        "Type d'absence", choices=[SelectChoice(ONE_OFF, "Ponctuelle"), SelectChoice(WEEKLY, "Récurrente")],
        default=ONE_OFF, invalid_choice_message="Choisissez un type d'absence.",
    )

    @classmethod
    def for_absence(cls, absence: Absence) -> AbsenceForm:
        data = cls.recurrence_data(absence) | {"title": absence.title, "kind": WEEKLY if absence.weekdays else ONE_OFF}
        return cls(data=data)

    @property
    def is_weekly(self) -> bool:
        return self.kind.data == WEEKLY

    def check_one_off_span(self) -> bool:
        """A one-off absence runs from first day + start time to last day + end time (empty last day: same day)."""
        first, last = self.first_day.data, self.last_day.data or self.first_day.data
        if first is None or last is None or self.last_day.errors:
            return True
        if last < first:
            self.last_day.errors.append(LAST_BEFORE_FIRST)
            return False
        if last == first and self.start_time.data and self.end_time.data and self.end_time.data <= self.start_time.data:
            self.end_time.errors.append(END_BEFORE_START)
            return False
        return True

    def validate(self, extra_validators=None) -> bool:
        if not self.is_weekly:
            # Days and frequency only matter for a recurring absence: stale ticks must not block a one-off one.
            self.weekdays.data, self.weekdays.process_errors = [], []
            self.every_n_weeks.data, self.every_n_weeks.process_errors = 1, []
        valid = super().validate(extra_validators)
        if self.is_weekly:
            checks = [self.check_some_weekday(), self.check_days_in_order(), self.check_times_in_order()]
        else:
            checks = [self.check_one_off_span()]
        return valid and all(checks)

    def values(self) -> AbsenceValues:
        return AbsenceValues(title=self.title.data, recurrence=self.recurrence(weekly=self.is_weekly))


class PlageExceptionForm(Form):
    """One date of a plage, or every date from it on: removed, or other hours (and lieu). The date's own checks
    (one of the plage's dates, within its period) are the view's, which knows the plage."""

    day = DayField("Date", [Given("Indiquez la date."), within_years])
    scope = RadioField("Dates concernées", choices=[
        SelectChoice(ONLY_THIS_DATE, "Cette date seulement"),
        SelectChoice(FROM_THIS_DATE, "Cette date et les suivantes"),
    ], default=ONLY_THIS_DATE, invalid_choice_message="Choisissez les dates concernées.")
    action = RadioField("Changement", choices=[
        SelectChoice(REMOVE, "Pas d'ouverture (retirer)"),
        SelectChoice(CHANGE, "Autres horaires ou autre lieu"),
    ], default=REMOVE, invalid_choice_message="Choisissez le changement.")
    start_time = HourField("Heure de début", [Optional()])
    end_time = HourField("Heure de fin", [Optional()])
    lieu_id = SelectField("Lieu", coerce=int_or_zero, validate_choice=False)
    confirmed = HiddenField()

    def __init__(self, *args, lieux: list[Lieu], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lieux = {lieu.id: lieu for lieu in lieux}
        self.lieu_id.choices = [SelectChoice(lieu.id, lieu.name) for lieu in lieux]

    @classmethod
    def for_date(cls, plage: PlageOuverture, day, **kwargs) -> PlageExceptionForm:
        exception = plage.exception_on(day) if day else None
        changed = exception is not None and not exception.removed
        data = {"day": day, "scope": ONLY_THIS_DATE, "action": CHANGE if changed else REMOVE,
                "start_time": exception.start_time if changed else plage.start_time,
                "end_time": exception.end_time if changed else plage.end_time, "lieu_id": plage.lieu_id}
        return cls(data=data, **kwargs)

    @property
    def changes(self) -> bool:
        return self.action.data == CHANGE

    def check_change(self) -> bool:
        if not self.changes:
            return True
        ok = True
        for field, message in ((self.start_time, "Indiquez l'heure de début."),
                               (self.end_time, "Indiquez l'heure de fin.")):
            if field.data is None and not field.errors:
                field.errors.append(message)
                ok = False
        if ok and self.end_time.data <= self.start_time.data:
            self.end_time.errors.append(END_BEFORE_START)
            ok = False
        if self.lieu_id.data not in self.lieux:
            self.lieu_id.errors.append("Choisissez un lieu dans la liste.")
            ok = False
        return ok

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        return self.check_change() and valid

    def values(self) -> ExceptionValues:
        if not self.changes:
            return ExceptionValues(day=self.day.data, scope=self.scope.data, action=REMOVE)
        return ExceptionValues(day=self.day.data, scope=self.scope.data, action=CHANGE,
                               start_time=self.start_time.data, end_time=self.end_time.data,
                               lieu=self.lieux[self.lieu_id.data])
