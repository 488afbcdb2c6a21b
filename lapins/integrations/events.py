"""Which changes make an event: rdvs created, moved or edited, cancelled, deleted (a collective session is an rdv,
with its capacity: its places changed is `rdv.updated`); usagers created, edited, deleted, merged into another
(`usager.merged`: `{"id": the tombstone, "merged_into_id": the kept file}`); a family's place in a session
(`participation.created`, `participation.cancelled`, `participation.attendance` when its presence or absence is
noted). Payloads are listed for users on the webhooks page (templates/integrations/webhooks.html).

One `after_flush` listener sees every change made through the ORM session (the agenda, the family pages, the SMS
replies, the waiting list, the API) and writes a `webhook_deliveries` row per event and active webhook of the
organisation concerned, on the flush's own connection: the event is committed with the change or not at all, and
sending it is the worker's job, so a slow or broken endpoint never slows the agenda. A flush that touches no rdv or
usager costs nothing; one that does costs one indexed query for the organisations' webhooks.

Bulk UPDATE/DELETE statements bypass the ORM's unit of work: the only ones over rdvs and participations are the
conditional claims of a cancellation (each followed by the ORM change this listener sees) and the retention job's
deletion of rdvs over two years old, which is deliberately not announced.
"""
from __future__ import annotations

from sqlalchemy import event, insert, inspect, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.base import NO_VALUE

from lapins.api.render import instant
from lapins.models import Participation, ParticipationStatus, Rdv, RdvAgent, Usager, utcnow
from lapins.models.rdvs import participation_usagers, rdv_usagers
from lapins.models.usagers import usager_organisations
from lapins.models.webhooks import DeliveryStatus, Webhook, WebhookDelivery
from lapins.integrations.delivery import kick

RDV_FIELDS = ("starts_at", "ends_at", "status", "lieu_id", "motif_id", "notes", "confirmed_at", "cancelled_at",
              "cancel_reason", "agent_links", "max_participants", "title")
USAGER_FIELDS = ("first_name", "last_name", "birth_date", "phone", "email", "sms_consent", "email_consent",
                 "responsible_id", "second_responsible_id")


def _loaded_or_query(obj, attribute: str, query, connection) -> list:
    """A collection as the object holds it, or read on the flush's connection when it was never loaded (a lazy load
    inside a flush could see stale rows)."""
    value = inspect(obj).attrs[attribute].loaded_value
    if value is NO_VALUE:
        return list(connection.execute(query).scalars())
    return value


def rdv_payload(rdv: Rdv, connection) -> dict:
    links = _loaded_or_query(rdv, "agent_links", select(RdvAgent.agent_id).where(RdvAgent.rdv_id == rdv.id),
                             connection)
    usagers = _loaded_or_query(rdv, "usagers", select(rdv_usagers.c.usager_id).where(rdv_usagers.c.rdv_id == rdv.id),
                               connection)
    return {
        "id": rdv.id, "organisation_id": rdv.organisation_id, "motif_id": rdv.motif_id, "lieu_id": rdv.lieu_id,
        "starts_at": instant(rdv.starts_at), "ends_at": instant(rdv.ends_at), "status": rdv.status.value,
        "agent_ids": sorted(link if isinstance(link, int) else link.agent_id for link in links),
        "usager_ids": sorted(usager if isinstance(usager, int) else usager.id for usager in usagers),
        "booked_via": rdv.booked_via.value if rdv.booked_via else None,
        "confirmed_at": instant(rdv.confirmed_at), "cancelled_at": instant(rdv.cancelled_at),
        "cancelled_via": rdv.cancelled_via.value if rdv.cancelled_via else None,
        "cancelled_by": rdv.cancelled_by_party.value if rdv.cancelled_by_party else None,
        "max_participants": rdv.max_participants, "places_taken": rdv.places_taken, "title": rdv.title,
    }


def participation_payload(participation: Participation, connection) -> dict:
    usagers = _loaded_or_query(participation, "usagers", select(participation_usagers.c.usager_id).where(
        participation_usagers.c.participation_id == participation.id), connection)
    return {
        "id": participation.id, "session_id": participation.rdv_id,
        "organisation_id": _participation_organisation(participation, connection),
        "usager_id": participation.usager_id,
        "usager_ids": sorted(usager if isinstance(usager, int) else usager.id for usager in usagers),
        "places": participation.places, "status": participation.status.value,
        "booked_via": participation.via.value if participation.via else None,
        "created_at": instant(participation.created_at), "cancelled_at": instant(participation.cancelled_at),
        "cancelled_by": participation.cancelled_by_party.value if participation.cancelled_by_party else None,
        "cancelled_via": participation.cancelled_via.value if participation.cancelled_via else None,
    }


def _participation_organisation(participation: Participation, connection) -> int:
    session = inspect(participation).attrs["rdv"].loaded_value
    if session is NO_VALUE or session is None:
        return connection.execute(select(Rdv.organisation_id).where(Rdv.id == participation.rdv_id)).scalar_one()
    return session.organisation_id


def _participation_event(participation: Participation) -> str | None:
    if "status" not in _changed(participation, ("status",)):
        return None
    if participation.status == ParticipationStatus.EXCUSED:
        return "participation.cancelled"
    if participation.status in (ParticipationStatus.PRESENT, ParticipationStatus.ABSENT):
        return "participation.attendance"
    return None


