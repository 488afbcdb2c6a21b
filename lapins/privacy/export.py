"""Right of access: everything the agent's organisations hold about one usager and its relatives, as plain data.

The same dictionary is served as a JSON file and rendered as a readable page. Only rows of the organisations the
agent works in come out: another organisation's rdvs, messages and waiting-list entries stay where they are.
Instants are given in the territory's time zone. Agents' notes on rdvs are left out (professional notes: whether
and how a family reads them is the service's decision, not a download's).
"""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import selectinload

from lapins import policies
from lapins.infra.extensions import db
from lapins.models import Agent, Message, MessageStatus, Rdv, SlotOffer, Usager, WaitlistEntry, utcnow
from lapins.models.rdvs import Canceller, rdv_usagers

CONTENT_ERASED = "Texte effacé (les messages ne sont conservés en entier que quelques mois)."
CANCELLERS = {Canceller.AGENT: "le service", Canceller.FAMILY: "la famille", Canceller.SYSTEM: "automatiquement"}


def people_of(actor: Agent, usager: Usager) -> list[Usager]:
    """The usager and those of its relatives the agent's organisations hold."""
    mine = policies.organisations_of(actor)
    return [usager] + [relative for relative in usager.relatives
                       if {organisation.id for organisation in relative.organisations} & mine]


def usager_data(actor: Agent, usager: Usager, now: datetime | None = None) -> dict:
    now = now or utcnow()
    tz = usager.territory.tz
    mine = policies.organisations_of(actor)
    people = people_of(actor, usager)
    rdvs = _rdvs(actor, people)
    return {
        "export": {
            "generated_at": _instant(now, tz),
            "time_zone": usager.territory.timezone,
            "territory": f"{usager.territory.number} {usager.territory.name}",
            "organisations": sorted(organisation.name for organisation in usager.organisations
                                    if organisation.id in mine),
        },
        "usager": _identity(usager, mine, tz),
        "relatives": [_identity(relative, mine, tz) for relative in people[1:]],
        "rdvs": [_rdv(rdv, tz) for rdv in rdvs],
        "messages": [_message(message, tz) for message in _messages(mine, people, rdvs)],
        "waiting_list": [_entry(entry, tz) for entry in _entries(mine, people)],
    }


def _instant(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat(timespec="minutes") if value is not None else None


def _day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _identity(person: Usager, mine: set[int], tz: ZoneInfo) -> dict:
    return {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "birth_date": _day(person.birth_date),
        "phone": person.phone,
        "email": person.email,
        "address": {"street": person.address_street, "postcode": person.address_postcode,
                    "commune": person.address_commune, "commune_insee": person.commune_insee,
                    "access": person.address_access} if person.address_street or person.address_commune else None,
        "consents": {"sms": person.sms_consent, "email": person.email_consent},
        "phone_undeliverable_since": _instant(person.phone_undeliverable_at, tz),
        "responsible": person.responsible.full_name if person.responsible is not None else None,
        "organisations": sorted(o.name for o in person.organisations if o.id in mine),
        "created_at": _instant(person.created_at, tz),
        "id_in_previous_tool": person.external_id,  # set by a history import (lapins.onboarding.history)
    }


def _rdvs(actor: Agent, people: list[Usager]) -> list[Rdv]:
    ids = [person.id for person in people]
    return list(db.session.scalars(
        policies.rdv_scope(actor)
        .where(Rdv.id.in_(select(rdv_usagers.c.rdv_id).where(rdv_usagers.c.usager_id.in_(ids))))
        .options(selectinload(Rdv.usagers), selectinload(Rdv.motif), selectinload(Rdv.lieu),
                 selectinload(Rdv.organisation))
        .order_by(Rdv.starts_at)))


def _rdv(rdv: Rdv, tz: ZoneInfo) -> dict:
    cancellation = None
    if rdv.cancelled_at is not None:
        cancellation = {
            "at": _instant(rdv.cancelled_at, tz),
            "by": CANCELLERS.get(rdv.cancelled_by_party) if rdv.cancelled_by_party else None,
            "via": rdv.cancelled_via.label if rdv.cancelled_via else None,
            "reason": rdv.cancel_reason,
        }
    return {
        "for": [person.full_name for person in rdv.usagers],
        "starts_at": _instant(rdv.starts_at, tz),
        "ends_at": _instant(rdv.ends_at, tz),
        "motif": rdv.motif.name,
        "lieu": {"name": rdv.lieu.name, "address": rdv.lieu.address} if rdv.lieu is not None else None,
        "organisation": rdv.organisation.name,
        "status": rdv.status_label,
        "booked": rdv.booked_via.label,
        "confirmed_at": _instant(rdv.confirmed_at, tz),
        "cancellation": cancellation,
    }


def _messages(mine: set[int], people: list[Usager], rdvs: list[Rdv]) -> list[Message]:
    ids = [person.id for person in people]
    own_rdvs = select(Rdv.id).where(Rdv.organisation_id.in_(mine))
    own_offers = (select(SlotOffer.id).join(WaitlistEntry, WaitlistEntry.id == SlotOffer.entry_id)
                  .where(WaitlistEntry.organisation_id.in_(mine)))
    return list(db.session.scalars(
        select(Message)
        .where(Message.status != MessageStatus.PENDING,
               or_(Message.rdv_id.in_([rdv.id for rdv in rdvs]),
                   and_(Message.usager_id.in_(ids),
                        or_(Message.rdv_id.in_(own_rdvs), Message.offer_id.in_(own_offers)))))
        .order_by(Message.due_at, Message.id)))


def _message(message: Message, tz: ZoneInfo) -> dict:
    erased = message.body is None and message.status not in (MessageStatus.SKIPPED, MessageStatus.QUEUED)
    return {
        "date": _instant(message.sent_at or message.due_at, tz),
        "channel": message.channel.label,
        "kind": message.kind.label,
        "status": message.status.label,
        "to": message.to_address,
        "subject": message.subject,
        "text": message.body if message.body is not None else (CONTENT_ERASED if erased else None),
        "delivered_at": _instant(message.delivered_at, tz),
    }


def _entries(mine: set[int], people: list[Usager]) -> list[WaitlistEntry]:
    return list(db.session.scalars(
        select(WaitlistEntry)
        .where(WaitlistEntry.usager_id.in_([person.id for person in people]),
               WaitlistEntry.organisation_id.in_(mine))
        .order_by(WaitlistEntry.created_at)))


def _entry(entry: WaitlistEntry, tz: ZoneInfo) -> dict:
    return {
        "for": entry.usager.full_name,
        "organisation": entry.organisation.name,
        "motif": entry.motif.name,
        "lieu": entry.lieu.name if entry.lieu is not None else None,
        "earlier_than": _instant(entry.rdv.starts_at, tz) if entry.rdv is not None else None,
        "priority": entry.priority,
        "status": entry.status.label,
        "since": _instant(entry.created_at, tz),
        "closed_at": _instant(entry.closed_at, tz),
    }
