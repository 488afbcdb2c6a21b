"""French postal addresses of families (home visits): the one set of rules the usager form, the API and the history
import apply, and the French message for each field refused."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_LENGTHS = {"street": 200, "postcode": 5, "commune": 80, "commune_insee": 5, "access": 200}
TOO_LONG = {"street": "L'adresse est trop longue", "postcode": "Le code postal est trop long",
            "commune": "Le nom de la commune est trop long", "commune_insee": "Le code INSEE est trop long",
            "access": "Les indications d'accès sont trop longues"}
_POSTCODE = re.compile(r"\d{5}")
_INSEE = re.compile(r"(?:\d\d|2A|2B)\d{3}")  # Corsica's départements are 2A and 2B
_COMMUNE = re.compile(r"(?:[^\W_]|[ '’.\-()])+")


@dataclass(frozen=True)
class AddressFields:
    """An address as typed, each part stripped and its spaces collapsed; None for an empty part."""

    street: str | None = None
    postcode: str | None = None
    commune: str | None = None
    commune_insee: str | None = None
    access: str | None = None

    @classmethod
    def typed(cls, **values: str | None) -> AddressFields:
        return cls(**{name: _tidy(value) for name, value in values.items()})

    @property
    def empty(self) -> bool:
        return not any((self.street, self.postcode, self.commune, self.commune_insee, self.access))


def _tidy(value: str | None) -> str | None:
    if value is None:
        return None
    # Only runs of spaces are tidied: a tab or a line break inside is refused by `problems`, not silently mended.
    text = re.sub(r" {2,}", " ", unicodedata.normalize("NFC", str(value))).strip()
    return text or None


def has_control_characters(text: str) -> bool:
    """Line breaks, tabs, NUL, escapes and invisible format characters: an address is one printed line."""
    return any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in text)


def problems(address: AddressFields) -> dict[str, str]:
    """A French message per refused part (nothing when the address is acceptable or wholly empty)."""
    found: dict[str, str] = {}
    for name, limit in MAX_LENGTHS.items():
        value = getattr(address, name)
        if value is None:
            continue
        if len(value) > limit:
            found[name] = f"{TOO_LONG[name]} : {limit} caractères au plus."
        elif has_control_characters(value):
            found[name] = ("Caractères invisibles ou retour à la ligne refusés : saisissez cette partie de "
                           "l'adresse sur une seule ligne.")
    if address.postcode and "postcode" not in found and not _POSTCODE.fullmatch(address.postcode):
        found["postcode"] = "Saisissez un code postal de 5 chiffres (exemple : 93200)."
    if address.commune_insee and "commune_insee" not in found and not _INSEE.fullmatch(address.commune_insee.upper()):
        found["commune_insee"] = "Saisissez un code INSEE de 5 caractères (exemple : 93066, ou 2A004 en Corse)."
    if address.commune and "commune" not in found and (
            not _COMMUNE.fullmatch(address.commune) or not any(char.isalpha() for char in address.commune)):
        found["commune"] = ("Saisissez le nom de la commune en lettres, chiffres, espaces, apostrophes et tirets "
                            "(exemple : Saint-Denis).")
    if not address.empty:
        if not address.street and "street" not in found:
            found["street"] = "Saisissez le numéro et la rue, ou videz toute l'adresse."
        if not address.commune and "commune" not in found:
            found["commune"] = "Saisissez la commune, ou videz toute l'adresse."
    return found