def usager_payload(usager: Usager, connection) -> dict:
    return {
        "id": usager.id, "first_name": usager.first_name, "last_name": usager.last_name,
        "birth_date": usager.birth_date.isoformat() if usager.birth_date else None, "phone": usager.phone,
        "email": usager.email, "sms_consent": usager.sms_consent, "email_consent": usager.email_consent,
        "responsible_id": usager.responsible_id, "second_responsible_id": usager.second_responsible_id,
    }


def _usager_organisations(usager: Usager, connection) -> set[int]:
    organisations = _loaded_or_query(
        usager, "organisations",
        select(usager_organisations.c.organisation_id).where(usager_organisations.c.usager_id == usager.id), connection)
    return {org if isinstance(org, int) else org.id for org in organisations}


def _changed(obj, fields: tuple[str, ...]) -> set[str]:
    state = inspect(obj)
    return {name for name in fields if state.attrs[name].history.has_changes()}


def _rdv_event(rdv: Rdv, is_new: bool) -> str | None:
    if is_new:
        return "rdv.created"
    changed = _changed(rdv, RDV_FIELDS)
    if not changed:
        return None
    if "status" in changed and rdv.status.is_cancelled:
        return "rdv.cancelled"
    return "rdv.updated"


def collect(session: Session, connection) -> list[tuple[str, set[int], object]]:
    """(event, organisation ids, the object) of the changes this flush writes; payloads are built later, only for
    the organisations that have a webhook."""
    found: list[tuple[str, set[int], object]] = []
    rdvs: dict[int, tuple[Rdv, bool]] = {}
    for obj in session.new:
        if isinstance(obj, Rdv):
            rdvs[id(obj)] = (obj, True)
        elif isinstance(obj, Usager):
            found.append(("usager.created", _usager_organisations(obj, connection), obj))
        elif isinstance(obj, Participation):
            found.append(("participation.created", {_participation_organisation(obj, connection)}, obj))
    for obj in session.dirty:
        if isinstance(obj, Rdv) and id(obj) not in rdvs:
            rdvs[id(obj)] = (obj, False)
        elif isinstance(obj, RdvAgent) and obj.rdv is not None and id(obj.rdv) not in rdvs:
            rdvs[id(obj.rdv)] = (obj.rdv, False)
        elif isinstance(obj, Usager) and _changed(obj, ("merged_into_id",)) and obj.merged_into_id is not None:
            found.append(("usager.merged", _usager_organisations(obj, connection), obj))
        elif isinstance(obj, Usager) and _changed(obj, USAGER_FIELDS):
            found.append(("usager.updated", _usager_organisations(obj, connection), obj))
        elif isinstance(obj, Participation) and (name := _participation_event(obj)) is not None:
            found.append((name, {_participation_organisation(obj, connection)}, obj))
    for rdv, is_new in rdvs.values():
        name = _rdv_event(rdv, is_new)
        if name is not None:
            found.append((name, {rdv.organisation_id}, rdv))
    for obj in session.deleted:
        if isinstance(obj, Rdv):
            found.append(("rdv.deleted", {obj.organisation_id}, obj))
        elif isinstance(obj, Usager):
            found.append(("usager.deleted", _usager_organisations(obj, connection), obj))
    return found


def _payload(name: str, obj, connection) -> dict:
    if name.endswith(".deleted"):
        return {"id": obj.id}
    if name == "usager.merged":
        return {"id": obj.id, "merged_into_id": obj.merged_into_id}
    if isinstance(obj, Participation):
        return participation_payload(obj, connection)
    return rdv_payload(obj, connection) if isinstance(obj, Rdv) else usager_payload(obj, connection)


@event.listens_for(Session, "after_flush")
def _write_deliveries(session: Session, flush_context) -> None:
    if not any(isinstance(obj, (Rdv, RdvAgent, Usager, Participation))
               for group in (session.new, session.dirty, session.deleted) for obj in group):
        return
    connection = session.connection()
    changes = collect(session, connection)
    organisation_ids = set().union(*(orgs for _, orgs, _ in changes)) if changes else set()
    if not organisation_ids:
        return
    hooks = connection.execute(select(Webhook.id, Webhook.organisation_id).where(
        Webhook.organisation_id.in_(organisation_ids), Webhook.active.is_(True))).all()
    if not hooks:
        return
    now = utcnow()
    rows = []
    for name, orgs, obj in changes:
        targets = [hook_id for hook_id, organisation_id in hooks if organisation_id in orgs]
        if targets:
            body = {"event": name, "occurred_at": instant(now), "data": _payload(name, obj, connection)}
            rows += [{"webhook_id": hook_id, "event": name, "status": DeliveryStatus.PENDING, "attempts": 0,
                      "next_attempt_at": now, "created_at": now, "payload": body} for hook_id in targets]
    if rows:
        connection.execute(insert(WebhookDelivery), rows)
        session.info["webhooks_due"] = True


@event.listens_for(Session, "after_commit")
def _kick_delivery(session: Session) -> None:
    if session.info.pop("webhooks_due", False):
        kick()


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop("webhooks_due", None)
