"""Dates, times and phone numbers as a French reader expects them, in the territory's time zone."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_time
from flask import Flask

LOCALE = "fr_FR"


def local_datetime(value: datetime, tz: ZoneInfo) -> str:
    """« mardi 3 mars 2026 à 09h30 »"""
    return format_datetime(value, "EEEE d MMMM y 'à' HH'h'mm", tzinfo=tz, locale=LOCALE)


def local_time(value: datetime, tz: ZoneInfo) -> str:
    return format_time(value, "HH'h'mm", tzinfo=tz, locale=LOCALE)


def long_date(value: date) -> str:
    return format_date(value, "EEEE d MMMM y", locale=LOCALE)


def short_date(value: date | datetime, tz: ZoneInfo | None = None) -> str:
    if isinstance(value, datetime):
        return format_datetime(value, "dd/MM/y", tzinfo=tz, locale=LOCALE)
    return format_date(value, "dd/MM/y", locale=LOCALE)


def local_iso_date(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).date().isoformat()


def phone_display(e164: str | None) -> str:
    if not e164:
        return ""
    import phonenumbers

    try:  # stored E.164; an older number typed in national form is shown as it was typed
        number = phonenumbers.parse(e164, "FR")
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


def register(app: Flask) -> None:
    app.add_template_filter(local_datetime)
    app.add_template_filter(local_time)
    app.add_template_filter(long_date)
    app.add_template_filter(short_date)
    app.add_template_filter(phone_display)
    app.add_template_filter(local_iso_date)
