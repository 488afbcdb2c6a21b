"""Every insert, update and delete of an rdv (its agents and usagers included) or a usager writes an audit event, in
the same transaction: the one place the trail is recorded.

`before_flush` reads what changed on the rdvs and usagers of the session (attribute history, before the flush turns
relationships into foreign keys); `after_flush` adds what new objects hold, once their ids are known. Bulk
UPDATE/DELETE statements over these tables (`do_orm_execute`) read the rows they match, before they run. Changes are
kept per object for the whole transaction and written at `before_commit`, one event per object, on the session's
connection (no ORM object): booking.cancel_rdv's conditional UPDATE, the attributes it sets next and the autoflush
in between make one "Annulation", not three. A rollback, or a session closed without commit, forgets them. Nothing
is read for objects of other kinds.

Not recorded: rows written below the ORM with Core inserts, which only the département seeding does
(lapins.onboarding.seeding: hundreds of thousands of invented rdvs and usagers).
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import event, insert, inspect, select
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.elements import BindParameter

from lapins.audit.actors import Actor, ambient_actor
from lapins.models.audit import AuditAction, AuditChannel, AuditEvent, AuditObject, Party
from lapins.models.rdvs import Rdv, RdvAgent, RdvStatus
from lapins.models.territories import Organisation
from lapins.models.types import utcnow
from lapins.models.usagers import Usager

# Fields whose values are kept: they identify nobody. For a foreign key, the relationship that may set it instead.
RDV_VALUES = {
    "starts_at": None, "ends_at": None, "status": None, "organisation_id": "organisation", "motif_id": "motif",
    "lieu_id": "lieu", "created_by_id": "created_by", "cancelled_at": None, "cancelled_by_id": "cancelled_by",
    "cancelled_via": None, "cancelled_by_party": None, "confirmed_at": None, "forced_by_id": "forced_by",
    "max_participants": None,  # a collective session's places
}
# Free text a family or an agent typed: whether it changed, never what it says.
# notify_only_id: which guardian is said apart; title: a session's, typed by an agent.
RDV_SECRETS = ("notes", "cancel_reason", "notify_only_id", "title")
USAGER_VALUES = {"territory_id": "territory", "sms_consent": None, "email_consent": None,
                 "phone_undeliverable_at": None, "phone_error": None, "merged_into_id": "merged_into"}
USAGER_SECRETS = ("first_name", "last_name", "birth_date", "phone", "email", "responsible_id", "second_responsible_id",
                  "address_street", "address_postcode", "address_commune", "commune_insee", "address_access")
MOVES = {"starts_at", "ends_at", "agents"}
logger = logging.getLogger(__name__)
_PENDING = "lapins.audit.pending"
_FLUSH = "lapins.audit.flush"
_UNKNOWN = object()  # a bulk statement's value that is an SQL expression, or differs per row


@dataclass
class _Record:
    """The changes of one object in the transaction so far, merged flush after flush until the commit writes them."""

    object_type: AuditObject
    object_id: int
    organisation_id: int | None
    territory_id: int | None
    action: AuditAction | None  # CREATED or DELETED; None: decided from the changes at the commit
    changes: dict[str, dict]  # field → {"old": .., "new": ..} | {} (changed, value not kept) | {"added", "removed"}
    ambient: Actor  # as it was at the first change

    def merge(self, later: _Record) -> bool:
        """Fold a later change of the same object in; False when nothing is left to record."""
        if later.action == AuditAction.DELETED:
            if self.action == AuditAction.CREATED:
                return False  # created and deleted in one transaction: it never existed for anyone else
            self.action, self.changes = AuditAction.DELETED, {}
            return True
        for key, change in later.changes.items():
            earlier = self.changes.get(key)
            if earlier is None:
                self.changes[key] = change
            elif not change or not earlier:  # changed, with a value not kept or not known
                self.changes[key] = {}
            elif "added" in change:
                added, removed = set(earlier["added"]), set(earlier["removed"])
                self.changes[key] = {"added": sorted((added - set(change["removed"])) | (set(change["added"]) - removed)),
                                     "removed": sorted((removed - set(change["added"])) | (set(change["removed"]) - added))}
            else:
                self.changes[key] = {"old": earlier["old"], "new": change["new"]}
        if self.action != AuditAction.CREATED:
            self.changes = {key: change for key, change in self.changes.items()
                            if not ("new" in change and change["old"] == change["new"])
                            and not (change.keys() == {"added", "removed"} and not change["added"] and not change["removed"])}
        return True


# --- Reading changes -------------------------------------------------------------------------------------------------

def _history(state, key: str):
    return state.attrs[key].history  # passive: never loads what was not loaded


def _id(value) -> Any:
    """An object's id (read after the flush for new objects), or the value itself."""
    if value is None or isinstance(value, (int, str, bool, float, date, datetime, enum.Enum)):
        return value
    return inspect(value).identity[0] if inspect(value).identity else getattr(value, "id", None)


