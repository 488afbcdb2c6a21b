"""Online booking by families, no account: the motifs a territory opened, the lieux serving an address with their
first free times (the public slot picker), the family's mobile checked by a 6-digit SMS code, then one transaction
that finds or creates the usagers and books through lapins.booking (`via` online).

A chosen time travels as a signed token (territory, motif, lieu, agent, start): nothing from another territory can
be named, and the time is checked again against the picker and under booking's locks when the family books.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import func, or_, select
from sqlalchemy.orm import aliased, joinedload

from lapins.booking import BookingError, book_rdv, sessions
from lapins.infra.extensions import db
from lapins.locale.communes import Commune
from lapins.locale.matching import name_key
from lapins.models import (
    Agent, Channel, Lieu, Message, MessageKind, MessageStatus, Motif, Organisation, PhoneVerification, Rdv, Territory,
    Usager, WaitlistEntry, utcnow,
)
from lapins.models.rdvs import (
    CANCELLED_STATUSES, BookingChannel, Participation, ParticipationStatus, RdvAgent, participation_usagers,
    rdv_usagers,
)
from lapins.models.sectors import agent_sectors, lieu_sectors
from lapins.models.territories import TerritoryClock, phone_to_call
from lapins.notifications import gsm
from lapins.sectors.communes import communes
from lapins.sectors.serving import ServingLieu, address_sectors, online_refusal, serving_by_motif, serving_lieux
from lapins.slots import picker
from lapins.slots.engine import ceil_to_grid
from lapins.waitlist import entries

CODE_LIFETIME = timedelta(minutes=10)
MAX_TRIES = 5
# Once checked, the number may book (or try another time after one was taken) for this long without a new code.
VERIFIED_FOR = timedelta(minutes=30)
CODE_WINDOW = timedelta(hours=1)  # ONLINE_CODES_PER_NUMBER codes at most in this window
SLOT_TOKEN_AGE = 24 * 3600


# The nearest lieux shown with their first times; an address served by many (a whole commune split by streets, a
# big city) lists the others with a link to their dates, rather than reading every agenda for one search.
LIEUX_WITH_TIMES = 4


class OnlineError(Exception):
    """A refusal the family reads, in French."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SlotGone(OnlineError):
    """The time chosen is no longer free (taken meanwhile, or out of the motif's delays now)."""


@dataclass(frozen=True)
class LieuOffer:
    serving: ServingLieu | ServingValues  # plain values in a search (searched), entities in a week (week_of)
    motif: Motif | MotifValues  # the motif of the lieu's organisation, among those of the need chosen
    days: tuple[picker.Day, ...] | None  # None: not read here (a farther lieu: its times on its dates page)
    following: date | None = None  # where « Voir plus de dates » starts, None past the motif's maximum delay


@dataclass(frozen=True)
class Need:
    """What a family chooses: the motifs of one name across the territory's organisations (each organisation has
    its own « Consultation nourrisson »), shown once; `motif_id` the lowest of their ids."""

    motif_id: int
    name: str
    duration_minutes: int


@dataclass(frozen=True)
class SlotChoice:
    """A time the family chose, as its signed token says."""

    territory_id: int
    motif_id: int
    lieu_id: int
    agent_id: int
    starts_at: datetime
    commune_code: str
    street_code: str = ""  # the street searched with, when its sector decides which lieux serve the address


@dataclass(frozen=True)
class Family:
    """What the family typed: the person the rdv is for is a child of the responsible person, or themselves."""

    last_name: str
    first_name: str  # the responsible person's
    phone: str  # E.164, checked
    email: str | None
    child_first_name: str | None
    birth_date: date  # the child's, or the person's own when the motif is for themselves


# --- What is offered -------------------------------------------------------------------------------------------

def open_motifs(territory: Territory) -> list[Motif]:
    """The motifs families may book online in this territory, by name (none when its switch is off)."""
    if not territory.online_booking:
        return []
    return list(db.session.scalars(
        select(Motif).join(Organisation, Organisation.id == Motif.organisation_id).where(*_open(territory))
        .order_by(Motif.name, Motif.id)))


def _need_key(motif: Motif) -> str:
    return " ".join(motif.name.casefold().split())


def _open(territory: Territory) -> list:
    return [Organisation.territory_id == territory.id, Motif.active.is_(True), Motif.online_bookable.is_(True)]


