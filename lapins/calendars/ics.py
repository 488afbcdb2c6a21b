"""The events an agent's own calendar shows: their rdvs (cancelled ones as STATUS:CANCELLED) and absences.

UIDs are stable (`rdv-<id>@<domain>`, the convention of the families' invitations in notifications/email.py, and
`absence-<id>-<day>@<domain>` per occurrence), SEQUENCE is the rdv's revision, times are written in UTC with the
territory's VTIMEZONE beside them. By default no family data leaves Lapins: « RDV PMI — <lieu> »; the agent may opt
in to personal data: the family's name, and a home visit's address as its LOCATION. A discreet motif is never named. The output is deterministic (DTSTAMP is the row's last change), so its hash is an ETag.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import hashlib
import threading
from collections import OrderedDict
from functools import lru_cache

import icalendar
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from lapins.infra.extensions import db
from lapins.models import (
    Agent, AgentRole, Lieu, LocationType, Motif, Organisation, Rdv, RdvAgent, Territory, utcnow,
)
from lapins.models.calendars import CalendarFeed
from lapins.models.usagers import Usager
from lapins.slots.availability import absence_intervals

DAYS_BACK = 30
DAYS_AHEAD = 183  # six months
PRODID = "-//Lapins//Agenda agent//FR"
DEFAULT_TZ = ZoneInfo("Europe/Paris")  # an agent in no organisation yet
UID_PREFIX = "rdv-"


def domain() -> str:
    return urlsplit(current_app.config["PUBLIC_URL"]).hostname or "lapins.invalid"


def rdv_uid(rdv_id: int) -> str:
    return f"{UID_PREFIX}{rdv_id}@{domain()}"


def is_lapins_event(event: icalendar.Event) -> bool:
    """An event Lapins wrote (read back from a CalDAV calendar, it is not one of the agent's own busy times): marked
    by X-LAPINS-RDV, or by its UID for a server that drops unknown properties."""
    uid = str(event.get("UID", ""))
    return "X-LAPINS-RDV" in event or (uid.startswith(UID_PREFIX) and uid.endswith("@" + domain()))


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def around(cls, now: datetime | None = None) -> Window:
        """From midnight UTC: the window moves once a day, so a feed's ETag need only name the day."""
        day = (now or utcnow()).replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(day - timedelta(days=DAYS_BACK), day + timedelta(days=DAYS_AHEAD + 1))


def agent_territory(agent: Agent) -> Territory | None:
    """The territory whose zone the agent's calendar is written in: that of their first organisation."""
    roles = sorted(agent.roles, key=lambda role: role.organisation_id)
    return roles[0].organisation.territory if roles else None


def summary(rdv: Rdv, *, with_family_names: bool) -> str:
    motif = rdv.motif
    if motif.location_type == LocationType.HOME:
        where = "Visite à domicile"
    elif motif.location_type == LocationType.PHONE:
        where = "Rendez-vous téléphonique"
    else:
        where = rdv.lieu.name if rdv.lieu else rdv.organisation.name
    text = f"RDV PMI — {where}"
    if with_family_names and rdv.usagers:
        text += " — " + ", ".join(f"{usager.first_name} {usager.last_name}" for usager in rdv.usagers)
    return text


def rdv_event(rdv: Rdv, *, with_family_names: bool) -> icalendar.Event:
    event = icalendar.Event()
    event.add("uid", rdv_uid(rdv.id))
    event.add("sequence", rdv.revision)
    event.add("dtstamp", (rdv.updated_at or rdv.created_at).replace(microsecond=0))
    event.add("last-modified", (rdv.updated_at or rdv.created_at).replace(microsecond=0))
    event.add("dtstart", rdv.starts_at)
    event.add("dtend", rdv.ends_at)
    event.add("summary", summary(rdv, with_family_names=with_family_names))
    if not rdv.motif.discreet:
        event.add("description", f"Motif : {rdv.motif.name}")
    if rdv.lieu is not None and rdv.motif.location_type == LocationType.ON_SITE:
        event.add("location", rdv.lieu.name)  # the lieu's name only: its address is public, the family's is not
    elif with_family_names and (address := rdv.home_address) is not None:
        event.add("location", address.with_access)
    event.add("status", "CANCELLED" if rdv.status.is_cancelled else "CONFIRMED")
    event.add("transp", "TRANSPARENT" if rdv.status.is_cancelled else "OPAQUE")
    event.add("x-lapins-rdv", str(rdv.id))
    return event


@lru_cache(maxsize=64)
def _vtimezone(key: str) -> icalendar.Timezone:
    """The zone's VTIMEZONE, worked out once per process (its transitions take icalendar a while); only read."""
    return icalendar.Timezone.from_tzid(key)


def calendar(tz: ZoneInfo | None, name: str) -> icalendar.Calendar:
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    if tz is not None:
        cal.add("x-wr-timezone", tz.key)
        cal.add_component(_vtimezone(tz.key))
    return cal


def single_rdv_calendar(rdv: Rdv, tz: ZoneInfo | None, *, with_family_names: bool = False) -> bytes:
    """One rdv as a calendar object, for a CalDAV PUT."""
    cal = calendar(tz, "Lapins")
    cal.add_component(rdv_event(rdv, with_family_names=with_family_names))
    return cal.to_ical()


def agent_rdvs(agent_id: int, window: Window, *, with_usagers: bool = True) -> list[Rdv]:
    """The agent's rdvs starting in the window, cancelled ones included (read through rdv_agents' index)."""
    ids = select(RdvAgent.rdv_id).where(RdvAgent.agent_id == agent_id, RdvAgent.starts_at >= window.start,
                                        RdvAgent.starts_at < window.end)
    options = [selectinload(Rdv.motif), selectinload(Rdv.lieu), selectinload(Rdv.organisation)]
    if with_usagers:
        options.append(selectinload(Rdv.usagers).selectinload(Usager.responsible))
    return list(db.session.scalars(select(Rdv).where(Rdv.id.in_(ids)).order_by(Rdv.starts_at, Rdv.id)
                                   .options(*options)))


# Serialising with icalendar is most of a feed's cost: each rdv's VEVENT is kept per process under everything it is
# written from, so that after a change only the rdvs that changed are written again.
CACHED_EVENTS = 50_000
_events: OrderedDict[tuple, bytes] = OrderedDict()
_events_lock = threading.Lock()

# What an event without family data is written from, in one query: reading the agent's 1,000-odd rdvs as ORM objects
# (with their motif, lieu and organisation) took most of a feed's first build once the events were kept.
_EVENT_FACTS = (select(Rdv.id, Rdv.revision, Rdv.created_at, Rdv.updated_at, Rdv.status, Rdv.starts_at, Rdv.ends_at,
                       Motif.name, Motif.discreet, Motif.location_type, Lieu.name, Organisation.name)
                .join(Motif, Motif.id == Rdv.motif_id).outerjoin(Lieu, Lieu.id == Rdv.lieu_id)
                .join(Organisation, Organisation.id == Rdv.organisation_id))


def _event_key(host: str, facts: tuple, *, with_family_names: bool, names: tuple = (), address=None) -> tuple:
    """`facts` in _EVENT_FACTS' order; names and address only with the family's data."""
    (rdv_id, revision, created_at, updated_at, status, starts_at, ends_at, motif_name, discreet, location_type,
     lieu_name, organisation_name) = facts
    return (host, rdv_id, revision, created_at, updated_at, status.value, starts_at, ends_at, motif_name, discreet,
            str(location_type), lieu_name, organisation_name, with_family_names, names, address)


def _kept_event(key: tuple) -> bytes | None:
    with _events_lock:
        found = _events.get(key)
        if found is not None:
            _events.move_to_end(key)
        return found


def _keep_event(key: tuple, written: bytes) -> None:
    with _events_lock:
        _events[key] = written
        while len(_events) > CACHED_EVENTS:
            _events.popitem(last=False)


def rdv_event_bytes(rdv: Rdv, *, with_family_names: bool) -> bytes:
    facts = (rdv.id, rdv.revision, rdv.created_at, rdv.updated_at, rdv.status, rdv.starts_at, rdv.ends_at,
             rdv.motif.name, rdv.motif.discreet, rdv.motif.location_type, rdv.lieu.name if rdv.lieu else None,
             rdv.organisation.name)
    names = tuple((usager.first_name, usager.last_name) for usager in rdv.usagers) if with_family_names else ()
    key = _event_key(domain(), facts, with_family_names=with_family_names, names=names,
                     address=rdv.home_address if with_family_names else None)
    found = _kept_event(key)
    if found is None:
        found = rdv_event(rdv, with_family_names=with_family_names).to_ical()
        _keep_event(key, found)
    return found


def _rdv_events(agent_id: int, window: Window, *, with_family_names: bool) -> list[bytes]:
    """The VEVENTs of the agent's rdvs in the window, in order; without family data, only the rdvs whose event is
    not kept are read as objects."""
    if with_family_names:
        return [rdv_event_bytes(rdv, with_family_names=True) for rdv in agent_rdvs(agent_id, window)]
    ids = select(RdvAgent.rdv_id).where(RdvAgent.agent_id == agent_id, RdvAgent.starts_at >= window.start,
                                        RdvAgent.starts_at < window.end)
    rows = db.session.execute(_EVENT_FACTS.where(Rdv.id.in_(ids)).order_by(Rdv.starts_at, Rdv.id)).all()
    host = domain()
    events = [_kept_event(_event_key(host, tuple(row), with_family_names=False)) for row in rows]
    missing = [row.id for row, event in zip(rows, events) if event is None]
    if missing:
        written = {rdv.id: rdv_event_bytes(rdv, with_family_names=False) for rdv in db.session.scalars(
            select(Rdv).where(Rdv.id.in_(missing)).options(selectinload(Rdv.motif), selectinload(Rdv.lieu),
                                                           selectinload(Rdv.organisation)))}
        events = [event if event is not None else written[row.id] for row, event in zip(rows, events)]
    return events


def agent_feed(agent: Agent, *, with_family_names: bool, now: datetime | None = None) -> bytes:
    """The whole feed of an agent: rdvs and absence occurrences of the window."""
    window = Window.around(now)
    territory = agent_territory(agent)
    tz = territory.tz if territory else DEFAULT_TZ
    end = b"END:VCALENDAR\r\n"
    parts = [calendar(tz, f"Lapins — {agent.full_name}").to_ical().removesuffix(end)]
    parts += _rdv_events(agent.id, window, with_family_names=with_family_names)
    host = domain()
    for absence in absence_intervals(agent.id, tz, window.start, window.end):
        begin, finish = absence.starts_at, absence.ends_at
        uid = f"absence-{absence.absence_id}-{begin.astimezone(tz).date().isoformat()}@{host}"
        stamp = window.start.replace(hour=0, minute=0, second=0)
        key = ("absence", uid, stamp, begin, finish, absence.title)
        written = _kept_event(key)
        if written is None:
            event = icalendar.Event()
            event.add("uid", uid)
            event.add("sequence", 0)
            event.add("dtstamp", stamp)
            event.add("dtstart", begin)
            event.add("dtend", finish)
            event.add("summary", f"Absence : {absence.title}")
            event.add("status", "CONFIRMED")
            written = event.to_ical()
            _keep_event(key, written)
        parts.append(written)
    parts.append(end)
    return b"".join(parts)


CACHED_FEEDS = 32  # bodies kept per process, the most recently served first (a few hundred KB each)
_bodies: OrderedDict[str, bytes] = OrderedDict()
_bodies_lock = threading.Lock()


def feed_etag(feed: CalendarFeed, now: datetime | None = None) -> str:
    """Changes whenever the feed's body may: another day, a new stamp of the agent's or of one of their territories
    (lapins.models.agenda_stamps), the family-name option, the agent's name, the feed itself (a rotated token)."""
    stamps = sorted(db.session.scalars(
        select(Territory.agenda_stamp).join(Organisation, Organisation.territory_id == Territory.id)
        .join(AgentRole, AgentRole.organisation_id == Organisation.id).where(AgentRole.agent_id == feed.agent_id)))
    day = (now or utcnow()).date().isoformat()
    key = "|".join([str(feed.id), str(feed.with_family_names), feed.agent.full_name, day, domain(),
                    feed.agent.agenda_stamp, *stamps])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def feed_body(feed: CalendarFeed, etag: str) -> bytes:
    with _bodies_lock:
        body = _bodies.get(etag)
        if body is not None:
            _bodies.move_to_end(etag)
            return body
    body = agent_feed(feed.agent, with_family_names=feed.with_family_names)
    with _bodies_lock:
        _bodies[etag] = body
        while len(_bodies) > CACHED_FEEDS:
            _bodies.popitem(last=False)
    return body
