"""Demo and load-test data: a believable demo département, and a département-sized data set for benchmarks.

Both share one booking engine: it walks the plages d'ouverture week by week, skips holidays and absences, and books
slots back to back inside each plage with a chosen occupancy, so that no agent is ever double-booked. The demo writes
rdvs through the models (the before_flush hook copies times onto RdvAgent); the département scale writes hundreds of
thousands of rows with chunked Core inserts and therefore fills rdv_agents' copied times itself.

Phone numbers: ARCEP reserves 06 39 98 xx xx for fiction, but `phonenumbers` (which validates usagers' phones)
rejects that range, so usagers get plausible but invented mobile numbers. Seeded data must never be loaded into a
deployment whose SMS channel really sends.
"""
from __future__ import annotations

import random
import re
import time as clock
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from itertools import accumulate
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, text
from werkzeug.security import generate_password_hash

from lapins.infra.extensions import db
from lapins.locale.matching import name_key
from lapins.models import (
    Absence, Agent, AgentRole, Lieu, LocationType, Motif, Organisation, PlageOuverture, Rdv, RdvAgent, RdvStatus, Role,
    Sector, SectorZone, Territory, Usager, WaitlistEntry,
)
from lapins.models.agenda_stamps import draw_new_stamps
from lapins.models.plages import plage_motifs
from lapins.models.usagers import usager_organisations
from lapins.models.waitlist import EntrySource
from lapins.slots.engine import public_holidays

DEPARTEMENT_RDVS = 200_000
DEMO_PASSWORD = "lapins-demo-2026"
DEPARTEMENT_PASSWORD = "lapins-charge-2026"
DEPARTEMENT_NUMBER = "59"
RANDOM_SEED = 20_260_401
CHUNK_SIZE = 5_000
WEEKS_AHEAD = 13
DEMO_WEEKS_BEHIND = 4
UTC = timezone.utc

Progress = Callable[[str], None]

# --------------------------------------------------------------------------------------------------------------------
# Catalogues
# --------------------------------------------------------------------------------------------------------------------

ON_SITE, HOME, PHONE = LocationType.ON_SITE, LocationType.HOME, LocationType.PHONE


@dataclass(frozen=True)
class MotifKind:
    name: str
    minutes: int
    location: LocationType
    color: str  # DSFR illustrative palette ("main" shades)
    for_adult: bool  # an expectant or new mother rather than a child
    professions: frozenset[str]


def _kind(name, minutes, location, color, for_adult, *professions) -> MotifKind:
    return MotifKind(name, minutes, location, color, for_adult, frozenset(professions))


PUER, SF, MED, PSY = "puéricultrice", "sage-femme", "médecin", "psychologue"
MOTIF_CATALOGUE = [
    _kind("Consultation nourrisson", 30, ON_SITE, "#009081", False, PUER, MED),
    _kind("Consultation prénatale", 45, ON_SITE, "#a558a0", True, SF),
    _kind("Visite à domicile", 60, HOME, "#e4794a", False, PUER, SF),
    _kind("Entretien téléphonique", 20, PHONE, "#417dc4", True, PUER, SF, MED, PSY),
    _kind("Bilan de santé en école maternelle", 40, ON_SITE, "#c3992a", False, MED, PUER),
    _kind("Pesée et conseils de puériculture", 20, ON_SITE, "#68a532", False, PUER),
    _kind("Entretien prénatal précoce", 45, ON_SITE, "#e18b76", True, SF),
    _kind("Vaccinations", 15, ON_SITE, "#465f9d", False, MED, PUER),
    _kind("Consultation post-natale", 30, ON_SITE, "#009099", True, SF, MED),
    _kind("Visite à domicile post-natale", 60, HOME, "#ce614a", True, SF),
    _kind("Suivi de grossesse à domicile", 45, HOME, "#00a95f", True, SF),
    _kind("Consultation pédiatrique", 30, ON_SITE, "#c08c65", False, MED),
    _kind("Dépistage visuel et auditif", 20, ON_SITE, "#c8aa39", False, PUER, MED),
    _kind("Conseil en allaitement", 30, ON_SITE, "#b7a73f", True, PUER, SF),
    _kind("Accompagnement à la parentalité", 45, ON_SITE, "#bd987a", True, PSY, PUER),
    _kind("Consultation de contraception", 30, ON_SITE, "#d1b781", True, SF, MED),
    _kind("Entretien avec la psychologue", 45, ON_SITE, "#a558a0", True, PSY),
    _kind("Bilan des 24 mois", 30, ON_SITE, "#009081", False, MED, PUER),
    _kind("Suivi du poids et de l'alimentation", 30, ON_SITE, "#68a532", False, PUER),
    _kind("Rappel téléphonique post-natal", 15, PHONE, "#417dc4", True, SF, PUER),
]
ADULT_MOTIFS = {kind.name for kind in MOTIF_CATALOGUE if kind.for_adult}
DEMO_MOTIFS = MOTIF_CATALOGUE[:8]
DEMO_DISCREET, DEMO_SILENT = "Entretien prénatal précoce", "Bilan de santé en école maternelle"
REUNION_MOTIFS = [MOTIF_CATALOGUE[0], MOTIF_CATALOGUE[1], MOTIF_CATALOGUE[2], MOTIF_CATALOGUE[3]]

MOTHERS = [
    "Inès", "Sarah", "Léa", "Camille", "Manon", "Chloé", "Emma", "Laura", "Julie", "Amina", "Fatoumata", "Yasmine",
    "Sofia", "Marie", "Pauline", "Mélissa", "Nour", "Aïcha", "Océane", "Anaïs", "Justine", "Clara", "Lina", "Aurélie",
    "Estelle", "Kenza", "Salomé", "Morgane", "Émilie", "Rania", "Hawa", "Jade", "Coralie", "Nadia", "Élodie",
]
CHILDREN = [
    "Gabriel", "Léo", "Raphaël", "Louis", "Jade", "Louise", "Ambre", "Arthur", "Maël", "Alba", "Adam", "Lucas",
    "Rose", "Emma", "Mia", "Noah", "Sacha", "Ayden", "Lina", "Iris", "Mohamed", "Nino", "Anna", "Inaya", "Eden",
    "Jules", "Aylan", "Romy", "Sohan", "Mila", "Ismaël", "Nour", "Livia", "Timéo", "Kaïs", "Lya", "Hugo", "Zoé",
]
SURNAMES = [
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau", "Simon",
    "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier", "Morel", "Girard",
    "André", "Mercier", "Dupont", "Lambert", "Bonnet", "François", "Martinez", "Legrand", "Garnier", "Faure",
    "Rousseau",
    "Blanc", "Guérin", "Muller", "Henry", "Roussel", "Nicolas", "Perrin", "Diallo", "Traoré", "Benali", "Haddad",
    "Nguyen", "Da Silva", "Lopes", "Kone", "Belkacem", "Mendy", "Rahmani", "Camara", "Dumont", "Lemaire", "Carpentier",
    "Lefèvre", "Delattre", "Vandamme", "Duhamel", "Desmet", "Verhaeghe", "Leclercq", "Dewitte", "Caron", "Wallart",
]
REUNION_SURNAMES = ["Hoarau", "Payet", "Grondin", "Fontaine", "Rivière", "Técher", "Boyer", "Lebon", "Maillot",
                    "Nativel", "Turpin", "Clain", "Dijoux", "Lauret", "Ethève", "Cadet"]
STAFF_FIRST_NAMES = ["Claire", "Sophie", "Nathalie", "Isabelle", "Céline", "Sandrine", "Virginie", "Stéphanie",
                     "Aurélie", "Karima", "Valérie", "Delphine", "Anne", "Agnès", "Samia", "Hélène", "Cécile", "Marc",
                     "Olivier", "Thierry", "Karim", "Laurent", "Myriam", "Corinne", "Fanny", "Élise", "Bénédicte"]
