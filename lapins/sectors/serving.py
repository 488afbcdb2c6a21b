"""Which lieux, and which of their agents, serve a family's address for a motif: what the public booking flow offers.

A lieu offers a motif when an active agent has a current plage d'ouverture there for it. For a motif open to all,
every such lieu of the motif's organisation serves every address. For a sectorised one, the address's sectors
decide: a lieu attached to one serves with all its agents of that motif; otherwise an agent attached to one serves
at the lieux where they have such a plage. A street's sector beats its commune's; a municipal arrondissement's
beats its city's (Paris, Lyon, Marseille). Lieux come nearest first: by distance when the address's position and
theirs are known (a geocoder), else by how near the lieu's commune (read from its address) is to the family's
(`Gazetteer.nearness`: the same commune, then the smallest area holding both), then by name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Integer, String, and_, cast, literal_column, null, or_, select, union_all

from lapins.infra.extensions import db
from lapins.locale.communes import Commune, street_key
from lapins.models import Agent, Lieu, Motif, PlageOuverture, SectorZone
from lapins.models.plages import plage_motifs
from lapins.models.sectors import agent_sectors, lieu_sectors
from lapins.sectors.communes import communes

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class ServingLieu:
    lieu: Lieu
    agent_ids: tuple[int, ...]  # the agents to look for slots with, at this lieu for this motif
    distance_km: float | None
    nearness: int | None = None  # Gazetteer.nearness of the family's commune and the lieu's; None: not known


def online_refusal(motif: Motif) -> str | None:
    """Why families cannot book this motif online (in French), or None."""
    territory = motif.organisation.territory
    if not territory.online_booking:
        return "La prise de rendez-vous en ligne est fermée dans ce département."
    if not motif.active or not motif.online_bookable:
        return "Ce motif ne se réserve pas en ligne : appelez le centre."
    return None


def address_sectors(territory_id: int, commune_code: str, street_code: str | None = None,
                    city_code: str | None = None, *, any_street: bool = False) -> set[int]:
    """The sectors holding an address: those of its street if one holds it, else of its commune, else of its city
    (for an arrondissement). With `any_street` (the street is not known: a family without a geocoder), every sector
    holding the commune or one of its streets."""
    rows = db.session.execute(select(SectorZone.sector_id, SectorZone.commune_code, SectorZone.street_code)
                              .where(_zones(territory_id, commune_code, street_code, city_code, any_street))).all()
    return _holding(rows, commune_code, street_code, city_code, any_street)


def _zones(territory_id: int, commune_code: str, street_code: str | None, city_code: str | None, any_street: bool):
    """The zones that may hold the address (address_sectors then picks the nearest level)."""
    street = street_key(street_code) if street_code else ""
    commune_zones = SectorZone.commune_code == commune_code
    places = [commune_zones if any_street else and_(commune_zones, SectorZone.street_code.in_({"", street}))]
    if city_code:
        places.append(and_(SectorZone.commune_code == city_code, SectorZone.street_code == ""))
    return and_(SectorZone.territory_id == territory_id, or_(*places))


def _holding(rows, commune_code: str, street_code: str | None, city_code: str | None, any_street: bool) -> set[int]:
    """Among (sector id, commune, street) zones, the sectors holding the address (see address_sectors)."""
    street = street_key(street_code) if street_code else ""
    if any_street:
        found = {sector_id for sector_id, commune, _ in rows if commune == commune_code}
        if found:
            return found
    for level in ((commune_code, street), (commune_code, ""), (city_code, "")):
        found = {sector_id for sector_id, commune, street_code in rows if (commune, street_code) == level}
        if found and level[0]:
            return found
    return set()


def serving_lieux(motif: Motif, commune_code: str, *, today: date, street_code: str | None = None,
                  city_code: str | None = None, near: tuple[float, float] | None = None,
                  home: Commune | None = None, any_street: bool = False) -> list[ServingLieu]:
    """The lieux (and agents) serving this address for this motif, nearest first: by distance when `near` (latitude,
    longitude) is given, by their commune's nearness to `home` (the family's commune) when given, then by name.
    Empty when the motif is closed to online booking (`online_refusal` says why). `any_street`: see
    address_sectors."""
    return [serving for _, serving in serving_by_motif([motif], commune_code, today=today, street_code=street_code,
                                                       city_code=city_code, near=near, home=home,
                                                       any_street=any_street)]


def serving_by_motif(motifs: list[Motif], commune_code: str, *, today: date, street_code: str | None = None,
                     city_code: str | None = None, near: tuple[float, float] | None = None,
                     home: Commune | None = None, any_street: bool = False) -> list[tuple[Motif, ServingLieu]]:
    """serving_lieux for several motifs of one territory at once (a need offered by each of its organisations), in
    one query: (motif, lieu serving it) pairs, nearest first (see serving_lieux)."""
    by_id = {motif.id: motif for motif in motifs if online_refusal(motif) is None}
    if not by_id:
        return []
    # Ids only: a lieu has many (agent, motif) rows, and building a Lieu per row cost most of a search's time.
    offers = db.session.execute(
        select(PlageOuverture.lieu_id, PlageOuverture.agent_id, plage_motifs.c.motif_id)
        .join(Lieu, PlageOuverture.lieu_id == Lieu.id)
        .join(plage_motifs, plage_motifs.c.plage_id == PlageOuverture.id)
        .join(Agent, Agent.id == PlageOuverture.agent_id)
        .where(plage_motifs.c.motif_id.in_(by_id), Lieu.active.is_(True), Lieu.online_booking.is_(True),
               Agent.active.is_(True), or_(PlageOuverture.last_day.is_(None), PlageOuverture.last_day >= today))
        .distinct()).all()
    agents_at: dict[tuple[int, int], set[int]] = {}
    for lieu_id, agent_id, motif_id in offers:
        agents_at.setdefault((motif_id, lieu_id), set()).add(agent_id)
    sectorised = [by_id[motif_id] for motif_id, _ in agents_at if by_id[motif_id].sectorised]
    if sectorised:
        lieux_in, agents_in = _members(sectorised[0].organisation.territory_id, commune_code, street_code, city_code,
                                       any_street and not street_code)
        agents_at = {(motif_id, lieu_id): agents if not by_id[motif_id].sectorised or lieu_id in lieux_in
                     else agents & agents_in for (motif_id, lieu_id), agents in agents_at.items()}
    lieux = _lieux({lieu_id for (_, lieu_id), agents in agents_at.items() if agents})
    found = [(by_id[motif_id], ServingLieu(lieux[lieu_id], tuple(sorted(agents)), _distance(near, lieux[lieu_id]),
                                           _nearness(home, lieux[lieu_id])))
             for (motif_id, lieu_id), agents in agents_at.items() if agents]
    found.sort(key=lambda pair: (pair[1].distance_km is None, pair[1].distance_km or 0.0,
                                 pair[1].nearness is None, pair[1].nearness or 0,
                                 pair[1].lieu.name.casefold(), pair[1].lieu.id, pair[0].id))
    return found


def _lieux(lieu_ids: set[int]) -> dict[int, Lieu]:
    """The lieux serving, once each (a row per lieu, not one per agent and motif offered there)."""
    if not lieu_ids:
        return {}
    return {lieu.id: lieu for lieu in db.session.scalars(select(Lieu).where(Lieu.id.in_(lieu_ids)))}


def _nearness(home: Commune | None, lieu: Lieu) -> int | None:
    if home is None:
        return None
    gazetteer = communes()
    commune = gazetteer.of_address(lieu.address or "")
    return None if commune is None else gazetteer.nearness(home, commune)


def _members(territory_id: int, commune_code: str, street_code: str | None, city_code: str | None,
             any_street: bool) -> tuple[set[int], set[int]]:
    """The lieux and the agents attached to the sectors holding the address (address_sectors), in one query: the
    zones that may hold it, and the members of their sectors."""
    zones = _zones(territory_id, commune_code, street_code, city_code, any_street)
    candidates = select(SectorZone.sector_id).where(zones)
    nothing = cast(null(), String)
    rows = db.session.execute(union_all(
        select(literal_column("0").label("kind"), SectorZone.sector_id, SectorZone.commune_code, SectorZone.street_code,
               cast(null(), Integer).label("member_id")).where(zones),
        select(literal_column("1"), lieu_sectors.c.sector_id, nothing, nothing, lieu_sectors.c.lieu_id)
        .where(lieu_sectors.c.sector_id.in_(candidates)),
        select(literal_column("2"), agent_sectors.c.sector_id, nothing, nothing, agent_sectors.c.agent_id)
        .where(agent_sectors.c.sector_id.in_(candidates)))).all()
    sectors = _holding([(sector_id, commune, street) for kind, sector_id, commune, street, _ in rows if kind == 0],
                       commune_code, street_code, city_code, any_street)
    lieux = {member for kind, sector_id, _, _, member in rows if kind == 1 and sector_id in sectors}
    agents = {member for kind, sector_id, _, _, member in rows if kind == 2 and sector_id in sectors}
    return lieux, agents


def _distance(near: tuple[float, float] | None, lieu: Lieu) -> float | None:
    """Great-circle distance in km (haversine), or None when a position is missing."""
    if near is None or lieu.latitude is None or lieu.longitude is None:
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (near[0], near[1], lieu.latitude, lieu.longitude))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))
