"""A territory's sectors from a CSV file: `secteur, code INSEE de la commune, code BAN de la rue (facultatif)`.

The file says, for each sector it names, every commune and street it holds: those sectors' zones are replaced by the
file's, other sectors are kept, and so are the lieux and agents attached to each sector (matched by name, whatever
its case). The check (dry run) reports unknown or former codes, communes of another département, streets that are
not of their commune, a commune or street in two sectors (overlaps) and the territory's communes left without a
sector; applying stores everything in one transaction, or nothing when the check found an error.

Nothing here logs a line: the report is for the administrator alone.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from lapins.infra import csv_files
from lapins.infra.extensions import db
from lapins.locale.communes import CODE, Commune, Gazetteer, street_key
from lapins.models import Sector, SectorZone, Territory

logger = logging.getLogger(__name__)

MAX_BYTES = 5 * 1024 * 1024  # a département's streets fit in a few hundred kilobytes
MAX_LINES = 200_000
MAX_NAME = 120  # Sector.name
MAX_ERRORS = 200  # shown; the count says how many more
STREET = re.compile(r"((?:[0-9]{2}|2[AB])[0-9]{3})_([0-9a-z]{4})")  # 92012_0150, as street_key writes it


class SectorFileError(Exception):
    """The file as a whole cannot be read, or the check found errors (in French); nothing was stored."""


@dataclass(frozen=True)
class Line:
    number: int  # as a spreadsheet numbers it, the header included
    sector: str
    commune: str
    street: str  # "" for the whole commune, else as street_key writes it
    typed_street: str = ""  # as the file wrote it, for the report


@dataclass
class SectorReport:
    """What the file holds and what is wrong with it."""

    lines: int = 0
    # Per sector named in the file (its name as first written): its places, a commune code and a street code or "".
    sectors: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    unsectored: list[Commune] = field(default_factory=list)
    new_sectors: list[str] = field(default_factory=list)
    applied: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.overlaps

    @property
    def zone_count(self) -> int:
        return sum(len(places) for places in self.sectors.values())


def read_lines(data: bytes) -> list[Line]:
    """The file's non-blank lines, separated by `;`, `,` or a tabulation; a first line whose second cell is no
    commune code is a header."""
    if len(data) > MAX_BYTES:
        raise SectorFileError(f"Fichier trop volumineux ({len(data) // 1024 // 1024} Mo) : {MAX_BYTES // 1024 // 1024} "
                              "Mo au plus. Découpez-le par secteur.")
    try:
        text = csv_files.decode(data)
    except csv_files.UnknownEncoding as error:
        raise SectorFileError(str(error)) from None
    if "\x00" in text:
        raise SectorFileError("Ce fichier n'est pas un CSV (il contient des caractères binaires).")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise SectorFileError("Le fichier est vide.")
    delimiter = max(";,\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    lines: list[Line] = []
    number = 1
    try:
        for cells in reader:
            cells = [cell.strip() for cell in cells]
            if any(cells):
                if not lines and number == reader.line_num and len(cells) > 1 and not CODE.fullmatch(cells[1].upper()):
                    number = reader.line_num + 1
                    continue  # the header
                if len(lines) >= MAX_LINES:
                    raise SectorFileError(f"Trop de lignes : {MAX_LINES} au plus.")
                cells += ["", "", ""]
                if any(cells[3:]):
                    raise SectorFileError(f"Ligne {number} : trois colonnes au plus (secteur, code INSEE de la "
                                          "commune, code de la rue facultatif).")
                lines.append(Line(number, " ".join(cells[0].split()), cells[1].upper(), street_key(cells[2]),
                                  cells[2]))
            number = reader.line_num + 1
    except csv.Error:
        raise SectorFileError(f"Le fichier n'est pas un CSV lisible (ligne {reader.line_num}).") from None
    if not lines:
        raise SectorFileError("Le fichier ne contient aucune ligne de secteur.")
    return lines


def _line_error(line: Line, territory: Territory, communes: Gazetteer) -> str | None:
    where = f"Ligne {line.number}"
    if not line.sector:
        return f"{where} : le nom du secteur manque."
    if len(line.sector) > MAX_NAME:
        return f"{where} : nom de secteur trop long ({MAX_NAME} caractères au plus)."
    if re.search(r"[<>]", line.sector):
        return f"{where} : les caractères < et > ne sont pas acceptés dans un nom de secteur."
    if not line.commune:
        return f"{where} : le code INSEE de la commune manque."
    commune = communes.get(line.commune)
    if commune is None:
        current = communes.former.get(line.commune)
        if current is not None:
            return (f"{where} : « {line.commune} » est le code d'une ancienne commune, aujourd'hui "
                    f"{current.name} ({current.code}) : utilisez ce code.")
        return f"{where} : code commune « {line.commune} » inconnu (code INSEE à 5 caractères, exemple : 92012)."
    if commune.departement != territory.number:
        return (f"{where} : {commune.name} ({commune.code}) est dans le département {commune.departement}, pas "
                f"dans le {territory.number}.")
    if line.street:
        match = STREET.fullmatch(line.street)
        if match is None:
            return (f"{where} : code de rue « {line.typed_street[:30]} » non reconnu (code BAN de la voie, exemple : "
                    f"{commune.code}_0150).")
        if match.group(1) != commune.code:
            return f"{where} : la rue {line.street} n'est pas dans la commune {commune.code}."
    return None


def check(territory: Territory, data: bytes, communes: Gazetteer) -> SectorReport:
    """The dry run: everything applying would store, and every reason it would refuse to."""
    lines = read_lines(data)
    report = SectorReport(lines=len(lines))
    names: dict[str, str] = {}  # lower-cased → as first written
    owner: dict[tuple[str, str], tuple[str, int]] = {}  # place → sector, line
    errors: list[str] = []
    for line in lines:
        problem = _line_error(line, territory, communes)
        if problem:
            errors.append(problem)
            continue
        sector = names.setdefault(line.sector.lower(), line.sector)
        place = (line.commune, line.street)
        if place in owner and owner[place][0] != sector:
            other, first_line = owner[place]
            report.overlaps.append(f"Ligne {line.number} : {_place_label(place, communes)} est déjà dans le secteur "
                                   f"« {other} » (ligne {first_line}).")
            continue
        owner.setdefault(place, (sector, line.number))
        report.sectors.setdefault(sector, set()).add(place)
    report.errors = errors[:MAX_ERRORS]
    if len(errors) > MAX_ERRORS:
        report.errors.append(f"… et {len(errors) - MAX_ERRORS} autres lignes en erreur.")
    existing = {sector.name.lower(): sector for sector in
                db.session.scalars(select(Sector).where(Sector.territory_id == territory.id))}
    report.new_sectors = sorted(name for key, name in names.items() if key not in existing)
    kept = db.session.execute(
        select(SectorZone.commune_code, SectorZone.street_code, Sector.name).join(Sector)
        .where(SectorZone.territory_id == territory.id, func.lower(Sector.name).not_in(list(names) or [""])))
    covered = set(owner)
    for commune_code, street_code, sector_name in kept:
        place = (commune_code, street_code)
        if place in owner:
            report.overlaps.append(f"Ligne {owner[place][1]} : {_place_label(place, communes)} est déjà dans le "
                                   f"secteur « {sector_name} », que le fichier ne nomme pas.")
        covered.add(place)
    report.unsectored = _unsectored(territory, covered, communes)
    return report


def _place_label(place: tuple[str, str], communes: Gazetteer) -> str:
    commune = communes.get(place[0])
    name = f"{commune.name} ({commune.code})" if commune else place[0]
    return f"la rue {place[1]} de {name}" if place[1] else name


def _unsectored(territory: Territory, covered: set[tuple[str, str]], communes: Gazetteer) -> list[Commune]:
    """The territory's communes in no sector, not even by one of their streets or arrondissements."""
    reached = {commune_code for commune_code, _ in covered}
    reached |= {commune.city_code for code in reached if (commune := communes.get(code)) and commune.city_code}
    return [commune for commune in communes.of_departements({territory.number}) if commune.code not in reached]