STREETS = ["rue de la République", "avenue Jean Jaurès", "rue Victor Hugo", "rue Pasteur", "boulevard Gambetta",
           "rue Jules Ferry", "place de la Mairie", "rue du Général de Gaulle", "rue Émile Zola", "avenue de la Gare",
           "rue Léon Blum", "rue des Écoles", "rue Jean Moulin", "rue Roger Salengro", "rue Pierre Mauroy"]

# Ten sectors of the Nord, each with six communes hosting a centre (postcode, commune).
NORD_SECTORS = {
    "Lille": [("59000", "Lille Centre"), ("59000", "Lille Moulins"), ("59260", "Lille Hellemmes"),
              ("59160", "Lomme"), ("59120", "Loos"), ("59130", "Lambersart")],
    "Roubaix": [("59100", "Roubaix Épeule"), ("59100", "Roubaix Alma"), ("59150", "Wattrelos"),
                ("59170", "Croix"), ("59510", "Hem"), ("59115", "Leers")],
    "Tourcoing": [("59200", "Tourcoing Centre"), ("59200", "Tourcoing Bourgogne"), ("59250", "Halluin"),
                  ("59223", "Roncq"), ("59910", "Bondues"), ("59960", "Neuville-en-Ferrain")],
    "Métropole Est": [("59650", "Villeneuve-d'Ascq"), ("59491", "Villeneuve-d'Ascq Pont-de-Bois"),
                      ("59370", "Mons-en-Barœul"), ("59700", "Marcq-en-Barœul"), ("59830", "Cysoing"),
                      ("59113", "Seclin")],
    "Flandre maritime": [("59140", "Dunkerque"), ("59760", "Grande-Synthe"), ("59210", "Coudekerque-Branche"),
                         ("59180", "Cappelle-la-Grande"), ("59820", "Gravelines"), ("59380", "Bergues")],
    "Flandre intérieure": [("59190", "Hazebrouck"), ("59280", "Armentières"), ("59270", "Bailleul"),
                           ("59660", "Merville"), ("59940", "Estaires"), ("59114", "Steenvoorde")],
    "Douaisis": [("59500", "Douai"), ("59119", "Waziers"), ("59450", "Sin-le-Noble"), ("59552", "Lambres-lez-Douai"),
                 ("59286", "Roost-Warendin"), ("59287", "Guesnain")],
    "Valenciennois": [("59300", "Valenciennes"), ("59410", "Anzin"), ("59220", "Denain"),
                      ("59230", "Saint-Amand-les-Eaux"), ("59163", "Condé-sur-l'Escaut"),
                      ("59282", "Douchy-les-Mines")],
    "Cambrésis": [("59400", "Cambrai"), ("59540", "Caudry"), ("59360", "Le Cateau-Cambrésis"),
                  ("59157", "Beauvois-en-Cambrésis"),
                  ("59241", "Masnières"), ("59267", "Proville")],
    "Avesnois": [("59600", "Maubeuge"), ("59620", "Aulnoye-Aymeries"), ("59440", "Avesnes-sur-Helpe"),
                 ("59610", "Fourmies"), ("59330", "Hautmont"), ("59570", "Bavay")],
}

# Half-day plages as (start, end) in local time.
MORNINGS = [(time(8, 30), time(12, 0)), (time(9, 0), time(12, 30)), (time(9, 0), time(12, 0))]
AFTERNOONS = [(time(13, 30), time(17, 0)), (time(14, 0), time(17, 30)), (time(13, 30), time(16, 30))]


# --------------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------------

def _number(value: int) -> str:
    """French thousands separator (narrow no-break space) for messages."""
    return f"{value:,}".replace(",", "\u202f")


def _seconds(value: float) -> str:
    return f"{value:.1f} s".replace(".", ",")


def _ascii(value: str) -> str:
    plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return plain.lower().replace(" ", "-").replace("'", "")


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _weekday_bits(*weekdays: int) -> int:
    return sum(1 << day for day in weekdays)


def _mobile(rng: random.Random, country: str = "33") -> str:
    """A plausible French mobile in E.164 (see the module docstring on fiction ranges)."""
    if country == "262":
        return f"+262692{rng.randrange(100000, 1000000)}"
    prefix = rng.choice(["612", "623", "645", "658", "671", "684", "699", "756", "781", "795"])
    return f"+33{prefix}{rng.randrange(0, 1000000):06d}"


def _email(rng: random.Random, first: str, last: str) -> str:
    return f"{_ascii(first)}.{_ascii(last)}{rng.randrange(10, 99)}@example.com"


def _occurs_on(first_day: date, last_day: date | None, weekdays: int, every_n_weeks: int, day: date) -> bool:
    if day < first_day or (last_day is not None and day > last_day) or not weekdays & (1 << day.weekday()):
        return False
    return ((_monday(day) - _monday(first_day)).days // 7) % every_n_weeks == 0


def _minutes(value: time) -> int:
    return value.hour * 60 + value.minute


def _holidays(territory: Territory, years: Iterable[int]) -> set[date]:
    return public_holidays(territory.holiday_subdivision, years)


# --------------------------------------------------------------------------------------------------------------------
# The booking engine
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Plage:
    agent_id: int
    organisation_id: int
    lieu_id: int | None
    first_day: date
    last_day: date | None
    start: int  # minutes since local midnight
    end: int
    weekdays: int
    every_n_weeks: int
    motif_ids: tuple[int, ...]


@dataclass(frozen=True)
class _MotifInfo:
    id: int
    minutes: int
    at_lieu: bool
    for_adult: bool


@dataclass
class _Plan:
    """Everything the engine needs about one territory, read back from the database."""

    tz: ZoneInfo
    plages: list[_Plage]
    motifs: dict[int, _MotifInfo]
    absences: dict[int, list[tuple]]  # agent_id -> (first_day, last_day, start, end, weekdays, every_n_weeks)
    holidays: set[date]
    adults: dict[int, list[int]]  # organisation_id -> usager ids
    children: dict[int, list[int]]
    desk_agents: dict[int, list[int]]  # organisation_id -> agents who book on behalf of families
    _utc_cache: dict = field(default_factory=dict)

    def utc(self, day: date, minutes: int) -> datetime:
        """Local wall-clock time to a UTC instant; zoneinfo keeps 09:00 at 09:00 across DST changes."""
        key = (day, minutes)
        value = self._utc_cache.get(key)
        if value is None:
            local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=self.tz)
            value = self._utc_cache[key] = local.astimezone(UTC)
        return value


@dataclass(frozen=True)
class _Slot:
    plage: _Plage
    day: date
    start: int
    motif: _MotifInfo


@dataclass
class _Booking:
    organisation_id: int
    motif_id: int
    lieu_id: int | None
    agent_id: int
    starts_at: datetime
    ends_at: datetime
    status: RdvStatus
    usager_ids: list[int]
    created_by_id: int
    created_at: datetime
    cancelled_at: datetime | None = None
    cancelled_by_id: int | None = None
    cancel_reason: str | None = None

    @property
    def live(self) -> bool:
        return not self.status.is_cancelled


def _absence_blocks(absences: list[tuple], day: date) -> list[tuple[int, int]]:
    blocks = []
    for first_day, last_day, start, end, weekdays, every_n_weeks in absences:
        if weekdays == 0:  # one-off, from first_day start to last_day end
            if first_day <= day <= (last_day or first_day):
                blocks.append((start if day == first_day else 0, end if day == (last_day or first_day) else 24 * 60))
        elif _occurs_on(first_day, last_day, weekdays, every_n_weeks, day):
            blocks.append((start, end))
    return blocks