def open_needs(territory: Territory) -> list[Need]:
    """The motifs open online (individual or collective), one per name, by name."""
    if not territory.online_booking:
        return []
    needs: dict[str, Need] = {}
    for motif_id, name, duration in db.session.execute(
            select(Motif.id, Motif.name, Motif.duration_minutes)
            .join(Organisation, Organisation.id == Motif.organisation_id).where(*_open(territory))
            .order_by(Motif.id)):
        needs.setdefault(" ".join(name.casefold().split()), Need(motif_id, name, duration))
    return sorted(needs.values(), key=lambda need: (need.name.casefold(), need.motif_id))


def need_motifs(territory: Territory, motif: Motif) -> list[Motif]:
    """The motifs open online with the same name as `motif`, in every organisation of the territory."""
    if not territory.online_booking:
        return []
    return [other for other in db.session.scalars(
        select(Motif).join(Organisation, Organisation.id == Motif.organisation_id)
        .where(*_open(territory), func.lower(Motif.name) == motif.name.lower()).order_by(Motif.id)
        .options(joinedload(Motif.organisation)))  # read by online_refusal and sectors: not one query per motif
        if _need_key(other) == _need_key(motif) and other.collective == motif.collective]


def need_of(territory: Territory, motif_id: int | None, *, collective: bool | None = False
            ) -> tuple[Motif, list[Motif]]:
    """motif_of and need_motifs at once: the motif chosen and the motifs of its need, in one query when it is open
    online (the usual search); as motif_of otherwise (its refusal)."""
    if motif_id and territory.online_booking:
        named = aliased(Motif)
        chosen_name = select(func.lower(named.name)).where(named.id == motif_id).scalar_subquery()
        motifs = list(db.session.scalars(
            select(Motif).join(Organisation, Organisation.id == Motif.organisation_id)
            .where(*_open(territory), func.lower(Motif.name) == chosen_name).order_by(Motif.id)
            .options(joinedload(Motif.organisation))))
        motif = next((each for each in motifs if each.id == motif_id), None)
        if motif is not None and (collective is None or motif.collective == collective) \
                and online_refusal(motif) is None:
            return motif, [other for other in motifs
                           if _need_key(other) == _need_key(motif) and other.collective == motif.collective]
    motif = motif_of(territory, motif_id, collective=collective)
    return motif, need_motifs(territory, motif)


def motif_of(territory: Territory, motif_id: int | None, *, collective: bool | None = False) -> Motif:
    """The motif chosen, only among this territory's (individual, collective, or either when None); OnlineError
    when it is not (or no longer) open online."""
    # With its organisation (online_refusal reads it): one query, not two.
    motif = db.session.get(Motif, motif_id, options=[joinedload(Motif.organisation)]) if motif_id else None
    if motif is None or motif.organisation.territory_id != territory.id or (
            collective is not None and motif.collective != collective):
        raise OnlineError("Choisissez un motif dans la liste.")
    refusal = online_refusal(motif)
    if refusal:
        raise OnlineError(refusal)
    return motif


def scope_for(territory: Territory, motif: Motif, lieu_id: int, now: datetime,
              stamps: tuple[tuple[int, str], ...] | None = None) -> picker.Scope:
    """Any agent offering the motif at the lieu, from the motif's minimum delay to its maximum (5-minute grid, so
    the picker keeps its pages a few minutes); `stamps`, the motif's agents' (read once for all its lieux)."""
    return picker.Scope(territory=territory, motif=motif, lieu_id=lieu_id, agent_ids=None,
                        start=ceil_to_grid(now + timedelta(hours=motif.online_min_hours)),
                        end=ceil_to_grid(now + timedelta(days=motif.online_max_days)),
                        agent_stamps=stamps if stamps is not None else picker.agent_stamps(motif.id, None))


def _serving_days(days: tuple[picker.Day, ...], agent_ids: set[int]) -> tuple[picker.Day, ...]:
    """The days' choices kept to the agents serving the address (a sector may hold some agents of a lieu only)."""
    kept = []
    for day in days:
        choices = tuple(picker.Choice(choice.starts_at, choice.ends_at, tuple(a for a in choice.agent_ids
                                                                             if a in agent_ids))
                        for choice in day.choices)
        choices = tuple(choice for choice in choices if choice.agent_ids)
        if choices:
            kept.append(picker.Day(day.day, choices))
    return tuple(kept)


@dataclass(frozen=True)
class Search:
    """What a search shows (`offers`), and the agenda stamps of the agents whose times it shows, read before them."""

    offers: list[LieuOffer]
    agent_stamps: tuple[tuple[int, str], ...]


# --- A search's configuration, as plain values ---------------------------------------------------------------------
# What the territory's configuration alone decides of a search (which lieux serve the address for the need, in which
# order, with which agents; the motifs' names and delays): read once, kept with its page (lapins.public.kept_search)
# while the territory's stamp holds, and the days added from the picker at each computing. Plain values, never ORM
# entities: a kept page outlives its request's session.

