"""Outgoing webhooks: the addresses an organisation's other systems gave to hear of rdv and usager changes, and
every delivery made to them (the log its administrators read)."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.agents import Agent
from lapins.models.territories import Organisation
from lapins.models.types import UTCDateTime, utcnow


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class Webhook(db.Model):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(String(200))
    # The signing secret, encrypted at rest (lapins.infra.crypto): shown once, when the webhook is created.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    # Failing endpoints are heard about (lapins.integrations.delivery): attempts failed in a row and since when,
    # when its owner was e-mailed, and when it was paused (its deliveries kept until « Reprendre »).
    consecutive_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organisation: Mapped[Organisation] = relationship()
    created_by: Mapped[Agent | None] = relationship()

    def __repr__(self) -> str:
        return f"<Webhook {self.id}>"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # to send at next_attempt_at (first try, or a retry after a failure)
    SENDING = "sending"  # claimed by a worker until lease_until
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed: an administrator may send it again

    @property
    def label(self) -> str:
        return {"pending": "À envoyer", "sending": "En cours", "delivered": "Reçu", "failed": "Échec"}[self.value]


class WebhookDelivery(db.Model):
    """One event for one webhook: written in the transaction of the change, sent by the worker, retried."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
                      Index("ix_webhook_deliveries_webhook_created", "webhook_id", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))  # "rdv.created", "rdv.updated", "rdv.cancelled", "usager.updated"...
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_code: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    webhook: Mapped[Webhook] = relationship()

    def __repr__(self) -> str:
        return f"<WebhookDelivery {self.id} {self.event} {self.status}>"