def _week_slots(plan: _Plan, monday: date, occupancy: float, rng: random.Random,
                busy: dict[tuple[int, date], list[tuple[int, int]]] | None = None) -> list[_Slot]:
    """Slots to book in one week: back to back inside each plage, each taken with probability `occupancy`."""
    chosen = []
    days = [monday + timedelta(days=offset) for offset in range(7)]
    for plage in plan.plages:
        for day in days:
            if day in plan.holidays or not _occurs_on(plage.first_day, plage.last_day, plage.weekdays,
                                                      plage.every_n_weeks, day):
                continue
            blocked = _absence_blocks(plan.absences.get(plage.agent_id, ()), day)
            if busy:
                blocked += busy.get((plage.agent_id, day), ())
            start = plage.start
            while True:
                motif = plan.motifs[rng.choice(plage.motif_ids)]
                end = start + motif.minutes
                if end > plage.end:
                    break
                free = all(end <= b_start or start >= b_end for b_start, b_end in blocked)
                if free and rng.random() < occupancy:
                    chosen.append(_Slot(plage, day, start, motif))
                start = end
    return chosen


def _odds(*pairs: tuple[RdvStatus, int]) -> tuple[list[RdvStatus], list[int]]:
    """(statuses, cumulative weights) for random.choices."""
    return [status for status, _ in pairs], list(accumulate(weight for _, weight in pairs))


PAST_STATUSES = _odds((RdvStatus.SEEN, 78), (RdvStatus.NOSHOW, 7), (RdvStatus.EXCUSED, 10), (RdvStatus.REVOKED, 3),
                      (RdvStatus.UNKNOWN, 2))
# The last days' rdvs are often not filled in yet.
RECENT_STATUSES = _odds((RdvStatus.SEEN, 45), (RdvStatus.NOSHOW, 5), (RdvStatus.EXCUSED, 10), (RdvStatus.REVOKED, 2),
                        (RdvStatus.UNKNOWN, 38))
FUTURE_STATUSES = _odds((RdvStatus.UNKNOWN, 92), (RdvStatus.EXCUSED, 6), (RdvStatus.REVOKED, 2))
CANCEL_REASONS = {RdvStatus.EXCUSED: ["Enfant malade", "Empêchement de dernière minute", "Rendez-vous déplacé"],
                  RdvStatus.REVOKED: ["Agent absent", "Fermeture exceptionnelle du centre"]}


def _bookings(plan: _Plan, slots: list[_Slot], now: datetime, rng: random.Random) -> Iterator[_Booking]:
    """Turn slots into rdvs; a cancelled rdv is often followed by a live one in the same freed slot."""
    for slot in slots:
        starts_at = plan.utc(slot.day, slot.start)
        ends_at = plan.utc(slot.day, slot.start + slot.motif.minutes)
        if starts_at < now:
            statuses, weights = RECENT_STATUSES if now - starts_at < timedelta(days=7) else PAST_STATUSES
        else:
            statuses, weights = FUTURE_STATUSES
        status = rng.choices(statuses, cum_weights=weights)[0]
        yield _booking(plan, slot, starts_at, ends_at, status, now, rng)
        if status.is_cancelled and rng.random() < 0.5:
            past = rng.choices(PAST_STATUSES[0], cum_weights=PAST_STATUSES[1])[0]
            replacement = RdvStatus.UNKNOWN if starts_at >= now else past
            if not replacement.is_cancelled:
                yield _booking(plan, slot, starts_at, ends_at, replacement, now, rng)


def _booking(plan, slot, starts_at, ends_at, status, now, rng) -> _Booking:
    organisation_id = slot.plage.organisation_id
    pool = plan.adults if slot.motif.for_adult else plan.children
    usagers = pool.get(organisation_id) or plan.adults.get(organisation_id) or []
    usager_ids = [rng.choice(usagers)] if usagers else []
    created_at = min(now, starts_at - timedelta(days=rng.randint(1, 45), minutes=rng.randint(0, 600)))
    desk = plan.desk_agents.get(organisation_id)
    creator = rng.choice(desk) if desk and rng.random() < 0.6 else slot.plage.agent_id
    booking = _Booking(
        organisation_id=organisation_id, motif_id=slot.motif.id,
        lieu_id=slot.plage.lieu_id if slot.motif.at_lieu else None, agent_id=slot.plage.agent_id,
        starts_at=starts_at, ends_at=ends_at, status=status, usager_ids=usager_ids,
        created_by_id=creator, created_at=created_at,
    )
    if status.is_cancelled:
        booking.cancelled_at = min(now, max(created_at, starts_at - timedelta(hours=rng.randint(2, 96))))
        booking.cancel_reason = rng.choice(CANCEL_REASONS[status])
        if status is RdvStatus.REVOKED:
            booking.cancelled_by_id = slot.plage.agent_id
    return booking


def future_occupancy(week: int) -> float:
    """Share of plage time booked `week` weeks ahead (0 = this week): near weeks are full, far ones mostly open."""
    return max(0.10, 0.85 - 0.065 * week)


PAST_OCCUPANCY = 0.82


def _load_plan(territory: Territory, years: Iterable[int]) -> _Plan:
    organisation_ids = [org.id for org in territory.organisations]
    motif_rows = db.session.execute(select(Motif.id, Motif.duration_minutes, Motif.location_type, Motif.name)
                                    .where(Motif.organisation_id.in_(organisation_ids))).all()
    motifs = {row.id: _MotifInfo(row.id, row.duration_minutes, row.location_type is LocationType.ON_SITE,
                                 row.name in ADULT_MOTIFS) for row in motif_rows}
    offered = defaultdict(list)
    for plage_id, motif_id in db.session.execute(select(plage_motifs.c.plage_id, plage_motifs.c.motif_id)
                                                 .order_by(plage_motifs.c.plage_id, plage_motifs.c.motif_id)):
        offered[plage_id].append(motif_id)
    plages = [
        _Plage(p.agent_id, p.organisation_id, p.lieu_id, p.first_day, p.last_day, _minutes(p.start_time),
               _minutes(p.end_time), p.weekdays, p.every_n_weeks, tuple(offered[p.id]))
        for p in db.session.scalars(select(PlageOuverture).where(PlageOuverture.organisation_id.in_(organisation_ids))
                                    .order_by(PlageOuverture.id))
        if offered[p.id]
    ]
    agent_ids = {plage.agent_id for plage in plages}
    absences = defaultdict(list)
    for a in db.session.scalars(select(Absence).where(Absence.agent_id.in_(agent_ids)).order_by(Absence.id)):
        absences[a.agent_id].append((a.first_day, a.last_day, _minutes(a.start_time), _minutes(a.end_time) or 24 * 60,
                                     a.weekdays, a.every_n_weeks))
    adults, children = defaultdict(list), defaultdict(list)
    members = (select(usager_organisations.c.organisation_id, Usager.id, Usager.responsible_id)
               .join(Usager, Usager.id == usager_organisations.c.usager_id)
               .where(usager_organisations.c.organisation_id.in_(organisation_ids)).order_by(Usager.id))
    for organisation_id, usager_id, responsible_id in db.session.execute(members):
        (adults if responsible_id is None else children)[organisation_id].append(usager_id)
    desk = defaultdict(list)
    for organisation_id, agent_id in db.session.execute(
            select(AgentRole.organisation_id, AgentRole.agent_id)
            .where(AgentRole.organisation_id.in_(organisation_ids), AgentRole.role == Role.SECRETARY)
            .order_by(AgentRole.agent_id)):
        desk[organisation_id].append(agent_id)
    return _Plan(territory.tz, plages, motifs, dict(absences), _holidays(territory, years), dict(adults),
                 dict(children), dict(desk))


# --------------------------------------------------------------------------------------------------------------------
# Demo
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DemoStaff:
    first_name: str
    last_name: str
    role: Role
    profession: str
    # (weekday, start, end, lieu index or None for home visits, motif names, every_n_weeks)
    plages: tuple = ()