@dataclass(frozen=True)
class TerritoryValues(TerritoryClock):
    id: int
    number: str
    name: str
    timezone: str
    agenda_stamp: str  # the one the configuration was read with

    @classmethod
    def of(cls, territory: Territory) -> TerritoryValues:
        return cls(territory.id, territory.number, territory.name, territory.timezone, territory.agenda_stamp)


@dataclass(frozen=True)
class MotifValues:
    id: int
    name: str
    duration_minutes: int
    online_min_hours: int
    online_max_days: int

    @classmethod
    def of(cls, motif: Motif) -> MotifValues:
        return cls(motif.id, motif.name, motif.duration_minutes, motif.online_min_hours, motif.online_max_days)


@dataclass(frozen=True)
class LieuValues:
    id: int
    name: str
    address: str | None
    phone: str | None  # the number a family calls: the lieu's, else its organisation's


@dataclass(frozen=True)
class ServingValues:
    """ServingLieu in plain values."""

    lieu: LieuValues
    agent_ids: tuple[int, ...]
    distance_km: float | None
    nearness: int | None


@dataclass(frozen=True)
class Configuration:
    """The lieux serving an address for a need, nearest first, with the motif each offers it by (see search)."""

    territory: TerritoryValues
    day: date  # the territory's local day it was read for (a plage ending yesterday no longer serves)
    offered: tuple[tuple[MotifValues, ServingValues], ...]


def configuration(territory: Territory, motif: Motif, commune: Commune, now: datetime, *,
                  street_code: str | None = None, near: tuple[float, float] | None = None,
                  motifs: list[Motif] | None = None) -> Configuration:
    """The lieux serving the address for the need of `motif` (its motifs of every organisation), nearest first
    (sectors.serving: by distance when `near` is known, else by how near their commune is to the family's, then by
    name). Without `street_code` (no geocoder gives it), a commune split by streets is served by every lieu serving
    one of its parts: the page says so. `motifs`: the need's, when read already (need_of)."""
    today = now.astimezone(territory.tz).date()
    motifs = need_motifs(territory, motif) if motifs is None else motifs
    serving_pairs = serving_by_motif(motifs, commune.code, today=today, street_code=street_code,
                                     city_code=commune.city_code, near=near, home=commune, any_street=True)
    plain: dict[int, MotifValues] = {}
    return Configuration(TerritoryValues.of(territory), today, tuple(
        (plain.setdefault(each.id, MotifValues.of(each)),
         ServingValues(LieuValues(serving.lieu.id, serving.lieu.name, serving.lieu.address,
                                  phone_to_call(serving.lieu, serving.lieu.organisation)),
                       serving.agent_ids, serving.distance_km, serving.nearness))
        for each, serving in serving_pairs))


def offers(territory: Territory, motif: Motif, commune: Commune, now: datetime, *, street_code: str | None = None,
           near: tuple[float, float] | None = None) -> list[LieuOffer]:
    return search(territory, motif, commune, now, street_code=street_code, near=near).offers


def search(territory: Territory, motif: Motif, commune: Commune, now: datetime, *, street_code: str | None = None,
           near: tuple[float, float] | None = None, motifs: list[Motif] | None = None) -> Search:
    """The lieux serving the address for the need of `motif` (configuration), each with its first days of free
    times (searched)."""
    return searched(configuration(territory, motif, commune, now, street_code=street_code, near=near,
                                  motifs=motifs), now)


def searched(configured: Configuration, now: datetime) -> Search:
    """The search at `now` of a configuration read the same local day: the nearest LIEUX_WITH_TIMES lieux with
    their first days of free times (the picker's pages, kept on the stamps of the agents with a plage of the motif at
    each lieu: a booking re-reads the days of its agent's lieux only), the farther ones by a link."""
    territory, today = configured.territory, configured.day
    nearest = configured.offered[:LIEUX_WITH_TIMES]
    # The stamps of every motif and lieu read, in one query (one per motif was a round trip each).
    stamps = picker.agent_stamps_by_lieu(sorted({each.id for each, _ in nearest}))
    found = []
    for index, (each, serving) in enumerate(configured.offered):
        if index >= LIEUX_WITH_TIMES:  # nearest first: the farther ones by a link, their times read when asked
            found.append(LieuOffer(serving, each, None, today))
            continue
        shown = picker.page(scope_for(territory, each, serving.lieu.id, now, stamps.get((each.id, serving.lieu.id),
                                                                                          ())))
        found.append(LieuOffer(serving, each, _serving_days(shown.days, set(serving.agent_ids)), shown.following))
    # The times shown are those of the agents serving the address at the lieux read: only their bookings change them
    # (which agents serve is the territory's configuration, on its own stamp).
    shown_agents = {agent_id for offer in found if offer.days is not None for agent_id in offer.serving.agent_ids}
    return Search(found, tuple(sorted({pair for lieu_stamps in stamps.values() for pair in lieu_stamps
                                       if pair[0] in shown_agents})))