def _scalar_changes(state, values: dict[str, str | None], secrets: tuple[str, ...]) -> dict[str, dict]:
    changes: dict[str, dict] = {}
    for key, relationship in values.items():
        history = _history(state, key)
        if history.has_changes():
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
        elif relationship is not None and _history(state, relationship).has_changes():
            # Set through the relationship: the column still holds the old id until the flush copies the new one.
            new = _history(state, relationship).added
            new = new[0] if new else None
            old = state.dict.get(key)
        else:
            continue
        if _id(old) != _id(new):
            changes[key] = {"old": old, "new": new}
    for key in secrets:
        history = _history(state, key)
        if history.has_changes() and (history.deleted or history.added != [None]):
            changes[key] = {}
    return changes


def _collection_change(state, key: str, member_id) -> dict | None:
    history = _history(state, key)
    if not history.has_changes():
        return None
    added = sorted({member_id(item) for item in history.added} - {member_id(item) for item in history.deleted},
                   key=str)
    removed = sorted({member_id(item) for item in history.deleted} - {member_id(item) for item in history.added},
                     key=str)
    return {"added": added, "removed": removed} if added or removed else None


def _agent_of(link: RdvAgent):
    return link.agent_id if link.agent_id is not None else link.agent


def _rdv_changes(rdv: Rdv) -> dict[str, dict]:
    state = inspect(rdv)
    changes = _scalar_changes(state, RDV_VALUES, RDV_SECRETS)
    if agents := _collection_change(state, "agent_links", _agent_of):
        changes["agents"] = agents
    if usagers := _collection_change(state, "usagers", lambda usager: usager):
        changes["usagers"] = usagers
    return changes


def _usager_changes(usager: Usager) -> dict[str, dict]:
    state = inspect(usager)
    changes = _scalar_changes(state, USAGER_VALUES, USAGER_SECRETS)
    if organisations := _collection_change(state, "organisations", lambda organisation: organisation):
        changes["organisations"] = organisations
    return changes


def _created_changes(obj) -> dict[str, dict]:
    """What a new object holds: every value field that is set, and which of the others were filled in."""
    state = inspect(obj)
    held = state.dict  # collections never set are left unloaded: reading them would query
    if isinstance(obj, Rdv):
        values, secrets = RDV_VALUES, RDV_SECRETS
        collections = {"agents": [link.agent_id for link in held.get("agent_links", ())],
                       "usagers": [usager.id for usager in held.get("usagers", ())]}
    else:
        values, secrets = USAGER_VALUES, USAGER_SECRETS
        collections = {"organisations": [organisation.id for organisation in held.get("organisations", ())]}
    changes = {key: {"old": None, "new": state.dict[key]} for key in values
               if state.dict.get(key) is not None and key != "territory_id"}
    changes.update({key: {} for key in secrets if state.dict.get(key) not in (None, "")})
    changes.update({key: {"added": sorted(ids), "removed": []} for key, ids in collections.items() if ids})
    return changes


def _rdv_action(changes: dict[str, dict]) -> AuditAction:
    status = changes.get("status")
    if status is not None:
        old, new = status["old"], status["new"]
        was_cancelled = old is not None and RdvStatus(old).is_cancelled
        if new is not None and RdvStatus(new).is_cancelled and not was_cancelled:
            return AuditAction.CANCELLED
        if was_cancelled and not (new is not None and RdvStatus(new).is_cancelled):
            return AuditAction.RESTORED
        return AuditAction.STATUS_CHANGED
    if "confirmed_at" in changes and changes["confirmed_at"]["new"] is not None:
        return AuditAction.CONFIRMED
    if MOVES & changes.keys():
        return AuditAction.MOVED
    return AuditAction.UPDATED


def _usager_action(changes: dict[str, dict]) -> AuditAction:
    """A file made the tombstone of a merge says so; the kept file's side is written by the merge itself."""
    if changes.get("merged_into_id", {}).get("new") is not None:
        return AuditAction.MERGED
    return AuditAction.UPDATED


