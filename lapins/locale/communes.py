"""France's communes, from the npm dataset @etalab/decoupage-administratif (installed at set-up, never committed):
looked up by INSEE code, and searched by postcode or by name, forgiving accents, case, hyphens, apostrophes and
« St/Ste » for « Saint/Sainte ».

A sector holds current communes (`commune-actuelle`) and the municipal arrondissements of Paris, Lyon and Marseille
(a family in 69003 lives in 69383). Former communes (`commune-deleguee`, `commune-associee`) are found by their
name, as the current commune they now belong to. Each entry is keyed on its code *and* type: a commune nouvelle and
the commune déléguée at its seat share a code. The dataset has no coordinates of commune centres: how near two
communes are is the size of the smallest area holding both (`nearness`: the same city, then its EPT, EPCI,
arrondissement or département, from the same package's `epci.json` and `ept.json`).
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path("@etalab/decoupage-administratif/data/communes.json")
# Groupings of communes, beside it: intercommunalités (EPCI) and the Grand Paris's territories (EPT).
GROUPING_FILES = ("epci.json", "ept.json")
CURRENT, ARRONDISSEMENT = "commune-actuelle", "arrondissement-municipal"
FORMER = ("commune-deleguee", "commune-associee")
CODE = re.compile(r"(?:[0-9]{2}|2[AB])[0-9]{3}")  # 01053, 2A004, 97411
POSTCODE_PREFIX = re.compile(r"[0-9]{2,5}")
_SAINT = {"st": "saint", "ste": "sainte"}
# The postcode and commune closing a written address: « 3 rue de Paris, 97400 Saint-Denis (Cedex 9) ».
_ADDRESS_END = re.compile(r"\b(\d{5})\s+([^,\d][^,]*?)(?:\s+cedex(?:\s*\d+)?)?\s*$", re.IGNORECASE)


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
    arrondissement: str | None = None  # the département's arrondissement (9741), not a city's

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

    def __init__(self, rows: list[dict], groupings: list[dict] = ()) -> None:
        self.by_code: dict[str, Commune] = {}
        for row in rows:
            if row.get("type") in (CURRENT, ARRONDISSEMENT):
                self.by_code[row["code"]] = Commune(
                    code=row["code"], name=row["nom"], departement=row["departement"],
                    postcodes=tuple(row.get("codesPostaux") or ()), population=row.get("population") or 0,
                    city_code=row.get("commune") if row.get("type") == ARRONDISSEMENT else None,
                    arrondissement=row.get("arrondissement"))
        self._index_areas(groupings)
        self._of_address: dict[str, Commune | None] = {}
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

    def _index_areas(self, groupings: list[dict]) -> None:
        """Each commune's areas (its city, EPT, EPCI, arrondissement, département) and each area's size in
        communes: what `nearness` compares."""
        self._areas: dict[str, set[str]] = {code: set() for code in self.by_code}
        for grouping in groupings:
            for member in grouping.get("membres") or ():
                if member.get("code") in self._areas:
                    self._areas[member["code"]].add(f"{grouping.get('type', 'epci')}:{grouping['code']}")
        for commune in self.by_code.values():
            areas = self._areas[commune.code]
            areas.add(f"dep:{commune.departement}")
            if commune.arrondissement:
                areas.add(f"arr:{commune.arrondissement}")
        for commune in self.by_code.values():
            if commune.city_code:  # an arrondissement is in its city's areas, and in its city
                self._areas[commune.code] |= self._areas.get(commune.city_code, set())
                self._areas[commune.code].add(f"city:{commune.city_code}")
                self._areas.setdefault(commune.city_code, set()).add(f"city:{commune.city_code}")
        self._area_size: dict[str, int] = {}
        for code, areas in self._areas.items():
            # A city counts once in its areas, its arrondissements only in itself.
            in_city = self.by_code[code].city_code is not None if code in self.by_code else False
            for area in areas:
                if area.startswith("city:") != in_city:
                    continue
                self._area_size[area] = self._area_size.get(area, 0) + 1

    def nearness(self, one: Commune, other: Commune) -> int | None:
        """How near two communes are, smaller is nearer: 0 the same commune, else the number of communes of the
        smallest area holding both (the same city's arrondissements, then an EPT, an EPCI, an arrondissement, a
        département); None when they share none."""
        if one.code == other.code:
            return 0
        shared = self._areas.get(one.code, set()) & self._areas.get(other.code, set())
        return min((self._area_size.get(area, 1) for area in shared), default=None)

    def of_address(self, address: str) -> Commune | None:
        """The commune a written address ends with (its postcode, then its name when the postcode is shared), a
        city's arrondissement rather than the city; None when it does not end with a postcode and a commune name
        of it."""
        if address not in self._of_address:
            if len(self._of_address) >= 4096:
                self._of_address.clear()
            self._of_address[address] = self._read_address(address)
        return self._of_address[address]

    def _read_address(self, address: str) -> Commune | None:
        found = _ADDRESS_END.search(address.strip())
        if not found:
            return None
        postcode, name = found.group(1), normalised(found.group(2))
        holding = [commune for commune in self._by_postcode.get(postcode[:2], ()) if postcode in commune.postcodes]
        named = [commune for commune in holding if normalised(commune.name) == name
                 or normalised(commune.name).startswith(f"{name} ")]  # « 69003 Lyon »: Lyon 3e Arrondissement
        if len(holding) == 1:
            named = holding
        arrondissements = [commune for commune in named if commune.city_code]
        if arrondissements:
            return arrondissements[0] if len(arrondissements) == 1 else None
        return named[0] if len(named) == 1 else None

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
        groupings = [grouping for name in GROUPING_FILES
                     for grouping in json.loads((path.parent / name).read_text(encoding="utf-8"))]
    except FileNotFoundError:
        raise CommunesMissing(f"{path} is missing: run `npm ci --ignore-scripts` at set-up") from None
    return Gazetteer(rows, groupings)
