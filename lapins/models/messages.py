"""The outbox: every SMS and email a family gets is first a row here, then sent by the worker.

A message goes `pending` (waiting for its due time) → `queued` (claimed by the beat, a task is on the broker) →
`sent` (the provider accepted it) → `delivered` | `failed` | `undeliverable`; or `skipped` when it no longer
needs sending (rdv cancelled or moved, consent withdrawn, rdv already started). While a worker is sending it, a
queued message carries `claimed_at`: a claim that outlives its lease means the worker died mid-send, and the
provider is asked whether the message left before it is sent again (see lapins.notifications.outbox).
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.types import UTCDateTime, utcnow


def _enum(cls: type[enum.Enum], length: int = 20) -> Enum:
    return Enum(cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class Channel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"

    @property
    def label(self) -> str:
        return {"sms": "SMS", "email": "E-mail"}[self.value]


class MessageKind(enum.StrEnum):
    CREATED = "created"
    CHANGED = "changed"
    CANCELLED = "cancelled"
    REMINDER = "reminder"
    OFFER = "offer"  # a freed slot offered to a waiting family: no rdv yet, `offer_id` says which
    PHONE_CODE = "phone_code"  # the code checking a number before booking online: no rdv, no usager, text fixed

    @property
    def label(self) -> str:
        return {"created": "Confirmation", "changed": "Modification", "cancelled": "Annulation",
                "reminder": "Rappel", "offer": "Proposition de créneau",
                "phone_code": "Code de vérification"}[self.value]


class MessageStatus(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNDELIVERABLE = "undeliverable"
    SKIPPED = "skipped"

    @property
    def label(self) -> str:
        return {"pending": "Programmé", "queued": "En cours d'envoi", "sent": "Envoyé", "delivered": "Reçu",
                "failed": "Échec", "undeliverable": "Numéro ou adresse invalide", "skipped": "Non envoyé"}[self.value]

    @property
    def is_final(self) -> bool:
        return self not in (MessageStatus.PENDING, MessageStatus.QUEUED)


CODES_KEPT = "kind = 'phone_code' AND body IS NOT NULL"


class Message(db.Model):
    __tablename__ = "messages"
    __table_args__ = (
        # The beat's scan: "pending and due" is one range scan whatever the size of the table.
        Index("ix_messages_status_due", "status", "due_at"),
        Index("ix_messages_rdv", "rdv_id", "created_at"),
        Index("ix_messages_territory_due", "territory_id", "due_at"),  # figures per week
        # The verification codes whose text is still kept (outbox.redact_expired_codes, every minute): a handful.
        Index("ix_messages_codes_kept", "expires_at", sqlite_where=text(CODES_KEPT),
              postgresql_where=text(CODES_KEPT)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"))
    rdv_id: Mapped[int | None] = mapped_column(ForeignKey("rdvs.id", ondelete="CASCADE"))
    usager_id: Mapped[int | None] = mapped_column(ForeignKey("usagers.id", ondelete="SET NULL"), index=True)
    channel: Mapped[Channel] = mapped_column(_enum(Channel, 10))
    kind: Mapped[MessageKind] = mapped_column(_enum(MessageKind))
    # A reminder sent by hand by an agent (who is recorded) rather than planned.
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("slot_offers.id", ondelete="CASCADE"), index=True)
    # A participant's message about a collective session (rdv_id is the session): their own link and reminders.
    participation_id: Mapped[int | None] = mapped_column(ForeignKey("rdv_participations.id", ondelete="CASCADE"),
                                                         index=True)
    # Guards against planning the same message twice (e.g. "reminder 48 h before, revision 3 of rdv 12, to Mme X").
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    to_address: Mapped[str | None] = mapped_column(String(254))  # E.164 phone or email, set when sending
    subject: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str | None] = mapped_column(Text)  # fixed before the provider is called, then never changed
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # never sent after this (the rdv's start)
    status: Mapped[MessageStatus] = mapped_column(_enum(MessageStatus), default=MessageStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An answer that did not say whether the message left (a gateway's 5xx, no answer): the provider is asked soon,
    # but the message is never sent again before a whole lease after it (outbox._record_transient).
    unsure_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The claiming batch's name in the outbox's fence (Redis run id and batch), while that batch may still send it:
    # the fence tells whether its send began, so a dead batch's other messages come back at once (outbox.fence).
    claim_id: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    segments: Mapped[int | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(String(255))
    error_code: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    rdv = relationship("Rdv")
    usager = relationship("Usager")
    created_by = relationship("Agent")
    offer = relationship("SlotOffer")
    participation = relationship("Participation")

    def __repr__(self) -> str:
        return f"<Message {self.id} {self.channel} {self.kind} {self.status}>"


class TwilioCallback(db.Model):
    """A request Twilio sent us, recorded in the transaction of what it did (lapins.notifications.webhooks): an
    inbound SMS by its MessageSid, a status callback by its MessageSid and MessageStatus. The same signed request
    posted again (Twilio retrying, or anyone replaying a request they caught) finds its row and does nothing."""

    __tablename__ = "twilio_callbacks"
    __table_args__ = (UniqueConstraint("kind", "message_sid", "status", name="uq_twilio_callbacks_request"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # "inbound" or "status"
    message_sid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # a status callback's MessageStatus; "" for an inbound SMS
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
