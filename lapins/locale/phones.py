"""Mobile numbers of families: parsed in the territory's numbering region, stored in E.164."""
from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

# A number typed in national format (06…, 0692…) belongs to the territory's own numbering plan.
REGION_BY_TERRITORY = {"971": "GP", "972": "MQ", "973": "GF", "974": "RE", "976": "YT"}
# Families may also live under another French plan: a Réunion mobile in Paris is still reachable by SMS.
FRENCH_REGIONS = {"FR", "GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF"}
MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


class InvalidPhone(ValueError):
    """Carries the French message shown next to the field; `foreign` when the number is valid but not French."""

    def __init__(self, message: str = "", *, foreign: bool = False) -> None:
        super().__init__(message)
        self.foreign = foreign


def region_for(territory_number: str) -> str:
    return REGION_BY_TERRITORY.get(territory_number, "FR")


def normalize_mobile(raw: str, territory_number: str) -> str:
    """Return the E.164 form of a French (metropolitan or overseas) mobile number, or raise InvalidPhone."""
    text = (raw or "").strip()
    if len(text) > 30:
        raise InvalidPhone("Numéro de téléphone trop long.")
    try:
        number = phonenumbers.parse(text, region_for(territory_number))
    except NumberParseException:
        raise InvalidPhone("Numéro de téléphone invalide (exemple : 06 12 34 56 78).") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("Numéro de téléphone invalide (exemple : 06 12 34 56 78).")
    if phonenumbers.region_code_for_number(number) not in FRENCH_REGIONS:
        raise InvalidPhone("Seuls les numéros de mobile français (métropole et outre-mer) peuvent recevoir nos SMS.")
    if phonenumbers.number_type(number) not in MOBILE_TYPES:
        raise InvalidPhone("Ce numéro n'est pas un numéro de mobile : il ne pourrait pas recevoir de SMS.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def french_number(raw: str, territory_number: str) -> str:
    """The E.164 form of a French number a family can call, landline or mobile (a lieu's, an organisation's); raises
    InvalidPhone, whose message the caller words."""
    try:
        number = phonenumbers.parse(raw, region_for(territory_number))
    except NumberParseException:
        raise InvalidPhone() from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone()
    if phonenumbers.region_code_for_number(number) not in FRENCH_REGIONS:
        raise InvalidPhone(foreign=True)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def e164_or_none(raw: str, territory_number: str) -> str | None:
    """The E.164 form of a (possibly partial) phone typed in a search box, when it is a whole number."""
    try:
        number = phonenumbers.parse(raw, region_for(territory_number))
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
