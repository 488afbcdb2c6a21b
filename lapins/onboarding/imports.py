"""CSV imports of an organisation's lieux and agents: reading what a département exports, checking each line, storing.

Per line by default: valid lines are stored, invalid ones are reported (line number and reason, in French) and the
rest goes on. Accepted lines are committed every BATCH_SIZE lines, so an import that dies half-way leaves whole lines
only; running the same file again stores nothing twice (a lieu of the same name and address, an agent already in the
organisation with that role, are « déjà présents »). `all_or_nothing` stores nothing as soon as one line is rejected;
`dry_run` checks everything and stores nothing. New agents are invited by e-mail once their batch is committed.

Nothing here logs: lines hold names and e-mail addresses, and the report is for the operator alone.
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from lapins.admin.services import joining_refusal
from lapins.infra import csv_files
from lapins.infra.extensions import db
from lapins.infra.forms import name_problem
from lapins.models import Agent, AgentRole, Lieu, Organisation, Role, Territory
from lapins.locale.phones import InvalidPhone, french_number
from lapins.auth.accounts import send_account_email

BATCH_SIZE = 100
FIRST_DATA_LINE = 2  # line 1 is the header: numbers are the ones a spreadsheet shows

# Known headers, once lower-cased and stripped of accents, spaces and punctuation (« Téléphone », « Tél. », « E-mail »).
LIEU_COLUMNS = {
    "nom": {"nom", "nomdulieu", "lieu", "name"},
    "adresse": {"adresse", "adressepostale", "adressedulieu", "address"},
    "telephone": {"telephone", "tel", "telephonedulieu", "numerodetelephone", "phone"},
}
AGENT_COLUMNS = {
    "email": {"email", "courriel", "mail", "adresseelectronique", "adressemail", "adressecourriel", "adressemel",
              "mel"},
    "prenom": {"prenom", "firstname"},
    "nom": {"nom", "nomdefamille", "lastname"},
    "role": {"role", "profil"},
}
LIEU_REQUIRED = ("nom", "adresse")
AGENT_REQUIRED = ("email", "prenom", "nom")  # without a rôle column or value, a line is an agent
LABELS = {"nom": "Le nom", "adresse": "L'adresse", "telephone": "Le téléphone", "email": "L'adresse électronique",
          "prenom": "Le prénom", "role": "Le rôle"}
# Lengths of the columns they go to (lapins.models): Lieu.name, Lieu.address, Agent.email, first_name, last_name.
LIEU_LENGTHS = {"nom": 160, "adresse": 255, "telephone": 30}
AGENT_LENGTHS = {"email": 254, "prenom": 80, "nom": 80, "role": 40}
ROLES = {"admin": Role.ADMIN, "administrateur": Role.ADMIN, "administratrice": Role.ADMIN, "administration": Role.ADMIN,
         "agent": Role.AGENT, "secretaire": Role.SECRETARY, "secretariat": Role.SECRETARY,
         "secretary": Role.SECRETARY}


class ImportFileError(Exception):
    """The file as a whole cannot be imported (in French); nothing was stored."""


class Outcome(Enum):
    """What became of a valid line (an invalid one raises LineRejected)."""
    IMPORTED = "importée"
    PRESENT = "déjà présente"


# --- Reading the file -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    line: int  # where the line starts in the file, the header being line 1
    cells: tuple[str, ...]  # as read, for the report of rejections


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[Row, ...]
    delimiter: str


def decode(data: bytes) -> str:
    """The text of the file (lapins.infra.csv_files says which encodings)."""
    try:
        return csv_files.decode(data)
    except csv_files.UnknownEncoding as error:
        raise ImportFileError(str(error)) from None


def read_table(data: bytes) -> Table:
    """The header and the non-blank lines of a CSV file, separated by `;`, `,` or a tabulation (read on the header)."""
    text = decode(data)
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if not first_line:
        raise ImportFileError("Le fichier est vide.")
    delimiter = max(";,\t", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: tuple[str, ...] | None = None
    rows: list[Row] = []
    line = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                stripped = tuple(cell.strip() for cell in cells)
                if header is None:
                    header = stripped
                else:
                    rows.append(Row(line, stripped))
            line = reader.line_num + 1
    except csv.Error:
        raise ImportFileError(f"Le fichier n'est pas un CSV lisible (ligne {reader.line_num}).") from None
    if header is None:
        raise ImportFileError("Le fichier est vide.")
    return Table(header, tuple(rows), delimiter)


def header_key(name: str) -> str:
    """« Téléphone », « TEL. », « e-mail » → telephone, tel, email."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]", "", ascii_text)


