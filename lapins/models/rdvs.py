"""Rdvs (rendez-vous): who meets whom, when, where, and what became of it."""
from __future__ import annotations

import enum
import math
from datetime import datetime

from sqlalchemy import CheckConstraint, Column, Enum, ForeignKey, Index, String, Table, Text, event
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.agents import Agent
from lapins.models.motifs import LocationType, Motif
from lapins.models.territories import Lieu, Organisation, phone_to_call
from lapins.models.types import UTCDateTime, utcnow
from lapins.models.usagers import PostalAddress, Usager


class RdvStatus(enum.StrEnum):
    UNKNOWN = "unknown"
    SEEN = "seen"
    NOSHOW = "noshow"
    EXCUSED = "excused"  # cancelled by the family
    REVOKED = "revoked"  # cancelled by the service

    @property
    def label(self) -> str:
        return LABELS[self]

    @property
    def is_cancelled(self) -> bool:
        return self in CANCELLED_STATUSES


# An rdv cancelled by the family or by the service; any other status is a live rdv.
CANCELLED_STATUSES = (RdvStatus.EXCUSED, RdvStatus.REVOKED)


LABELS = {
    RdvStatus.UNKNOWN: "À renseigner",
    RdvStatus.SEEN: "Vu",
    RdvStatus.NOSHOW: "Absent non excusé",
    RdvStatus.EXCUSED: "Annulé par l'usager",
    RdvStatus.REVOKED: "Annulé par le service",
}

class CancellationChannel(enum.StrEnum):
    """Where a cancellation came from."""

    AGENDA = "agenda"  # an agent, on the rdv page
    LINK = "link"  # the family, on the page of its SMS/e-mail link
    SMS = "sms"  # the family, replying to an SMS
    API = "api"

    @property
    def label(self) -> str:
        return {"agenda": "depuis l'agenda", "link": "via le lien", "sms": "par SMS", "api": "via l'API"}[self.value]


class BookingChannel(enum.StrEnum):
    """How an rdv was booked: by an agent in the agenda, by the family taking a waiting-list offer or booking online
    (its number checked by SMS), or by another system through the API."""

    AGENDA = "agenda"
    OFFER = "offer"
    API = "api"
    IMPORT = "import"  # from the territory's previous tool (lapins.onboarding.history)
    ONLINE = "online"  # by the family on the public booking pages (lapins.public.online)

    @property
    def label(self) -> str:
        return {"agenda": "depuis l'agenda", "offer": "par la famille, en acceptant une proposition de la file "
                "d'attente", "api": "via l'API", "import": "dans l'outil précédent (historique importé)",
                "online": "en ligne"}[self.value]


class MoveChannel(enum.StrEnum):
    """Who moved an rdv, and where: an agent in the agenda, another system through the API, the family accepting a
    waiting-list offer or choosing a new slot on its link's page."""

    AGENDA = "agenda"
    API = "api"
    OFFER = "offer"
    LINK = "link"

    @property
    def label(self) -> str:
        return {"agenda": "depuis l'agenda", "api": "via l'API", "offer": "en acceptant une proposition",
                "link": "via le lien"}[self.value]


class Canceller(enum.StrEnum):
    """Who cancelled: an agent (recorded in cancelled_by_id), the family itself, or the system."""

    AGENT = "agent"
    FAMILY = "family"
    SYSTEM = "system"


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


def status_label(status: RdvStatus, starts_at: datetime) -> str:
    """What an agent reads: an rdv whose status is unknown is "à venir" until it starts, then "à renseigner"."""
    if status == RdvStatus.UNKNOWN and starts_at > utcnow():
        return "À venir"
    return status.label


