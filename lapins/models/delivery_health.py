"""How each territory's delivery channels are doing: whether its SMS operator (or its SMTP server) sends, since
when it does not and why, and the daily balance check (lapins.monitoring.delivery keeps these rows)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.messages import Message
from lapins.models.territories import Territory
from lapins.models.types import UTCDateTime


class ChannelState(db.Model):
    """One channel ("sms", "email") of one territory, through one operator ("twilio", "smtp"...)."""

    __tablename__ = "delivery_channel_states"
    __table_args__ = (UniqueConstraint("territory_id", "channel", name="uq_delivery_channel_states_channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))
    operator: Mapped[str] = mapped_column(String(30))
    # An outage: the operator sends for no one since `down_since` ("credit", "credentials", or "failing": every
    # attempt failing for DELIVERY_OUTAGE_MINUTES). None: it sends.
    down_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cause: Mapped[str | None] = mapped_column(String(20))
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the administrators' e-mail went
    # The first failure seen with no success after it (the start of an outage by "failing").
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The daily balance check, where the operator tells it: the last figure read, and the threshold below which
    # administrators are warned (None: 10 days of the territory's average use).
    balance_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    balance_unit: Mapped[str | None] = mapped_column(String(10))  # a currency, or "SMS"
    balance_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    balance_warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    balance_threshold: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))

    territory: Mapped[Territory] = relationship()

    def __repr__(self) -> str:
        return f"<ChannelState {self.territory_id} {self.channel} {self.cause or 'ok'}>"


# The last success of a territory's channel and the segments of its month: a backward scan of this index (declared
# here, beside the rows it serves, rather than in the outbox's model).
Index("ix_messages_territory_sent", Message.territory_id, Message.sent_at)
