"""Every change to what an agenda shows draws new agenda stamps, in the same transaction: its agents' own stamps for
what belongs to agents, its territory's for what every agenda of the territory shows.

Agenda feeds (lapins.agenda.calendar.feed_json) and the public picker's pages (lapins.slots.picker) are cached on the
territory's stamp and on the stamps of the agents they show: a request reads them, then serves what is cached under
them, or reads the rows and caches them under them. A write commits its rows and the new stamps together, so a reader
sees either the old rows and the old stamps or the new ones: a cached answer is never older than its stamps.

- An agent's stamp: their rdvs (the rdv's own columns, its usagers, its agents), absences, plages (and their
  exceptions, lapins.models.plages.PlageException) and busy times
  read from their own calendar (lapins.calendars.busy). A booking takes the agents' row locks anyway
  (lapins.booking.lock_agents); another agent's cached weeks and times are kept.
- The territory's stamp: usagers' names, motifs, lieux, organisations, the territory itself (holidays, time zone), and
  plages and their exceptions too (they decide which agents the picker offers at a lieu), sectors (their zones, lieux
  and agents: which lieux serve an address online, lapins.public.kept_search). These change a few times a day.
The viewer's organisations are part of the feed's cache key, not of a stamp.
"""
from __future__ import annotations

from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import ORMExecuteState, Session

from lapins.models.agents import Agent
from lapins.models.calendars import BusyBlock
from lapins.models.motifs import Motif
from lapins.models.plages import Absence, PlageException, PlageOuverture
from lapins.models.rdvs import Rdv, RdvAgent
from lapins.models.sectors import Sector, SectorZone
from lapins.models.territories import Lieu, Organisation, Territory, new_agenda_stamp
from lapins.models.usagers import Usager

SHOWN = (Rdv, RdvAgent, PlageOuverture, PlageException, Absence, BusyBlock, Usager, Motif, Lieu, Organisation,
         Territory, Sector, SectorZone)


class _Touched:
    """The territories and agents a flush touches: territories by their own id or an organisation's, agents by their
    id or an rdv's."""

    def __init__(self) -> None:
        self.territories: set[int] = set()
        self.organisations: set[int] = set()
        self.agents: set[int] = set()
        self.rdvs: set[int] = set()
        self.unknown = False  # an object whose territory cannot be told yet: every territory gets a new stamp

    def add(self, obj) -> None:
        if isinstance(obj, Territory):
            self._add_id(self.territories, obj.id)
        elif isinstance(obj, Usager):
            self._add_id(self.territories, obj.territory_id or (obj.territory and obj.territory.id))
        elif isinstance(obj, Sector):  # its zones, and its lieux and agents (a collection of the sector)
            self._add_id(self.territories, obj.territory_id or (obj.territory and obj.territory.id))
        elif isinstance(obj, SectorZone):
            self._add_id(self.territories, obj.territory_id)
        elif isinstance(obj, Organisation):
            self._add_id(self.organisations, obj.id)
        elif isinstance(obj, (Absence, RdvAgent, BusyBlock)):
            self._add_id(self.agents, obj.agent_id or (obj.agent and obj.agent.id))
        elif isinstance(obj, Rdv):
            if obj.id is not None:  # a new rdv's agents are new RdvAgent rows of the same flush
                self.rdvs.add(obj.id)
        elif isinstance(obj, PlageOuverture):
            self._add_id(self.agents, obj.agent_id or (obj.agent and obj.agent.id))
            self._add_id(self.organisations, obj.organisation_id or (obj.organisation and obj.organisation.id))
        elif isinstance(obj, PlageException):
            # Its plage is read (a load during the flush is allowed) for the agent and organisation it belongs to.
            plage = obj.plage
            if plage is None:
                self.unknown = True
            else:
                self.add(plage)
        else:  # Motif, Lieu
            self._add_id(self.organisations, obj.organisation_id or (obj.organisation and obj.organisation.id))

    def _add_id(self, ids: set[int], value: int | None) -> None:
        if value is None:
            self.unknown = True
        else:
            ids.add(value)

    def condition(self):
        """Which territory rows get a new stamp; None for all of them; False for none."""
        if self.unknown:
            return None
        conditions = []
        if self.territories:
            conditions.append(Territory.id.in_(self.territories))
        if self.organisations:
            conditions.append(Territory.id.in_(
                select(Organisation.territory_id).where(Organisation.id.in_(self.organisations))))
        return or_(*conditions) if conditions else False

    def agent_condition(self):
        """Which agent rows get a new stamp, or False."""
        conditions = []
        if self.agents:
            conditions.append(Agent.id.in_(self.agents))
        if self.rdvs:
            conditions.append(Agent.id.in_(select(RdvAgent.agent_id).where(RdvAgent.rdv_id.in_(self.rdvs))))
        return or_(*conditions) if conditions else False


