"""Agents' calendars: one agent's week or day, the agents of a lieu side by side, and their JSON feed.

Time zone convention, shared with lapins/static/agenda.js: FullCalendar runs with `timeZone: 'UTC'` and every
time it sees is the territory's wall-clock time written without an offset ("fake UTC"). FullCalendar cannot
compute the offsets of a named zone without an extra plugin, and the agent's browser zone is not the territory's
(an agent in Paris may look at Mayotte), so the server alone converts, with the territory's zoneinfo:
instants → wall-clock strings on the way out, wall-clock strings → instants on the way in. A time sent *with* an
offset or `Z` is taken as a real instant, so API clients that know better may send one.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache, wraps
from itertools import groupby
from operator import itemgetter
from zoneinfo import ZoneInfo

from babel.dates import format_date
from flask import current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import Row, bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.exceptions import HTTPException

from lapins import policies
from lapins.agenda.blueprint import bp
from lapins.slots import availability
from lapins.booking import MAX_DURATION, BookingError, move_rdv
from lapins.booking import sessions as booking_sessions
from lapins.auth.views import agent_with_organisations, light_agent_view
from lapins.infra.database import DriverQuery, end_read_only_transaction
from lapins.infra.errors import render_error
from lapins.infra.extensions import csrf, db
from lapins.locale.formatting import LOCALE, local_datetime
from lapins.models.light_agent import LightAgent, light_agent
from lapins.locale.localtime import NonexistentLocalTime, to_utc
from lapins.models import (
    Agent, Lieu, LocationType, Motif, Organisation, PlageOuverture, Rdv, RdvAgent, RdvStatus, Territory, Usager,
)
from lapins.models.usagers import PostalAddress
from lapins.models.rdvs import rdv_usagers, status_label

MAX_RANGE = timedelta(days=62)
DAY_START, DAY_END = time(7, 0), time(20, 0)
VIEWS = ("semaine", "jour")
# Dates outside these years are typing mistakes; refusing them also keeps date arithmetic far from its limits.
YEARS = range(1900, 2200)
CANCELLED_BACKGROUND, CANCELLED_TEXT = "#f6f6f6", "#666666"  # DSFR grey-975 and mention grey


class InvalidParameter(ValueError):
    """A request parameter a person can fix; the message is French."""


# --- Time conversions ----------------------------------------------------------------------------------------

def wall_clock(instant: datetime, tz: ZoneInfo) -> str:
    """The territory's wall-clock time of an instant, as FullCalendar's "fake UTC" string."""
    return instant.astimezone(tz).replace(tzinfo=None).isoformat(timespec="seconds")


def parse_moment(value: str | None, tz: ZoneInfo, name: str) -> datetime:
    """A date, a wall-clock date-time of the territory, or an ISO instant with offset → an aware UTC instant."""
    if not value:
        raise InvalidParameter(f"Le paramètre « {name} » est obligatoire (date ISO, par exemple 2026-03-30T09:00).")
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.year not in YEARS:
            raise ValueError("year out of range")
        if parsed.tzinfo is not None:
            return parsed.astimezone(timezone.utc)
        return to_utc(parsed.date(), parsed.time(), tz)
    except NonexistentLocalTime as error:
        raise InvalidParameter(str(error)) from None
    except (ValueError, OverflowError):
        raise InvalidParameter(f"« {value} » n'est pas une date valide pour « {name} » (attendu : AAAA-MM-JJTHH:MM).") from None


@lru_cache(maxsize=256)  # FullCalendar asks for the same weeks all day; a refusal (InvalidParameter) is not kept
def parse_range(start: str | None, end: str | None, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start_at, end_at = parse_moment(start, tz, "start"), parse_moment(end, tz, "end")
    if end_at <= start_at:
        raise InvalidParameter("La fin de la période doit être après son début.")
    if end_at - start_at > MAX_RANGE:
        raise InvalidParameter(f"La période demandée est trop longue ({MAX_RANGE.days} jours au plus).")
    return start_at, end_at


def parse_day(value: str | None, tz: ZoneInfo) -> date:
    if not value:
        return datetime.now(tz).date()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(f"« {value} » n'est pas une date valide (attendu : AAAA-MM-JJ, par exemple "
                               f"{datetime.now(tz).date().isoformat()}).") from None
    if day.year not in YEARS:
        raise InvalidParameter(f"Le {value} est hors de l'agenda : choisissez une date entre {YEARS.start} et "
                               f"{YEARS.stop - 1}.")
    return day


# --- Reading the calendar ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CalendarRdv:
    id: int
    starts_at: datetime
    ends_at: datetime
    status: RdvStatus
    visible: bool  # False when the rdv belongs to an organisation the viewer is not part of
    motif: str
    color: str
    lieu: str | None
    usagers: tuple[str, ...]
    # A collective session: its places (« 7/10 ») and its own title, in the grid instead of names.
    places: str | None = None
    session_title: str | None = None

    @property
    def title(self) -> str:
        if not self.visible:
            return "Occupé (autre organisation)"
        if self.places is not None:
            title = f"{self.session_title or self.motif} — {self.places}"
            return title if self.status == RdvStatus.UNKNOWN else f"{title} ({self.status.label})"
        title = " — ".join(part for part in (", ".join(self.usagers), self.motif) if part)
        return title if self.status == RdvStatus.UNKNOWN else f"{title} ({self.status.label})"

    @property
    def status_label(self) -> str:
        return status_label(self.status, self.starts_at)


# The feed is the agenda's hottest path: its statements are built once, and each request only binds values.

def load_agent(agent_id: int, viewer: Agent | LightAgent | None = None) -> Agent | LightAgent:
    """The agent with their roles, organisations and territories (authorize reads the roles, the agenda the territory).

    The viewer is the signed-in agent (current_user unless given). An agent's own agenda costs no query: the viewer
    was loaded just so (lapins.auth.views.load_agent). A viewer that is a LightAgent (the events feed) gets the agent
    shown as one too.
    """
    viewer = viewer or current_user._get_current_object()
    if agent_id == viewer.id:
        agent = viewer
    else:
        agent = light_agent(agent_id) if isinstance(viewer, LightAgent) else agent_with_organisations(agent_id)
    policies.authorize(viewer, "view", agent)
    return agent


def territory_of(agent: Agent, viewer: Agent | LightAgent | None = None) -> Territory:
    """The territory whose clock the agenda shows: the first one shared with the viewer, else the agent's own."""
    shared = policies.organisations_of(viewer or current_user)
    roles = sorted(agent.roles, key=lambda role: (role.organisation_id not in shared, role.organisation_id))
    return roles[0].organisation.territory


