"""The base of every form: Flask-WTF (CSRF included) with WTForms' own messages in French, and the one rule for
people's and places' names (forms, imports and the API all ask `name_problem`)."""
import re
import unicodedata

from flask_wtf import FlaskForm
from wtforms import DateField, DecimalField, FloatField, IntegerField, SelectField, SelectMultipleField, TimeField
from wtforms.i18n import get_translations
from wtforms.validators import NumberRange, StopValidation, ValidationError

FIRST_YEAR, LAST_YEAR = 2000, 2099


# A person's name: letters (any alphabet, accents composed), spaces, apostrophes, hyphens, dots. A place's name
# may also hold digits (« PMI Paris 15e », « Centre 2 »). Markup, control characters and symbols are refused.
_PERSON_NAME = re.compile(r"(?:[^\W\d_]|[ '’.\-])+")
_PLACE_NAME = re.compile(r"(?:[^\W_]|[ '’.\-])+")
NAME_MESSAGE = ("Saisissez seulement des lettres, des espaces, des apostrophes, des tirets et des points "
                "(exemple : Marie-Hélène N'Diaye).")
PLACE_NAME_MESSAGE = ("Saisissez seulement des lettres, des chiffres, des espaces, des apostrophes, des tirets et des "
                      "points (exemple : Centre PMI St-Denis 2).")
# Fields of any form that hold a person's name: the base form checks them, so no form can forget it.
PERSON_NAME_FIELDS = frozenset({"first_name", "last_name", "birth_name"})


def name_problem(value: str | None, *, place: bool = False) -> str | None:
    """The French message when `value` is not an acceptable name, None when it is (or is empty: "required" is
    another rule's)."""
    if not value or not value.strip():
        return None
    text = unicodedata.normalize("NFC", value.strip())
    pattern = _PLACE_NAME if place else _PERSON_NAME
    if not pattern.fullmatch(text) or not any(char.isalpha() for char in text):
        return PLACE_NAME_MESSAGE if place else NAME_MESSAGE
    return None


def person_name(form, field) -> None:
    if (problem := name_problem(field.data)) is not None:
        raise ValidationError(problem)


def place_name(form, field) -> None:
    if (problem := name_problem(field.data, place=True)) is not None:
        raise ValidationError(problem)


class Form(FlaskForm):
    class Meta:
        locales = ("fr_FR", "fr")

        def get_translations(self, form):
            return get_translations(self.locales)

    def validate(self, extra_validators=None) -> bool:
        extra = {name: list(validators) for name, validators in (extra_validators or {}).items()}
        for name in PERSON_NAME_FIELDS & set(self._fields):
            extra.setdefault(name, []).append(person_name)
        valid = super().validate(extra_validators=extra)
        for field in self:
            bare = {field.gettext(text) for text in _BARE_ERRORS}
            if field.process_errors and field.process_errors[0] in bare:
                field.errors = [expected_value(field)]  # unreadable: one message, what is expected, not its echoes
            elif any(error in bare for error in field.errors):
                field.errors = [expected_value(field) if error in bare else error for error in field.errors]
        return valid


# WTForms' own messages, which say what is wrong but not what is expected; a field's own message is kept.
_BARE_ERRORS = ("Not a valid integer value.", "Not a valid decimal value.", "Not a valid float value.",
                "Not a valid date value.", "Not a valid choice.", "Invalid Choice: could not coerce.")


def expected_value(field) -> str:
    """What a field expects, said in French, in place of WTForms' bare « N'est pas un entier valide. » or « N'est
    pas une date valide. » (issue 19.15): a number's range comes from its NumberRange, a date's from within_years."""
    if isinstance(field, (IntegerField, DecimalField, FloatField)):
        bounds = next((validator for validator in field.validators if isinstance(validator, NumberRange)), None)
        if bounds is not None and bounds.message:
            return bounds.message
        kind = "un nombre entier" if isinstance(field, IntegerField) else "un nombre"
        if bounds is not None and bounds.min is not None and bounds.max is not None:
            return f"Saisissez {kind} entre {bounds.min} et {bounds.max}."
        return f"Saisissez {kind}, en chiffres (exemple : 30)."
    if isinstance(field, DateField):
        if within_years in field.validators:
            return f"Saisissez une date entre {FIRST_YEAR} et {LAST_YEAR} (exemple : 05/01/2026)."
        return "Saisissez une date valide (exemple : 05/01/2026)."
    if isinstance(field, (SelectField, SelectMultipleField)):
        return "Choisissez une des valeurs proposées dans la liste."
    return (field.process_errors or field.errors)[0]


def int_or_zero(value) -> int:
    """Coerce a posted id; junk becomes 0, an id that no scope contains, so the view's French message applies."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def strip(value):
    return value.strip() if isinstance(value, str) else value


class BlankIsMissing:
    """An empty input means "not given" (for Given/Optional to judge), not "badly formatted"."""

    def process_formdata(self, valuelist):
        if valuelist and not valuelist[0].strip():
            self.data = None
            return
        super().process_formdata([value.strip() for value in valuelist])


class DayField(BlankIsMissing, DateField):
    """A date sent by a date picker (AAAA-MM-DD) or typed as JJ/MM/AAAA."""

    def __init__(self, label: str, validators=None, **kwargs) -> None:
        super().__init__(
            label, validators, format=["%Y-%m-%d", "%d/%m/%Y"],
            invalid_value_message="Saisissez une date valide (exemple : 05/01/2026).", **kwargs,
        )


class HourField(BlankIsMissing, TimeField):
    """A local wall-clock time sent by a time picker (HH:MM) or typed as 9h30."""

    def __init__(self, label: str, validators=None, **kwargs) -> None:
        super().__init__(
            label, validators, format=["%H:%M", "%Hh%M", "%H:%M:%S", "%Hh"],
            invalid_value_message="Saisissez une heure valide au format HH:MM (exemple : 09:00).", **kwargs,
        )


class Given:
    """Like DataRequired, but keeps the field's "invalid format" message instead of replacing it by "missing"."""

    field_flags = {"required": True}

    def __init__(self, message: str) -> None:
        self.message = message

    def __call__(self, form, field) -> None:
        if field.process_errors:
            raise StopValidation()
        if field.data is None:
            raise StopValidation(self.message)


def within_years(form, field) -> None:
    if field.data is not None and not FIRST_YEAR <= field.data.year <= LAST_YEAR:
        raise ValidationError(f"Saisissez une date entre {FIRST_YEAR} et {LAST_YEAR}.")