@dataclass(frozen=True)
class DatesChoice:
    """A week of one lieu's times the family asks for (« Voir plus de dates »), as its signed cursor says."""

    territory_id: int
    motif_id: int
    lieu_id: int
    commune_code: str
    street_code: str | None
    first: date


@dataclass(frozen=True)
class Week:
    """One lieu's free times for a week (`LieuOffer` with `first` the week's first day), and the week after's."""

    offer: LieuOffer
    first: date | None  # None: the first page (the lieu's first days with a free time)
    last_day: date  # the motif's maximum delay, as a day


def dates_token(territory: Territory, motif: Motif, lieu_id: int, commune_code: str, street_code: str | None,
                first: date) -> str:
    return _serializer().dumps(["dates", territory.id, motif.id, lieu_id, commune_code, street_code or "",
                                first.isoformat()])


def read_dates_token(token: str, territory: Territory) -> DatesChoice:
    refusal = "Ce lien vers d'autres dates n'est pas valide : recommencez la recherche."
    try:
        values = _serializer().loads(token or "", max_age=SLOT_TOKEN_AGE)
        if values[0] != "dates":
            raise ValueError
        choice = DatesChoice(int(values[1]), int(values[2]), int(values[3]), str(values[4]), str(values[5]) or None,
                             date.fromisoformat(values[6]))
    except (BadSignature, ValueError, TypeError, IndexError):
        raise OnlineError(refusal) from None
    if choice.territory_id != territory.id:
        raise OnlineError(refusal)
    return choice


def week_of(territory: Territory, choice: DatesChoice, now: datetime) -> Week:
    """The week the cursor names at its lieu, kept to the agents still serving the address; the first page when
    that week has come already. OnlineError when the lieu no longer serves it or the week is past the motif's
    maximum delay (a cursor made before the motif's delays were shortened)."""
    motif = motif_of(territory, choice.motif_id)
    today = now.astimezone(territory.tz).date()
    serving = next((found for found in serving_lieux(motif, choice.commune_code, today=today,
                                                     street_code=choice.street_code, any_street=True)
                    if found.lieu.id == choice.lieu_id), None)
    if serving is None:
        raise OnlineError("Ce lieu ne propose plus ce motif pour votre adresse : recommencez la recherche.")
    scope = scope_for(territory, motif, serving.lieu.id, now)
    if choice.first > scope.last_day:
        raise OnlineError(f"Ce rendez-vous se prend en ligne au plus {motif.online_max_days} jours à l'avance : "
                          "choisissez une date plus proche.")
    shown = picker.page(scope, choice.first)
    return Week(LieuOffer(serving, motif, _serving_days(shown.days, set(serving.agent_ids)), shown.following),
                shown.first, scope.last_day)


# --- A chosen time, signed ---------------------------------------------------------------------------------------

def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="lapins-online-slot")


def slot_token(territory: Territory, motif: Motif, lieu_id: int, agent_id: int, starts_at: datetime,
               commune_code: str, street_code: str = "") -> str:
    return _serializer().dumps([territory.id, motif.id, lieu_id, agent_id, starts_at.isoformat(), commune_code,
                                street_code])


def read_slot_token(token: str, territory: Territory) -> SlotChoice:
    try:
        values = _serializer().loads(token or "", max_age=SLOT_TOKEN_AGE)
        choice = SlotChoice(int(values[0]), int(values[1]), int(values[2]), int(values[3]),
                            datetime.fromisoformat(values[4]), str(values[5]), str(values[6]) if values[6:] else "")
    except (BadSignature, ValueError, TypeError, IndexError):
        raise OnlineError("Ce lien de créneau n'est pas valide : choisissez à nouveau un créneau.") from None
    if choice.territory_id != territory.id or choice.starts_at.tzinfo is None:
        raise OnlineError("Ce lien de créneau n'est pas valide : choisissez à nouveau un créneau.")
    return choice


