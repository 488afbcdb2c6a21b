"""The audit trail: who changed what and when on rdvs and usagers (written by lapins.audit.recording).

A row names the fields that changed. It keeps their old and new values only for fields that identify nobody (times,
status, motif, lieu, agents, ids of the usagers attending, cancellation channel); for the others (names, phone,
e-mail, birth date, notes, free-text reasons) it records that they changed, never what they were or became, so that
erasing a usager leaves no personal data behind in its history. No foreign key to the object: its history outlives it.
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Enum, ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.agents import Agent
from lapins.models.rdvs import Canceller
from lapins.models.types import UTCDateTime, utcnow

# Who acted: an agent (agent_id), the family itself, or the system — the same three parties as for cancellations.
Party = Canceller


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class AuditObject(enum.StrEnum):
    RDV = "rdv"
    USAGER = "usager"


class AuditAction(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    MOVED = "moved"  # times or agents changed
    CANCELLED = "cancelled"
    RESTORED = "restored"  # a cancelled rdv made live again
    STATUS_CHANGED = "status_changed"  # seen, no-show, back to unknown
    CONFIRMED = "confirmed"  # the family answered OUI
    DELETED = "deleted"
    MERGED = "merged"  # two usagers' files made one (lapins.agenda.duplicates): on both, each naming the other

    @property
    def label(self) -> str:
        return ACTION_LABELS[self]


ACTION_LABELS = {
    AuditAction.CREATED: "Création",
    AuditAction.UPDATED: "Modification",
    AuditAction.MOVED: "Déplacement",
    AuditAction.CANCELLED: "Annulation",
    AuditAction.RESTORED: "Rétablissement",
    AuditAction.STATUS_CHANGED: "Changement de statut",
    AuditAction.CONFIRMED: "Confirmation par la famille",
    AuditAction.DELETED: "Suppression",
    AuditAction.MERGED: "Fusion de dossiers",
}


class AuditChannel(enum.StrEnum):
    """Through what the change came."""

    AGENDA = "agenda"  # an agent's pages
    LINK = "link"  # the family's page, from its SMS/e-mail link
    OFFER = "offer"  # the family answering a waiting-list offer
    SMS = "sms"  # the family replying to an SMS
    PROVIDER = "provider"  # the SMS provider's delivery report
    API = "api"

    @property
    def label(self) -> str:
        return {"agenda": "depuis l'agenda", "link": "via le lien", "offer": "via une proposition de créneau",
                "sms": "par SMS", "provider": "retour de l'opérateur SMS", "api": "via l'API"}[self.value]


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_object", "object_type", "object_id", "occurred_at"),
        Index("ix_audit_events_territory_occurred", "territory_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"))
    # The rdv's organisation; empty for a usager, who may belong to several (scoped through its memberships).
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    object_type: Mapped[AuditObject] = mapped_column(_enum(AuditObject))
    object_id: Mapped[int]
    action: Mapped[AuditAction] = mapped_column(_enum(AuditAction))
    # [{"field": "starts_at", "old": "...", "new": "..."}, {"field": "phone"}, {"field": "agents", "added": [3],
    # "removed": [2]}]: values only for the fields that identify nobody (lapins.audit.recording).
    changes: Mapped[list] = mapped_column(JSON, default=list)
    party: Mapped[Party] = mapped_column(_enum(Party))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    via: Mapped[AuditChannel | None] = mapped_column(_enum(AuditChannel))

    agent: Mapped[Agent | None] = relationship()

    def __repr__(self) -> str:
        return f"<AuditEvent {self.id} {self.object_type}:{self.object_id} {self.action}>"
