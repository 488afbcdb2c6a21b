"""Monthly figures of an organisation or a territory: rdvs, no-shows, cancellations, moves by families, re-bookings,
waiting-list offers, SMS — computed in SQL.

Months are the territory's local months. Their bounds (local midnight of each 1st, as UTC instants) are computed in
Python with zoneinfo, and each row is put in its month by a CASE over those bounds: the same SQL on SQLite and
PostgreSQL, right across DST changes and for overseas zones, and the GROUP BY stays in the database.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Float, and_, case, exists, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import FunctionElement

from lapins.infra.extensions import db
from lapins.models import (
    Agent, AgentRole, Channel, Lieu, Message, MessageStatus, Motif, MotifCatalogueEntry, OfferStatus, Organisation, Rdv,
    RdvAgent, RdvStatus, SlotOffer, WaitlistSlot,
)
from lapins.models.rdvs import (
    CANCELLED_STATUSES, BookingChannel, MoveChannel, Participation, ParticipationStatus, RdvMove,
)
from lapins.slots.engine import local_midnight

LATE_CANCELLATION_HOURS = 48
MAX_MONTHS = 36
MAX_RDV_HOURS = 24


@dataclass(frozen=True)
class Scope:
    """Whose figures: the organisations counted, and the territory whose zone draws the months."""

    territory_id: int
    timezone: str
    organisation_ids: tuple[int, ...]
    whole_territory: bool = False  # messages not tied to an rdv then count too

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Filters:
    first_month: date  # the 1st of the first month
    last_month: date  # the 1st of the last month (included)
    lieu_id: int | None = None
    agent_id: int | None = None
    motif_id: int | None = None

    @property
    def months(self) -> list[date]:
        return months_between(self.first_month, self.last_month)

    def as_params(self) -> dict:
        return {"du": f"{self.first_month:%Y-%m}", "au": f"{self.last_month:%Y-%m}", "lieu": self.lieu_id,
                "agent": self.agent_id, "motif": self.motif_id}


@dataclass
class MonthFigures:
    month: date
    rdvs: int = 0
    seen: int = 0
    noshow: int = 0
    excused: int = 0  # cancelled by the family
    revoked: int = 0  # cancelled by the service
    late_cancellations: int = 0  # by the family, less than 48 h before
    family_moves: int = 0  # moved by the family from its link, apart from cancellations
    rebooked: int = 0  # cancelled rdvs whose time was booked again afterwards
    rebook_seconds: list[float] = field(default_factory=list)
    offers: int = 0  # freed slots offered to waiting families (one family, one offer)
    offers_accepted: int = 0
    sms_sent: int = 0
    sms_segments: int = 0
    # Collective sessions held or to come (not cancelled) and their places; a session is also one of `rdvs`.
    sessions: int = 0
    places_offered: int = 0
    places_taken: int = 0
    places_present: int = 0
    places_absent: int = 0
    # Rdvs by the channel they were booked through (BookingChannel values: agenda, online, offer, api, import).
    by_channel: dict[str, int] = field(default_factory=dict)

    @property
    def noshow_rate(self) -> float | None:
        known = self.seen + self.noshow
        return self.noshow / known if known else None

    @property
    def cancellation_rate(self) -> float | None:
        return (self.excused + self.revoked) / self.rdvs if self.rdvs else None

    @property
    def family_cancellation_rate(self) -> float | None:
        return self.excused / self.rdvs if self.rdvs else None

    @property
    def service_cancellation_rate(self) -> float | None:
        return self.revoked / self.rdvs if self.rdvs else None

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted offers ÷ offers made (those still awaiting an answer included)."""
        return self.offers_accepted / self.offers if self.offers else None

    @property
    def fill_rate(self) -> float | None:
        """Places taken ÷ places offered, in the sessions not cancelled."""
        return self.places_taken / self.places_offered if self.places_offered else None

    @property
    def session_noshow_rate(self) -> float | None:
        """Places absent ÷ places whose attendance was marked (present or absent)."""
        known = self.places_present + self.places_absent
        return self.places_absent / known if known else None

    @property
    def median_rebook_hours(self) -> float | None:
        return statistics.median(self.rebook_seconds) / 3600 if self.rebook_seconds else None


def months_between(first: date, last: date) -> list[date]:
    months, month = [], first.replace(day=1)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def default_filters(today: date) -> Filters:
    """The last twelve months, the current one included."""
    last = today.replace(day=1)
    return Filters(first_month=add_months(last, -11), last_month=last)


