"""France's communes, from the npm dataset @etalab/decoupage-administratif (installed at set-up, never committed):
looked up by INSEE code, and searched by postcode or by name, forgiving accents, case, hyphens, apostrophes and
« St/Ste » for « Saint/Sainte ».

A sector holds current communes (`commune-actuelle`) and the municipal arrondissements of Paris, Lyon and Marseille
(a family in 69003 lives in 69383). Former communes (`commune-deleguee`, `commune-associee`) are found by their
name, as the current commune they now belong to. Each entry is keyed on its code *and* type: a commune nouvelle and
the commune déléguée at its seat share a code. The dataset has no coordinates of commune centres.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path("@etalab/decoupage-administratif/data/communes.json")
CURRENT, ARRONDISSEMENT = "commune-actuelle", "arrondissement-municipal"
FORMER = ("commune-deleguee", "commune-associee")
CODE = re.compile(r"(?:[0-9]{2}|2[AB])[0-9]{3}")  # 01053, 2A004, 97411
POSTCODE_PREFIX = re.compile(r"[0-9]{2,5}")
_SAINT = {"st": "saint", "ste": "sainte"}


def street_key(code: str) -> str:
    """A BAN street code as sectors store it: its commune in capitals (2A004), the street's own part in lower case."""
    code = code.strip()
    return code[:5].upper() + code[5:].lower()


class CommunesMissing(RuntimeError):
    """The dataset is not installed (`npm ci --ignore-scripts` at set-up installs it)."""


@dataclass(frozen=True)
class Commune:
    code: str
    name: str
    departement: str
    postcodes: tuple[str, ...]
    population: int
    # Paris, Lyon and Marseille's arrondissements: the city's code.
    city_code: str | None = None

    @property
    def label(self) -> str:
        """Its name with its postcode (the first of them when it has several), as an address field shows it."""
        return f"{self.name} ({self.postcodes[0]})" if self.postcodes else self.name

    def as_json(self) -> dict:
        return {"code": self.code, "name": self.name, "departement": self.departement,
                "postcodes": list(self.postcodes), "label": self.label}


def normalised(text: str) -> str:
    """Lower case, no accents, words split on anything but letters and digits, « st/ste » as « saint/sainte »."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(char for char in decomposed if not unicodedata.combining(char)).replace("œ", "oe").replace("æ", "ae")
    words = re.split(r"[^a-z0-9]+", plain)
    return " ".join(_SAINT.get(word, word) for word in words if word)


@dataclass(frozen=True)
class _Entry:
    """A name a family may type, and the commune it leads to."""
    key: str
    commune: Commune
    former_name: str | None  # the former commune's name, when it is one


class Gazetteer:
    """Every commune of the dataset, indexed once per process."""

    def __init__(self, rows: list[dict]) -> None:
        self.by_code: dict[str, Commune] = {}
        for row in rows:
            if row.get("type") in (CURRENT, ARRONDISSEMENT):
                self.by_code[row["code"]] = Commune(
                    code=row["code"], name=row["nom"], departement=row["departement"],
                    postcodes=tuple(row.get("codesPostaux") or ()), population=row.get("population") or 0,
                    city_code=row.get("commune") if row.get("type") == ARRONDISSEMENT else None)
        # Former communes' codes, to tell an importer which current commune to use instead.
        self.former: dict[str, Commune] = {}
        entries = [_Entry(normalised(commune.name), commune, None) for commune in self.by_code.values()]
        for row in rows:
            if row.get("type") == CURRENT:  # codes given up in a merger or in Corsica's split (20004 → 2A004)
                for old_code in row.get("anciensCodes") or ():
                    if old_code not in self.by_code:
                        self.former.setdefault(old_code, self.by_code[row["code"]])
            current = self.by_code.get(row.get("chefLieu") or "")
            if row.get("type") in FORMER and current is not None:
                if row["code"] not in self.by_code:
                    self.former.setdefault(row["code"], current)
                if normalised(row["nom"]) != normalised(current.name):
                    entries.append(_Entry(normalised(row["nom"]), current, row["nom"]))
        # Each entry under the first two letters of each of its words; each commune under its postcodes' first two
        # digits: a search reads one bucket, not 37,000 names.
        self._by_word: dict[str, list[_Entry]] = {}
        for entry in entries:
            for start in {word[:2] for word in entry.key.split()}:
                self._by_word.setdefault(start, []).append(entry)
        self._by_postcode: dict[str, list[Commune]] = {}
        for commune in self.by_code.values():
            for start in {postcode[:2] for postcode in commune.postcodes}:
                self._by_postcode.setdefault(start, []).append(commune)

    def get(self, code: str) -> Commune | None:
        return self.by_code.get(code.strip().upper())

    def of_departements(self, numbers: set[str]) -> list[Commune]:
        """The current communes of these départements (not the arrondissements: their city stands for them)."""
        return sorted((commune for commune in self.by_code.values()
                       if commune.departement in numbers and commune.city_code is None), key=lambda c: c.code)

    def search(self, query: str, *, departements: set[str] | None = None, limit: int = 10) -> list[Commune]:
        """Communes whose postcode starts with the digits typed, or whose name (current or former) matches the words
        typed: whole name first, then names starting with them, then names holding them as words; the most
        populated first among equals."""
        query = query.strip()[:80]
        if POSTCODE_PREFIX.fullmatch(query):
            found = [commune for commune in self._by_postcode.get(query[:2], ())
                     if any(postcode.startswith(query) for postcode in commune.postcodes)
                     and (departements is None or commune.departement in departements)]
            # A city's arrondissements each have their postcode: offer those, not the city and its twenty postcodes.
            arrondissement_cities = {commune.city_code for commune in found if commune.city_code}
            found = [commune for commune in found if commune.code not in arrondissement_cities]
            found.sort(key=lambda commune: (min(p for p in commune.postcodes if p.startswith(query)),
                                            -commune.population))
            return found[:limit]
        key = normalised(query)
        if len(key) < 2:
            return []
        typed = query.casefold()
        ranked: dict[str, tuple[tuple, Commune]] = {}
        padded = f" {key}"
        for entry in self._by_word.get(key.split()[0][:2], ()):
            commune = entry.commune
            if departements is not None and commune.departement not in departements:
                continue
            if entry.key == key:
                rank = 0
            elif entry.key.startswith(key):
                rank = 1
            elif padded in f" {entry.key}":
                rank = 2
            else:
                continue
            # Among equals, the name written as typed (Champagne before Champagné), a current name before a former one.
            order = (rank, not commune.name.casefold().startswith(typed), entry.former_name is not None,
                     -commune.population, commune.name)
            if commune.code not in ranked or order < ranked[commune.code][0]:
                ranked[commune.code] = (order, commune)
        return [commune for _, commune in sorted(ranked.values(), key=lambda pair: pair[0])][:limit]


@lru_cache(maxsize=2)
def gazetteer(vendor_dir: str) -> Gazetteer:
    """The dataset under the npm directory (`VENDOR_DIR`), read once per process."""
    path = Path(vendor_dir) / DATA_FILE
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommunesMissing(f"{path} is missing: run `npm ci --ignore-scripts` at set-up") from None
    return Gazetteer(rows)
