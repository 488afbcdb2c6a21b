"""Agents (puéricultrices, sages-femmes, médecins, secrétaires) and their role in each organisation."""
from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import TYPE_CHECKING

from flask_login import UserMixin
from sqlalchemy import BigInteger, Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from lapins.infra.extensions import db
from lapins.models.territories import Organisation, new_agenda_stamp
from lapins.models.types import UTCDateTime, utcnow

if TYPE_CHECKING:
    from lapins.models.territory_admins import TerritoryAdmin


class Role(enum.StrEnum):
    ADMIN = "admin"
    AGENT = "agent"
    SECRETARY = "secretary"

    @property
    def label(self) -> str:
        return {"admin": "Administrateur", "agent": "Agent", "secretary": "Secrétariat"}[self.value]


# Flask-Login's id of a signed-in agent, kept in their session cookie: their id and their session generation.
SESSION_USER_ID = re.compile(r"([0-9]{1,18}):([0-9]{1,18})", re.ASCII)


def session_user_id(agent_id: int, generation: int) -> str:
    return f"{agent_id}:{generation}"


def parse_session_user_id(value) -> tuple[int, int] | None:
    """The agent id and session generation of a session's signed-in id; None for anything else, such as the plain
    id a session opened before generations holds (its agent is asked to sign in again)."""
    match = SESSION_USER_ID.fullmatch(value) if isinstance(value, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


class Agent(UserMixin, db.Model):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    first_name: Mapped[str] = mapped_column(String(80))
    last_name: Mapped[str] = mapped_column(String(80))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    # Part of the signed-in id of each of the agent's sessions (get_id, Flask-Login's alternative id): a new one ends
    # every session opened before it, at its next request, on every route (end_sessions).
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Bumped by every booking that involves this agent: taking the row lock serialises bookings per agent.
    booking_version: Mapped[int] = mapped_column(default=0)
    # Drawn anew by every change to this agent's rdvs, absences and plages (lapins.models.agenda_stamps): the agent's
    # agenda and free times are cached on it and on the territory's stamp, so another agent's booking keeps them.
    agenda_stamp: Mapped[str] = mapped_column(String(16), default=lambda: new_agenda_stamp(), server_default="0")
    # The agent asked for an e-mail when a family cancels one of their rdvs (the "Mes préférences" page).
    notify_on_family_cancellation: Mapped[bool] = mapped_column(default=False)
    # Second factor (TOTP, lapins.auth.second_factor): the secret encrypted with lapins.infra.crypto, set at enrolment and
    # in force once confirmed (totp_enabled_at); the last time step accepted, so that a code serves once.
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # The last sign-in, and how: "password" or "oidc" (shown on the administrators' agents page).
    last_signed_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sign_in_method: Mapped[str | None] = mapped_column(String(20))

    roles: Mapped[list[AgentRole]] = relationship(back_populates="agent", cascade="all, delete-orphan")
    recovery_codes: Mapped[list[AgentRecoveryCode]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    # Loaded when asked for (lapins.policies asks only when the agent's organisations do not settle a question).
    territory_admin_of: Mapped[list[TerritoryAdmin]] = relationship(back_populates="agent",
                                                                    cascade="all, delete-orphan", passive_deletes=True)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive agents
        return self.active

    def get_id(self) -> str:
        """What the session cookie holds of its signed-in agent (lapins.auth.views.load_agent checks both parts)."""
        return session_user_id(self.id, self.session_generation)

    def end_sessions(self) -> None:
        """Every session of the agent opened until now ends at its next request, wherever it is: logging out, a new
        password, a second factor put in force or taken off, a deactivation, an administrator's « Fermer toutes ses
        sessions ». Committed by the caller."""
        self.session_generation = (self.session_generation or 0) + 1

    def set_password(self, password: str) -> None:
        """A new password; the sessions opened with the old one end."""
        self.password_hash = generate_password_hash(password)
        self.end_sessions()

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    @property
    def second_factor_enabled(self) -> bool:
        return self.totp_enabled_at is not None

    def role_in(self, organisation_id: int) -> Role | None:
        for role in self.roles:
            if role.organisation_id == organisation_id:
                return role.role
        return None

    @property
    def organisation_ids(self) -> set[int]:
        return {role.organisation_id for role in self.roles}

    @property
    def administered_territory_ids(self) -> set[int]:
        """The territories this agent administers as a territory administrator."""
        return {row.territory_id for row in self.territory_admin_of}

    def __repr__(self) -> str:
        return f"<Agent {self.id}>"


class AgentRole(db.Model):
    __tablename__ = "agent_roles"
    __table_args__ = (UniqueConstraint("agent_id", "organisation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]))

    agent: Mapped[Agent] = relationship(back_populates="roles")
    organisation: Mapped[Organisation] = relationship()


class AgentRecoveryCode(db.Model):
    """A single-use recovery code of an agent's second factor, kept as its SHA-256 (the code has 59 random bits)."""

    __tablename__ = "agent_recovery_codes"
    __table_args__ = (UniqueConstraint("agent_id", "code_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