# One row per rdv and usager (an rdv without usager gives one row without a name), the responsible adult first.
AGENT_RDVS = (
    select(Rdv.id, Rdv.starts_at, Rdv.ends_at, Rdv.status, Rdv.organisation_id,
           Motif.name.label("motif"), Motif.color, Lieu.name.label("lieu"), Usager.first_name, Usager.last_name,
           Rdv.max_participants, Rdv.places_taken, Rdv.title)
    .join(RdvAgent, RdvAgent.rdv_id == Rdv.id)
    .join(Motif, Motif.id == Rdv.motif_id)
    .outerjoin(Lieu, Lieu.id == Rdv.lieu_id)
    .outerjoin(rdv_usagers, rdv_usagers.c.rdv_id == Rdv.id)
    .outerjoin(Usager, Usager.id == rdv_usagers.c.usager_id)
    .where(
        RdvAgent.agent_id == bindparam("agent_id"),
        RdvAgent.starts_at < bindparam("end_at"),
        # Bounds the index range scan on (agent_id, starts_at): no rdv lasts longer than MAX_DURATION.
        RdvAgent.starts_at > bindparam("earliest_start"),
        RdvAgent.ends_at > bindparam("start_at"),
    )
    .order_by(RdvAgent.starts_at, Rdv.id, Usager.birth_date, Usager.id)
)


AGENT_RDV_RECORDS = DriverQuery(AGENT_RDVS)