def _actor(record: _Record, action: AuditAction):
    """For rdvs, their own record of who booked or cancelled them (booking.py writes it from its `actor`) wins."""
    ambient, changes = record.ambient, record.changes
    if record.object_type != AuditObject.RDV:
        return ambient
    party = changes.get("cancelled_by_party", {}).get("new")
    if action == AuditAction.CANCELLED and party is not None:
        via = changes.get("cancelled_via", {}).get("new")
        return Actor(Party(party), changes.get("cancelled_by_id", {}).get("new"),
                     AuditChannel(via) if via is not None else ambient.via)
    created_by = changes.get("created_by_id", {}).get("new")
    if action == AuditAction.CREATED and created_by is not None and ambient.party != Party.AGENT:
        return Actor(Party.AGENT, created_by, ambient.via)
    return ambient


# --- Flushes -----------------------------------------------------------------------------------------------------

def _links_rdv(link: RdvAgent) -> Rdv | None:
    return link.rdv if "rdv" in inspect(link).dict or link.rdv_id is not None else None


def _kind(obj) -> AuditObject:
    return AuditObject.RDV if isinstance(obj, Rdv) else AuditObject.USAGER


@event.listens_for(Session, "before_flush")
def _read_changes(session: Session, flush_context, instances) -> None:
    found: list[tuple[Any, AuditAction | None, dict]] = []
    seen: set[int] = set()
    dirty = session.dirty
    for obj in session.deleted:
        if isinstance(obj, (Rdv, Usager)):
            seen.add(id(obj))
            found.append((obj, AuditAction.DELETED, {}))
    for obj in dirty:
        if isinstance(obj, (Rdv, Usager)) and id(obj) not in seen and session.is_modified(obj):
            seen.add(id(obj))
            changes = _rdv_changes(obj) if isinstance(obj, Rdv) else _usager_changes(obj)
            if changes:
                found.append((obj, None, changes))
    # Links added, removed or re-pointed without going through their rdv's collection.
    for link in (*session.new, *dirty, *session.deleted):
        if isinstance(link, RdvAgent) and (link in session.new or link in session.deleted
                                           or _history(inspect(link), "agent_id").has_changes()):
            rdv = _links_rdv(link)
            if rdv is not None and id(rdv) not in seen and rdv not in session.new:
                seen.add(id(rdv))
                found.append((rdv, None, {"agents": {}}))
    session.info[_FLUSH] = found


@event.listens_for(Session, "after_flush")
def _keep_changes(session: Session, flush_context) -> None:
    found = session.info.pop(_FLUSH, [])
    found += [(obj, AuditAction.CREATED, _created_changes(obj)) for obj in session.new if isinstance(obj, (Rdv, Usager))]
    if not found:
        return
    ambient = ambient_actor()
    scopes = [(obj, _held(obj, "organisation_id" if isinstance(obj, Rdv) else "territory_id")) for obj, _, _ in found]
    territories = _territories_of(session, {scope for obj, scope in scopes if isinstance(obj, Rdv)})
    for (obj, action, changes), (_, scope) in zip(found, scopes):
        state = inspect(obj)
        object_id = state.identity[0] if state.identity else obj.id
        organisation_id, territory_id = (scope, territories.get(scope)) if isinstance(obj, Rdv) else (None, scope)
        _keep(session, _Record(_kind(obj), object_id, organisation_id, territory_id, action,
                               {key: {part: sorted(_json(value)) if part in ("added", "removed") else _json(value)
                                      for part, value in change.items()}
                                for key, change in changes.items()}, ambient))


def _held(obj, key: str):
    """An attribute as the session holds it; loaded only when a commit expired it (never for a deleted row)."""
    state = inspect(obj)
    value = state.dict.get(key)
    if value is None and not (state.deleted or state.was_deleted):
        value = getattr(obj, key, None)
    return value


def _keep(session: Session, record: _Record) -> None:
    pending: dict = session.info.setdefault(_PENDING, {})
    key = (record.object_type, record.object_id)
    if key not in pending:
        pending[key] = record
    elif not pending[key].merge(record):
        del pending[key]


@event.listens_for(Session, "before_commit")
def _write_events(session: Session) -> None:
    """The transaction's events, one per object changed, written just before it commits."""
    session.flush()  # what the commit would flush, so that its changes are in
    pending: dict = session.info.pop(_PENDING, None)
    if not pending:
        return
    rows = []
    now = utcnow()
    for record in pending.values():
        if record.territory_id is None:  # cannot be scoped, so could be shown to no one: said, not hidden
            logger.warning("Audit: no territory for %s %s, event not recorded", record.object_type, record.object_id)
            continue
        action = record.action or (_rdv_action(record.changes) if record.object_type == AuditObject.RDV
                                   else _usager_action(record.changes))
        if action not in (AuditAction.CREATED, AuditAction.DELETED) and not record.changes:
            continue
        actor = _actor(record, action)
        rows.append({
            "occurred_at": now, "territory_id": record.territory_id, "organisation_id": record.organisation_id,
            "object_type": record.object_type, "object_id": record.object_id, "action": action,
            "changes": [{"field": key, **change} for key, change in record.changes.items()],
            "party": actor.party, "agent_id": actor.agent_id, "via": actor.via,
        })
    if rows:
        session.connection().execute(insert(AuditEvent.__table__), rows)


