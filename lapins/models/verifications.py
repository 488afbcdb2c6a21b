"""A family's mobile number checked by a 6-digit SMS code before it may book online (lapins.public.online): the code
is kept as an HMAC only, lives 10 minutes and allows 5 tries."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lapins.infra.extensions import db
from lapins.models.types import UTCDateTime, utcnow


class PhoneVerification(db.Model):
    __tablename__ = "phone_verifications"
    # How many codes a number asked for lately: one index range scan.
    __table_args__ = (Index("ix_phone_verifications_number", "territory_id", "phone", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"))
    phone: Mapped[str] = mapped_column(String(20))  # E.164
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    tries: Mapped[int] = mapped_column(default=0)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<PhoneVerification {self.id}>"
