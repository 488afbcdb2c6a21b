"""A territory moving from another tool imports its history: usagers (with their relatives) and past and future rdvs
of one organisation, from one CSV file (docs/deploy.md gives the format; an RDV-Solidarités export is read too).

Each line may carry a usager, an rdv, or both (the rdv is then that usager's). Lines are checked and stored as the
lieux/agents import does it (lapins.onboarding.imports: per line, batches, dry run, a French reason per rejected
line). Re-running a file stores nothing twice: usagers and rdvs keep their id in the other tool (`external_id`;
without an `id_rdv` column, the rdv's date, time, motif, lieu, agent and usager stand for it). Imported rdvs are
history, not bookings: they are written as they were (overlaps and opening hours are the old tool's business) and
tell nobody; future ones get their reminders planned (outbox.plan_reminders), never a confirmation. The no-show rate
of the past rdvs read can become the territory's rate before Lapins (`history_baseline`).
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, select

from lapins.infra.extensions import db
from lapins.locale.localtime import NonexistentLocalTime, to_utc
from lapins.locale import addresses
from lapins.locale.phones import InvalidPhone, normalize_mobile
from lapins.models import Agent, AgentRole, Lieu, Motif, Organisation, Rdv, RdvStatus, Territory, Usager, utcnow
from lapins.models.rdvs import BookingChannel
from lapins.notifications import outbox
from lapins.onboarding.imports import (
    ImportFileError, ImportReport, LineRejected, Outcome, Row, Table, check_names, column_positions, header_key,
    line_values, normalized_email, run_importer,
)

# Known headers, as imports.header_key writes them; the RDV-Solidarités export's « date rdv », « heure rdv »,
# « motif », « statut », « lieux du rdv », « agents » are among them.
HISTORY_COLUMNS = {
    "id_usager": {"idusager", "identifiantusager", "usagerid", "idfamille"},
    "nom": {"nom", "nomusager", "nomdefamille", "lastname"},
    "prenom": {"prenom", "prenomusager", "firstname"},
    "date_naissance": {"datenaissance", "datedenaissance", "birthdate"},
    "telephone": {"telephone", "tel", "portable", "mobile", "telephoneportable", "phone"},
    "email": {"email", "courriel", "mail", "adresseelectronique"},
    "sms": {"sms", "consentementsms", "rappelssms"},
    "id_responsable": {"idresponsable", "responsable", "idparent"},
    "id_rdv": {"idrdv", "identifiantrdv", "rdvid"},
    "date": {"daterdv", "date", "datedurdv"},
    "heure": {"heurerdv", "heure", "heuredurdv"},
    "duree": {"duree", "dureeminutes", "dureeenminutes"},
    "motif": {"motif", "motifdurdv"},
    "lieu": {"lieu", "lieuxdurdv", "lieudurdv"},
    "agent": {"agent", "agents", "professionnel", "professionnelles", "emailagent"},
    "statut": {"statut", "etat", "status"},
    # The usager's postal address (home visits), checked by lapins.locale.addresses.
    "adresse": {"adresse", "adressepostale", "rue", "numeroetrue", "address"},
    "code_postal": {"codepostal", "cp", "postcode", "zipcode"},
    "commune": {"commune", "ville", "city"},
    "code_insee": {"codeinsee", "insee", "codecommune", "cog"},
    "acces": {"acces", "indicationsacces", "indicationsdacces", "complementadresse", "complementdadresse"},
}
ADDRESS_COLUMNS = {"adresse": "street", "code_postal": "postcode", "commune": "commune", "code_insee": "commune_insee",
                   "acces": "access"}
LENGTHS = {"id_usager": 80, "nom": 80, "prenom": 80, "date_naissance": 20, "telephone": 30, "email": 254, "sms": 10,
           "id_responsable": 80, "id_rdv": 80, "date": 30, "heure": 10, "duree": 5, "motif": 160, "lieu": 160,
           "agent": 400, "statut": 40} | {name: 100_000 for name in ADDRESS_COLUMNS}  # their own rules say more
LABELS = {"id_usager": "L'identifiant de l'usager", "nom": "Le nom", "prenom": "Le prénom",
          "date_naissance": "La date de naissance", "telephone": "Le téléphone", "email": "L'adresse électronique",
          "sms": "La colonne sms", "id_responsable": "L'identifiant du responsable", "id_rdv": "L'identifiant du rdv",
          "date": "La date du rdv", "heure": "L'heure du rdv", "duree": "La durée", "motif": "Le motif",
          "lieu": "Le lieu", "agent": "L'agent", "statut": "Le statut"}
RDV_FIELDS = ("id_rdv", "date", "heure", "duree", "motif", "lieu", "agent", "statut")
# Statuses as written here and in RDV-Solidarités (« Absent non excusé », « Annulé (excusé) »...), by header_key.
STATUSES = {
    "vu": RdvStatus.SEEN, "venu": RdvStatus.SEEN, "honore": RdvStatus.SEEN, "rendezvoushonore": RdvStatus.SEEN,
    "seen": RdvStatus.SEEN,
    "absent": RdvStatus.NOSHOW, "absentnonexcuse": RdvStatus.NOSHOW, "lapin": RdvStatus.NOSHOW,
    "noshow": RdvStatus.NOSHOW,
    "excuse": RdvStatus.EXCUSED, "annuleexcuse": RdvStatus.EXCUSED, "annuleparlusager": RdvStatus.EXCUSED,
    "annuleparlafamille": RdvStatus.EXCUSED, "excused": RdvStatus.EXCUSED,
    "annuleparleservice": RdvStatus.REVOKED, "revoque": RdvStatus.REVOKED, "revoked": RdvStatus.REVOKED,
    "": RdvStatus.UNKNOWN, "avenir": RdvStatus.UNKNOWN, "arenseigner": RdvStatus.UNKNOWN,
    "nonrenseigne": RdvStatus.UNKNOWN, "inconnu": RdvStatus.UNKNOWN, "unknown": RdvStatus.UNKNOWN,
}
YES, NO = {"oui", "o", "yes", "1", "vrai"}, {"non", "n", "no", "0", "faux"}
MAX_DURATION = 8 * 60


@dataclass(frozen=True)
class Baseline:
    """The no-show rate of the past rdvs an import read: no-shows ÷ seen or missed."""

    seen: int
    noshow: int
    first: date | None
    last: date | None

    @property
    def rate(self) -> float | None:
        return self.noshow / (self.seen + self.noshow) if self.seen + self.noshow else None

    @property
    def label(self) -> str:
        span = f"{self.first:%d/%m/%Y} – {self.last:%d/%m/%Y}" if self.first and self.last else "historique"
        return f"historique importé, {span}"[:80]


class _HistoryImporter:
    def __init__(self, organisation: Organisation, table: Table, now: datetime) -> None:
        self.organisation = organisation
        self.territory = organisation.territory
        self.tz = self.territory.tz
        self.now = now
        self.header = table.header
        self.positions = column_positions(table.header, HISTORY_COLUMNS, ())
        if "date" not in self.positions and "id_usager" not in self.positions:
            raise ImportFileError("Ni usagers ni rendez-vous dans ce fichier : il faut au moins une colonne "
                                  f"id_usager ou date_rdv (colonnes lues : {', '.join(table.header)}).")
        # A usager merged into another (lapins.agenda.duplicates) is found as the file it was merged into.
        self.usagers: dict[str, int | Usager] = dict(db.session.execute(
            select(Usager.external_id, func.coalesce(Usager.merged_into_id, Usager.id)).where(Usager.territory_id == self.territory.id,
                                                        Usager.external_id.is_not(None))).all())
        self.rdvs: set[str] = set(db.session.scalars(select(Rdv.external_id).where(
            Rdv.organisation_id == organisation.id, Rdv.external_id.is_not(None))))
        self.motifs = {_name_key(motif.name): motif for motif in db.session.scalars(
            select(Motif).where(Motif.organisation_id == organisation.id))}
        self.lieux = {_name_key(lieu.name): lieu for lieu in db.session.scalars(
            select(Lieu).where(Lieu.organisation_id == organisation.id))}
        agents = db.session.scalars(select(Agent).join(AgentRole, AgentRole.agent_id == Agent.id)
                                    .where(AgentRole.organisation_id == organisation.id)).all()
        self.agents: dict[str, Agent] = {}
        for agent in agents:
            for key in (agent.email.lower(), _name_key(f"{agent.first_name} {agent.last_name}"),
                        _name_key(f"{agent.last_name} {agent.first_name}")):
                self.agents[key] = agent
        self.seen_rdvs: dict[str, int] = {}
        self.seen_usagers: dict[str, int] = {}
        self.added = 0
        self.baseline_counts = {"seen": 0, "noshow": 0}
        self.first_day: date | None = None
        self.last_day: date | None = None

    # --- one line ---

    def take(self, row: Row) -> Outcome:
        values = line_values(row, self.header, self.positions, LENGTHS)
        values = {name: values.get(name, "") for name in HISTORY_COLUMNS}
        has_rdv = any(values[name] for name in RDV_FIELDS)
        if not values["id_usager"] and not has_rdv:
            raise LineRejected("Ni usager (id_usager) ni rendez-vous (date_rdv) sur cette ligne.")
        rdv_values = self._rdv_values(values) if has_rdv else None  # checked before anything is added
        usager, new_usager = self._usager(values, row.line) if values["id_usager"] else (None, False)
        if rdv_values is None:
            return Outcome.IMPORTED if new_usager else Outcome.PRESENT
        new_rdv = self._rdv(rdv_values, usager, row.line)
        return Outcome.IMPORTED if new_usager or new_rdv else Outcome.PRESENT

    def committed(self, report: ImportReport) -> None:
        """Nothing leaves after the commit: reminders are outbox rows, sent by the beat when due."""

    # --- usagers ---

    def _usager(self, values: dict[str, str], line: int) -> tuple[Usager | int, bool]:
        external = values["id_usager"]
        known = self.usagers.get(external)
        if known is not None:
            return known, False
        if not values["nom"] or not values["prenom"]:
            raise LineRejected(f"Usager « {external} » inconnu : son nom et son prénom sont obligatoires.")
        check_names(values, ["prenom", "nom"])
        phone = None
        if values["telephone"]:
            try:
                phone = normalize_mobile(values["telephone"], self.territory.number)
            except InvalidPhone as error:
                raise LineRejected(f"Téléphone « {values['telephone']} » : {error}") from None
        email = normalized_email(values["email"]) if values["email"] else None
        sms = _yes_no(values["sms"], default=phone is not None, what="sms")
        responsible = None
        if values["id_responsable"]:
            if values["id_responsable"] == external:
                raise LineRejected("Un usager ne peut pas être son propre responsable.")
            responsible = self.usagers.get(values["id_responsable"])
            if responsible is None:
                raise LineRejected(f"Responsable « {values['id_responsable']} » inconnu : il doit figurer plus haut "
                                   "dans le fichier, ou avoir été importé avant.")
        address = addresses.AddressFields.typed(**{part: values[name] for name, part in ADDRESS_COLUMNS.items()})
        if problems := addresses.problems(address):
            raise LineRejected(f"Adresse de l'usager « {external} » : {' '.join(problems.values())}")
        usager = Usager(territory_id=self.territory.id, external_id=external, first_name=values["prenom"],
                        last_name=values["nom"], birth_date=_birth_date(values["date_naissance"]), phone=phone,
                        email=email, sms_consent=sms and phone is not None, email_consent=email is not None,
                        organisations=[self.organisation], address_street=address.street,
                        address_postcode=address.postcode, address_commune=address.commune,
                        commune_insee=address.commune_insee.upper() if address.commune_insee else None,
                        address_access=address.access)
        if isinstance(responsible, int):
            usager.responsible_id = responsible
        elif responsible is not None:
            usager.responsible = responsible  # imported a few lines above, perhaps not flushed yet
        db.session.add(usager)
        self.usagers[external] = usager
        self.seen_usagers[external] = line
        return usager, True

    # --- rdvs ---

    def _rdv_values(self, values: dict[str, str]) -> dict:
        if not values["date"]:
            raise LineRejected("La date du rendez-vous est obligatoire sur une ligne de rendez-vous.")
        if not values["heure"]:
            raise LineRejected("L'heure du rendez-vous est obligatoire sur une ligne de rendez-vous.")
        day, clock = _day(values["date"], "La date du rendez-vous"), _clock(values["heure"])
        try:
            starts_at = to_utc(day, clock, self.tz)
        except NonexistentLocalTime:
            raise LineRejected(f"{clock:%H:%M} n'existe pas le {day:%d/%m/%Y} (changement d'heure).") from None
        if not values["motif"]:
            raise LineRejected("Le motif est obligatoire sur une ligne de rendez-vous.")
        motif = self.motifs.get(_name_key(values["motif"]))
        if motif is None:
            raise LineRejected(f"Motif « {values['motif']} » inconnu dans ce service : créez-le d'abord "
                               "(Administration › Motifs).")
        lieu = None
        if values["lieu"]:
            lieu = self.lieux.get(_name_key(values["lieu"]))
            if lieu is None:
                raise LineRejected(f"Lieu « {values['lieu']} » inconnu dans ce service : importez d'abord les lieux "
                                   "(import-lieux).")
        minutes = motif.duration_minutes
        if values["duree"]:
            if not values["duree"].isdigit() or not 1 <= int(values["duree"]) <= MAX_DURATION:
                raise LineRejected(f"Durée « {values['duree']} » : un nombre de minutes, de 1 à {MAX_DURATION}.")
            minutes = int(values["duree"])
        status = STATUSES.get(header_key(values["statut"]))
        if status is None:
            hint = (" : précisez « annulé par l'usager » (excusé) ou « annulé par le service »"
                    if header_key(values["statut"]).startswith("annul") else "")
            raise LineRejected(f"Statut « {values['statut']} » inconnu{hint} (vu, absent, excusé, annulé par le "
                               "service, à venir).")
        future = starts_at > self.now
        if future and status in (RdvStatus.SEEN, RdvStatus.NOSHOW):
            raise LineRejected(f"Un rendez-vous à venir (le {day:%d/%m/%Y}) ne peut pas être « {values['statut']} ».")
        agents = self._agents(values["agent"], required=future)
        if future and not values["id_usager"]:
            raise LineRejected("Un rendez-vous à venir demande son usager (id_usager), à qui envoyer les rappels.")
        external = values["id_rdv"] or "auto:" + hashlib.sha256("|".join(
            [f"{starts_at:%Y-%m-%dT%H:%M}", _name_key(values["motif"]), _name_key(values["lieu"]),
             _name_key(values["agent"]), values["id_usager"]]).encode()).hexdigest()[:40]
        if external in self.seen_rdvs:
            raise LineRejected(f"Ce rendez-vous figure déjà ligne {self.seen_rdvs[external]} de ce fichier.")
        return {"external": external, "starts_at": starts_at, "ends_at": starts_at + timedelta(minutes=minutes),
                "motif": motif, "lieu": lieu, "status": status, "agents": agents, "day": day}

    def _agents(self, text: str, *, required: bool) -> list[Agent]:
        found: list[Agent] = []
        for part in filter(None, (piece.strip() for piece in re.split(r"[,;/]", text))):
            agent = self.agents.get(part.lower()) or self.agents.get(_name_key(part))
            if agent is None and required:
                raise LineRejected(f"Agent « {part} » inconnu dans ce service (son adresse électronique ou « Prénom "
                                   "Nom ») : importez d'abord les agents.")
            if agent is not None and agent not in found:
                found.append(agent)  # an agent of the past who left the service: the rdv is kept without them
        return found

    def _rdv(self, values: dict, usager: Usager | int | None, line: int) -> bool:
        external = values["external"]
        self.seen_rdvs[external] = line
        if external in self.rdvs:
            return False
        status, starts_at = values["status"], values["starts_at"]
        rdv = Rdv(organisation=self.organisation, motif=values["motif"], lieu=values["lieu"], starts_at=starts_at,
                  ends_at=values["ends_at"], status=status, external_id=external, booked_via=BookingChannel.IMPORT)
        if usager is not None:
            person = usager if isinstance(usager, Usager) else db.session.get(Usager, usager)
            if self.organisation not in person.organisations:  # imported before by another service of the territory
                person.organisations.append(self.organisation)
            rdv.usagers = [person]
        rdv.set_agents(values["agents"])
        db.session.add(rdv)
        self.rdvs.add(external)
        if starts_at <= self.now and status in (RdvStatus.SEEN, RdvStatus.NOSHOW):
            self.baseline_counts["seen" if status == RdvStatus.SEEN else "noshow"] += 1
            self.first_day = min(filter(None, (self.first_day, values["day"])))
            self.last_day = max(filter(None, (self.last_day, values["day"])))
        if starts_at > self.now and rdv.is_live:
            db.session.flush()  # the reminders' keys carry the rdv's id
            outbox.plan_reminders(rdv, now=self.now)
        return True

    @property
    def baseline(self) -> Baseline:
        return Baseline(self.baseline_counts["seen"], self.baseline_counts["noshow"], self.first_day, self.last_day)


def import_history(organisation: Organisation, table: Table, *, dry_run: bool = False, all_or_nothing: bool = False,
                   progress: Callable[[int], None] = lambda step: None, now: datetime | None = None) -> ImportReport:
    """Stores the valid lines of `table` as usagers and rdvs of `organisation` (see the module's docstring)."""
    importer = _HistoryImporter(organisation, table, now or utcnow())
    report = run_importer(importer, table, dry_run, all_or_nothing, progress)
    report.baseline = importer.baseline  # read by the command, which may make it the territory's rate before Lapins
    return report


def set_baseline(territory: Territory, baseline: Baseline) -> bool:
    """The territory's rate before Lapins from an import's past rdvs; False when they hold no seen or missed rdv."""
    if baseline.rate is None:
        return False
    territory.noshow_baseline_bp = round(baseline.rate * 10000)
    territory.noshow_baseline_label = baseline.label
    db.session.commit()
    return True


# --- values ---------------------------------------------------------------------------------------------------------

def _name_key(text: str) -> str:
    return header_key(text or "")


def _yes_no(text: str, *, default: bool, what: str) -> bool:
    key = header_key(text)
    if not key:
        return default
    if key in YES:
        return True
    if key in NO:
        return False
    raise LineRejected(f"{LABELS[what]} attend oui ou non, pas « {text} ».")


def _day(text: str, what: str) -> date:
    """« 04/03/2025 », « 4/3/2025 », « 2025-03-04 », « 2025-03-04 00:00:00 » (a spreadsheet's date)."""
    text = text.strip().split(" ")[0].split("T")[0]
    for pattern, order in ((r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})", "dmy"), (r"(\d{4})-(\d{1,2})-(\d{1,2})", "ymd")):
        match = re.fullmatch(pattern, text)
        if match:
            numbers = [int(part) for part in match.groups()]
            day, month, year = numbers if order == "dmy" else numbers[::-1]
            try:
                return date(year, month, day)
            except ValueError:
                break
    raise LineRejected(f"{what} « {text} » n'est pas une date (exemple : 04/03/2025).")


def _birth_date(text: str) -> date | None:
    return _day(text, "La date de naissance") if text else None


def _clock(text: str) -> time:
    """« 9:30 », « 09h30 », « 9h », « 09:30:00 »."""
    match = re.fullmatch(r"(\d{1,2})\s*[h:.]\s*(\d{2})?(?::\d{2})?", text.strip().lower())
    if match:
        try:
            return time(int(match.group(1)), int(match.group(2) or 0))
        except ValueError:
            pass
    raise LineRejected(f"L'heure « {text} » n'est pas une heure (exemple : 09:30).")