DEMO_ORGANISATIONS = [
    {
        "number": "92", "territory": "Hauts-de-Seine", "timezone": "Europe/Paris",
        "organisation": "PMI Hauts-de-Seine — Boucle Nord", "domain": "pmi92.example.fr", "country": "33",
        "surnames": SURNAMES, "motifs": DEMO_MOTIFS,
        "lieux": [
            ("Centre de PMI Nanterre Parc", "14 avenue Pablo Picasso, 92000 Nanterre", "+33199001401"),
            ("Centre de PMI Colombes Fossés-Jean", "5 rue Gabriel Péri, 92700 Colombes", "+33199001402"),
            ("Centre de PMI Gennevilliers Le Luth", "28 avenue du Luth, 92230 Gennevilliers", "+33199001403"),
        ],
        "staff": [
            DemoStaff("Hélène", "Garnier", Role.ADMIN, "cadre de santé"),
            DemoStaff("Claire", "Moreau", Role.AGENT, "puéricultrice", (
                (0, time(9), time(12, 30), 0, ("Consultation nourrisson", "Pesée et conseils de puériculture",
                                               "Vaccinations"), 1),
                (1, time(13, 30), time(17), 0, ("Consultation nourrisson", "Entretien téléphonique"), 1),
                (3, time(9), time(12), 0, ("Visite à domicile",), 1),
                (4, time(9), time(12), 1, ("Consultation nourrisson", "Pesée et conseils de puériculture"), 1),
            )),
            DemoStaff("Sophie", "Lambert", Role.AGENT, "puéricultrice", (
                (0, time(13, 30), time(17), 1, ("Consultation nourrisson", "Pesée et conseils de puériculture"), 1),
                (2, time(9), time(12, 30), 1, ("Consultation nourrisson", "Vaccinations"), 1),
                (3, time(13, 30), time(17), 2, ("Consultation nourrisson", "Entretien téléphonique"), 1),
                (4, time(13, 30), time(16, 30), 1, ("Visite à domicile",), 1),
            )),
            DemoStaff("Nadia", "Benali", Role.AGENT, "sage-femme", (
                (1, time(9), time(12, 30), 0, ("Consultation prénatale", "Entretien prénatal précoce"), 1),
                (2, time(13, 30), time(17), 2, ("Consultation prénatale", "Entretien téléphonique"), 1),
                (4, time(9), time(12), 2, ("Visite à domicile",), 1),
            )),
            DemoStaff("Marc", "Lefèvre", Role.AGENT, "médecin", (
                (0, time(9), time(12), 2, ("Consultation nourrisson", "Vaccinations"), 1),
                (1, time(9), time(12), 1, ("Bilan de santé en école maternelle",), 1),
                (2, time(14), time(17), 0, ("Bilan de santé en école maternelle",), 2),
                (3, time(9), time(12, 30), 0, ("Consultation nourrisson", "Vaccinations"), 1),
            )),
            DemoStaff("Julie", "Petit", Role.SECRETARY, "secrétaire médicale"),
        ],
        "families": 40,
    },
    {
        "number": "974", "territory": "La Réunion", "timezone": "Indian/Reunion",
        "organisation": "PMI La Réunion — Nord et Sud", "domain": "pmi974.example.fr", "country": "262",
        "surnames": REUNION_SURNAMES, "motifs": REUNION_MOTIFS,
        "lieux": [
            ("Centre de PMI Saint-Denis Centre", "18 rue de Paris, 97400 Saint-Denis", "+262262901401"),
            ("Centre de PMI Saint-Pierre", "12 rue des Bons Enfants, 97410 Saint-Pierre", "+262262901402"),
        ],
        "staff": [
            DemoStaff("Marie-Josée", "Hoarau", Role.ADMIN, "puéricultrice", (
                (0, time(8), time(12), 0, ("Consultation nourrisson", "Entretien téléphonique"), 1),
                (2, time(8), time(12), 0, ("Consultation nourrisson",), 1),
                (3, time(8), time(11), 0, ("Visite à domicile",), 1),
            )),
            DemoStaff("Jean-Marc", "Payet", Role.AGENT, "médecin", (
                (1, time(8), time(12), 1, ("Consultation nourrisson", "Consultation prénatale"), 1),
                (2, time(13), time(16), 1, ("Consultation prénatale",), 1),
                (4, time(8), time(12), 1, ("Consultation nourrisson", "Consultation prénatale"), 1),
            )),
        ],
        "families": 12,
    },
]


def _demo_email(staff: DemoStaff, domain: str) -> str:
    return f"{_ascii(staff.first_name)}.{_ascii(staff.last_name)}@{domain}"


def demo_logins() -> list[tuple[str, str, str]]:
    logins = []
    for spec in DEMO_ORGANISATIONS:
        for staff in spec["staff"]:
            logins.append((_demo_email(staff, spec["domain"]), DEMO_PASSWORD,
                           f"{staff.role.label} — {staff.profession} ({spec['territory']})"))
    return logins