def history_bounds(scope: Scope, today: date) -> tuple[date, date]:
    """The months a period may be chosen in: from the month of the scope's first rdv (imported history included) to
    the month of its last one, never less than the twelve months up to the current one."""
    first, last = db.session.execute(select(func.min(Rdv.starts_at), func.max(Rdv.starts_at))
                                     .where(Rdv.organisation_id.in_(scope.organisation_ids))).one()
    default = default_filters(today)
    first_month = min(default.first_month, _local_month(first, scope.tz)) if first else default.first_month
    last_month = max(default.last_month, _local_month(last, scope.tz)) if last else default.last_month
    return first_month, last_month


def _local_month(instant: datetime, tz: ZoneInfo) -> date:
    if instant.tzinfo is None:  # SQLite hands back naive UTC from an aggregate
        instant = instant.replace(tzinfo=ZoneInfo("UTC"))
    return instant.astimezone(tz).date().replace(day=1)


# --- SQL helpers ---------------------------------------------------------------------------------------------

def month_bounds(months: list[date], tz: ZoneInfo) -> list[datetime]:
    """UTC instants of local midnight on the 1st of each month, and of the month after the last one."""
    return [local_midnight(month, tz) for month in months] + [local_midnight(next_month(months[-1]), tz)]


def month_bucket(column, bounds: list[datetime]) -> ColumnElement[int]:
    """The index of the month an instant falls in (0 for the first); rows must already lie within the bounds."""
    return case(*[(column < bound, index) for index, bound in enumerate(bounds[1:])], else_=None)


class seconds_between(FunctionElement):
    """`later - earlier` in seconds, to the millisecond (SQLite has no interval type, PostgreSQL has no julianday)."""

    type = Float()
    inherit_cache = True


@compiles(seconds_between)
def _seconds_between_default(element, compiler, **kw):
    later, earlier = (compiler.process(argument, **kw) for argument in element.clauses)
    return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element, compiler, **kw):
    later, earlier = (compiler.process(argument, **kw) for argument in element.clauses)
    return f"ROUND((julianday({later}) - julianday({earlier})) * 86400.0, 3)"


class hours_earlier(FunctionElement):
    """An instant some hours before another, computed by the database; only used to bound index range scans."""

    inherit_cache = True

    def __init__(self, instant, hours: int):
        self.hours = int(hours)
        super().__init__(instant)


@compiles(hours_earlier)
def _hours_earlier_default(element, compiler, **kw):
    return f"({compiler.process(element.clauses, **kw)} - INTERVAL '{element.hours} hours')"


@compiles(hours_earlier, "sqlite")
def _hours_earlier_sqlite(element, compiler, **kw):
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' text; datetime() answers the same text without the fraction,
    # which compares as the start of that second: fine for the lower bound of a range.
    return f"datetime({compiler.process(element.clauses, **kw)}, '-{element.hours} hours')"


class not_by_index(FunctionElement):
    """A column that SQLite's planner may not look up by an index (`+column`, its documented way); itself elsewhere."""

    inherit_cache = True

    def __init__(self, column):
        self.type = column.type
        super().__init__(column)