def column_positions(header: Iterable[str], known: dict[str, set[str]], required: Iterable[str]) -> dict[str, int]:
    """Where each known field is in the header; other columns are ignored (and kept in the report)."""
    positions: dict[str, int] = {}
    for index, name in enumerate(header):
        key = header_key(name)
        for fieldname, aliases in known.items():
            if key in aliases:
                if fieldname in positions:
                    raise ImportFileError(f"Deux colonnes donnent {LABELS[fieldname].lower()} : "
                                          f"« {list(header)[positions[fieldname]]} » et « {name} ».")
                positions[fieldname] = index
    missing = [fieldname for fieldname in required if fieldname not in positions]
    if missing:
        raise ImportFileError(f"Colonnes obligatoires absentes : {', '.join(missing)} (colonnes lues : "
                              f"{', '.join(header)}).")
    return positions


# --- The report ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str
    cells: tuple[str, ...]


@dataclass
class ImportReport:
    header: tuple[str, ...]
    delimiter: str
    read: int = 0
    imported: int = 0
    present: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    added_to_organisation: int = 0  # agents who had an account already, counted in `imported`
    invited: int = 0
    stored: bool = True  # False after a dry run, or when all_or_nothing met a rejected line
    baseline: object = None  # the history import's no-show rate of the past rdvs read (onboarding.history.Baseline)

    def write_rejections(self, stream: io.TextIOBase) -> None:
        """The rejected lines with their original columns, `ligne` and `motif_du_rejet`: fixed, the file can be
        imported again as it is (the two extra columns are ignored)."""
        writer = csv.writer(stream, delimiter=self.delimiter, lineterminator="\r\n")
        writer.writerow(["ligne", *self.header, "motif_du_rejet"])
        for rejection in self.rejected:
            cells = list(rejection.cells[:len(self.header)]) + [""] * (len(self.header) - len(rejection.cells))
            writer.writerow([rejection.line, *cells, rejection.reason])


# --- Checking a line ----------------------------------------------------------------------------------------------

class LineRejected(Exception):
    """The French reason a line is rejected."""


def line_values(row: Row, header: tuple[str, ...], positions: dict[str, int],
                lengths: dict[str, int]) -> dict[str, str]:
    if len(row.cells) > len(header) and any(row.cells[len(header):]):
        raise LineRejected(f"La ligne compte {len(row.cells)} valeurs pour {len(header)} colonnes (une valeur "
                           "contenant le séparateur doit être entre guillemets).")
    values = {name: " ".join(row.cells[index].split()) if index < len(row.cells) else ""
              for name, index in positions.items()}
    for name, value in values.items():
        if len(value) > lengths[name]:
            raise LineRejected(f"{LABELS[name]} compte {_number(len(value))} caractères : {lengths[name]} au plus.")
    return values


def require_values(values: dict[str, str], names: Iterable[str]) -> None:
    for name in names:
        if not values.get(name):
            raise LineRejected(f"{LABELS[name]} est obligatoire.")


def check_names(values: dict[str, str], names: Iterable[str], *, place: bool = False) -> None:
    """The forms' rule for people's and places' names (lapins.infra.forms.name_problem), with their message."""
    for name in names:
        if (problem := name_problem(values.get(name), place=place)) is not None:
            raise LineRejected(f"{LABELS[name]} : {problem[0].lower()}{problem[1:]}")


def _number(count: int) -> str:
    return f"{count:,}".replace(",", " ")


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def lieu_phone(raw: str, territory_number: str) -> str:
    """The E.164 form of a French number a family can call, landline or mobile; raises InvalidPhone."""
    try:
        return french_number(raw, territory_number)
    except InvalidPhone as error:
        if error.foreign:
            raise InvalidPhone("Seuls les numéros français (métropole et outre-mer) sont acceptés.") from None
        raise InvalidPhone("Numéro de téléphone invalide (exemple : 03 20 12 34 56).") from None


