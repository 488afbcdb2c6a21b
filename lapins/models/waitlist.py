"""The waiting list (file d'attente), the slots that cancellations free for it, and the offers made of them."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Column, Enum, ForeignKey, Index, Table, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.agents import Agent
from lapins.models.motifs import Motif
from lapins.models.rdvs import Rdv
from lapins.models.territories import Lieu, Organisation
from lapins.models.types import UTCDateTime, utcnow
from lapins.models.usagers import Usager


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class EntryStatus(enum.StrEnum):
    ACTIVE = "active"
    FULFILLED = "fulfilled"  # the family took an offered slot
    WITHDRAWN = "withdrawn"  # an agent took the family off the list
    LAPSED = "lapsed"  # the rdv it wanted earlier was cancelled by the family, or has come

    @property
    def label(self) -> str:
        return {"active": "En attente", "fulfilled": "Satisfaite", "withdrawn": "Retirée",
                "lapsed": "Sans objet"}[self.value]


class EntrySource(enum.StrEnum):
    AGENT = "agent"
    FAMILY = "family"  # from the family's link page: "tell me of an earlier slot"
    ONLINE = "online"  # from the online booking pages, when no slot fits (its number checked by SMS)


class WaitlistEntry(db.Model):
    """A family waiting for a slot of a motif (at a lieu, if named); with `rdv`, it wants one earlier than that."""

    __tablename__ = "waitlist_entries"
    __table_args__ = (Index("ix_waitlist_entries_match", "organisation_id", "motif_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    usager_id: Mapped[int] = mapped_column(ForeignKey("usagers.id", ondelete="CASCADE"), index=True)
    motif_id: Mapped[int] = mapped_column(ForeignKey("motifs.id"))
    lieu_id: Mapped[int | None] = mapped_column(ForeignKey("lieux.id"))
    rdv_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id", ondelete="SET NULL"))
    # A family waiting for a place in this collective session (full when it asked), not for any slot.
    session_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id", ondelete="CASCADE"), index=True)
    priority: Mapped[int] = mapped_column(default=0)
    source: Mapped[EntrySource] = mapped_column(_enum(EntrySource), default=EntrySource.AGENT)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    status: Mapped[EntryStatus] = mapped_column(_enum(EntryStatus), default=EntryStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organisation: Mapped[Organisation] = relationship()
    usager: Mapped[Usager] = relationship()
    motif: Mapped[Motif] = relationship()
    lieu: Mapped[Lieu | None] = relationship()
    rdv: Mapped[Rdv | None] = relationship(foreign_keys=[rdv_id])
    session: Mapped[Rdv | None] = relationship(foreign_keys=[session_id])
    created_by: Mapped[Agent | None] = relationship()

    def __repr__(self) -> str:
        return f"<WaitlistEntry {self.id}>"


class SlotStatus(enum.StrEnum):
    OPEN = "open"  # to be offered (now, or when quiet hours end, or when a hold ends)
    TAKEN = "taken"  # a family accepted it
    CLOSED = "closed"  # too close to its start, booked by an agent, or nobody left to offer it to


waitlist_slot_agents = Table(
    "waitlist_slot_agents",
    db.metadata,
    Column("slot_id", ForeignKey("waitlist_slots.id", ondelete="CASCADE"), primary_key=True),
    Column("agent_id", ForeignKey("agents.id"), primary_key=True, index=True),
)


class WaitlistSlot(db.Model):
    """A time a cancellation (or an rdv moved earlier from an offer) left free, to reallocate.

    The slot needs every one of its `agents`: a joint consultation (a puéricultrice and a médecin) is offered as one
    slot with both. `agent_id` is the first of them, kept for the board and for finding the slot again.
    """

    __tablename__ = "waitlist_slots"
    __table_args__ = (Index("ix_waitlist_slots_status_starts", "status", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    motif_id: Mapped[int] = mapped_column(ForeignKey("motifs.id"))
    lieu_id: Mapped[int | None] = mapped_column(ForeignKey("lieux.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source_rdv_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id", ondelete="SET NULL"))
    # A place freed in a collective session: offered to the families waiting for that session only.
    session_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id", ondelete="CASCADE"), index=True)
    status: Mapped[SlotStatus] = mapped_column(_enum(SlotStatus), default=SlotStatus.OPEN)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organisation: Mapped[Organisation] = relationship()
    motif: Mapped[Motif] = relationship()
    lieu: Mapped[Lieu | None] = relationship()
    agent: Mapped[Agent] = relationship()
    agents: Mapped[list[Agent]] = relationship(secondary=waitlist_slot_agents, order_by="Agent.id")
    session: Mapped[Rdv | None] = relationship(foreign_keys=[session_id])

    @property
    def agent_ids(self) -> list[int]:
        return [agent.id for agent in self.agents] or [self.agent_id]

    def __repr__(self) -> str:
        return f"<WaitlistSlot {self.id}>"


class OfferStatus(enum.StrEnum):
    HELD = "held"  # sent, the slot held for this family until held_until
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    VOID = "void"  # the slot went another way (an agent booked it) while held

    @property
    def label(self) -> str:
        return {"held": "En attente de réponse", "accepted": "Acceptée", "declined": "Refusée",
                "expired": "Expirée", "void": "Annulée"}[self.value]


class SlotOffer(db.Model):
    """One freed slot offered to one waiting family, held for it until `held_until`."""

    __tablename__ = "slot_offers"
    __table_args__ = (
        # At most one hold per slot, whatever the number of workers offering at once.
        Index("uq_slot_offers_one_hold", "slot_id", unique=True,
              sqlite_where=text("status = 'held'"), postgresql_where=text("status = 'held'")),
        Index("ix_slot_offers_status_held_until", "status", "held_until"),
        Index("ix_slot_offers_usager_offered", "usager_id", "offered_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("waitlist_slots.id", ondelete="CASCADE"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("waitlist_entries.id", ondelete="CASCADE"), index=True)
    usager_id: Mapped[int] = mapped_column(ForeignKey("usagers.id", ondelete="CASCADE"))
    status: Mapped[OfferStatus] = mapped_column(_enum(OfferStatus), default=OfferStatus.HELD)
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    held_until: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rdv_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id", ondelete="SET NULL"))  # the rdv it booked

    slot: Mapped[WaitlistSlot] = relationship()
    entry: Mapped[WaitlistEntry] = relationship()
    usager: Mapped[Usager] = relationship()

    def __repr__(self) -> str:
        return f"<SlotOffer {self.id}>"
