"""Bookkeeping of the service itself (not of any family or agent)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from lapins.infra.extensions import db
from lapins.models.types import UTCDateTime


class Heartbeat(db.Model):
    """Last time a background component proved it runs (beat schedules it, a worker executes it)."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