def seed_demo(now: datetime | None = None, seed: int = RANDOM_SEED) -> list[tuple[str, str, str]]:
    """Create the demo départements (92 and 974) unless they exist; returns (email, password, role label)."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    password_hash = generate_password_hash(DEMO_PASSWORD)
    for spec in DEMO_ORGANISATIONS:
        if db.session.scalar(select(Territory).where(Territory.number == spec["number"])) is None:
            _seed_demo_territory(spec, now, rng, password_hash)
    db.session.commit()
    return demo_logins()


def _seed_demo_territory(spec: dict, now: datetime, rng: random.Random, password_hash: str) -> None:
    territory = Territory(number=spec["number"], name=spec["territory"], timezone=spec["timezone"],
                          sms_sender=f"PMI{spec['number']}")  # alphanumeric sender: families cannot reply
    organisation = Organisation(territory=territory, name=spec["organisation"], phone=spec["lieux"][0][2])
    lieux = [Lieu(organisation=organisation, name=name, address=address, phone=phone)
             for name, address, phone in spec["lieux"]]
    motifs = {kind.name: Motif(organisation=organisation, name=kind.name, duration_minutes=kind.minutes,
                               location_type=kind.location, color=kind.color) for kind in spec["motifs"]}
    # Issue 23.2, one of each: a pregnancy the family may not have told everyone of; a school's check-up, which the
    # school announces itself.
    if DEMO_DISCREET in motifs:
        motifs[DEMO_DISCREET].discreet = True
    if DEMO_SILENT in motifs:
        motifs[DEMO_SILENT].notify = False
    db.session.add_all([territory, organisation, *lieux, *motifs.values()])
    today = now.astimezone(territory.tz).date()
    first_day = _monday(today) - timedelta(weeks=DEMO_WEEKS_BEHIND)
    last_day = _monday(today) + timedelta(weeks=WEEKS_AHEAD, days=-1)
    agents = {}
    for staff in spec["staff"]:
        agent = Agent(email=_demo_email(staff, spec["domain"]), first_name=staff.first_name,
                      last_name=staff.last_name, password_hash=password_hash)
        agent.roles.append(AgentRole(organisation=organisation, role=staff.role))
        agents[staff.last_name] = agent
        db.session.add(agent)
        for weekday, start, end, lieu_index, motif_names, every in staff.plages:
            home = lieu_index is None or all(motifs[n].location_type is not LocationType.ON_SITE for n in motif_names)
            db.session.add(PlageOuverture(
                organisation=organisation, agent=agent, lieu=lieux[lieu_index],
                title="Visites à domicile" if home else "Consultations",  # the agenda adds the lieu
                first_day=first_day, last_day=last_day, start_time=start, end_time=end,
                weekdays=_weekday_bits(weekday), every_n_weeks=every, motifs=[motifs[n] for n in motif_names]))
    _demo_absences(spec["number"], agents, today)
    _demo_online_booking(spec["number"], territory, lieux, motifs)
    _demo_families(territory, organisation, spec, rng, now)
    db.session.flush()
    _demo_rdvs(territory, first_day, today, now, rng)
    db.session.flush()
    _demo_waitlist(organisation, list(motifs.values()), list(agents.values()), now, rng)


# The demo département's online booking (issue 15): a sector per lieu (communes by INSEE code, one of Colombes' streets
# served from Gennevilliers), the lieux' positions, and the motifs families may book online.
DEMO_SECTORS = {
    "92": {
        "sectors": [
            ("Nanterre et Rueil", 0, [("92050", ""), ("92063", ""), ("92062", "")]),
            ("Colombes et Bois-Colombes", 1, [("92025", ""), ("92009", ""), ("92035", "")]),
            ("Gennevilliers et Asnières", 2, [("92036", ""), ("92078", ""), ("92004", ""), ("92025", "92025_0420")]),
        ],
        "positions": [(48.8967, 2.2067), (48.9236, 2.2386), (48.9256, 2.2936)],
        "online": {"Consultation nourrisson": True, "Vaccinations": True, "Consultation prénatale": False},
        "for_self": ("Consultation prénatale",),  # booked online by the mother-to-be herself
    },
}


def _demo_online_booking(number: str, territory: Territory, lieux: list[Lieu], motifs: dict[str, Motif]) -> None:
    """Sectors, positions and online motifs (sectorised or not) for the demo départements that have them."""
    spec = DEMO_SECTORS.get(number)
    if spec is None:
        return
    for lieu, (latitude, longitude) in zip(lieux, spec["positions"]):
        lieu.latitude, lieu.longitude = latitude, longitude
    for name, sectorised in spec["online"].items():
        if name in motifs:
            motifs[name].online_bookable, motifs[name].sectorised = True, sectorised
            motifs[name].online_for_self = name in spec["for_self"]
    db.session.flush()  # the territory's id, which each zone carries
    for name, lieu_index, places in spec["sectors"]:
        sector = Sector(territory=territory, name=name, lieux=[lieux[lieu_index]])
        sector.zones = [SectorZone(territory_id=territory.id, commune_code=commune, street_code=street)
                        for commune, street in places]
        db.session.add(sector)


def _demo_absences(number: str, agents: dict[str, Agent], today: date) -> None:
    monday = _monday(today)
    training_day, last_thursday = monday + timedelta(weeks=2, days=1), monday - timedelta(days=4)
    if number == "92":
        db.session.add_all([
            Absence(agent=agents["Lambert"], title="Congés", first_day=monday + timedelta(weeks=3),
                    last_day=monday + timedelta(weeks=3, days=4), start_time=time(0), end_time=time(23, 59)),
            Absence(agent=agents["Lefèvre"], title="Formation vaccination", first_day=training_day,
                    last_day=training_day, start_time=time(8), end_time=time(18)),
            Absence(agent=agents["Moreau"], title="Formation allaitement", first_day=last_thursday,
                    last_day=last_thursday, start_time=time(8), end_time=time(18)),
            Absence(agent=agents["Benali"], title="Staff périnatalité", first_day=monday - timedelta(weeks=4),
                    last_day=None, start_time=time(9), end_time=time(10), weekdays=_weekday_bits(1), every_n_weeks=2),
        ])
    else:
        db.session.add(Absence(agent=agents["Payet"], title="Congés", first_day=monday + timedelta(weeks=5),
                               last_day=monday + timedelta(weeks=6, days=4), start_time=time(0), end_time=time(23, 59)))


def _demo_families(territory: Territory, organisation: Organisation, spec: dict, rng: random.Random,
                   now: datetime) -> None:
    today = now.date()
    # Postcodes and communes of the demo's lieux: families live near them (home visits need an address).
    communes = [re.search(r"(\d{5}) (.+)$", address).groups() for _, address, _ in spec["lieux"]]
    for index in range(spec["families"]):
        last_name = rng.choice(spec["surnames"])
        first_name = rng.choice(MOTHERS)
        consent = rng.random() < 0.85
        mother = Usager(territory=territory, first_name=first_name, last_name=last_name,
                        birth_date=today - timedelta(days=rng.randint(19 * 365, 42 * 365)),
                        phone=_mobile(rng, spec["country"]), sms_consent=consent,
                        email=_email(rng, first_name, last_name) if rng.random() < 0.6 else None,
                        email_consent=rng.random() < 0.5, organisations=[organisation])
        # Drawn from the index, not from `rng`: the rest of the demo stays what it was.
        postcode, commune = communes[index % len(communes)]
        mother.address_street = f"{index * 7 % 180 + 1} {STREETS[index % len(STREETS)]}"
        mother.address_postcode, mother.address_commune = postcode, commune
        if index % 3 == 0:
            mother.address_access = f"Bât. {'ABC'[index // 3 % 3]}, {index % 6 + 1}e étage, code {1000 + index * 37 % 9000}"
        db.session.add(mother)
        for _child in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
            db.session.add(Usager(territory=territory, responsible=mother, first_name=rng.choice(CHILDREN),
                                  last_name=last_name, birth_date=today - timedelta(days=rng.randint(10, 6 * 365)),
                                  organisations=[organisation]))


def _demo_rdvs(territory: Territory, first_day: date, today: date, now: datetime, rng: random.Random) -> None:
    plan = _load_plan(territory, range(first_day.year, today.year + 2))
    weeks = range(-DEMO_WEEKS_BEHIND, WEEKS_AHEAD)
    slots = []
    for week in weeks:
        occupancy = 0.7 if week < 0 else future_occupancy(week) * 0.9
        slots += _week_slots(plan, _monday(today) + timedelta(weeks=week), occupancy, rng)
    usagers = {usager.id: usager for usager in db.session.scalars(select(Usager).where(Usager.territory == territory))}
    agents = {agent.id: agent for agent in db.session.scalars(select(Agent).where(Agent.id.in_(
        {plage.agent_id for plage in plan.plages})))}
    with db.session.no_autoflush:
        for booking in _bookings(plan, slots, now, rng):
            rdv = Rdv(organisation_id=booking.organisation_id, motif_id=booking.motif_id, lieu_id=booking.lieu_id,
                      starts_at=booking.starts_at, ends_at=booking.ends_at, status=booking.status,
                      created_by_id=booking.created_by_id, created_at=booking.created_at,
                      updated_at=booking.cancelled_at or booking.created_at, cancelled_at=booking.cancelled_at,
                      cancelled_by_id=booking.cancelled_by_id, cancel_reason=booking.cancel_reason,
                      usagers=[usagers[usager_id] for usager_id in booking.usager_ids])
            rdv.set_agents([agents[booking.agent_id]])
            db.session.add(rdv)


DEMO_WAITING_PER_MOTIF = 2


def _demo_waitlist(organisation: Organisation, motifs: list[Motif], agents: list[Agent], now: datetime,
                   rng: random.Random) -> None:
    """Families waiting for each motif seen at a lieu, reachable by SMS: cancelling any of the demo's coming rdvs
    (from the agenda or a family's link) frees a slot that the offer engine offers at once, and the offer's SMS shows
    in the dev inbox (issue 19.16). Children wait for the children's motifs, mothers for theirs."""
    usagers = list(db.session.scalars(select(Usager).where(Usager.territory_id == organisation.territory_id)
                                      .order_by(Usager.id)))
    reachable = [usager for usager in usagers
                 if any(person is not None and person.phone and person.sms_consent
                        for person in (usager, usager.responsible))]
    booked_ahead = set(db.session.scalars(
        select(Rdv.motif_id).where(Rdv.organisation_id == organisation.id, Rdv.starts_at > now,
                                   Rdv.status == RdvStatus.UNKNOWN)))
    for motif in motifs:
        if motif.location_type is not LocationType.ON_SITE or motif.id not in booked_ahead:
            continue
        adult = motif.name in ADULT_MOTIFS
        candidates = [usager for usager in reachable if (usager.responsible_id is None) == adult]
        for usager in rng.sample(candidates, min(DEMO_WAITING_PER_MOTIF, len(candidates))):
            db.session.add(WaitlistEntry(
                organisation=organisation, usager=usager, motif=motif, priority=rng.choice([0, 0, 1]),
                source=EntrySource.AGENT, created_by=rng.choice(agents),
                created_at=now - timedelta(days=rng.randint(1, 20), minutes=rng.randint(0, 600))))


# --------------------------------------------------------------------------------------------------------------------
# Département scale
# --------------------------------------------------------------------------------------------------------------------

@dataclass
class DepartementReport:
    territory_id: int
    counts: dict[str, int]
    seconds: float
    history_from: date | None = None
    message: str | None = None

    def __str__(self) -> str:
        if self.message:
            return self.message
        lines = [f"Département {DEPARTEMENT_NUMBER} généré en {_seconds(self.seconds)} :"]
        lines += [f"  {label:<28} {_number(value):>10}" for label, value in self.counts.items()]
        if self.history_from:
            lines.append(f"  historique depuis le {self.history_from:%d/%m/%Y}")
        lines.append(f"  mot de passe de tous les agents : {DEPARTEMENT_PASSWORD}")
        return "\n".join(lines)


def seed_departement(rdv_count: int = DEPARTEMENT_RDVS, progress: Progress = print, *, seed: int = RANDOM_SEED,
                     now: datetime | None = None, usagers: int = 50_000, agents: int = 300,
                     organisations: int = 10) -> DepartementReport:
    """A département at full scale, deterministic for a given seed and day.

    About half of `rdv_count` (at most what the occupancy profile allows) goes into the coming 13 weeks, the rest
    into the past, going back as many weeks as needed.
    """
    started = clock.perf_counter()
    now = now or datetime.now(UTC)
    existing = db.session.scalar(select(Territory).where(Territory.number == DEPARTEMENT_NUMBER))
    if existing is not None:
        return DepartementReport(existing.id, {}, 0.0,
                                 message=f"Le département {DEPARTEMENT_NUMBER} existe déjà : rien à faire.")
    rng = random.Random(seed)
    territory = _build_structure(rng, now, organisations, agents, progress)
    _build_usagers(territory, rng, now, usagers, progress)
    plan = _load_plan(territory, range(now.year - 30, now.year + 2))
    future = _future_bookings(plan, now, rng, budget=rdv_count // 2)[:rdv_count]
    with _RdvWriter(progress, rdv_count) as writer:
        writer.write(future)
        history_from = _write_history(plan, now, rng, writer, rdv_count - len(future), before=None)
    _extend_plages_back(territory, history_from)
    db.session.commit()
    _analyze()
    counts = departement_counts(territory.id)
    progress(f"Terminé : {_number(counts['rdvs'])} rdvs en {_seconds(clock.perf_counter() - started)}.")
    return DepartementReport(territory.id, counts, clock.perf_counter() - started, history_from)


def add_past_rdvs(territory_id: int, rdv_count: int, progress: Progress = print, *, seed: int = RANDOM_SEED + 1,
                  now: datetime | None = None) -> int:
    """Grow the history: `rdv_count` more rdvs in the weeks before the oldest one (the future is left alone)."""
    now = now or datetime.now(UTC)
    territory = db.session.get(Territory, territory_id)
    oldest = db.session.scalar(select(func.min(Rdv.starts_at)).where(Rdv.organisation_id.in_(
        [org.id for org in territory.organisations])))
    before = _monday(oldest.astimezone(territory.tz).date()) if oldest else None
    plan = _load_plan(territory, range(now.year - 30, now.year + 2))
    with _RdvWriter(progress, rdv_count) as writer:
        oldest = _write_history(plan, now, random.Random(seed), writer, rdv_count, before=before)
    _extend_plages_back(territory, oldest)
    draw_new_stamps(db.session, Territory.id == territory_id)  # the bulk writes went past the ORM's listeners
    db.session.commit()
    _analyze()
    return writer.written


def add_future_rdvs(territory_id: int, progress: Progress = print, *, seed: int = RANDOM_SEED + 2,
                    now: datetime | None = None) -> int:
    """Book the coming weeks up to the usual occupancy profile, around the live rdvs already there."""
    now = now or datetime.now(UTC)
    territory = db.session.get(Territory, territory_id)
    plan = _load_plan(territory, range(now.year - 1, now.year + 2))
    this_monday = _monday(now.astimezone(territory.tz).date())
    busy = defaultdict(list)
    rows = db.session.execute(
        select(RdvAgent.agent_id, RdvAgent.starts_at, RdvAgent.ends_at)
        .where(RdvAgent.live.is_(True), RdvAgent.starts_at >= plan.utc(this_monday, 0),
               RdvAgent.agent_id.in_({plage.agent_id for plage in plan.plages})))
    for agent_id, starts_at, ends_at in rows:
        local_start, local_end = starts_at.astimezone(plan.tz), ends_at.astimezone(plan.tz)
        busy[(agent_id, local_start.date())].append((local_start.hour * 60 + local_start.minute,
                                                     local_end.hour * 60 + local_end.minute))
    future = _future_bookings(plan, now, random.Random(seed), budget=None, busy=busy)
    with _RdvWriter(progress, len(future)) as writer:
        writer.write(future)
    draw_new_stamps(db.session, Territory.id == territory_id)  # the bulk writes went past the ORM's listeners
    db.session.commit()
    _analyze()
    return writer.written


def departement_counts(territory_id: int) -> dict[str, int]:
    organisation_ids = select(Organisation.id).where(Organisation.territory_id == territory_id)
    agent_ids = select(AgentRole.agent_id).where(AgentRole.organisation_id.in_(organisation_ids))

    def count(query) -> int:
        return db.session.scalar(select(func.count()).select_from(query.subquery()))

    return {
        "organisations": count(organisation_ids),
        "agents": count(select(Agent.id).where(Agent.id.in_(agent_ids))),
        "lieux": count(select(Lieu.id).where(Lieu.organisation_id.in_(organisation_ids))),
        "motifs": count(select(Motif.id).where(Motif.organisation_id.in_(organisation_ids))),
        "plages d'ouverture": count(select(PlageOuverture.id)
                                    .where(PlageOuverture.organisation_id.in_(organisation_ids))),
        "absences": count(select(Absence.id).where(Absence.agent_id.in_(agent_ids))),
        "usagers": count(select(Usager.id).where(Usager.territory_id == territory_id)),
        "rdvs": count(select(Rdv.id).where(Rdv.organisation_id.in_(organisation_ids))),
        "rdvs à venir": count(select(Rdv.id).where(Rdv.organisation_id.in_(organisation_ids),
                                                   Rdv.starts_at >= datetime.now(UTC))),
    }


def _future_bookings(plan: _Plan, now: datetime, rng: random.Random, budget: int | None,
                     busy: dict | None = None) -> list[_Booking]:
    """The coming 13 weeks (this week included) booked along the occupancy profile, optionally thinned to `budget`."""
    this_monday = _monday(now.astimezone(plan.tz).date())
    slots = []
    for week in range(WEEKS_AHEAD):
        slots += _week_slots(plan, this_monday + timedelta(weeks=week), future_occupancy(week), rng, busy)
    if budget is not None and len(slots) > budget:
        slots = sorted(rng.sample(slots, budget), key=lambda s: (s.day, s.plage.agent_id, s.start))
    return list(_bookings(plan, slots, now, rng))


def _write_history(plan: _Plan, now: datetime, rng: random.Random, writer: _RdvWriter, count: int,
                   before: date | None) -> date | None:
    """Fill past weeks before `before` (default: this week), newest first, until `count` rdvs are written.

    Returns the Monday of the oldest week written, for _extend_plages_back.
    """
    this_monday = _monday(now.astimezone(plan.tz).date())
    monday = (before or this_monday) - timedelta(weeks=1)
    remaining, empty_weeks = count, 0
    history_plan = _Plan(plan.tz, [_open_ended_back(plage) for plage in plan.plages], plan.motifs, plan.absences,
                         plan.holidays, plan.adults, plan.children, plan.desk_agents)
    oldest = None
    while remaining > 0 and empty_weeks < 5:
        slots = _week_slots(history_plan, monday, PAST_OCCUPANCY, rng)
        bookings = list(_bookings(history_plan, slots, now, rng))[:remaining]
        empty_weeks = 0 if bookings else empty_weeks + 1  # a few weeks may be all holidays; no plages at all ends it
        if bookings:
            writer.write(bookings)
            remaining -= len(bookings)
            oldest = monday
        monday -= timedelta(weeks=1)
    return oldest


def _extend_plages_back(territory: Territory, oldest: date | None) -> None:
    """Move first days back to cover the history, by whole recurrence periods so fortnightly plages keep their weeks."""
    if oldest is None:
        return
    organisation_ids = [org.id for org in territory.organisations]
    for plage in db.session.scalars(select(PlageOuverture).where(PlageOuverture.organisation_id.in_(organisation_ids),
                                                                 PlageOuverture.first_day > oldest)):
        period = 7 * plage.every_n_weeks
        plage.first_day -= timedelta(days=-(-(plage.first_day - oldest).days // period) * period)
    db.session.flush()


def _open_ended_back(plage: _Plage) -> _Plage:
    """The same weekly plage as if it had always existed (history reaches further back than its first day)."""
    anchor = plage.first_day - timedelta(weeks=52 * 40 - (52 * 40) % plage.every_n_weeks)
    return _Plage(plage.agent_id, plage.organisation_id, plage.lieu_id, anchor, plage.last_day, plage.start, plage.end,
                  plage.weekdays, plage.every_n_weeks, plage.motif_ids)


class _BulkSink:
    """Writes many rows on the session's own connection (same transaction), bypassing per-value ORM processing.

    PostgreSQL gets COPY, SQLite a plain DBAPI executemany; values are given in the form the model's column types
    would have stored (aware UTC on PostgreSQL, naive UTC text on SQLite, enums as their value).
    """

    def __init__(self):
        connection = db.session.connection()
        self.dialect = connection.dialect.name
        self.raw = connection.connection.driver_connection

    def instant(self, value: datetime | None):
        if value is None or self.dialect != "sqlite":
            return value
        value = value.astimezone(UTC)
        return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"

    def day(self, value: date | None):
        return value.isoformat() if value is not None and self.dialect == "sqlite" else value

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        names = ", ".join(columns)
        if self.dialect == "postgresql":
            with self.raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        elif self.dialect == "sqlite":
            self.raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)
        else:
            db.session.execute(insert(db.metadata.tables[table]), [dict(zip(columns, row)) for row in rows])


RDV_COLUMNS = ("id", "organisation_id", "motif_id", "lieu_id", "starts_at", "ends_at", "status", "created_by_id",
               "created_at", "updated_at", "cancelled_at", "cancelled_by_id", "cancel_reason", "revision")
RDV_AGENT_COLUMNS = ("rdv_id", "agent_id", "starts_at", "ends_at", "live")
RDV_USAGER_COLUMNS = ("rdv_id", "usager_id")


class _RdvWriter:
    """Chunked bulk inserts of rdvs with their rdv_agents (times copied, as the flush hook would) and rdv_usagers.

    On PostgreSQL a background thread sends each chunk while the next one is generated: the machine has two cores,
    one for Python and one for the server. At most one chunk is in flight. Use it as a context manager: leaving it
    waits for the last chunk and moves the id sequence on; the session must not be used in between.
    """

    def __init__(self, progress: Progress, expected: int):
        self.progress, self.expected, self.written, self.reported = progress, expected, 0, 0
        self.sink = _BulkSink()
        self.next_id = _next_id(Rdv.__table__)
        self.started = clock.perf_counter()
        self._pool = ThreadPoolExecutor(max_workers=1) if self.sink.dialect == "postgresql" else None
        self._pending: Future | None = None

    def __enter__(self) -> _RdvWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
        if exc_type is None:
            _sync_sequence(Rdv.__table__)

    def write(self, bookings: list[_Booking]) -> None:
        for offset in range(0, len(bookings), CHUNK_SIZE):
            self._write_chunk(bookings[offset: offset + CHUNK_SIZE])

    def _write_chunk(self, bookings: list[_Booking]) -> None:
        rows = self._rows(bookings)
        if self._pool is None:
            self._insert(*rows)
        else:
            self._wait()
            self._pending = self._pool.submit(self._insert, *rows)
        self.written += len(bookings)
        if self.written - self.reported >= 50_000 or self.written == self.expected:
            self.reported = self.written
            rate = self.written / max(clock.perf_counter() - self.started, 1e-6)
            self.progress(f"  rdvs : {_number(self.written)} / {_number(self.expected)} "
                          f"({_number(round(rate))} par seconde)")

    def _rows(self, bookings: list[_Booking]) -> tuple[list, list, list]:
        rdvs, links, attendees = [], [], []
        instant = self.sink.instant
        for booking in bookings:
            rdv_id = self.next_id
            self.next_id += 1
            starts_at, ends_at = instant(booking.starts_at), instant(booking.ends_at)
            created_at, cancelled_at = instant(booking.created_at), instant(booking.cancelled_at)
            rdvs.append((rdv_id, booking.organisation_id, booking.motif_id, booking.lieu_id, starts_at, ends_at,
                         booking.status.value, booking.created_by_id, created_at, cancelled_at or created_at,
                         cancelled_at, booking.cancelled_by_id, booking.cancel_reason, 1 if cancelled_at else 0))
            links.append((rdv_id, booking.agent_id, starts_at, ends_at, booking.live))
            attendees += [(rdv_id, usager_id) for usager_id in booking.usager_ids]
        return rdvs, links, attendees

    def _insert(self, rdvs: list, links: list, attendees: list) -> None:
        self.sink.insert("rdvs", RDV_COLUMNS, rdvs)
        self.sink.insert("rdv_agents", RDV_AGENT_COLUMNS, links)
        self.sink.insert("rdv_usagers", RDV_USAGER_COLUMNS, attendees)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


def _next_id(table) -> int:
    return (db.session.scalar(select(func.max(table.c.id))) or 0) + 1


def _sync_sequence(table) -> None:
    """Explicit ids bypass PostgreSQL's sequence: move it past them so that later inserts do not collide."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table.name}), false)"))


def _analyze() -> None:
    """Fresh planner statistics: a bulk load leaves the query planner guessing until autovacuum passes."""
    for table in ("rdvs", "rdv_agents", "rdv_usagers", "usagers", "usager_organisations", "plages_ouverture"):
        db.session.execute(text(f"ANALYZE {table}"))
    db.session.commit()


def _build_structure(rng: random.Random, now: datetime, organisation_count: int, agent_count: int,
                     progress: Progress) -> Territory:
    """Territory, organisations, lieux, motifs, agents with their plages and absences (a few thousand rows)."""
    territory = Territory(number=DEPARTEMENT_NUMBER, name="Nord", timezone="Europe/Paris")
    db.session.add(territory)
    sectors = list(NORD_SECTORS.items())[:organisation_count]
    today = now.astimezone(territory.tz).date()
    first_day = _monday(today) - timedelta(weeks=WEEKS_AHEAD)
    last_day = _monday(today) + timedelta(weeks=WEEKS_AHEAD, days=-1)
    password_hash = generate_password_hash(DEPARTEMENT_PASSWORD)
    per_organisation = [agent_count // len(sectors) + (1 if i < agent_count % len(sectors) else 0)
                        for i in range(len(sectors))]
    staff_numbers = iter(range(1, agent_count + 1))
    organisations = []
    for index, ((sector, communes), size) in enumerate(zip(sectors, per_organisation)):
        organisation = Organisation(territory=territory, name=f"PMI Nord — {sector}")
        organisations.append(organisation)
        lieux = [Lieu(organisation=organisation, name=f"Centre de PMI {commune}",
                      address=f"{rng.randint(1, 180)} {rng.choice(STREETS)}, {postcode} {commune.split(' ')[0]}",
                      phone=f"+333530{index:02d}{number:03d}")
                 for number, (postcode, commune) in enumerate(communes)]
        motifs = [Motif(organisation=organisation, name=kind.name, duration_minutes=kind.minutes,
                        location_type=kind.location, color=kind.color) for kind in MOTIF_CATALOGUE]
        db.session.add_all([organisation, *lieux, *motifs])
        for position in range(size):
            _add_departement_agent(organisation, lieux, motifs, position, next(staff_numbers), rng, password_hash,
                                   first_day, last_day, today)
    db.session.flush()
    _share_some_agents(organisations, rng, first_day, last_day)
    db.session.flush()
    progress(f"Structure : {len(organisations)} organisations, {agent_count} agents.")
    return territory


PROFESSION_MIX = [PUER] * 11 + [SF] * 4 + [MED] * 3 + [PSY] * 1


def _add_departement_agent(organisation, lieux, motifs, position, number, rng, password_hash, first_day, last_day,
                           today) -> None:
    role = Role.ADMIN if position == 0 else Role.SECRETARY if position in (1, 2, 3) else Role.AGENT
    first_name, last_name = rng.choice(STAFF_FIRST_NAMES), rng.choice(SURNAMES)
    agent = Agent(email=f"{_ascii(first_name)}.{_ascii(last_name)}.{number}@pmi59.example.fr",
                  first_name=first_name, last_name=last_name, password_hash=password_hash)
    agent.roles.append(AgentRole(organisation=organisation, role=role))
    db.session.add(agent)
    if role is Role.SECRETARY:
        return
    profession = MED if role is Role.ADMIN else rng.choice(PROFESSION_MIX)
    home_lieux = rng.sample(lieux, 2)
    weekly = 2 if role is Role.ADMIN else rng.randint(3, 5)
    half_days = rng.sample([(day, half) for day in range(5) for half in range(2)], weekly)
    for day, half in half_days:
        _add_plage(organisation, agent, rng.choice(home_lieux), motifs, profession, day, half, rng, first_day, last_day)
    if rng.random() < 0.10:
        _add_absences(agent, rng, today, first_day)


def _add_plage(organisation, agent, lieu, motifs, profession, day, half, rng, first_day, last_day) -> None:
    start, end = rng.choice(MORNINGS if half == 0 else AFTERNOONS)
    suitable = [m for m, kind in zip(motifs, MOTIF_CATALOGUE) if profession in kind.professions]
    home = [m for m in suitable if m.location_type is LocationType.HOME]
    if home and rng.random() < 0.2:
        offered, title = home, "Visites à domicile"
    else:
        at_desk = [m for m in suitable if m.location_type is not LocationType.HOME]
        offered, title = rng.sample(at_desk, min(len(at_desk), rng.randint(3, 6))), "Consultations"
    db.session.add(PlageOuverture(
        organisation=organisation, agent=agent, lieu=lieu, title=title, first_day=first_day, last_day=last_day,
        start_time=start, end_time=end, weekdays=_weekday_bits(day), every_n_weeks=2 if rng.random() < 0.1 else 1,
        motifs=offered))


def _add_absences(agent, rng, today, first_day) -> None:
    monday = _monday(today)
    holiday_week = monday + timedelta(weeks=rng.randint(-6, 12))
    training_day = monday + timedelta(weeks=rng.randint(-6, 12), days=rng.randint(0, 4))
    absences = [
        Absence(agent=agent, title="Congés", first_day=holiday_week, last_day=holiday_week + timedelta(days=4),
                start_time=time(0), end_time=time(23, 59)),
        Absence(agent=agent, title="Formation", first_day=training_day, last_day=training_day,
                start_time=time(8, 30), end_time=time(17, 30)),
    ]
    if rng.random() < 0.3:
        absences.append(Absence(agent=agent, title="Temps partiel", first_day=first_day, last_day=None,
                                start_time=time(8), end_time=time(18), weekdays=_weekday_bits(2), every_n_weeks=2))
    db.session.add_all(absences)


def _share_some_agents(organisations, rng, first_day, last_day) -> None:
    """The médecin in charge of each organisation also consults once a week in the next one (never overlapping)."""
    pairs = []
    for index, organisation in enumerate(organisations):
        neighbour = organisations[(index + 1) % len(organisations)]
        admin_id = db.session.scalar(select(AgentRole.agent_id).where(AgentRole.organisation_id == organisation.id,
                                                                      AgentRole.role == Role.ADMIN))
        if neighbour is not organisation and admin_id is not None:
            pairs.append((db.session.get(Agent, admin_id), neighbour))
    for agent, neighbour in pairs:
        taken = {(plage.weekday_numbers[0], plage.start_time < time(12, 30))
                 for plage in db.session.scalars(select(PlageOuverture).where(PlageOuverture.agent_id == agent.id))}
        day, morning = rng.choice([(d, m) for d in range(5) for m in (True, False) if (d, m) not in taken])
        agent.roles.append(AgentRole(organisation=neighbour, role=Role.AGENT))
        neighbour_motifs = db.session.scalars(select(Motif).where(Motif.organisation_id == neighbour.id)
                                              .order_by(Motif.id)).all()
        _add_plage(neighbour, agent, neighbour.lieux[0], neighbour_motifs, MED, day, 0 if morning else 1, rng,
                   first_day, last_day)


USAGER_COLUMNS = ("id", "territory_id", "responsible_id", "first_name", "last_name", "birth_date", "phone", "email",
                  "sms_consent", "email_consent", "created_at", "name_key")


def _build_usagers(territory: Territory, rng: random.Random, now: datetime, count: int, progress: Progress) -> None:
    """Families (a mother and her children), each followed by one organisation: bulk inserts."""
    organisation_ids = [org.id for org in territory.organisations]
    sink = _BulkSink()
    next_id = _next_id(Usager.__table__)
    today, created_at = now.date(), sink.instant(now)
    usagers, memberships = [], []
    while len(usagers) < count:
        organisation_id = rng.choice(organisation_ids)
        last_name, first_name = rng.choice(SURNAMES), rng.choice(MOTHERS)
        mother_id, next_id = next_id, next_id + 1
        email = _email(rng, first_name, last_name) if rng.random() < 0.5 else None
        birth_date = sink.day(today - timedelta(days=rng.randint(18 * 365, 44 * 365)))
        usagers.append((mother_id, territory.id, None, first_name, last_name, birth_date, _mobile(rng), email,
                        rng.random() < 0.85, email is not None and rng.random() < 0.6, created_at,
                        name_key(first_name, last_name)))
        memberships.append((mother_id, organisation_id))
        for _ in range(min(rng.choice([0, 1, 1, 1, 2, 2, 3]), count - len(usagers))):
            child_id, next_id = next_id, next_id + 1
            birth_date = sink.day(today - timedelta(days=rng.randint(10, 6 * 365)))
            child_name = rng.choice(CHILDREN)
            usagers.append((child_id, territory.id, mother_id, child_name, last_name, birth_date, None,
                            None, False, False, created_at, name_key(child_name, last_name)))
            memberships.append((child_id, organisation_id))
    for offset in range(0, len(usagers), CHUNK_SIZE):
        sink.insert("usagers", USAGER_COLUMNS, usagers[offset: offset + CHUNK_SIZE])
    for offset in range(0, len(memberships), CHUNK_SIZE):
        sink.insert("usager_organisations", ("usager_id", "organisation_id"), memberships[offset: offset + CHUNK_SIZE])
    _sync_sequence(Usager.__table__)
    progress(f"Usagers : {_number(len(usagers))}.")
