"""What the API answers for each object: ids, instants in UTC ("Z") with the territory's local time beside them."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

from lapins.agenda.schedule_services import agent_timezone, weekdays_list
from lapins.models import Absence, Agent, Lieu, Motif, Participation, PlageOuverture, Rdv, Usager


def instant(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def local(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).isoformat(timespec="seconds")


def day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def hour(value: time) -> str:
    return value.strftime("%H:%M")


def rdv(rdv: Rdv) -> dict:
    tz = rdv.organisation.territory.tz
    return {
        "id": rdv.id, "organisation_id": rdv.organisation_id, "motif_id": rdv.motif_id, "lieu_id": rdv.lieu_id,
        "agent_ids": [link.agent_id for link in rdv.agent_links], "usager_ids": [usager.id for usager in rdv.usagers],
        "starts_at": instant(rdv.starts_at), "ends_at": instant(rdv.ends_at),
        "starts_at_local": local(rdv.starts_at, tz), "ends_at_local": local(rdv.ends_at, tz), "timezone": tz.key,
        "duration_minutes": int((rdv.ends_at - rdv.starts_at).total_seconds() // 60),
        "status": rdv.status.value, "status_label": rdv.status_label, "notes": rdv.notes,
        "booked_via": rdv.booked_via.value, "created_at": instant(rdv.created_at),
        "cancelled_at": instant(rdv.cancelled_at),
        "cancelled_via": rdv.cancelled_via.value if rdv.cancelled_via else None, "cancel_reason": rdv.cancel_reason,
        "max_participants": rdv.max_participants, "places_taken": rdv.places_taken, "title": rdv.title,
        "notify_only_id": rdv.notify_only_id, "revision": rdv.revision,
    }


def participation(participation: Participation) -> dict:
    return {
        "id": participation.id, "session_id": participation.rdv_id, "organisation_id": participation.rdv.organisation_id,
        "usager_id": participation.usager_id, "usager_ids": [usager.id for usager in participation.usagers],
        "places": participation.places, "status": participation.status.value,
        "status_label": participation.status.label, "booked_via": participation.via.value,
        "created_at": instant(participation.created_at), "cancelled_at": instant(participation.cancelled_at),
        "cancelled_by": participation.cancelled_by_party.value if participation.cancelled_by_party else None,
        "cancelled_via": participation.cancelled_via.value if participation.cancelled_via else None,
    }


def session(session: Rdv, held: int, *, participations: bool = True) -> dict:
    """A collective session: its rdv, the places held for waiting families and those an agent may still give, and
    (read alone) every participation."""
    answer = rdv(session) | {"places_held": held,
                             "places_left": max((session.max_participants or 0) - session.places_taken - held, 0)}
    if participations:
        answer["participations"] = [participation(one) for one in session.participations]
    return answer


def usager(usager: Usager, actor: Agent) -> dict:
    mine = actor.organisation_ids
    return {
        "id": usager.id, "territory_id": usager.territory_id,
        "organisation_ids": sorted(org.id for org in usager.organisations if org.id in mine),
        "responsible_id": usager.responsible_id, "second_responsible_id": usager.second_responsible_id,
        "guardian_ids": [guardian.id for guardian in usager.guardians],
        "relative_ids": [child.id for child in usager.children],
        "first_name": usager.first_name, "last_name": usager.last_name, "birth_date": day(usager.birth_date),
        "phone": usager.phone, "email": usager.email, "sms_consent": usager.sms_consent,
        "email_consent": usager.email_consent, "phone_undeliverable": usager.phone_undeliverable_at is not None,
        "created_at": instant(usager.created_at),
        "address_street": usager.address_street, "address_postcode": usager.address_postcode,
        "address_commune": usager.address_commune, "commune_insee": usager.commune_insee,
        "address_access": usager.address_access,
    }


def motif(motif: Motif) -> dict:
    return {"id": motif.id, "organisation_id": motif.organisation_id, "name": motif.name,
            "duration_minutes": motif.duration_minutes, "location_type": motif.location_type.value,
            "active": motif.active, "color": motif.color,
            "discreet": motif.discreet, "notify": motif.notify, "catalogue_id": motif.catalogue_id}


def lieu(lieu: Lieu) -> dict:
    return {"id": lieu.id, "organisation_id": lieu.organisation_id, "name": lieu.name, "address": lieu.address,
            "phone": lieu.phone, "active": lieu.active}


def agent(agent: Agent, actor: Agent) -> dict:
    return {"id": agent.id, "first_name": agent.first_name, "last_name": agent.last_name, "email": agent.email,
            "organisation_ids": sorted(agent.organisation_ids & actor.organisation_ids)}


def _recurrence(target: PlageOuverture | Absence, tz: ZoneInfo) -> dict:
    return {"first_day": day(target.first_day), "last_day": day(target.last_day),
            "start_time": hour(target.start_time), "end_time": hour(target.end_time),
            "weekdays": weekdays_list(target.weekdays), "every_n_weeks": target.every_n_weeks, "timezone": tz.key}


def plage(plage: PlageOuverture) -> dict:
    return {"id": plage.id, "agent_id": plage.agent_id, "organisation_id": plage.organisation_id,
            "lieu_id": plage.lieu_id, "motif_ids": [motif.id for motif in plage.motifs], "title": plage.title} \
        | _recurrence(plage, plage.organisation.territory.tz) | {"exceptions": [
            {"date": day(exception.day), "removed": exception.removed, "start_time": exception.start_time and hour(exception.start_time),
             "end_time": exception.end_time and hour(exception.end_time)} for exception in sorted(plage.exceptions, key=lambda e: e.day)]}


def absence(absence: Absence) -> dict:
    return {"id": absence.id, "agent_id": absence.agent_id, "title": absence.title} \
        | _recurrence(absence, agent_timezone(absence.agent))