def checked_choice(territory: Territory, choice: SlotChoice, now: datetime) -> tuple[Motif, Lieu, picker.Choice]:
    """The chosen time still free, at a lieu (and with an agent) still serving the address: read again from the
    database. SlotGone otherwise."""
    motif = motif_of(territory, choice.motif_id)
    serving = _serving(territory, motif, choice, now)
    if serving is None or choice.agent_id not in serving.agent_ids:
        raise SlotGone("Ce lieu ne propose plus ce motif pour votre adresse : choisissez un autre créneau.")
    found = picker.choice_at(scope_for(territory, motif, serving.lieu.id, now), choice.starts_at, choice.agent_id)
    if found is None or found.agent_ids[0] not in serving.agent_ids:
        raise SlotGone("Ce créneau vient d'être pris : choisissez-en un autre.")
    return motif, serving.lieu, found


@dataclass(frozen=True)
class WaitChoice:
    """A lieu without a free time where the family asks to wait for one, as its signed token says."""

    territory_id: int
    motif_id: int
    lieu_id: int
    commune_code: str
    street_code: str = ""


def _serving(territory: Territory, motif: Motif, choice: SlotChoice | WaitChoice, now: datetime) -> ServingLieu | None:
    """The chosen lieu if it still serves the address the family searched with (its street's sector, its city's for
    an arrondissement, as the search found it)."""
    commune = communes().get(choice.commune_code)
    return next((found for found in serving_lieux(
        motif, choice.commune_code, today=now.astimezone(territory.tz).date(), street_code=choice.street_code or None,
        city_code=commune.city_code if commune else None, any_street=True) if found.lieu.id == choice.lieu_id), None)


def wait_token(territory: Territory, motif: Motif, lieu_id: int, commune_code: str, street_code: str = "") -> str:
    return _serializer().dumps(["wait", territory.id, motif.id, lieu_id, commune_code, street_code])


def read_wait_token(token: str, territory: Territory) -> WaitChoice:
    try:
        values = _serializer().loads(token or "", max_age=SLOT_TOKEN_AGE)
        if values[0] != "wait":
            raise ValueError
        choice = WaitChoice(int(values[1]), int(values[2]), int(values[3]), str(values[4]),
                            str(values[5]) if values[5:] else "")
    except (BadSignature, ValueError, TypeError, IndexError):
        raise OnlineError("Ce lien de liste d'attente n'est pas valide : recommencez la recherche.") from None
    if choice.territory_id != territory.id:
        raise OnlineError("Ce lien de liste d'attente n'est pas valide : recommencez la recherche.")
    return choice


def checked_wait(territory: Territory, choice: WaitChoice, now: datetime) -> tuple[Motif, Lieu]:
    """The motif still open online, the lieu still serving the address."""
    motif = motif_of(territory, choice.motif_id)
    serving = _serving(territory, motif, choice, now)
    if serving is None:
        raise OnlineError("Ce lieu ne propose plus ce motif pour votre adresse : recommencez la recherche.")
    return motif, serving.lieu


# --- The number, checked by SMS ----------------------------------------------------------------------------------

def _code_hash(verification_phone: str, code: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"phone-code:{verification_phone}:{code}".encode(), hashlib.sha256).hexdigest()


def code_sms(territory: Territory, code: str) -> str:
    """One GSM-7 segment whatever the territory's label (cut to fit); no name, no motif: only the code."""
    label = gsm.transliterate(territory.sms_label or "Lapins")[:30]
    text = f"{label} : votre code de verification est {code}. Il expire dans 10 minutes. Ne le donnez a personne."
    if not gsm.is_gsm7(text) or gsm.segments(text) != 1:
        text = f"Votre code de verification est {code}. Il expire dans 10 minutes."
    return text


def send_code(territory: Territory, phone: str, now: datetime | None = None) -> PhoneVerification:
    """A new code for this number, its SMS in the outbox, in one commit; OnlineError when the number asked for too
    many codes lately (ONLINE_CODES_PER_NUMBER an hour)."""
    now = now or utcnow()
    recent = db.session.scalar(select(func.count()).select_from(PhoneVerification).where(
        PhoneVerification.territory_id == territory.id, PhoneVerification.phone == phone,
        PhoneVerification.created_at > now - CODE_WINDOW))
    if recent >= current_app.config["ONLINE_CODES_PER_NUMBER"]:
        raise OnlineError("Trop de codes envoyés à ce numéro. Réessayez dans une heure, ou appelez le centre.")
    code = f"{secrets.randbelow(10 ** 6):06d}"
    verification = PhoneVerification(territory_id=territory.id, phone=phone, code_hash=_code_hash(phone, code),
                                     expires_at=now + CODE_LIFETIME, tries=0, created_at=now)
    db.session.add(verification)
    db.session.add(Message(territory_id=territory.id, channel=Channel.SMS, kind=MessageKind.PHONE_CODE,
                           to_address=phone, body=code_sms(territory, code), due_at=now,
                           expires_at=now + CODE_LIFETIME, status=MessageStatus.PENDING))
    db.session.commit()
    return verification


