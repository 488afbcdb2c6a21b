"""An agent as the policies see them, read in one narrow query instead of through the ORM: the events feed's.

FullCalendar asks for an agenda's events at every view change and after every move: it is the hottest route of the
service. A cached feed needs, of the signed-in agent, only what the policies and the cache key read: their roles,
organisations and territories, with the territory's agenda stamp. Loading that as ORM objects (an Agent, its
AgentRoles, Organisations and Territory, about 40 columns, expired again at commit) took about half of the
application's time for a request. The feed (views marked with lapins.auth.views.light_agent_view, and its fast path
lapins.agenda.fast_feed) gets a `LightAgent` instead: plain frozen rows with the ORM's attribute names, which
lapins.policies judges like an Agent, read in one query by the driver itself in autocommit mode
(lapins.infra.database.DriverQuery) at every request, so that a role removed or an account deactivated counts from
the next request after its commit, whichever process serves it: a cached answer then costs that one round trip to
PostgreSQL and little Python.

It lives beside Agent, whose read model it is. Not in lapins.auth: lapins.policies imports it, and the auth package
imports its views, which import the policies (a cycle at import time). It only reads, and carries nothing of the agent
but what the feed and the policies read.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from flask_login import UserMixin
from sqlalchemy import bindparam, select

from lapins.infra.database import DriverQuery, read_only_connection
from lapins.models import Agent, AgentRole, Organisation, Role, Territory
from lapins.models.agents import session_user_id
from lapins.models.territories import TerritoryClock
from lapins.models.territory_admins import TerritoryAdmin

@dataclass(frozen=True)
class LightTerritory(TerritoryClock):
    id: int
    number: str
    timezone: str
    agenda_stamp: str


@dataclass(frozen=True)
class LightOrganisation:
    id: int
    territory_id: int
    territory: LightTerritory


@dataclass(frozen=True)
class LightRole:
    organisation_id: int
    role: Role
    organisation: LightOrganisation


@dataclass(frozen=True, eq=False)
class LightAgent(UserMixin):
    """An agent as Agent's attributes show them to lapins.policies and the events feed; nothing else."""

    id: int
    first_name: str
    last_name: str
    active: bool
    session_generation: int
    roles: tuple[LightRole, ...]
    agenda_stamp: str = ""  # the agent's own (lapins.models.agenda_stamps)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive agents, as for Agent
        return self.active

    def get_id(self) -> str:
        return session_user_id(self.id, self.session_generation)

    @property
    def organisation_ids(self) -> set[int]:
        return {role.organisation_id for role in self.roles}

    def role_in(self, organisation_id: int) -> Role | None:
        return next((role.role for role in self.roles if role.organisation_id == organisation_id), None)

    @cached_property
    def administered_territory_ids(self) -> set[int]:
        """Read when asked for, as Agent's relationship is (the policies ask only when organisations do not settle)."""
        return set(read_only_connection().scalars(
            select(TerritoryAdmin.territory_id).where(TerritoryAdmin.agent_id == self.id)))

    def __repr__(self) -> str:
        return f"<LightAgent {self.id}>"


# Compiled once; one row per role (one row of NULLs for an agent without any), ordered so that roles keep their order.
LIGHT_AGENT_ROWS = DriverQuery(
    select(Agent.id, Agent.first_name, Agent.last_name, Agent.active, Agent.session_generation,
           AgentRole.organisation_id, AgentRole.role, Organisation.territory_id, Territory.number, Territory.timezone,
           Territory.agenda_stamp, Agent.agenda_stamp)
    .outerjoin(AgentRole, AgentRole.agent_id == Agent.id)
    .outerjoin(Organisation, Organisation.id == AgentRole.organisation_id)
    .outerjoin(Territory, Territory.id == Organisation.territory_id)
    .where(Agent.id == bindparam("agent_id"))
    .order_by(AgentRole.id)
)


def light_agent(agent_id: int) -> LightAgent | None:
    """The agent with their roles, organisations and territories, in one query; None when there is no such agent.

    Read at every call, never kept: what it says is what was committed when the request asked.
    """
    rows = LIGHT_AGENT_ROWS.rows(agent_id=agent_id)
    if not rows:
        return None
    territories: dict[int, LightTerritory] = {}
    roles = []
    for _, _, _, _, _, organisation_id, role, territory_id, number, timezone, agenda_stamp, _ in rows:
        if organisation_id is None:  # an agent without any role: one row, its role columns NULL
            continue
        if territory_id not in territories:
            territories[territory_id] = LightTerritory(territory_id, number, timezone, agenda_stamp)
        organisation = LightOrganisation(organisation_id, territory_id, territories[territory_id])
        roles.append(LightRole(organisation_id, Role(role), organisation))
    agent_id, first_name, last_name, active, session_generation = rows[0][:5]
    return LightAgent(agent_id, first_name, last_name, bool(active), session_generation, tuple(roles), rows[0][11])
