"""What the sector pages change: a sector's lieux and agents, a commune or street added to it or taken from it. Each
function checks what the database must hold (lieux and agents of the sector's territory, a place in one sector
only) and raises SectorError, in French, before anything is stored."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import case, func, select

from lapins.infra.extensions import db
from lapins.locale.communes import Commune, Gazetteer, street_key
from lapins.models import Agent, AgentRole, Lieu, Organisation, Sector, SectorZone, Territory
from lapins.sectors.imports import STREET

logger = logging.getLogger(__name__)


class SectorError(Exception):
    """Why the change is refused, in French."""


@dataclass(frozen=True)
class SectorSummary:
    sector: Sector
    communes: int
    streets: int


def summaries(territory: Territory) -> list[SectorSummary]:
    counts = {sector_id: (total - streets, streets) for sector_id, total, streets in db.session.execute(
        select(SectorZone.sector_id, func.count(), func.count(case((SectorZone.street_code != "", 1))))
        .where(SectorZone.territory_id == territory.id).group_by(SectorZone.sector_id))}
    sectors = db.session.scalars(select(Sector).where(Sector.territory_id == territory.id).order_by(Sector.name))
    return [SectorSummary(sector, *counts.get(sector.id, (0, 0))) for sector in sectors]


def territory_lieux(territory: Territory, organisation_ids: set[int]) -> list[Lieu]:
    """The lieux of these organisations of the territory (those whose lieux the agent may configure)."""
    return list(db.session.scalars(select(Lieu).join(Organisation).where(
        Organisation.territory_id == territory.id, Organisation.id.in_(organisation_ids)).order_by(Lieu.name, Lieu.id)))


def territory_agents(territory: Territory, organisation_ids: set[int]) -> list[Agent]:
    """The active agents of these organisations of the territory."""
    members = select(AgentRole.agent_id).join(Organisation).where(Organisation.territory_id == territory.id,
                                                                  Organisation.id.in_(organisation_ids))
    return list(db.session.scalars(select(Agent).where(Agent.id.in_(members), Agent.active.is_(True))
                                   .order_by(Agent.last_name, Agent.first_name, Agent.id)))


def set_members(sector: Sector, lieu_ids: list[int], agent_ids: list[int], organisation_ids: set[int]) -> None:
    """Among the lieux and agents of these organisations, those serving the sector become exactly these; those of
    other organisations (which the agent may not configure) stay as they are."""
    lieux = {lieu.id: lieu for lieu in territory_lieux(sector.territory, organisation_ids)}
    agents = {agent.id: agent for agent in territory_agents(sector.territory, organisation_ids)}
    if set(lieu_ids) - set(lieux) or set(agent_ids) - set(agents):
        raise SectorError("Choisissez des lieux et des agents de vos organisations dans ce territoire.")
    sector.lieux = [lieu for lieu in sector.lieux if lieu.id not in lieux] + \
        [lieux[lieu_id] for lieu_id in sorted(set(lieu_ids))]
    sector.agents = [agent for agent in sector.agents if agent.id not in agents] + \
        [agents[agent_id] for agent_id in sorted(set(agent_ids))]
    db.session.commit()


def zone_owner(territory: Territory, commune_code: str, street_code: str) -> Sector | None:
    return db.session.scalar(select(Sector).join(SectorZone).where(
        SectorZone.territory_id == territory.id, SectorZone.commune_code == commune_code,
        SectorZone.street_code == street_code))


def add_zone(sector: Sector, commune: Commune, street_code: str | None) -> SectorZone:
    """A commune (or one of its streets) of the sector's département joins the sector, unless a sector holds it."""
    territory = sector.territory
    if commune.departement != territory.number:
        raise SectorError(f"{commune.name} ({commune.code}) est dans le département {commune.departement}, pas dans "
                          f"le {territory.number}.")
    street = street_key(street_code) if street_code else ""
    if street:
        match = STREET.fullmatch(street)
        if match is None:
            raise SectorError(f"Code de rue non reconnu : c'est le code BAN de la voie (exemple : {commune.code}_0150).")
        if match.group(1) != commune.code:
            raise SectorError(f"Cette rue n'est pas dans la commune {commune.code}.")
    owner = zone_owner(territory, commune.code, street)
    if owner is not None:
        what = f"Cette rue de {commune.name}" if street else commune.name
        raise SectorError(f"{what} est déjà dans le secteur « {owner.name} ».")
    zone = SectorZone(sector_id=sector.id, territory_id=territory.id, commune_code=commune.code, street_code=street)
    db.session.add(zone)
    db.session.commit()
    return zone


def remove_zone(sector: Sector, zone_id: int | None) -> SectorZone:
    zone = db.session.get(SectorZone, zone_id) if zone_id else None
    if zone is None or zone.sector_id != sector.id:
        raise SectorError("Cette commune n'est plus dans ce secteur.")
    db.session.delete(zone)
    db.session.commit()
    return zone


def resolve_commune(communes: Gazetteer, departement: str, *, code: str | None, typed: str | None) -> Commune:
    """The commune an address field names: the code its suggestions filled in, else what was typed when it names one
    commune of the département (a page used without JavaScript)."""
    commune = communes.get(code) if code else None
    if commune is not None and commune.departement == departement:
        return commune
    typed = (typed or "").strip()
    if not typed:
        raise SectorError("Saisissez la commune : son nom ou son code postal.")
    commune = communes.get(typed)
    if commune is not None and commune.departement == departement:
        return commune
    found = communes.search(typed, departements={departement}, limit=5)
    if len(found) > 1:
        exact = [commune for commune in found if commune.label.casefold() == typed.casefold()
                 or commune.name.casefold() == typed.casefold()]
        found = exact if len(exact) == 1 else found
    if len(found) == 1:
        return found[0]
    if not found:
        raise SectorError(f"Aucune commune du département {departement} ne correspond à « {typed[:80]} ».")
    raise SectorError("Plusieurs communes correspondent : choisissez-la dans la liste des suggestions ("
                      + ", ".join(commune.label for commune in found) + ").")