def check_code(verification: PhoneVerification, code: str, now: datetime | None = None) -> None:
    """Mark the number verified when `code` is its code (and commit); OnlineError otherwise, the try counted."""
    now = now or utcnow()
    if verification.verified_at is not None:
        return
    if verification.expires_at <= now:
        raise OnlineError("Ce code a expiré : demandez-en un nouveau.")
    if verification.tries >= MAX_TRIES:
        raise OnlineError("Trop d'essais avec ce code : demandez-en un nouveau.")
    code = (code or "").strip().replace(" ", "")
    verification.tries += 1
    if len(code) == 6 and code.isdigit() and hmac.compare_digest(verification.code_hash,
                                                                  _code_hash(verification.phone, code)):
        verification.verified_at = now
        db.session.commit()
        return
    left = MAX_TRIES - verification.tries
    db.session.commit()
    if left <= 0:
        raise OnlineError("Code incorrect, et c'était le dernier essai : demandez un nouveau code.")
    raise OnlineError(f"Code incorrect. Il vous reste {left} essai{'s' if left > 1 else ''}.")


def verified(verification: PhoneVerification | None, now: datetime) -> bool:
    return (verification is not None and verification.verified_at is not None
            and verification.verified_at + VERIFIED_FOR > now)


# --- Booking -----------------------------------------------------------------------------------------------------

def live_online_rdvs(territory: Territory, phone: str, motif: Motif, now: datetime) -> int:
    """The rdvs of this motif to come, booked online for the people of this number."""
    people = select(Usager.id).where(Usager.territory_id == territory.id, or_(
        Usager.phone == phone,
        Usager.responsible_id.in_(select(Usager.id).where(Usager.territory_id == territory.id,
                                                          Usager.phone == phone))))
    return db.session.scalar(
        select(func.count(func.distinct(Rdv.id))).join(rdv_usagers, rdv_usagers.c.rdv_id == Rdv.id)
        .where(rdv_usagers.c.usager_id.in_(people), Rdv.motif_id == motif.id, Rdv.booked_via == BookingChannel.ONLINE,
               Rdv.starts_at > now, Rdv.status.not_in(CANCELLED_STATUSES)))


def _responsible(territory: Territory, family: Family) -> Usager:
    """The person known with this number in the territory (the oldest file when several share it), else a new one;
    the number is the family's own, checked by SMS."""
    known = db.session.scalar(
        select(Usager).where(Usager.territory_id == territory.id, Usager.phone == family.phone,
                             Usager.merged_into_id.is_(None), Usager.responsible_id.is_(None))
        .order_by(Usager.id).limit(1))
    if known is not None:
        known.sms_consent = True
        if family.email and not known.email:
            known.email, known.email_consent = family.email, True
        return known
    person = Usager(territory_id=territory.id, first_name=family.first_name, last_name=family.last_name,
                    phone=family.phone, sms_consent=True, email=family.email, email_consent=family.email is not None)
    db.session.add(person)
    return person


def _join(usager: Usager, organisation: Organisation) -> None:
    """The family's files become the organisation's (its agents see a usager of their organisations only)."""
    if organisation not in usager.organisations:
        usager.organisations.append(organisation)


def _person_for(territory: Territory, motif: Motif, family: Family) -> Usager:
    responsible = _responsible(territory, family)
    _join(responsible, motif.organisation)
    if motif.online_for_self:
        if responsible.birth_date is None:
            responsible.birth_date = family.birth_date
        return responsible
    key = name_key(family.child_first_name, responsible.last_name)
    for child in responsible.relatives:
        if child.merged_into_id is None and child.birth_date == family.birth_date and (
                name_key(child.first_name, child.last_name) == key
                or (child.first_name or "").casefold() == (family.child_first_name or "").casefold()):
            _join(child, motif.organisation)
            return child
    child = Usager(territory_id=territory.id, first_name=family.child_first_name, last_name=responsible.last_name,
                   birth_date=family.birth_date, responsible=responsible, phone=None, organisations=[motif.organisation])
    db.session.add(child)
    return child


def _check_verified(territory: Territory, family: Family, verification: PhoneVerification | None,
                    now: datetime) -> None:
    if not verified(verification, now) or verification.phone != family.phone \
            or verification.territory_id != territory.id:
        raise OnlineError("Votre numéro n'est pas vérifié : saisissez le code reçu par SMS.")