@compiles(not_by_index)
def _not_by_index_default(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


@compiles(not_by_index, "sqlite")
def _not_by_index_sqlite(element, compiler, **kw):
    return f"+{compiler.process(element.clauses, **kw)}"


def _rdv_conditions(scope: Scope, filters: Filters, bounds: list[datetime] | None) -> list[ColumnElement[bool]]:
    """The rdvs of the scope matching the filters (and starting within the bounds, when given)."""
    conditions = [Rdv.organisation_id.in_(scope.organisation_ids)]
    if bounds is not None:
        conditions += [Rdv.starts_at >= bounds[0], Rdv.starts_at < bounds[-1]]
    if filters.lieu_id is not None:
        conditions.append(Rdv.lieu_id == filters.lieu_id)
    if filters.motif_id is not None:
        conditions.append(Rdv.motif_id == filters.motif_id)
    if filters.agent_id is not None:
        conditions.append(exists().where(RdvAgent.rdv_id == Rdv.id, RdvAgent.agent_id == filters.agent_id))
    return conditions


def rebookings(scope: Scope, filters: Filters, bounds: list[datetime]):
    """One row per cancelled rdv of the period whose time was booked again: its month, when it was cancelled, and
    when its time was first booked again — the earliest creation of a live rdv of one of its agents that overlaps it
    and was created after the cancellation. Cancelled rdvs whose time nobody took do not come out.

    One grouped join rather than a subquery per cancelled rdv: the cancelled rdvs of the period (index
    ix_rdvs_organisation_starts), their agents (the primary key of rdv_agents), the live rdvs of those agents around
    them (an index range on rdv_agents(agent_id, starts_at)) and the creation time of those (primary key).
    The cancelled rdvs are a MATERIALIZED CTE, and SQLite may not look up `live` by index: left free, its planner
    sometimes starts from every rdv_agents row, or builds an automatic index on (agent_id, live) and reads all of an
    agent's rdvs for each cancelled one — minutes instead of a second on 200,000 rdvs of few agents.
    """
    cancelled = (select(Rdv.id, Rdv.starts_at, Rdv.ends_at, Rdv.cancelled_at)
                 .where(*_rdv_conditions(scope, filters, bounds),
                        Rdv.status.in_(CANCELLED_STATUSES), Rdv.cancelled_at.is_not(None))
                 .cte("cancelled").prefix_with("MATERIALIZED"))
    mine, theirs, other = aliased(RdvAgent), aliased(RdvAgent), aliased(Rdv)
    overlapping = and_(theirs.agent_id == mine.agent_id, not_by_index(theirs.live).is_(True),
                       theirs.starts_at < cancelled.c.ends_at, theirs.ends_at > cancelled.c.starts_at,
                       # A lower bound keeps the index range short: rdvs last less than a day, so one that overlaps
                       # started less than a day before.
                       theirs.starts_at >= hours_earlier(cancelled.c.starts_at, MAX_RDV_HOURS))
    return (select(month_bucket(cancelled.c.starts_at, bounds).label("month"), cancelled.c.cancelled_at,
                   func.min(other.created_at).label("rebooked_at"))
            .select_from(cancelled)
            .join(mine, mine.rdv_id == cancelled.c.id)
            .join(theirs, overlapping)
            .join(other, and_(other.id == theirs.rdv_id, other.id != cancelled.c.id,
                              other.created_at > cancelled.c.cancelled_at))
            .group_by(cancelled.c.id, cancelled.c.starts_at, cancelled.c.cancelled_at))


# --- The figures ---------------------------------------------------------------------------------------------

def monthly_figures(scope: Scope, filters: Filters) -> list[MonthFigures]:
    months = filters.months
    bounds = month_bounds(months, scope.tz)
    figures = [MonthFigures(month) for month in months]
    count_rdvs(figures, scope, filters, bounds)
    count_rebookings(figures, scope, filters, bounds)
    _count_family_moves(figures, scope, filters, bounds)
    _count_offers(figures, scope, filters, bounds)
    _count_sms(figures, scope, filters, bounds)
    _count_sessions(figures, scope, filters, bounds)
    return figures


def totals(figures: list[MonthFigures]) -> MonthFigures:
    total = MonthFigures(figures[0].month if figures else date.today())
    for month in figures:
        for name in ("rdvs", "seen", "noshow", "excused", "revoked", "late_cancellations", "family_moves", "rebooked",
                     "offers", "offers_accepted", "sms_sent", "sms_segments", "sessions", "places_offered",
                     "places_taken", "places_present", "places_absent"):
            setattr(total, name, getattr(total, name) + getattr(month, name))
        total.rebook_seconds.extend(month.rebook_seconds)
        for channel, count in month.by_channel.items():
            total.by_channel[channel] = total.by_channel.get(channel, 0) + count
    return total


def count_rdvs(figures: list[MonthFigures], scope: Scope, filters: Filters, bounds: list[datetime]) -> None:
    late = and_(Rdv.status == RdvStatus.EXCUSED, Rdv.cancelled_at.is_not(None),
                seconds_between(Rdv.starts_at, Rdv.cancelled_at) < LATE_CANCELLATION_HOURS * 3600)
    rows = (select(month_bucket(Rdv.starts_at, bounds).label("month"), Rdv.status.label("status"),
                   Rdv.booked_via.label("via"), case((late, 1), else_=0).label("late"))
            .where(*_rdv_conditions(scope, filters, bounds)).subquery())
    query = (select(rows.c.month, rows.c.status, rows.c.via, func.count(), func.sum(rows.c.late))
             .group_by(rows.c.month, rows.c.status, rows.c.via))
    for month, status, via, count, late_count in db.session.execute(query):
        month_figures = figures[month]
        month_figures.rdvs += count
        channel = str(via or BookingChannel.AGENDA)
        month_figures.by_channel[channel] = month_figures.by_channel.get(channel, 0) + count
        if status == RdvStatus.SEEN:
            month_figures.seen += count
        elif status == RdvStatus.NOSHOW:
            month_figures.noshow += count
        elif status == RdvStatus.EXCUSED:
            month_figures.excused += count
            month_figures.late_cancellations += int(late_count or 0)
        elif status == RdvStatus.REVOKED:
            month_figures.revoked += count


def _count_sessions(figures: list[MonthFigures], scope: Scope, filters: Filters, bounds: list[datetime]) -> None:
    """Per month, the collective sessions not cancelled, their places offered and taken (booking keeps
    `places_taken`), and the places marked present or absent."""
    live = [*_rdv_conditions(scope, filters, bounds), Rdv.max_participants.is_not(None),
            Rdv.status.not_in(CANCELLED_STATUSES)]
    month = month_bucket(Rdv.starts_at, bounds)
    for bucket, count, offered, taken in db.session.execute(
            select(month, func.count(), func.sum(Rdv.max_participants), func.sum(Rdv.places_taken))
            .where(*live).group_by(month)):
        figures[bucket].sessions += count
        figures[bucket].places_offered += int(offered or 0)
        figures[bucket].places_taken += int(taken or 0)
    marked = (select(month, Participation.status, func.sum(Participation.places))
              .join(Participation, Participation.rdv_id == Rdv.id)
              .where(*live, Participation.status.in_([ParticipationStatus.PRESENT, ParticipationStatus.ABSENT]))
              .group_by(month, Participation.status))
    for bucket, status, places in db.session.execute(marked):
        if status == ParticipationStatus.PRESENT:
            figures[bucket].places_present += int(places or 0)
        else:
            figures[bucket].places_absent += int(places or 0)


@dataclass(frozen=True)
class SessionFigures:
    """One collective session's places, for the statistics page and its export."""

    id: int
    starts_at: datetime
    title: str
    lieu: str | None
    cancelled: bool
    offered: int
    taken: int
    present: int
    absent: int

    @property
    def fill_rate(self) -> float | None:
        return self.taken / self.offered if self.offered else None

    @property
    def noshow_rate(self) -> float | None:
        known = self.present + self.absent
        return self.absent / known if known else None


MAX_SESSIONS_LISTED = 500


def session_figures(scope: Scope, filters: Filters) -> list[SessionFigures]:
    """The sessions of the period, each with its places (latest first, at most MAX_SESSIONS_LISTED)."""
    bounds = month_bounds(filters.months, scope.tz)
    present = func.sum(case((Participation.status == ParticipationStatus.PRESENT, Participation.places), else_=0))
    absent = func.sum(case((Participation.status == ParticipationStatus.ABSENT, Participation.places), else_=0))
    query = (select(Rdv.id, Rdv.starts_at, func.coalesce(Rdv.title, Motif.name), Lieu.name, Rdv.status,
                    Rdv.max_participants, Rdv.places_taken, present, absent)
             .join(Motif, Motif.id == Rdv.motif_id).outerjoin(Lieu, Lieu.id == Rdv.lieu_id)
             .outerjoin(Participation, Participation.rdv_id == Rdv.id)
             .where(*_rdv_conditions(scope, filters, bounds), Rdv.max_participants.is_not(None))
             .group_by(Rdv.id, Rdv.starts_at, Rdv.title, Motif.name, Lieu.name, Rdv.status, Rdv.max_participants,
                       Rdv.places_taken)
             .order_by(Rdv.starts_at.desc()).limit(MAX_SESSIONS_LISTED))
    return [SessionFigures(id=row[0], starts_at=row[1], title=row[2], lieu=row[3], cancelled=row[4].is_cancelled,
                           offered=row[5], taken=row[6], present=int(row[7] or 0), absent=int(row[8] or 0))
            for row in db.session.execute(query)]


@dataclass
class CatalogueFigures:
    """One catalogue motif in one organisation over the period (issue 23.6): the same motif compared across the
    organisations that adopted it."""

    entry_id: int
    entry: str
    organisation: str
    rdvs: int = 0
    seen: int = 0
    noshow: int = 0

    @property
    def noshow_rate(self) -> float | None:
        known = self.seen + self.noshow
        return self.noshow / known if known else None


def catalogue_figures(scope: Scope, filters: Filters) -> list[CatalogueFigures]:
    """Per catalogue entry, per organisation of the scope that adopted it (or linked a motif to it): its rdvs of the
    period, seen and missed; an organisation whose motif had no rdv comes out with zeros."""
    bounds = month_bounds(filters.months, scope.tz)
    rows: dict[tuple[int, int], CatalogueFigures] = {}
    adopted = (select(MotifCatalogueEntry.id, MotifCatalogueEntry.name, Organisation.id, Organisation.name)
               .join(Motif, Motif.catalogue_id == MotifCatalogueEntry.id)
               .join(Organisation, Organisation.id == Motif.organisation_id)
               .where(Motif.organisation_id.in_(scope.organisation_ids)).distinct())
    if filters.motif_id is not None:
        adopted = adopted.where(Motif.id == filters.motif_id)
    for entry_id, entry, organisation_id, organisation in db.session.execute(adopted):
        rows[entry_id, organisation_id] = CatalogueFigures(entry_id, entry, organisation)
    counted = (select(Motif.catalogue_id, Rdv.organisation_id, Rdv.status, func.count())
               .join(Motif, Motif.id == Rdv.motif_id)
               .where(*_rdv_conditions(scope, filters, bounds), Motif.catalogue_id.is_not(None))
               .group_by(Motif.catalogue_id, Rdv.organisation_id, Rdv.status))
    for entry_id, organisation_id, status, count in db.session.execute(counted):
        row = rows.get((entry_id, organisation_id))
        if row is None:  # an rdv booked in another organisation than its motif's: not one of the compared motifs
            continue
        row.rdvs += count
        if status == RdvStatus.SEEN:
            row.seen += count
        elif status == RdvStatus.NOSHOW:
            row.noshow += count
    return sorted(rows.values(), key=lambda row: (row.entry.lower(), row.entry_id, row.organisation.lower()))


def count_rebookings(figures: list[MonthFigures], scope: Scope, filters: Filters, bounds: list[datetime]) -> None:
    """Per re-booked rdv, the delay from its cancellation; the median is taken here (no portable SQL median)."""
    for month, cancelled_at, rebooked_at in db.session.execute(rebookings(scope, filters, bounds)):
        figures[month].rebooked += 1
        figures[month].rebook_seconds.append((rebooked_at - cancelled_at).total_seconds())


def _count_family_moves(figures: list[MonthFigures], scope: Scope, filters: Filters, bounds: list[datetime]) -> None:
    """Moves a family made from its link, in the month of the time it left (as a cancellation counts in the month of
    its rdv); the filters apply to the rdv as it is now."""
    rows = (select(month_bucket(RdvMove.from_starts_at, bounds).label("month"))
            .join(Rdv, Rdv.id == RdvMove.rdv_id)
            .where(RdvMove.via == MoveChannel.LINK, RdvMove.from_starts_at >= bounds[0],
                   RdvMove.from_starts_at < bounds[-1], *_rdv_conditions(scope, filters, None))
            .subquery())
    for month, count in db.session.execute(select(rows.c.month, func.count()).group_by(rows.c.month)):
        figures[month].family_moves += count


def _count_offers(figures: list[MonthFigures], scope: Scope, filters: Filters, bounds: list[datetime]) -> None:
    """Offers of freed slots to waiting families, and those accepted.

    An offer counts in the month its slot starts, not the month it was sent or answered: the same month as the
    cancelled rdv that freed the slot and as the rdv booked in it, so that a month's cancellations, re-bookings and
    offers are read together. The filters apply to the slot: its organisation, lieu, motif and agent.
    """
    conditions = [WaitlistSlot.organisation_id.in_(scope.organisation_ids), WaitlistSlot.starts_at >= bounds[0],
                  WaitlistSlot.starts_at < bounds[-1]]
    if filters.lieu_id is not None:
        conditions.append(WaitlistSlot.lieu_id == filters.lieu_id)
    if filters.motif_id is not None:
        conditions.append(WaitlistSlot.motif_id == filters.motif_id)
    if filters.agent_id is not None:
        conditions.append(WaitlistSlot.agent_id == filters.agent_id)
    rows = (select(month_bucket(WaitlistSlot.starts_at, bounds).label("month"),
                   case((SlotOffer.status == OfferStatus.ACCEPTED, 1), else_=0).label("accepted"))
            .select_from(SlotOffer).join(WaitlistSlot, WaitlistSlot.id == SlotOffer.slot_id)
            .where(*conditions).subquery())
    for month, count, accepted in db.session.execute(
            select(rows.c.month, func.count(), func.sum(rows.c.accepted)).group_by(rows.c.month)):
        figures[month].offers += count
        figures[month].offers_accepted += int(accepted or 0)


def _count_sms(figures: list[MonthFigures], scope: Scope, filters: Filters, bounds: list[datetime]) -> None:
    sent_at = func.coalesce(Message.sent_at, Message.due_at)
    conditions = [Message.channel == Channel.SMS, Message.status.in_([MessageStatus.SENT, MessageStatus.DELIVERED]),
                  Message.territory_id == scope.territory_id, sent_at >= bounds[0], sent_at < bounds[-1]]
    unfiltered = filters.lieu_id is None and filters.agent_id is None and filters.motif_id is None
    if not (scope.whole_territory and unfiltered):
        # A message counts in the month it was sent, whenever its rdv is.
        conditions.append(Message.rdv_id.in_(select(Rdv.id).where(*_rdv_conditions(scope, filters, None))))
    rows = (select(month_bucket(sent_at, bounds).label("month"), func.coalesce(Message.segments, 1).label("segments"))
            .where(*conditions).subquery())
    for month, count, segments in db.session.execute(
            select(rows.c.month, func.count(), func.sum(rows.c.segments)).group_by(rows.c.month)):
        figures[month].sms_sent += count
        figures[month].sms_segments += int(segments or 0)


# --- Filter choices ------------------------------------------------------------------------------------------

def filter_choices(organisation_ids: tuple[int, ...]) -> dict[str, list[tuple[int, str]]]:
    """Lieux, agents and motifs the page can be filtered by: those of the scope's organisations."""
    lieux = db.session.execute(select(Lieu.id, Lieu.name).where(Lieu.organisation_id.in_(organisation_ids))
                               .order_by(Lieu.name)).all()
    motifs = db.session.execute(select(Motif.id, Motif.name).where(Motif.organisation_id.in_(organisation_ids))
                                .order_by(Motif.name)).all()
    members = select(AgentRole.agent_id).where(AgentRole.organisation_id.in_(organisation_ids))
    agents = db.session.execute(select(Agent.id, Agent.first_name, Agent.last_name).where(Agent.id.in_(members))
                                .order_by(Agent.last_name, Agent.first_name)).all()
    return {"lieu": [(row.id, row.name) for row in lieux], "motif": [(row.id, row.name) for row in motifs],
            "agent": [(row.id, f"{row.first_name} {row.last_name}") for row in agents]}


# --- What people read ----------------------------------------------------------------------------------------

MONTHS = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre",
          "décembre"]