rdv_usagers = Table(
    "rdv_usagers",
    db.metadata,
    Column("rdv_id", ForeignKey("rdvs.id", ondelete="CASCADE"), primary_key=True),
    Column("usager_id", ForeignKey("usagers.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Rdv(db.Model):
    __tablename__ = "rdvs"
    __table_args__ = (
        CheckConstraint("starts_at < ends_at", name="times_in_order"),
        # The statistics read an organisation's rdvs by month: "rdvs of organisation O between two instants, with
        # their status and cancellation time" without touching the table (lapins.stats.figures).
        Index("ix_rdvs_organisation_starts", "organisation_id", "starts_at", "status", "cancelled_at"),
        # An rdv imported from another tool keeps its id there: importing the same file again stores it once.
        Index("uq_rdvs_organisation_external", "organisation_id", "external_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    motif_id: Mapped[int] = mapped_column(ForeignKey("motifs.id"), index=True)
    lieu_id: Mapped[int | None] = mapped_column(ForeignKey("lieux.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[RdvStatus] = mapped_column(
        Enum(RdvStatus, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]),
        default=RdvStatus.UNKNOWN,
        index=True,
    )
    notes: Mapped[str | None] = mapped_column(Text)
    # Bumped whenever the family must be told again (time, lieu, cancellation): reminders are planned per revision.
    revision: Mapped[int] = mapped_column(default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    booked_via: Mapped[BookingChannel] = mapped_column(_enum(BookingChannel), default=BookingChannel.AGENDA,
                                                       server_default=BookingChannel.AGENDA.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    cancel_reason: Mapped[str | None] = mapped_column(String(255))
    cancelled_via: Mapped[CancellationChannel | None] = mapped_column(_enum(CancellationChannel))
    cancelled_by_party: Mapped[Canceller | None] = mapped_column(_enum(Canceller))
    # Set when the family answered OUI to a reminder (two-way SMS): the agent sees the rdv is expected.
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when an agent knowingly booked over another rdv or outside opening hours: recorded, never silent.
    forced_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    external_id: Mapped[str | None] = mapped_column(String(80))
    # A collective session (atelier) has a capacity: its participants are `participations`, not `usagers`, and
    # `places_taken` counts their live places, kept in step by booking under the agents' locks (the week grid
    # reads « 7/10 » from these two columns without counting rows).
    max_participants: Mapped[int | None] = mapped_column()
    places_taken: Mapped[int] = mapped_column(default=0, server_default="0")
    title: Mapped[str | None] = mapped_column(String(160))
    # « Ne prévenir que … » (issue 23.3): the one guardian of the rdv's child who gets its messages; None, both.
    notify_only_id: Mapped[int | None] = mapped_column(ForeignKey("usagers.id", ondelete="SET NULL"))
    # The guardian whose own link made the last family change (lapins.family): the other one is told of it.
    link_actor_id: Mapped[int | None] = mapped_column(ForeignKey("usagers.id", ondelete="SET NULL"))

    organisation: Mapped[Organisation] = relationship()
    motif: Mapped[Motif] = relationship()
    lieu: Mapped[Lieu | None] = relationship()
    created_by: Mapped[Agent | None] = relationship(foreign_keys=[created_by_id])
    cancelled_by: Mapped[Agent | None] = relationship(foreign_keys=[cancelled_by_id])
    forced_by: Mapped[Agent | None] = relationship(foreign_keys=[forced_by_id])
    agent_links: Mapped[list[RdvAgent]] = relationship(back_populates="rdv", cascade="all, delete-orphan")
    usagers: Mapped[list[Usager]] = relationship(secondary=rdv_usagers, order_by="Usager.birth_date")
    notify_only: Mapped[Usager | None] = relationship(foreign_keys=[notify_only_id])
    participations: Mapped[list[Participation]] = relationship(back_populates="rdv", order_by="Participation.id",
                                                               cascade="all, delete-orphan")

    @property
    def is_session(self) -> bool:
        return self.max_participants is not None

    @property
    def live_participations(self) -> list[Participation]:
        return [p for p in self.participations if p.is_live]

    @property
    def places_left(self) -> int:
        return max((self.max_participants or 0) - self.places_taken, 0)

    @property
    def guardians(self) -> list[Usager]:
        """The responsible adults of the rdv's children, each once, in order."""
        found: list[Usager] = []
        for usager in self.usagers:
            found += [guardian for guardian in usager.guardians if guardian not in found]
        return found

    @property
    def agents(self) -> list[Agent]:
        return [link.agent for link in self.agent_links]

    @property
    def phone_to_call(self) -> str | None:
        return phone_to_call(self.lieu, self.organisation)

    @property
    def home_address(self) -> PostalAddress | None:
        """Where a home visit goes: the first of its usagers with an address (a child's is its responsible
        person's). For agents' eyes and their opted-in calendars only: never in a family's message."""
        if self.motif.location_type != LocationType.HOME:
            return None
        return next((address for usager in self.usagers if (address := usager.postal_address) is not None), None)

    @property
    def is_live(self) -> bool:
        return not self.status.is_cancelled

    @property
    def status_label(self) -> str:
        return status_label(self.status, self.starts_at)

    @property
    def cancelled_hours_before(self) -> int | None:
        """Whole hours between the cancellation and the rdv's start (negative when cancelled after it started).

        Derived rather than stored: both instants are kept, and statistics can compute it in SQL the same way.
        """
        if self.cancelled_at is None:
            return None
        return math.floor((self.starts_at - self.cancelled_at).total_seconds() / 3600)

    def set_agents(self, agents: list[Agent]) -> None:
        wanted = {agent.id for agent in agents}
        self.agent_links = [link for link in self.agent_links if link.agent_id in wanted]
        present = {link.agent_id for link in self.agent_links}
        for agent in agents:
            if agent.id not in present:
                self.agent_links.append(RdvAgent(agent=agent, agent_id=agent.id))

    def __repr__(self) -> str:
        return f"<Rdv {self.id}>"


class RdvAgent(db.Model):
    """Link between an rdv and one of its agents, carrying a copy of the rdv's times and liveness.

    The copy makes "what is this agent busy with between A and B" one index range scan on
    (agent_id, starts_at), whatever the size of the rdvs table. It is kept in step by a before_flush hook.
    """

    __tablename__ = "rdv_agents"
    # Covering: "this agent's live times between A and B" (availability, the statistics' re-bookings) is read from
    # the index alone.
    __table_args__ = (Index("ix_rdv_agents_agent_starts", "agent_id", "starts_at", "ends_at", "live", "rdv_id"),)

    rdv_id: Mapped[int] = mapped_column(ForeignKey("rdvs.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    live: Mapped[bool] = mapped_column(default=True)

    rdv: Mapped[Rdv] = relationship(back_populates="agent_links")
    agent: Mapped[Agent] = relationship()


@event.listens_for(Session, "before_flush")
def _copy_rdv_times_to_agent_links(session: Session, flush_context, instances) -> None:
    for obj in list(session.new) + list(session.dirty):
        rdv = obj if isinstance(obj, Rdv) else obj.rdv if isinstance(obj, RdvAgent) else None
        if rdv is None:
            continue
        for link in rdv.agent_links:
            link.starts_at, link.ends_at, link.live = rdv.starts_at, rdv.ends_at, rdv.is_live


class RdvLinkCheck(db.Model):
    """Wrong answers to the identity check of an rdv's family link, counted in the database so that the limit
    holds across every web worker; `locked_until` is set when too many came in a row. Each guess is counted before
    it is checked, and a right one clears the count (lapins.family.services.take_try)."""

    __tablename__ = "rdv_link_checks"

    rdv_id: Mapped[int] = mapped_column(ForeignKey("rdvs.id", ondelete="CASCADE"), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RdvMove(db.Model):
    """A family moving its own rdv from its link: counted against the motif's limit, and in the statistics apart
    from cancellations (« déplacé par la famille »)."""

    __tablename__ = "rdv_moves"

    id: Mapped[int] = mapped_column(primary_key=True)
    rdv_id: Mapped[int] = mapped_column(ForeignKey("rdvs.id", ondelete="CASCADE"), index=True)
    via: Mapped[MoveChannel] = mapped_column(_enum(MoveChannel))
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    to_starts_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def notice_hours(self) -> int:
        """Whole hours between the move and the time the family left (derived, as for cancellations)."""
        return math.floor((self.from_starts_at - self.moved_at).total_seconds() / 3600)


class ParticipationStatus(enum.StrEnum):
    """One family's place in a collective session: registered until the day, then present or absent; excused
    when the place was cancelled (by the family or an agent)."""

    REGISTERED = "registered"
    PRESENT = "present"
    ABSENT = "absent"
    EXCUSED = "excused"

    @property
    def label(self) -> str:
        return {"registered": "Inscrit", "present": "Présent", "absent": "Absent",
                "excused": "Excusé"}[self.value]


participation_usagers = Table(
    "participation_usagers",
    db.metadata,
    Column("participation_id", ForeignKey("rdv_participations.id", ondelete="CASCADE"), primary_key=True),
    Column("usager_id", ForeignKey("usagers.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Participation(db.Model):
    """A family's place(s) in a collective session: the people who come (a parent, a baby), their own status, their
    own messages and link. `places` is what they count against the capacity (1 per family, or 1 per person, as the
    motif says), fixed when they were added."""

    __tablename__ = "rdv_participations"
    __table_args__ = (Index("ix_rdv_participations_rdv_status", "rdv_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rdv_id: Mapped[int] = mapped_column(ForeignKey("rdvs.id", ondelete="CASCADE"))
    # Who is told: the responsible adult of the family.
    usager_id: Mapped[int] = mapped_column(ForeignKey("usagers.id", ondelete="CASCADE"), index=True)
    places: Mapped[int] = mapped_column(default=1)
    status: Mapped[ParticipationStatus] = mapped_column(_enum(ParticipationStatus),
                                                        default=ParticipationStatus.REGISTERED)
    via: Mapped[BookingChannel] = mapped_column(_enum(BookingChannel), default=BookingChannel.AGENDA)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by_party: Mapped[Canceller | None] = mapped_column(_enum(Canceller))
    cancelled_via: Mapped[CancellationChannel | None] = mapped_column(_enum(CancellationChannel))

    rdv: Mapped[Rdv] = relationship(back_populates="participations")
    usager: Mapped[Usager] = relationship()
    usagers: Mapped[list[Usager]] = relationship(secondary=participation_usagers, order_by="Usager.birth_date")

    @property
    def is_live(self) -> bool:
        return self.status != ParticipationStatus.EXCUSED

    def __repr__(self) -> str:
        return f"<Participation {self.id}>"