def rdv_rows(agent_id: int, start_at: datetime, end_at: datetime,
             connection: Connection | None = None) -> tuple[Row, ...]:
    """The rows of the agent's rdvs overlapping [start_at, end_at), with their usagers: one query whatever their number.

    Run on a Core connection (the session's unless given): the rows are plain tuples, without the ORM's processing.
    """
    return tuple((connection or db.session.connection()).execute(AGENT_RDVS, {
        "agent_id": agent_id, "start_at": start_at, "end_at": end_at, "earliest_start": start_at - MAX_DURATION,
    }).all())


def calendar_rdvs(rows: Iterable[Row], visible_organisations: Collection[int]) -> list[CalendarRdv]:
    """The rdvs of rdv_rows; the names of an rdv of an organisation the viewer is not part of are never kept."""
    rdvs = []
    for _, same_rdv in groupby(rows, key=itemgetter(0)):
        first, *others = same_rdv
        visible = first.organisation_id in visible_organisations
        usagers = tuple(f"{row.first_name} {row.last_name}" for row in (first, *others)
                        if row.first_name is not None) if visible else ()
        rdvs.append(CalendarRdv(
            id=first.id, starts_at=first.starts_at, ends_at=first.ends_at, status=first.status, visible=visible,
            motif=first.motif, color=first.color, lieu=first.lieu, usagers=usagers,
            places=f"{first.places_taken}/{first.max_participants}" if first.max_participants is not None else None,
            session_title=first.title if visible else None,
        ))
    return rdvs


def agent_rdvs(agent_id: int, start_at: datetime, end_at: datetime, visible_organisations: set[int]) -> list[CalendarRdv]:
    """The agent's rdvs overlapping [start_at, end_at)."""
    return calendar_rdvs(rdv_rows(agent_id, start_at, end_at), visible_organisations)


RDV_USAGERS = (
    select(rdv_usagers.c.rdv_id, Usager.first_name, Usager.last_name)
    .join(Usager, Usager.id == rdv_usagers.c.usager_id)
    .where(rdv_usagers.c.rdv_id.in_(bindparam("rdv_ids", expanding=True)))
    .order_by(rdv_usagers.c.rdv_id, Usager.birth_date, Usager.id)
)


def usager_names(rdv_ids: list[int]) -> dict[int, list[str]]:
    """« Prénom Nom » of each rdv's usagers, the responsible adult first."""
    if not rdv_ids:
        return {}
    names: dict[int, list[str]] = {}
    for rdv_id, first_name, last_name in db.session.execute(RDV_USAGERS, {"rdv_ids": rdv_ids}):
        names.setdefault(rdv_id, []).append(f"{first_name} {last_name}")
    return names


def calendar_rdv(rdv: Rdv) -> CalendarRdv:
    return CalendarRdv(
        id=rdv.id, starts_at=rdv.starts_at, ends_at=rdv.ends_at, status=rdv.status, visible=True,
        motif=rdv.motif.name, color=rdv.motif.color, lieu=rdv.lieu.name if rdv.lieu else None,
        usagers=tuple(usager.full_name for usager in rdv.usagers),
        places=f"{rdv.places_taken}/{rdv.max_participants}" if rdv.is_session else None, session_title=rdv.title,
    )