def normalized_email(raw: str) -> str:
    try:
        return validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise LineRejected(f"« {raw} » n'est pas une adresse électronique valide.") from None


def role_from(raw: str) -> Role:
    if not raw:
        return Role.AGENT
    role = ROLES.get(header_key(raw))
    if role is None:
        raise LineRejected(f"Rôle « {raw} » inconnu : admin, agent ou secrétaire.")
    return role


# --- Finding the organisation -----------------------------------------------------------------------------------

def find_organisation(number: str, organisation: str) -> Organisation:
    """The organisation of département `number` named `organisation` (case-insensitive) or of that id."""
    number = number.strip().upper()
    territory = db.session.scalar(select(Territory).where(Territory.number == number))
    if territory is None:
        raise ImportFileError(f"Aucun département {number} dans cette installation.")
    wanted = organisation.strip()
    if wanted.isdigit():
        found = db.session.get(Organisation, int(wanted))
        if found is None:
            raise ImportFileError(f"Aucun service n° {wanted} dans cette installation.")
        if found.territory_id != territory.id:
            raise ImportFileError(f"Le service n° {wanted} n'est pas un service du département {number}.")
        return found
    matches = list(db.session.scalars(select(Organisation).where(
        Organisation.territory_id == territory.id, func.lower(Organisation.name) == wanted.lower())))
    if not matches:
        names = ", ".join(f"« {org.name} » (n° {org.id})" for org in territory.organisations) or "aucun"
        raise ImportFileError(f"Aucun service « {wanted} » dans le département {number} ; ses services : {names}.")
    if len(matches) > 1:
        raise ImportFileError(f"Plusieurs services s'appellent « {wanted} » : désignez-le par son numéro "
                              f"({', '.join(str(org.id) for org in matches)}).")
    return matches[0]


# --- Importing --------------------------------------------------------------------------------------------------

class _LieuImporter:
    def __init__(self, organisation: Organisation, table: Table) -> None:
        self.organisation_id = organisation.id
        self.territory_number = organisation.territory.number
        self.header = table.header
        self.positions = column_positions(table.header, LIEU_COLUMNS, LIEU_REQUIRED)
        self.existing = {_key(lieu.name): lieu.address for lieu in db.session.scalars(
            select(Lieu).where(Lieu.organisation_id == organisation.id))}
        self.seen: dict[str, int] = {}
        self.added = 0  # only agents already have an account to add to

    def take(self, row: Row) -> Outcome:
        values = line_values(row, self.header, self.positions, LIEU_LENGTHS)
        require_values(values, LIEU_REQUIRED)
        check_names(values, ["nom"], place=True)
        phone = None
        if values.get("telephone"):
            try:
                phone = lieu_phone(values["telephone"], self.territory_number)
            except InvalidPhone as error:
                raise LineRejected(str(error)) from None
        key = _key(values["nom"])
        if key in self.seen:
            raise LineRejected(f"Le lieu « {values['nom']} » figure déjà ligne {self.seen[key]} de ce fichier.")
        if key in self.existing:
            if _key(self.existing[key]) != _key(values["adresse"]):
                raise LineRejected(f"Un lieu « {values['nom']} » existe déjà dans ce service, à une autre adresse "
                                   f"({self.existing[key]}).")
            self.seen[key] = row.line
            return Outcome.PRESENT
        db.session.add(Lieu(organisation_id=self.organisation_id, name=values["nom"], address=values["adresse"],
                            phone=phone))
        self.seen[key] = row.line
        return Outcome.IMPORTED

    def committed(self, report: ImportReport) -> None:
        """Nothing to do once lieux are stored."""


