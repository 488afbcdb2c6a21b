"""Audit events as an admin reads them: French labels, local times, names looked up now (never stored)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import url_for
from sqlalchemy import select

from lapins.infra.extensions import db
from lapins.locale.formatting import local_datetime
from lapins.models import Agent, Lieu, Motif, Organisation, Rdv, RdvStatus, Territory, Usager
from lapins.models.audit import AuditAction, AuditEvent, AuditObject, Party
from lapins.models.rdvs import CancellationChannel

# field → (label, feminine): "téléphone modifié", "date de naissance modifiée".
FIELD_LABELS = {
    "starts_at": ("début", False), "ends_at": ("fin", True), "status": ("statut", False),
    "organisation_id": ("organisation", True), "motif_id": ("motif", False), "lieu_id": ("lieu", False),
    "agents": ("agents", False), "usagers": ("usagers", False), "notes": ("notes", True),
    "created_by_id": ("créé par", False), "cancelled_at": ("annulé le", False),
    "cancelled_by_id": ("annulé par l'agent", False), "cancelled_via": ("canal d'annulation", False),
    "cancelled_by_party": ("annulé par", False), "cancel_reason": ("motif d'annulation", False),
    "confirmed_at": ("confirmé par la famille le", False), "forced_by_id": ("conflit accepté par", False),
    "first_name": ("prénom", False), "last_name": ("nom", False), "birth_date": ("date de naissance", True),
    "phone": ("téléphone", False), "email": ("adresse électronique", True), "responsible_id": ("responsable", False),
    "second_responsible_id": ("second responsable", False),
    "notify_only_id": ("ne prévenir que", False),
    "address_street": ("adresse (rue)", True), "address_postcode": ("code postal", False),
    "address_commune": ("commune", True), "commune_insee": ("code INSEE de la commune", False),
    "address_access": ("indications d'accès", True),
    "sms_consent": ("accepte les SMS", False), "email_consent": ("accepte les courriels", False),
    "phone_undeliverable_at": ("numéro injoignable depuis le", False), "phone_error": ("erreur du numéro", True),
    "organisations": ("organisations", True), "territory_id": ("territoire", False),
    "merged_into_id": ("fusionné dans le dossier", False), "merged_from_id": ("dossier fusionné dans celui-ci", False),
    "kept_from_merged": ("valeurs reprises du dossier fusionné", True),
}
INSTANTS = {"starts_at", "ends_at", "cancelled_at", "confirmed_at", "phone_undeliverable_at"}
AGENT_FIELDS = {"created_by_id", "cancelled_by_id", "forced_by_id"}
PARTIES = {Party.AGENT: "un agent", Party.FAMILY: "l'usager", Party.SYSTEM: "le système"}
CREATED_UNKNOWN = {"field": "status", "old": None, "new": "unknown"}  # every new rdv: nothing worth a line
OBJECT_LABELS = {AuditObject.RDV: "Rendez-vous", AuditObject.USAGER: "Usager"}


@dataclass(frozen=True)
class EventRow:
    occurred_at: str
    object_label: str
    object_url: str | None
    object_type: str
    action: str
    who: str
    changes: list[str]


class _Names:
    """The names of what a page of events refers to, read in one query per kind."""

    def __init__(self, events: list[AuditEvent]) -> None:
        ids: dict[str, set[int]] = {kind: set() for kind in ("agents", "motifs", "lieux", "usagers", "orgs")}
        kinds = {"motif_id": "motifs", "lieu_id": "lieux", "organisation_id": "orgs", "organisations": "orgs",
                 "merged_into_id": "usagers",
                 "agents": "agents", "usagers": "usagers", **dict.fromkeys(AGENT_FIELDS, "agents")}
        for event in events:
            if event.agent_id:
                ids["agents"].add(event.agent_id)
            if event.object_type == AuditObject.USAGER:
                ids["usagers"].add(event.object_id)
            for change in event.changes:
                if (kind := kinds.get(change["field"])) is not None:
                    for part in ("old", "new", "added", "removed"):
                        value = change.get(part)
                        ids[kind].update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
        self.agents = _by_id(Agent, ids["agents"], lambda agent: agent.full_name)
        self.motifs = _by_id(Motif, ids["motifs"], lambda motif: motif.name)
        self.lieux = _by_id(Lieu, ids["lieux"], lambda lieu: lieu.name)
        self.usagers = _by_id(Usager, ids["usagers"], lambda usager: usager.full_name)
        self.orgs = _by_id(Organisation, ids["orgs"], lambda organisation: organisation.name)
        rdv_ids = {event.object_id for event in events if event.object_type == AuditObject.RDV}
        self.rdvs = {rdv.id: rdv for rdv in db.session.scalars(select(Rdv).where(Rdv.id.in_(rdv_ids)))} if rdv_ids else {}
        territory_ids = {event.territory_id for event in events}
        self.zones = {territory.id: territory.tz for territory in
                      db.session.scalars(select(Territory).where(Territory.id.in_(territory_ids)))} if territory_ids else {}

    def of(self, field: str) -> dict[int, str]:
        if field in AGENT_FIELDS or field == "agents":
            return self.agents
        return {"motif_id": self.motifs, "lieu_id": self.lieux, "usagers": self.usagers,
                "merged_into_id": self.usagers,
                "organisation_id": self.orgs, "organisations": self.orgs}.get(field, {})


def _by_id(model, ids: set[int], name) -> dict[int, str]:
    if not ids:
        return {}
    return {obj.id: name(obj) for obj in db.session.scalars(select(model).where(model.id.in_(ids)))}


def rows(events: Iterable[AuditEvent]) -> list[EventRow]:
    events = list(events)
    names = _Names(events)
    return [_row(event, names) for event in events]


def _row(event: AuditEvent, names: _Names) -> EventRow:
    tz = names.zones.get(event.territory_id, ZoneInfo("Europe/Paris"))
    label, url = _object(event, names, tz)
    return EventRow(
        occurred_at=local_datetime(event.occurred_at, tz), object_label=label, object_url=url,
        object_type=OBJECT_LABELS[event.object_type], action=event.action.label, who=_who(event, names),
        changes=[_change(change, event.action, names, tz) for change in event.changes
                 if not (event.action == AuditAction.CREATED and change == CREATED_UNKNOWN)],
    )


def _object(event: AuditEvent, names: _Names, tz: ZoneInfo) -> tuple[str, str | None]:
    if event.object_type == AuditObject.RDV:
        rdv = names.rdvs.get(event.object_id)
        if rdv is None:
            return f"Rendez-vous n° {event.object_id} (supprimé)", None
        return (f"{rdv.motif.name}, {local_datetime(rdv.starts_at, tz)}",
                url_for("agenda.rdv_detail", rdv_id=rdv.id))
    name = names.usagers.get(event.object_id)
    if name == " ":  # a merged file's tombstone keeps no name
        return f"Dossier n° {event.object_id} (fusionné)", url_for("agenda.usager_detail", usager_id=event.object_id)
    if name is None:
        return f"Usager n° {event.object_id} (supprimé)", None
    return name, url_for("agenda.usager_detail", usager_id=event.object_id)


def _who(event: AuditEvent, names: _Names) -> str:
    if event.party == Party.AGENT:
        who = names.agents.get(event.agent_id, "Agent supprimé") if event.agent_id else "Agent supprimé"
    elif event.party == Party.FAMILY:
        who = "La famille"
    else:
        who = "Système"
    return f"{who} ({event.via.label})" if event.via is not None else who


def _change(change: dict, action: AuditAction, names: _Names, tz: ZoneInfo) -> str:
    field = change["field"]
    label, feminine = FIELD_LABELS.get(field, (field, False))
    ending = "e" if feminine else ""
    if "added" in change or "removed" in change:
        known = names.of(field)
        added = [known.get(i, f"n° {i}") for i in change.get("added") or []]
        removed = [known.get(i, f"n° {i}") for i in change.get("removed") or []]
        if action == AuditAction.CREATED:
            return f"{label} : {', '.join(added)}"
        parts = ([f"ajout de {', '.join(added)}"] if added else []) + ([f"retrait de {', '.join(removed)}"] if removed else [])
        return f"{label} : {' ; '.join(parts)}"
    if "new" not in change:  # an identifying field, or a value a bulk statement computed
        return f"{label} {'renseigné' if action == AuditAction.CREATED else 'modifié'}{ending}"
    new = _value(field, change["new"], names, tz)
    if action == AuditAction.CREATED or change.get("old") is None and action != AuditAction.UPDATED:
        return f"{label} : {new}"
    return f"{label} : {_value(field, change.get('old'), names, tz)} → {new}"


def _value(field: str, value, names: _Names, tz: ZoneInfo) -> str:
    if value is None:
        return "—"
    if field in INSTANTS:
        return local_datetime(datetime.fromisoformat(value), tz)
    if field == "status":
        return RdvStatus(value).label
    if field == "cancelled_via":
        return CancellationChannel(value).label
    if field == "cancelled_by_party":
        return PARTIES[Party(value)]
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, int) and (known := names.of(field)):
        return known.get(value, f"n° {value}")
    if isinstance(value, int) and field in FIELD_LABELS and field.endswith("_id"):
        return f"n° {value}"
    return str(value)
