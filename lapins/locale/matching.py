"""When two usagers' files are likely the same person: the one place the duplicate finder's rules are written.

`name_key` turns a first and a last name into the normalised key stored in `usagers.name_key` (accents, case,
hyphens, apostrophes and spaces forgiven; « née X » / « épouse X » kept as a second last name), which the database
indexes beside the birth date. `likely_same` decides from two usagers' keys, birth dates and contacts.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

# The words that introduce a birth or a married name inside a last name: « Benali née Durand », « Martin ép. Roux ».
_NAME_LINKS = re.compile(r"\b(?:nee|ne|epouse|ep|veuve|vve|dite?)\b\.?")
_NOT_LETTERS = re.compile(r"[^a-z]+")
KEY_LENGTH = 200


def _plain(text: str) -> str:
    """Lower case ASCII letters and single spaces: « Éloïse-Marie » → « eloise marie »."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char)).lower()
    stripped = stripped.replace("œ", "oe").replace("æ", "ae").replace("ß", "ss")
    return " ".join(_NOT_LETTERS.sub(" ", stripped).split())


def name_key(first_name: str | None, last_name: str | None) -> str:
    """« Marie-Claire » « BEN-ALI née Durand » → "marie-claire|benali durand": the first name's parts, then each
    last name (its parts joined: « Ben Ali » and « Benali » are one name)."""
    first = "-".join(_plain(first_name or "").split())
    lasts = [part.replace(" ", "") for part in _NAME_LINKS.split(_plain(last_name or ""))]
    return f"{first}|{' '.join(part for part in lasts if part)}"[:KEY_LENGTH]


def contact_key(email: str | None) -> str | None:
    """An e-mail as compared: trimmed, lower case (phones are compared as stored, in E.164)."""
    email = (email or "").strip().lower()
    return email or None


def _one_typo(a: str, b: str) -> bool:
    """At most one letter added, removed or changed (« Benalli » / « Benali »), for names of 5 letters or more."""
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) <= 1
    shorter, longer = sorted((a, b), key=len)
    return any(longer[:i] + longer[i + 1:] == shorter for i in range(len(longer)))


def names_close(key_a: str, key_b: str) -> bool:
    """Same first name (« Marie Claire » / « Marieclaire ») or the first part of a compound one (« Marie » /
    « Marie-Claire », but not « Louis » / « Louise »), and a last name in common or one letter apart; first and
    last names swapped count too."""
    first_a, _, lasts_a = key_a.partition("|")
    first_b, _, lasts_b = key_b.partition("|")
    return _close(first_a, lasts_a.split(), first_b, lasts_b.split()) or \
        _close(first_a, lasts_a.split(), " ".join(lasts_b.split()[:1]), [first_b.replace("-", "")])


def _close(first_a: str, lasts_a: list[str], first_b: str, lasts_b: list[str]) -> bool:
    if not first_a or not first_b or not lasts_a or not lasts_b:
        return False
    parts_a, parts_b = first_a.split("-"), first_b.split("-")
    shorter, longer = sorted((parts_a, parts_b), key=len)
    same_first = "".join(parts_a) == "".join(parts_b) or longer[:len(shorter)] == shorter
    return same_first and any(a == b or _one_typo(a, b) for a in lasts_a for b in lasts_b)


@dataclass(frozen=True)
class Identity:
    """What the finder compares of a usager."""

    name_key: str
    birth_date: date | None
    phone: str | None
    email: str | None


def likely_same(a: Identity, b: Identity) -> list[str]:
    """Why two files are likely one person (empty when they are not): two of three signals — same birth date,
    close names, same phone or e-mail — and no birth dates that differ."""
    if a.birth_date is not None and b.birth_date is not None and a.birth_date != b.birth_date:
        return []
    reasons = []
    if a.birth_date is not None and a.birth_date == b.birth_date:
        reasons.append("même date de naissance")
    if names_close(a.name_key, b.name_key):
        reasons.append("noms proches")
    contacts = []  # one signal, however many contacts are shared: parents often share a phone and an address
    if a.phone and a.phone == b.phone:
        contacts.append("même téléphone")
    if contact_key(a.email) and contact_key(a.email) == contact_key(b.email):
        contacts.append("même e-mail")
    if contacts:
        reasons.append(" et ".join(contacts))
    return reasons if len(reasons) >= 2 else []