def join_waitlist(territory: Territory, choice: WaitChoice, family: Family, verification: PhoneVerification | None,
                  now: datetime | None = None):
    """Put the family whose number was just checked on the motif's waiting list at that lieu, with its usagers, in
    one commit (lapins.waitlist.entries.add_online)."""
    now = now or utcnow()
    _check_verified(territory, family, verification, now)
    motif, lieu = checked_wait(territory, choice, now)
    return entries.add_online(_person_for(territory, motif, family), motif, lieu, now)


def book_online(territory: Territory, choice: SlotChoice, family: Family, verification: PhoneVerification | None,
                now: datetime | None = None) -> Rdv:
    """Book the chosen time for the family whose number was just checked, in one transaction with its usagers:
    a refusal (OnlineError, SlotGone) stores nothing."""
    now = now or utcnow()
    _check_verified(territory, family, verification, now)
    motif, lieu, found = checked_choice(territory, choice, now)
    limit = current_app.config["ONLINE_LIVE_RDVS_PER_NUMBER"]
    if live_online_rdvs(territory, family.phone, motif, now) >= limit:
        raise OnlineError(f"Ce numéro a déjà {limit} rendez-vous à venir pour « {motif.public_name} » pris en "
                          "ligne : pour un autre, appelez le centre.")
    agent = db.session.get(Agent, found.agent_ids[0])
    try:
        person = _person_for(territory, motif, family)
        # booking commits the usagers with the rdv and its outbox rows, or rolls all of it back.
        return book_rdv(actor=None, motif=motif, agents=[agent], usagers=[person], lieu=lieu,
                        starts_at=found.starts_at, ends_at=found.ends_at, via=BookingChannel.ONLINE)
    except BookingError:
        db.session.rollback()
        raise SlotGone("Ce créneau vient d'être pris : choisissez-en un autre.") from None


# --- Collective sessions -------------------------------------------------------------------------------------------

class SessionFull(OnlineError):
    """No place left in the session chosen (or none left meanwhile): its waiting list is offered."""


@dataclass(frozen=True)
class SessionOffer:
    session: Rdv
    places_left: int


def _session_window(motif: Motif, now: datetime) -> tuple[datetime, datetime]:
    return now + timedelta(hours=motif.online_min_hours), now + timedelta(days=motif.online_max_days)


def _serving_filter(territory: Territory, motif: Motif, commune_code: str):
    """Which of a sectorised motif's sessions serve the address, as serving_lieux says for slots: at a lieu attached
    to one of its sectors, or led by an agent attached to one; None for a motif open to all (every address)."""
    if not motif.sectorised:
        return None
    sectors = address_sectors(territory.id, commune_code, any_street=True) or {0}
    by_agent = select(RdvAgent.rdv_id).join(agent_sectors, agent_sectors.c.agent_id == RdvAgent.agent_id) \
        .where(agent_sectors.c.sector_id.in_(sectors))
    return or_(Rdv.lieu_id.in_(select(lieu_sectors.c.lieu_id).where(lieu_sectors.c.sector_id.in_(sectors))),
               Rdv.id.in_(by_agent))


def _offered(session: Rdv, motif: Motif, now: datetime) -> bool:
    start, end = _session_window(motif, now)
    return session.is_session and session.is_live and start <= session.starts_at <= end


def session_offers(territory: Territory, motif: Motif, commune_code: str, now: datetime) -> list[SessionOffer]:
    """The upcoming sessions of the need of `motif` (its collective motifs of every organisation), within each
    motif's online delays, at the lieux serving the address, soonest first, with their places left now."""
    found = []
    for each in need_motifs(territory, motif):
        if online_refusal(each) is not None or not each.collective:
            continue
        start, end = _session_window(each, now)
        statement = select(Rdv).where(Rdv.motif_id == each.id, Rdv.max_participants.is_not(None),
                                      Rdv.status.not_in(CANCELLED_STATUSES), Rdv.starts_at >= start,
                                      Rdv.starts_at <= end)
        serving = _serving_filter(territory, each, commune_code)
        if serving is not None:
            statement = statement.where(serving)
        found.extend(db.session.scalars(statement.options(joinedload(Rdv.lieu))))
    held = sessions.held_places_of([session.id for session in found], now)
    return [SessionOffer(session, max((session.max_participants or 0) - session.places_taken - held[session.id], 0))
            for session in sorted(found, key=lambda session: (session.starts_at, session.id))]


@dataclass(frozen=True)
class SessionChoice:
    """A session the family chose (to sign up, or to wait for a place), as its signed token says."""

    territory_id: int
    session_id: int
    commune_code: str


def session_token(territory: Territory, session: Rdv, commune_code: str) -> str:
    return _serializer().dumps(["session", territory.id, session.id, commune_code])