# The columns of the channels' table, in order: who booked (an agent, the family online or taking an offer, another
# system through the API, the previous tool's history).
CHANNEL_COLUMNS = (("agenda", "Par un agent"), ("online", "En ligne"), ("offer", "Proposition acceptée"),
                   ("api", "API"), ("import", "Historique importé"))


def month_label(month: date) -> str:
    return f"{MONTHS[month.month - 1]} {month.year}"


CHART_SERIES = (("Taux d’absence", "noshow_rate"), ("Taux d’annulation", "cancellation_rate"),
                 ("Taux d’acceptation des propositions", "acceptance_rate"))


def chart_series(figures: list[MonthFigures]) -> dict[str, list]:
    """No-show, cancellation and offer acceptance rates (in %) for the DSFR line chart; an empty month is a gap."""
    labels = [f"{month.month:%m/%Y}" for month in figures]
    rates = [[None if getattr(month, rate) is None else round(getattr(month, rate) * 100, 1) for month in figures]
             for _, rate in CHART_SERIES]
    return {"x": [labels] * len(CHART_SERIES), "y": rates, "name": [name for name, _ in CHART_SERIES]}


def format_percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}".replace(".", ",") + "\u00a0%"


def format_hours(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 48:
        return f"{value:.1f}".replace(".", ",") + "\u00a0h"
    return f"{value / 24:.1f}".replace(".", ",") + "\u00a0j"