class _AgentImporter:
    def __init__(self, organisation: Organisation, table: Table, invite: Callable[[Agent], None]) -> None:
        self.organisation_id = organisation.id
        self.territory_id = organisation.territory_id
        self.header = table.header
        self.positions = column_positions(table.header, AGENT_COLUMNS, AGENT_REQUIRED)
        self.seen: dict[str, int] = {}
        self.invite = invite
        self.to_invite: list[Agent] = []
        self.added = 0

    def take(self, row: Row) -> Outcome:
        values = line_values(row, self.header, self.positions, AGENT_LENGTHS)
        require_values(values, AGENT_REQUIRED)
        check_names(values, ["prenom", "nom"])
        email = normalized_email(values["email"])
        role = role_from(values.get("role", ""))
        if email in self.seen:
            raise LineRejected(f"L'adresse {email} figure déjà ligne {self.seen[email]} de ce fichier.")
        agent = db.session.scalar(select(Agent).where(func.lower(Agent.email) == email).options(
            selectinload(Agent.roles).selectinload(AgentRole.organisation)))
        if agent is None:
            agent = Agent(email=email, first_name=values["prenom"], last_name=values["nom"])
            agent.roles.append(AgentRole(organisation_id=self.organisation_id, role=role))
            db.session.add(agent)
            self.to_invite.append(agent)
            self.seen[email] = row.line
            return Outcome.IMPORTED
        current = agent.role_in(self.organisation_id)
        if current is not None:
            if current != role:
                raise LineRejected(f"Cet agent est déjà dans ce service avec le rôle {current.label} : un import ne "
                                   "change pas le rôle d'un agent.")
            self.seen[email] = row.line
            return Outcome.PRESENT
        refusal = joining_refusal(agent, self.territory_id)
        if refusal:
            raise LineRejected(refusal)
        agent.roles.append(AgentRole(organisation_id=self.organisation_id, role=role))
        self.added += 1
        self.seen[email] = row.line
        return Outcome.IMPORTED

    def committed(self, report: ImportReport) -> None:
        """Invitations leave once their agents are stored (the task reads the agent by id)."""
        for agent in self.to_invite:
            self.invite(agent)
            report.invited += 1
        self.to_invite.clear()


def import_lieux(organisation: Organisation, table: Table, *, dry_run: bool = False, all_or_nothing: bool = False,
                 progress: Callable[[int], None] = lambda step: None) -> ImportReport:
    """Stores the valid lines of `table` as lieux of `organisation` (columns nom, adresse, telephone)."""
    return run_importer(_LieuImporter(organisation, table), table, dry_run, all_or_nothing, progress)


def import_agents(organisation: Organisation, table: Table, *, dry_run: bool = False, all_or_nothing: bool = False,
                  progress: Callable[[int], None] = lambda step: None,
                  invite: Callable[[Agent], None] | None = None) -> ImportReport:
    """Stores the valid lines of `table` as agents of `organisation` (columns email, prenom, nom, role) and invites
    the new ones by e-mail; an agent who has an account already gets the role in `organisation`."""
    if invite is None:
        def invite(agent: Agent) -> None:
            send_account_email(agent, "invitation")
    return run_importer(_AgentImporter(organisation, table, invite), table, dry_run, all_or_nothing, progress)


def run_importer(importer, table: Table, dry_run: bool, all_or_nothing: bool,
         progress: Callable[[int], None]) -> ImportReport:
    report = ImportReport(header=table.header, delimiter=table.delimiter, read=len(table.rows))
    in_batch = 0
    try:
        for row in table.rows:
            try:
                outcome = importer.take(row)
            except LineRejected as rejection:
                report.rejected.append(Rejection(row.line, str(rejection), row.cells))
            else:
                if outcome is Outcome.IMPORTED:
                    report.imported += 1
                    in_batch += 1
                else:
                    report.present += 1
            if in_batch >= BATCH_SIZE and not (dry_run or all_or_nothing):
                db.session.commit()
                importer.committed(report)
                in_batch = 0
            progress(1)
        report.added_to_organisation = importer.added
        if dry_run or (all_or_nothing and report.rejected):
            db.session.rollback()
            report.stored = False
        else:
            db.session.commit()
            importer.committed(report)
    except BaseException:
        db.session.rollback()  # the lines of the batch under way are lost whole; those committed stay
        raise
    return report
