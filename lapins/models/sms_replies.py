"""Two-way SMS: the question a family was asked when its reply could mean several rdvs."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from lapins.infra.extensions import db
from lapins.models.types import UTCDateTime, utcnow


class SmsReplyRound(db.Model):
    """"ANNULER" from a number with several rdvs close together: the family was sent a numbered list of them and
    answers "ANNULER 2". The list is kept as sent, so a change in between never shifts the numbers."""

    __tablename__ = "sms_reply_rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20), index=True)  # E.164, the family's number
    rdv_ids: Mapped[str] = mapped_column(String(120))  # "12,15": the rdvs in the order they were numbered
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def rdv_id_list(self) -> list[int]:
        return [int(value) for value in self.rdv_ids.split(",") if value]