def read_session_token(token: str, territory: Territory) -> SessionChoice:
    try:
        values = _serializer().loads(token or "", max_age=SLOT_TOKEN_AGE)
        if values[0] != "session":
            raise ValueError
        choice = SessionChoice(int(values[1]), int(values[2]), str(values[3]))
    except (BadSignature, ValueError, TypeError, IndexError):
        raise OnlineError("Ce lien de séance n'est pas valide : choisissez à nouveau une séance.") from None
    if choice.territory_id != territory.id:
        raise OnlineError("Ce lien de séance n'est pas valide : choisissez à nouveau une séance.")
    return choice


def checked_session(territory: Territory, choice: SessionChoice, now: datetime) -> Rdv:
    """The session chosen, read again: of this territory, its motif still open online, not cancelled, within the
    motif's online delays and at a lieu still serving the address. OnlineError otherwise."""
    session = db.session.get(Rdv, choice.session_id)
    if session is None or not session.is_session or session.organisation.territory_id != territory.id:
        raise OnlineError("Cette séance n'est pas proposée en ligne : choisissez-en une autre.")
    motif = motif_of(territory, session.motif_id, collective=True)
    if not _offered(session, motif, now):
        raise OnlineError("Cette séance n'est plus proposée en ligne (passée, annulée ou trop proche) : "
                          "choisissez-en une autre.")
    serving = _serving_filter(territory, motif, choice.commune_code)
    if serving is not None and db.session.scalar(select(Rdv.id).where(Rdv.id == session.id, serving)) is None:
        raise OnlineError("Cette séance n'est pas proposée pour votre adresse : choisissez-en une autre.")
    return session


def live_online_places(territory: Territory, phone: str, motif: Motif, now: datetime) -> int:
    """The places in sessions of this motif to come, taken online for the people of this number."""
    people = select(Usager.id).where(Usager.territory_id == territory.id, or_(
        Usager.phone == phone,
        Usager.responsible_id.in_(select(Usager.id).where(Usager.territory_id == territory.id,
                                                          Usager.phone == phone))))
    return db.session.scalar(
        select(func.count(func.distinct(Participation.id)))
        .join(participation_usagers, participation_usagers.c.participation_id == Participation.id)
        .join(Rdv, Rdv.id == Participation.rdv_id)
        .where(participation_usagers.c.usager_id.in_(people), Rdv.motif_id == motif.id,
               Participation.via == BookingChannel.ONLINE, Participation.status == ParticipationStatus.REGISTERED,
               Rdv.starts_at > now))


def full_message(session: Rdv) -> str:
    return (f"Cette séance est complète ({session.places_taken}/{session.max_participants}) : inscrivez-vous sur sa "
            "liste d'attente, une place libérée vous sera proposée par SMS.")


def sign_up(territory: Territory, choice: SessionChoice, family: Family, verification: PhoneVerification | None,
            now: datetime | None = None) -> Participation:
    """Give the family whose number was just checked a place in the session chosen, in one transaction with its
    usagers (booking.sessions.add_participant, via online): a refusal stores nothing; SessionFull when no place is
    left."""
    now = now or utcnow()
    _check_verified(territory, family, verification, now)
    session = checked_session(territory, choice, now)
    limit = current_app.config["ONLINE_LIVE_RDVS_PER_NUMBER"]
    if live_online_places(territory, family.phone, session.motif, now) >= limit:
        raise OnlineError(f"Ce numéro a déjà {limit} inscriptions à venir pour « {session.motif.public_name} » "
                          "prises en ligne : pour une autre, appelez le centre.")
    try:
        person = _person_for(territory, session.motif, family)
        return sessions.add_participant(actor=None, session=session, usagers=[person], via=BookingChannel.ONLINE)
    except sessions.SessionFull:
        db.session.rollback()
        raise SessionFull(full_message(session)) from None
    except BookingError as error:
        db.session.rollback()
        raise OnlineError(str(error)) from None


def wait_for_session(territory: Territory, choice: SessionChoice, family: Family,
                     verification: PhoneVerification | None, now: datetime | None = None) -> WaitlistEntry:
    """Put the family whose number was just checked on the session's waiting list, with its usagers, in one
    commit (lapins.waitlist.entries.add_online_for_session)."""
    now = now or utcnow()
    _check_verified(territory, family, verification, now)
    session = checked_session(territory, choice, now)
    try:
        return entries.add_online_for_session(_person_for(territory, session.motif, family), session, now)
    except entries.EntryError as error:
        db.session.rollback()
        raise OnlineError(error.message) from None
