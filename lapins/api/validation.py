"""Checks a request's JSON body and query string against the schemas of lapins.api.schemas, in French, field by field.

Only the part of JSON Schema the declarations use is understood (types, nullable, required, additionalProperties
false, lengths, bounds, enums, patterns, items, the formats date and date-time); anything else in a schema is a
mistake of the declarations and fails loudly. Values come back converted: instants as aware UTC datetimes, days as
dates, hours (HOUR_PATTERN) as times.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timezone

from lapins.infra.forms import FIRST_YEAR, LAST_YEAR, name_problem

HOUR_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
DAY_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")
INSTANT_SHAPE = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)([Zz]|[+-]\d{2}:\d{2})")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_UNKNOWN_REPORTED = 5
KNOWN_KEYWORDS = {
    "type", "nullable", "properties", "required", "additionalProperties", "maxLength", "minLength", "minimum",
    "maximum", "enum", "pattern", "items", "maxItems", "minItems", "format", "description", "example", "title",
    "default", "x-multiline", "x-name",
}

INSTANT_MESSAGE = "Indiquez une date et heure ISO 8601 avec son fuseau (exemple : 2026-01-05T09:30:00Z)."
DAY_MESSAGE = "Indiquez une date au format AAAA-MM-JJ (exemple : 2026-01-05)."
HOUR_MESSAGE = "Indiquez une heure au format HH:MM (exemple : 09:00)."
YEARS_MESSAGE = f"Indiquez une date entre {FIRST_YEAR} et {LAST_YEAR}."


class Invalid(Exception):
    """The request's values refused, with a French message per field."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("invalid request")
        self.fields = fields


class _Refused(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def body(schema: dict, payload) -> dict:
    """The converted body, or Invalid naming each field refused."""
    if not isinstance(payload, dict):
        raise Invalid({"": "Le corps de la requête doit être un objet JSON."})
    fields: dict[str, str] = {}
    unknown = [name for name in payload if name not in schema["properties"]]
    if unknown and schema.get("additionalProperties") is False:
        for name in unknown[:MAX_UNKNOWN_REPORTED]:
            fields[str(name)[:40]] = "Champ inconnu."
    values = {}
    for name, field_schema in schema["properties"].items():
        if name not in payload:
            if name in schema.get("required", ()):
                fields[name] = "Ce champ est obligatoire."
            continue
        try:
            values[name] = _value(field_schema, payload[name])
        except _Refused as refused:
            fields[name] = refused.message
    if fields:
        raise Invalid(fields)
    return values


def query(parameters: dict[str, dict], args) -> dict:
    """The converted query string: each declared parameter from its text, the others ignored."""
    fields: dict[str, str] = {}
    values = {}
    for name, declaration in parameters.items():
        schema = declaration["schema"]
        raw = args.get(name)
        if raw is None or raw == "":
            if declaration.get("required"):
                fields[name] = "Ce paramètre est obligatoire."
            elif "default" in schema:
                values[name] = schema["default"]
            continue
        try:
            values[name] = _value(schema, _from_text(schema, raw))
        except _Refused as refused:
            fields[name] = refused.message
    if fields:
        raise Invalid(fields)
    return values


def _from_text(schema: dict, raw: str):
    if schema["type"] == "integer":
        if not re.fullmatch(r"-?\d{1,12}", raw):
            raise _Refused("Doit être un nombre entier.")
        return int(raw)
    if schema["type"] == "boolean":
        if raw not in ("true", "false"):
            raise _Refused("Doit être true ou false.")
        return raw == "true"
    return raw


def _value(schema: dict, value):
    unknown = set(schema) - KNOWN_KEYWORDS
    if unknown:
        raise ValueError(f"schema keywords not understood: {sorted(unknown)}")
    if value is None:
        if schema.get("nullable"):
            return None
        raise _Refused("Ce champ ne peut pas être vide (null).")
    kind = schema["type"]
    if kind == "integer":
        return _integer(schema, value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _Refused("Doit être true ou false.")
        return value
    if kind == "string":
        return _string(schema, value)
    if kind == "array":
        return _array(schema, value)
    raise ValueError(f"type not understood: {kind}")


def _integer(schema: dict, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Refused("Doit être un nombre entier.")
    low, high = schema.get("minimum"), schema.get("maximum")
    if (low is not None and value < low) or (high is not None and value > high):
        raise _Refused(f"Doit être compris entre {low} et {high}." if low is not None and high is not None
                       else f"Doit être au moins {low}." if low is not None else f"Doit être au plus {high}.")
    return value


def _string(schema: dict, value):
    if not isinstance(value, str):
        raise _Refused("Doit être une chaîne de caractères.")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise _Refused(f"{schema['maxLength']} caractères au plus.")
    if len(value) < schema.get("minLength", 0):
        raise _Refused("Ce champ ne peut pas être vide.")
    control = CONTROL_BUT_LINES if schema.get("x-multiline") else CONTROL
    if control.search(value):
        raise _Refused("Ce texte contient des caractères de contrôle, refusés.")
    if "x-name" in schema and (problem := name_problem(value, place=schema["x-name"] == "place")):
        raise _Refused(problem)  # the forms' rule and message (lapins.infra.forms)
    if "enum" in schema and value not in schema["enum"]:
        raise _Refused(f"Valeur inconnue : choisissez parmi {', '.join(schema['enum'])}.")
    if schema.get("format") == "date-time":
        return _instant(value)
    if schema.get("format") == "date":
        return _day(value)
    if schema.get("pattern") == HOUR_PATTERN:
        if not re.fullmatch(HOUR_PATTERN[1:-1], value):
            raise _Refused(HOUR_MESSAGE)
        return time(int(value[:2]), int(value[3:]))
    if "pattern" in schema and not re.fullmatch(schema["pattern"].removeprefix("^").removesuffix("$"), value):
        raise _Refused("Format invalide.")
    return value


def _array(schema: dict, value) -> list:
    if not isinstance(value, list):
        raise _Refused("Doit être une liste.")
    if len(value) > schema.get("maxItems", len(value)):
        raise _Refused(f"{schema['maxItems']} éléments au plus.")
    if len(value) < schema.get("minItems", 0):
        raise _Refused("Choisissez au moins un élément." if schema["minItems"] == 1
                       else f"Au moins {schema['minItems']} éléments.")
    items = []
    for position, item in enumerate(value, start=1):
        try:
            items.append(_value(schema["items"], item))
        except _Refused as refused:
            raise _Refused(f"Élément n° {position} : {refused.message[0].lower()}{refused.message[1:]}") from None
    return items


def _day(value: str) -> date:
    if not DAY_SHAPE.fullmatch(value):
        raise _Refused(DAY_MESSAGE)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise _Refused(DAY_MESSAGE) from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise _Refused(YEARS_MESSAGE)
    return day


def _instant(value: str) -> datetime:
    match = INSTANT_SHAPE.fullmatch(value)
    if not match:
        raise _Refused(INSTANT_MESSAGE)
    day, clock, offset = match.groups()
    clock = clock if len(clock) > 5 else clock + ":00"
    if "." in clock:  # microseconds at most, as Python reads them
        whole, fraction = clock.split(".")
        clock = f"{whole}.{fraction[:6].ljust(6, '0')}"
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        instant = datetime.fromisoformat(f"{day}T{clock}{offset}")
    except ValueError:
        raise _Refused(INSTANT_MESSAGE) from None
    if not FIRST_YEAR <= instant.year <= LAST_YEAR:
        raise _Refused(YEARS_MESSAGE)
    return instant.astimezone(timezone.utc)