def _territories_of(session: Session, organisation_ids: set[int | None]) -> dict[int, int]:
    """Organisation → territory, from the session's own objects when they are there, else in one query."""
    found: dict[int, int] = {}
    for organisation_id in organisation_ids - {None}:
        organisation = session.identity_map.get(identity_key(Organisation, organisation_id))
        if organisation is not None and "territory_id" in organisation.__dict__:
            found[organisation_id] = organisation.territory_id
    missing = organisation_ids - found.keys() - {None}
    if missing:
        found.update(session.connection().execute(
            select(Organisation.id, Organisation.territory_id).where(Organisation.id.in_(missing))).all())
    return found


def _json(value):
    if isinstance(value, list):
        return [_json(item) for item in value]
    value = _id(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


# --- Bulk statements ---------------------------------------------------------------------------------------------

@event.listens_for(Session, "do_orm_execute")
def _read_bulk_write(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete) or state.bind_mapper is None:
        return
    entity = state.bind_mapper.class_
    if entity not in (Rdv, RdvAgent, Usager):
        return
    whereclause = state.statement.whereclause
    values_set = getattr(state.statement, "_values", None) or {}
    if entity is RdvAgent and state.is_update and "agent_id" not in {getattr(key, "key", key) for key in values_set}:
        return  # the copies of their rdv's times and liveness (models.rdvs): the rdv's own history has them
    if isinstance(state.parameters, list):  # ORM bulk UPDATE by primary key: one parameter set per row
        keys = {key for parameters in state.parameters for key in parameters} - {"id", "rdv_id", "agent_id"}
        values = dict.fromkeys(keys, _UNKNOWN)
        whereclause = inspect(entity).primary_key[0].in_([parameters.get("id", parameters.get("rdv_id"))
                                                          for parameters in state.parameters])
    else:
        values = {getattr(key, "key", key): value.value if isinstance(value, BindParameter) else _UNKNOWN
                  for key, value in values_set.items()}
    ambient = ambient_actor()
    for record in _matched(state.session, entity, whereclause, values, state.is_delete, ambient):
        _keep(state.session, record)


def _matched(session: Session, entity: type, whereclause, values: dict, deleting: bool, ambient) -> list[_Record]:
    """The rows a bulk statement is about to change, as records: read before it runs, on its connection."""
    if entity is Usager:
        columns = [Usager.id, Usager.territory_id]
        kind, fields = AuditObject.USAGER, (USAGER_VALUES, USAGER_SECRETS)
    else:
        columns = [Rdv.id, Rdv.organisation_id, Organisation.territory_id]
        kind, fields = AuditObject.RDV, (RDV_VALUES, RDV_SECRETS)
    kept = [key for key, value in values.items() if key in fields[0] and value is not _UNKNOWN] \
        if entity is not RdvAgent and not deleting else []
    statement = select(*columns, *(entity.__table__.c[key] for key in kept))
    if entity is RdvAgent:
        statement = statement.select_from(RdvAgent).join(Rdv, Rdv.id == RdvAgent.rdv_id).distinct()
    if entity is not Usager:
        statement = statement.join(Organisation, Organisation.id == Rdv.organisation_id)
    if whereclause is not None:
        statement = statement.where(whereclause)
    records = []
    for row in session.connection().execute(statement):
        organisation_id, territory_id = (None, row[1]) if entity is Usager else (row[1], row[2])
        olds = row[len(columns):]
        action, changes = None, {}
        if entity is RdvAgent:
            changes = {"agents": {}}
        elif deleting:
            action = AuditAction.DELETED
        else:
            changes = {key: {"old": _json(old), "new": _json(values[key])} for key, old in zip(kept, olds)
                       if old != values[key]}
            changes.update({key: {} for key, value in values.items()
                            if key in fields[1] or key in fields[0] and value is _UNKNOWN})
        if changes or action is not None:
            records.append(_Record(kind, row[0], organisation_id, territory_id, action, changes, ambient))
    return records


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction) -> None:
    """Committed, rolled back or closed: what was kept for the transaction goes with it."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_FLUSH, None)