# --- FullCalendar events --------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def text_color(background: str) -> str:
    """Black or white, whichever reads best on the motif's colour (WCAG relative luminance)."""
    try:
        channels = [int(background[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    except (ValueError, TypeError):
        return "#ffffff"
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#161616" if luminance > 0.179 else "#ffffff"


RDV_ID_PLACEHOLDER = "987654321"


def rdv_url_template() -> str:
    """url_for once per response, not once per event: the feed is the hottest path of the agenda."""
    return url_for("agenda.rdv_detail", rdv_id=int(RDV_ID_PLACEHOLDER))


def rdv_url_maker(template: str | None = None) -> Callable[[int], str]:
    template = template or rdv_url_template()
    return lambda rdv_id: template.replace(RDV_ID_PLACEHOLDER, str(rdv_id))


def rdv_event(rdv: CalendarRdv, tz: ZoneInfo, agent_id: int, rdv_url: Callable[[int], str]) -> dict:
    cancelled = rdv.status.is_cancelled
    event = {
        "id": f"rdv-{rdv.id}",
        "title": rdv.title,
        "start": wall_clock(rdv.starts_at, tz),
        "end": wall_clock(rdv.ends_at, tz),
        "classNames": ["lapins-rdv", f"lapins-rdv--{rdv.status.value}"] + (["lapins-rdv--annule"] if cancelled else []),
        "startEditable": rdv.visible and not cancelled,
        "extendedProps": {"kind": "rdv", "rdvId": rdv.id, "agentId": agent_id, "status": rdv.status.value,
                          "lieu": rdv.lieu if rdv.visible else None},
    }
    if rdv.visible and cancelled:
        event.update(url=rdv_url(rdv.id), backgroundColor=CANCELLED_BACKGROUND, borderColor=rdv.color,
                     textColor=CANCELLED_TEXT)
    elif rdv.visible:
        event.update(url=rdv_url(rdv.id), backgroundColor=rdv.color, borderColor=rdv.color,
                     textColor=text_color(rdv.color))
    else:
        event["classNames"].append("lapins-rdv--masque")
    return event


def background_event(kind: str, title: str, start: str, end: str, extra: dict | None = None) -> dict:
    return {"title": title, "start": start, "end": end, "display": "background",
            "classNames": [f"lapins-{kind}"], "extendedProps": {"kind": kind, **(extra or {})}}


@dataclass(frozen=True)
class FeedKey:
    """What an agent's events feed depends on: the rows it reads are known by the territory's agenda stamp and the
    agent's own (models.agenda_stamps)."""

    agent_id: int
    territory_id: int
    agenda_stamp: str  # drawn anew by every change to what all of the territory's agendas show
    agent_stamp: str  # drawn anew by every change to this agent's rdvs, absences and plages
    tz: ZoneInfo
    holiday_subdivision: str | None
    visible_organisations: frozenset[int]  # the viewer's: an rdv of another organisation shows as busy
    start_at: datetime
    end_at: datetime
    rdv_url_template: str


def feed_key(agent: Agent, territory: Territory, start_at: datetime, end_at: datetime, viewer: Agent | LightAgent,
             rdv_url_template: str) -> FeedKey:
    """The key of the agent's calendar in [start_at, end_at), as the viewer may see it."""
    return FeedKey(
        agent_id=agent.id, territory_id=territory.id, agenda_stamp=territory.agenda_stamp,
        agent_stamp=agent.agenda_stamp, tz=territory.tz,
        holiday_subdivision=territory.holiday_subdivision,
        visible_organisations=frozenset(policies.organisations_of(viewer)), start_at=start_at, end_at=end_at,
        rdv_url_template=rdv_url_template,
    )


def feed_events(key: FeedKey) -> list[dict]:
    """Everything the agent's calendar shows: rdvs, then plages, absences and holidays."""
    tz, start_at, end_at = key.tz, key.start_at, key.end_at
    # Read by the driver in autocommit (no BEGIN nor COMMIT), without SQLAlchemy's per-statement work: a week not
    # kept costs these two statements, and the agenda's weeks are read all day (docs/benchmarks.md, `miss`).
    rdvs = AGENT_RDV_RECORDS.records(agent_id=key.agent_id, start_at=start_at, end_at=end_at,
                                     earliest_start=start_at - MAX_DURATION)
    background = availability.background_records(key.agent_id, tz, start_at, end_at)
    rdv_url = rdv_url_maker(key.rdv_url_template)
    events = [rdv_event(rdv, tz, key.agent_id, rdv_url)
              for rdv in calendar_rdvs(rdvs, key.visible_organisations)]
    openings, absences = availability.background_intervals(background, key.agent_id, tz, start_at, end_at)
    events += [background_event("plage", f"{opening.title} — {opening.lieu_name}" if opening.lieu_name else opening.title,
                                wall_clock(opening.starts_at, tz), wall_clock(opening.ends_at, tz),
                                {"lieuId": opening.lieu_id})
               for opening in openings]
    events += [background_event("absence", absence.title if absence.imported else f"Absence : {absence.title}",
                                wall_clock(absence.starts_at, tz), wall_clock(absence.ends_at, tz))
               for absence in absences]
    events += [background_event("ferie", f"Férié : {holiday.name}", wall_clock(holiday.starts_at, tz),
                                wall_clock(holiday.ends_at, tz))
               for holiday in availability.holidays_between(key.holiday_subdivision, tz, start_at, end_at)]
    return events


@lru_cache(maxsize=1024)
def feed_json(key: FeedKey) -> bytes:
    """The feed as JSON, cached per process on its key: agents reload the same weeks all day, and between two
    changes to the agent's agenda the answer is the same. The stamps in the key were read before the rows (with the
    agents), so a cached body is never older than its stamps (models.agenda_stamps)."""
    return json.dumps(feed_events(key), sort_keys=True, separators=(",", ":")).encode() + b"\n"


def agent_feed(viewer: LightAgent, agent_id: int, start: str | None, end: str | None, rdv_url_template: str) -> bytes:
    """The JSON of an agent's events between two of FullCalendar's times, as the viewer may see them.

    Raises what policies.authorize raises (404, 403) and InvalidParameter. The view and the feed's fast path
    (lapins.agenda.fast_feed) both answer with it; end the request with end_read_only_transaction.
    """
    agent = load_agent(agent_id, viewer)
    territory = territory_of(agent, viewer)
    start_at, end_at = parse_range(start, end, territory.tz)
    return feed_json(feed_key(agent, territory, start_at, end_at, viewer, rdv_url_template))


# --- Pages ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    """The days an agenda page shows: a week from Monday, or one day."""

    first: date
    days: int

    @classmethod
    def around(cls, day: date, view: str) -> Period:
        return cls(day - timedelta(days=day.weekday()), 7) if view == "semaine" else cls(day, 1)

    @property
    def last(self) -> date:
        return self.first + timedelta(days=self.days - 1)

    @property
    def previous(self) -> date:
        return self.first - timedelta(days=self.days)

    @property
    def next(self) -> date:
        return self.first + timedelta(days=self.days)

    @property
    def label(self) -> str:
        """« Semaine du lundi 30 mars au dimanche 5 avril 2026 » or « Mardi 31 mars 2026 »."""
        if self.days == 1:
            return format_date(self.first, "EEEE d MMMM y", locale=LOCALE).capitalize()
        first_format = "EEEE d MMMM" if self.first.year == self.last.year else "EEEE d MMMM y"
        return (f"Semaine du {format_date(self.first, first_format, locale=LOCALE)} "
                f"au {format_date(self.last, 'EEEE d MMMM y', locale=LOCALE)}")

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The period as UTC instants, from local midnight to local midnight (DST days are 23 or 25 h long)."""
        return to_utc(self.first, time(0), tz), to_utc(self.next, time(0), tz)


def slot_range(rdvs: Iterable, tz: ZoneInfo) -> tuple[str, str]:
    """07:00–20:00, widened to whole hours around any rdv outside it, so that none is hidden."""
    earliest, latest = DAY_START.hour, DAY_END.hour
    for rdv in rdvs:
        start, end = rdv.starts_at.astimezone(tz), rdv.ends_at.astimezone(tz)
        if end.date() != start.date():
            return "00:00:00", "24:00:00"
        earliest = min(earliest, start.hour)
        latest = max(latest, end.hour + (1 if end.minute else 0))
    return f"{earliest:02d}:00:00", f"{latest:02d}:00:00"


def hidden_days(view: str, rdvs: Iterable[CalendarRdv], agent_id: int, tz: ZoneInfo) -> list[int]:
    """Sunday (0 for FullCalendar) is left out of the week unless the agent works or has an rdv then."""
    if view == "jour" or any(rdv.starts_at.astimezone(tz).weekday() == 6 for rdv in rdvs):
        return []
    sunday = 1 << 6  # Monday is bit 0 of PlageOuverture.weekdays
    works_on_sunday = db.session.scalar(select(PlageOuverture.id).where(
        PlageOuverture.agent_id == agent_id, PlageOuverture.weekdays.op("&")(sunday) != 0).limit(1))
    return [] if works_on_sunday else [0]


def now_offset_minutes(tz: ZoneInfo) -> int:
    """The territory's UTC offset now: FullCalendar's "now" line and "today" are shifted by it (fake UTC)."""
    return int(datetime.now(tz).utcoffset().total_seconds() // 60)


def page_day(tz: ZoneInfo) -> date:
    return parse_day(request.args.get("date"), tz)


class DayRefused(Exception):
    """A page's `date` refused: the answer is the same page on today's date, the French reason above it."""

    def __init__(self, response) -> None:
        super().__init__()
        self.response = response


def shown_day(tz: ZoneInfo) -> date:
    """The page's day (page_day); a date that cannot be shown raises DayRefused with the page of today, where the
    reason is said (a flashed message) instead of a bare error page."""
    try:
        return page_day(tz)
    except InvalidParameter as error:
        flash(str(error), "error")
        args = {key: value for key, value in request.args.items() if key != "date"}
        raise DayRefused(redirect(url_for(request.endpoint, **(request.view_args or {}), **args))) from None


@bp.route("/agenda/agents")
def switch_calendar():
    """Target of the agent selector: the chosen agent travels as a query parameter, the agenda wants it in the path."""
    agent_id = request.args.get("agent_id", type=int) or current_user.id
    args = {key: request.args[key] for key in ("date", "vue") if request.args.get(key)}
    return redirect(url_for("agenda.agent_calendar", agent_id=agent_id, **args))


@bp.route("/agenda/agents/<int:agent_id>")
def agent_calendar(agent_id: int):
    agent = load_agent(agent_id)
    territory = territory_of(agent)
    tz = territory.tz
    view = request.args.get("vue", "semaine")
    if view not in VIEWS:
        return render_error(400, "L'affichage demandé n'existe pas (« semaine » ou « jour »).")
    try:
        day = shown_day(tz)
    except DayRefused as refused:
        return refused.response
    period = Period.around(day, view)
    rdvs = agent_rdvs(agent.id, *period.bounds(tz), policies.organisations_of(current_user))
    colleagues = list(db.session.scalars(policies.agent_scope(current_user)))
    if agent not in colleagues:
        colleagues.insert(0, agent)
    slot_min, slot_max = slot_range(rdvs, tz)
    # The period's plage occurrences, each with its link to remove or change that date (plage_exceptions).
    openings = availability.opening_intervals(agent.id, tz, *period.bounds(tz)) \
        if policies.can(current_user, "manage_schedule", agent) else []
    return render_template(
        "agenda/calendar_agent.html", agent=agent, territory=territory, tz=tz, view=view, day=day, period=period,
        openings=openings,
        today=datetime.now(tz).date(), rdvs=rdvs, addresses=home_addresses([rdv.id for rdv in rdvs if rdv.visible]), colleagues=colleagues, slot_min=slot_min, slot_max=slot_max,
        hidden_days=hidden_days(view, rdvs, agent.id, tz), now_offset=now_offset_minutes(tz),
    )


@bp.route("/agenda/agents/<int:agent_id>/nouveau-rdv")
def calendar_new_rdv(agent_id: int):
    """A free time picked in the calendar (territory wall-clock time) → the booking form, given a UTC instant."""
    agent = load_agent(agent_id)
    try:
        starts_at = parse_moment(request.args.get("debut"), territory_of(agent).tz, "debut")
    except InvalidParameter as error:
        return render_error(400, str(error))
    args = {"agent_id": agent.id, "starts_at": starts_at.isoformat().replace("+00:00", "Z")}
    if lieu_id := request.args.get("lieu_id", type=int):
        args["lieu_id"] = lieu_id
    return redirect(url_for("agenda.new_rdv", **args))


@bp.route("/agenda/lieux")
def lieux_index():
    lieux = db.session.scalars(policies.lieu_scope(current_user).options(joinedload(Lieu.organisation))).all()
    # Closed lieux last: their agenda still shows the rdvs left to move.
    return render_template("agenda/lieux.html", lieux=sorted(lieux, key=lambda lieu: not lieu.active))


@bp.route("/agenda/lieux/<int:lieu_id>")
def lieu_calendar(lieu_id: int):
    lieu = db.session.scalar(
        select(Lieu).where(Lieu.id == lieu_id).options(joinedload(Lieu.organisation).joinedload(Organisation.territory))
    )
    policies.authorize(current_user, "view", lieu)
    territory = lieu.organisation.territory
    tz = territory.tz
    try:
        day = shown_day(tz)
    except DayRefused as refused:
        return refused.response
    period = Period(day, 1)
    start_at, end_at = period.bounds(tz)
    rows = lieu_rdvs(lieu.id, start_at, end_at)
    agents = agents_at_lieu(lieu, start_at, end_at, {row.agent_id for row in rows})
    slot_min, slot_max = slot_range(rows, tz)
    return render_template(
        "agenda/calendar_lieu.html", lieu=lieu, territory=territory, tz=tz, day=day, period=period,
        today=datetime.now(tz).date(), agents=agents, rows=rows, slot_min=slot_min, slot_max=slot_max,
        addresses=home_addresses(sorted({row.id for row in rows})),
        now_offset=now_offset_minutes(tz),
    )


def home_addresses(rdv_ids: list[int]) -> dict[int, PostalAddress]:
    """The address of each home visit among these rdvs, for the day's lists (the events feed never carries it)."""
    if not rdv_ids:
        return {}
    rdvs = db.session.scalars(
        select(Rdv).join(Motif, Motif.id == Rdv.motif_id)
        .where(Rdv.id.in_(rdv_ids), Motif.location_type == LocationType.HOME)
        .options(selectinload(Rdv.usagers).selectinload(Usager.responsible), joinedload(Rdv.motif)))
    return {rdv.id: address for rdv in rdvs if (address := rdv.home_address) is not None}


@dataclass(frozen=True)
class LieuRdv:
    """One agent's rdv at a lieu (an rdv with two agents gives two of them)."""

    id: int
    starts_at: datetime
    ends_at: datetime
    status: RdvStatus
    motif: str
    agent_id: int
    agent_name: str
    usagers: tuple[str, ...]

    @property
    def status_label(self) -> str:  # the badge of the day's table reads it, as for CalendarRdv
        return status_label(self.status, self.starts_at)


def lieu_rdvs(lieu_id: int, start_at: datetime, end_at: datetime) -> list[LieuRdv]:
    rows = db.session.execute(
        select(Rdv.id, Rdv.starts_at, Rdv.ends_at, Rdv.status, Motif.name.label("motif"), RdvAgent.agent_id,
               Agent.first_name, Agent.last_name)
        .join(RdvAgent, RdvAgent.rdv_id == Rdv.id)
        .join(Agent, Agent.id == RdvAgent.agent_id)
        .join(Motif, Motif.id == Rdv.motif_id)
        .where(Rdv.lieu_id == lieu_id, Rdv.starts_at < end_at, Rdv.ends_at > start_at)
        .order_by(Rdv.starts_at, Agent.last_name, Rdv.id)
    ).all()
    names = usager_names(sorted({row.id for row in rows}))
    return [LieuRdv(row.id, row.starts_at, row.ends_at, row.status, row.motif, row.agent_id,
                    f"{row.first_name} {row.last_name}", tuple(names.get(row.id, ()))) for row in rows]


def agents_at_lieu(lieu: Lieu, start_at: datetime, end_at: datetime, with_rdvs: set[int]) -> list[Agent]:
    """Agents with a plage occurring at the lieu in [start_at, end_at), or an rdv there, ordered by name."""
    candidates = set(db.session.scalars(select(PlageOuverture.agent_id).where(PlageOuverture.lieu_id == lieu.id)))
    openings = availability.opening_intervals(candidates, lieu.organisation.territory.tz, start_at, end_at) \
        if candidates else []
    wanted = {opening.agent_id for opening in openings if opening.lieu_id == lieu.id} | with_rdvs
    if not wanted:
        return []
    return list(db.session.scalars(policies.agent_scope(current_user).where(Agent.id.in_(wanted))))


# --- JSON API -------------------------------------------------------------------------------------------------

API_MESSAGES = {
    400: "Requête invalide : rechargez la page et recommencez.",
    403: "Vous n'avez pas les droits nécessaires pour cette action.",
    404: "Cet élément est introuvable ou ne fait pas partie de vos organisations.",
}


def json_error(status: int, message: str, **extra):
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


def json_api(view):
    """Errors of the calendar API as French JSON (agenda.js shows them) instead of the HTML error page.

    POST views are exempted from the app-wide CSRF hook and check the `X-CSRFToken` header here, so that a
    missing token also answers JSON; the check itself is Flask-WTF's.
    """
    @wraps(view)
    def wrapper(*args, **kwargs):
        try:
            if request.method == "POST" and current_app.config.get("WTF_CSRF_ENABLED", True):
                csrf.protect()
            return view(*args, **kwargs)
        except CSRFError:
            return json_error(400, "Le jeton de sécurité est absent ou a expiré : rechargez la page et recommencez.")
        except InvalidParameter as error:
            return json_error(400, str(error))
        except HTTPException as error:
            return json_error(error.code or 500, API_MESSAGES.get(error.code, "Cette action n'a pas pu aboutir."))
    return wrapper


@bp.route("/agenda/api/agents/<int:agent_id>/evenements", endpoint="agent_events")
@light_agent_view
@json_api
def agent_events_api(agent_id: int):
    """The agent's events; the signed-in agent and the agent shown are LightAgents (lapins.models.light_agent).

    Most requests never reach this view: lapins.agenda.fast_feed answers them with the same agent_feed, and hands
    here those that need Flask (an error to answer, a session cookie to sign again...).
    """
    body = agent_feed(current_user._get_current_object(), agent_id, request.args.get("start"),
                      request.args.get("end"), rdv_url_template())
    end_read_only_transaction()
    return current_app.response_class(body, mimetype="application/json")


@bp.route("/agenda/api/rdvs/<int:rdv_id>/deplacer", methods=["POST"], endpoint="move_rdv_api")
@csrf.exempt
@json_api
def move_rdv_api(rdv_id: int):
    rdv = db.session.get(Rdv, rdv_id)
    policies.authorize(current_user, "edit", rdv)
    tz = rdv.organisation.territory.tz
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise InvalidParameter("La requête doit être un objet JSON.")
    raw_start = payload.get("starts_at")
    starts_at = parse_moment(raw_start if isinstance(raw_start, str) else None, tz, "starts_at")
    agents = target_agents(rdv, payload)
    try:
        if rdv.is_session:  # dragged in the grid: the session's own rules (never into the past, no override)
            rdv = booking_sessions.move_session(actor=current_user, session=rdv, starts_at=starts_at,
                                                duration=rdv.ends_at - rdv.starts_at, agents=agents)
        else:
            rdv = move_rdv(actor=current_user, rdv=rdv, starts_at=starts_at, agents=agents,
                           force=payload.get("force") is True)
    except BookingError as error:
        return json_error(409, error.message, can_force=error.can_force)
    shown_agent_id = agents[0].id if agents else rdv.agent_links[0].agent_id
    return jsonify({
        "event": rdv_event(calendar_rdv(rdv), tz, shown_agent_id, rdv_url_maker()),
        "message": f"Rendez-vous déplacé au {local_datetime(rdv.starts_at, tz)}.",
    })


def target_agents(rdv: Rdv, payload: dict) -> list[Agent] | None:
    """None keeps the rdv's agents; `agent_id` hands it to that agent, in place of `from_agent_id`."""
    agent_id, from_agent_id = payload.get("agent_id"), payload.get("from_agent_id")
    if agent_id is None:
        return None
    if type(agent_id) is not int or (from_agent_id is not None and type(from_agent_id) is not int):
        raise InvalidParameter("Les identifiants d'agent doivent être des nombres entiers.")
    target = db.session.get(Agent, agent_id)
    if target is None or not policies.can(current_user, "view", target):
        raise InvalidParameter("Cet agent n'existe pas ou ne fait pas partie de vos organisations.")
    if from_agent_id is None and len(rdv.agent_links) > 1:
        raise InvalidParameter("Ce rendez-vous a plusieurs agents : précisez lequel est remplacé (« from_agent_id »).")
    kept = [agent for agent in rdv.agents if from_agent_id is not None and agent.id not in (from_agent_id, agent_id)]
    return [target] + kept