def draw_new_stamps(session: Session, condition=None) -> None:
    """New agenda stamps for the territories matching `condition` (all of them when None), on the session's
    connection: no ORM event, no autoflush, and it may run during a flush or before a bulk statement. A territory's
    stamp is in every cache key of its agendas: this renews them all."""
    statement = update(Territory.__table__).values(agenda_stamp=new_agenda_stamp())
    if condition is not None:
        statement = statement.where(condition)
    session.connection().execute(statement)


def draw_new_agent_stamps(session: Session, condition) -> None:
    """New agenda stamps for the agents matching `condition`, as draw_new_stamps does for territories."""
    session.connection().execute(update(Agent.__table__).where(condition).values(agenda_stamp=new_agenda_stamp()))


def _flush_changes(session: Session) -> _Touched | None:
    touched = _Touched()
    for obj in session.new:
        # A new usager or territory appears in no feed yet; a new rdv, plage, absence... does.
        if isinstance(obj, SHOWN) and not isinstance(obj, (Usager, Territory, Organisation)):
            touched.add(obj)
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, SHOWN) and (obj in session.deleted or session.is_modified(obj)):
            touched.add(obj)
    if touched.unknown or touched.territories or touched.organisations or touched.agents or touched.rdvs:
        return touched
    return None


@event.listens_for(Session, "before_flush")
def _stamp_on_flush(session: Session, flush_context, instances) -> None:
    touched = _flush_changes(session)
    if touched is None:
        return
    condition = touched.condition()
    if condition is not False:
        draw_new_stamps(session, condition)
    agents = touched.agent_condition()
    if agents is not False:
        draw_new_agent_stamps(session, agents)


@event.listens_for(Session, "do_orm_execute")
def _stamp_on_bulk_write(state: ORMExecuteState) -> None:
    # update(Usager)... and delete(Rdv)... bypass the flush: the territories of the rows they match (read before
    # the statement runs) get a new stamp.
    if not (state.is_update or state.is_delete) or state.bind_mapper is None:
        return
    entity = state.bind_mapper.class_
    if not issubclass(entity, SHOWN):
        return
    whereclause = state.statement.whereclause
    if entity is PlageException:
        plages = select(PlageException.plage_id)
        plages = plages.where(whereclause) if whereclause is not None else plages
        draw_new_agent_stamps(state.session, Agent.id.in_(
            select(PlageOuverture.agent_id).where(PlageOuverture.id.in_(plages))))
        draw_new_stamps(state.session, Territory.id.in_(_territories_of(PlageOuverture, PlageOuverture.id.in_(plages))))
        return
    if entity in (Rdv, RdvAgent, Absence, BusyBlock, PlageOuverture):
        draw_new_agent_stamps(state.session, Agent.id.in_(_agents_of(entity, whereclause)))
    if entity not in (Rdv, RdvAgent, Absence, BusyBlock):
        draw_new_stamps(state.session, Territory.id.in_(_territories_of(entity, whereclause)))


def _agents_of(entity: type, whereclause):
    """The agent ids of the `entity` rows that `whereclause` matches (all rows when it is None)."""
    if entity is Rdv:
        rdvs = select(Rdv.id).where(whereclause) if whereclause is not None else select(Rdv.id)
        return select(RdvAgent.agent_id).where(RdvAgent.rdv_id.in_(rdvs))
    statement = select(entity.agent_id)
    return statement.where(whereclause) if whereclause is not None else statement


def _territories_of(entity: type, whereclause):
    """The territory ids of the `entity` rows that `whereclause` matches (all rows when it is None)."""
    if entity is Territory:
        statement = select(Territory.id)
    elif entity in (Usager, Sector, SectorZone):
        statement = select(entity.territory_id)
    elif entity is Organisation:
        statement = select(Organisation.territory_id)
    else:  # PlageOuverture, Motif, Lieu
        statement = (select(Organisation.territory_id).select_from(entity)
                     .join(Organisation, Organisation.id == entity.organisation_id))
    return statement.where(whereclause) if whereclause is not None else statement
