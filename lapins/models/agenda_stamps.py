"""Every change to what an agenda shows draws a new agenda stamp for its territory, in the same transaction.

Agenda feeds are cached on the stamp (lapins.agenda.calendar.feed_json): a request that reads a territory's stamp
serves the events cached under it, or reads them and caches them under it. A write commits its rows and the new
stamp together, so a reader sees either the old rows and the old stamp or the new ones: a cached feed is never older
than the stamp it is filed under. Drawing a stamp takes the territory's row lock until commit; writes to what the
agendas show are a few a minute in a département, so serialising them per territory costs nothing noticeable.

What the feed shows: rdvs (with their agents, usagers, motif and lieu), plages d'ouverture, absences, busy times read
from agents' own calendars (they take free slots away, which the public slot picker caches on the stamp). Holidays depend
on the territory's number and time zone (a change to the territory draws a stamp too); the viewer's organisations are
part of the cache key, not of the stamp.
"""
from __future__ import annotations

from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import ORMExecuteState, Session

from lapins.models.agents import AgentRole
from lapins.models.calendars import BusyBlock
from lapins.models.motifs import Motif
from lapins.models.plages import Absence, PlageOuverture
from lapins.models.rdvs import Rdv, RdvAgent
from lapins.models.territories import Lieu, Organisation, Territory, new_agenda_stamp
from lapins.models.usagers import Usager

SHOWN = (Rdv, RdvAgent, PlageOuverture, Absence, BusyBlock, Usager, Motif, Lieu, Organisation, Territory)


class _Touched:
    """The territories a flush touches, known by their own id, an organisation's or an agent's."""

    def __init__(self) -> None:
        self.territories: set[int] = set()
        self.organisations: set[int] = set()
        self.agents: set[int] = set()
        self.unknown = False  # an object whose territory cannot be told yet: every territory gets a new stamp

    def add(self, obj) -> None:
        if isinstance(obj, Territory):
            self._add_id(self.territories, obj.id)
        elif isinstance(obj, Usager):
            self._add_id(self.territories, obj.territory_id or (obj.territory and obj.territory.id))
        elif isinstance(obj, Organisation):
            self._add_id(self.organisations, obj.id)
        elif isinstance(obj, (Absence, RdvAgent, BusyBlock)):
            self._add_id(self.agents, obj.agent_id or (obj.agent and obj.agent.id))
        else:  # Rdv, PlageOuverture, Motif, Lieu
            self._add_id(self.organisations, obj.organisation_id or (obj.organisation and obj.organisation.id))

    def _add_id(self, ids: set[int], value: int | None) -> None:
        if value is None:
            self.unknown = True
        else:
            ids.add(value)

    def condition(self):
        """Which territory rows get a new stamp; None for all of them."""
        if self.unknown:
            return None
        conditions = []
        if self.territories:
            conditions.append(Territory.id.in_(self.territories))
        if self.organisations:
            conditions.append(Territory.id.in_(
                select(Organisation.territory_id).where(Organisation.id.in_(self.organisations))))
        if self.agents:
            conditions.append(Territory.id.in_(
                select(Organisation.territory_id).join(AgentRole, AgentRole.organisation_id == Organisation.id)
                .where(AgentRole.agent_id.in_(self.agents))))
        return or_(*conditions)


def draw_new_stamps(session: Session, condition=None) -> None:
    """New agenda stamps for the territories matching `condition` (all of them when None), on the session's
    connection: no ORM event, no autoflush, and it may run during a flush or before a bulk statement."""
    statement = update(Territory.__table__).values(agenda_stamp=new_agenda_stamp())
    if condition is not None:
        statement = statement.where(condition)
    session.connection().execute(statement)


def _flush_changes(session: Session) -> _Touched | None:
    touched = _Touched()
    for obj in session.new:
        # A new usager or territory appears in no feed yet; a new rdv, plage, absence... does.
        if isinstance(obj, SHOWN) and not isinstance(obj, (Usager, Territory, Organisation)):
            touched.add(obj)
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, SHOWN) and (obj in session.deleted or session.is_modified(obj)):
            touched.add(obj)
    if touched.unknown or touched.territories or touched.organisations or touched.agents:
        return touched
    return None


@event.listens_for(Session, "before_flush")
def _stamp_on_flush(session: Session, flush_context, instances) -> None:
    touched = _flush_changes(session)
    if touched is not None:
        draw_new_stamps(session, touched.condition())


@event.listens_for(Session, "do_orm_execute")
def _stamp_on_bulk_write(state: ORMExecuteState) -> None:
    # update(Usager)... and delete(Rdv)... bypass the flush: the territories of the rows they match (read before
    # the statement runs) get a new stamp.
    if not (state.is_update or state.is_delete) or state.bind_mapper is None:
        return
    entity = state.bind_mapper.class_
    if issubclass(entity, SHOWN):
        draw_new_stamps(state.session, Territory.id.in_(_territories_of(entity, state.statement.whereclause)))


def _territories_of(entity: type, whereclause):
    """The territory ids of the `entity` rows that `whereclause` matches (all rows when it is None)."""
    if entity is Territory:
        statement = select(Territory.id)
    elif entity is Usager:
        statement = select(Usager.territory_id)
    elif entity is Organisation:
        statement = select(Organisation.territory_id)
    elif entity in (Absence, RdvAgent, BusyBlock):
        statement = (select(Organisation.territory_id).select_from(entity)
                     .join(AgentRole, AgentRole.agent_id == entity.agent_id)
                     .join(Organisation, Organisation.id == AgentRole.organisation_id))
    else:  # Rdv, PlageOuverture, Motif, Lieu
        statement = (select(Organisation.territory_id).select_from(entity)
                     .join(Organisation, Organisation.id == entity.organisation_id))
    return statement.where(whereclause) if whereclause is not None else statement