def apply(territory: Territory, data: bytes, communes: Gazetteer) -> SectorReport:
    """Checks again, then replaces the zones of the sectors the file names, in one transaction; SectorFileError (and
    nothing stored) when the check finds an error or an overlap."""
    report = check(territory, data, communes)
    if not report.ok:
        raise SectorFileError(f"Rien n'a été enregistré : le fichier a {len(report.errors)} erreur(s) et "
                              f"{len(report.overlaps)} chevauchement(s). Corrigez-le et vérifiez-le à nouveau.")
    existing = {sector.name.lower(): sector for sector in
                db.session.scalars(select(Sector).where(Sector.territory_id == territory.id))}
    try:
        sectors = []
        for name in report.sectors:
            sector = existing.get(name.lower())
            if sector is None:
                sector = Sector(territory_id=territory.id, name=name)
                db.session.add(sector)
            sectors.append(sector)
        db.session.flush()
        # Every replaced zone goes before any is added: a commune may move from one named sector to another.
        db.session.execute(delete(SectorZone).where(SectorZone.sector_id.in_([sector.id for sector in sectors])))
        for sector, places in zip(sectors, report.sectors.values()):
            db.session.add_all(SectorZone(sector_id=sector.id, territory_id=territory.id, commune_code=commune,
                                          street_code=street) for commune, street in sorted(places))
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise SectorFileError("Rien n'a été enregistré : les secteurs ont changé pendant l'import. Vérifiez le fichier "
                              "à nouveau.") from None
    db.session.expire_all()
    report.applied = True
    logger.info("Sectors imported in territory %s: %s sectors, %s zones", territory.id, len(report.sectors),
                report.zone_count)
    return report
