"""Agents' calendars outside Lapins: the secret ICS feed, the CalDAV calendar they connected, the changes waiting to
be written there, and the busy times read back from it."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.agents import Agent
from lapins.models.types import UTCDateTime, utcnow


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class CalendarFeed(db.Model):
    """An agent's secret ICS address. The token is shown once and kept as its SHA-256; a revoked feed answers 404."""

    __tablename__ = "calendar_feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The agent chose to see the family's name in the events (off by default: the feed leaves Lapins).
    with_family_names: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    agent: Mapped[Agent] = relationship()

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class CaldavAccount(db.Model):
    """The CalDAV calendar an agent connected: Lapins writes their rdvs there and reads their busy times back."""

    __tablename__ = "caldav_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    username: Mapped[str] = mapped_column(String(200))
    password_encrypted: Mapped[str] = mapped_column(Text)  # lapins.infra.crypto
    # The agent chose to have the family's name and a home visit's address written there (off by default).
    with_personal_data: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # One worker at a time writes to a calendar, so that its changes arrive in order (lapins.calendars.push).
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(255))  # in French, for the agent
    # Reading busy times back (lapins.calendars.busy): the server's RFC 6578 sync token, and when it last worked.
    sync_token: Mapped[str | None] = mapped_column(Text)
    busy_read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    agent: Mapped[Agent] = relationship()


class PushStatus(enum.StrEnum):
    PENDING = "pending"  # to write at next_attempt_at
    DONE = "done"
    FAILED = "failed"  # every attempt failed


class CaldavPush(db.Model):
    """One rdv change to write to one agent's calendar: added in the booking's transaction, written after the
    commit. The worker writes the rdv as it is *then* under a stable UID, so a repeat changes nothing."""

    __tablename__ = "caldav_pushes"
    __table_args__ = (Index("ix_caldav_pushes_due", "status", "next_attempt_at"),
                      Index("ix_caldav_pushes_account_status", "account_id", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("caldav_accounts.id", ondelete="CASCADE"))
    rdv_id: Mapped[int] = mapped_column()  # no foreign key: a deleted rdv is deleted from the calendar too
    status: Mapped[PushStatus] = mapped_column(_enum(PushStatus), default=PushStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BusyBlock(db.Model):
    """A busy time read from an agent's own calendar: only its times are kept, never its title or details."""

    __tablename__ = "calendar_busy_blocks"
    __table_args__ = (Index("ix_calendar_busy_blocks_agent_starts", "agent_id", "starts_at", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("caldav_accounts.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)

    agent: Mapped[Agent] = relationship()

    LABEL = "Occupé (agenda personnel)"
