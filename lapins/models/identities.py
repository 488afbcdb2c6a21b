"""Agents' accounts at an OpenID Connect provider (ProConnect or a département's directory), and the e-mail domains
whose unknown agents a territory creates at their first sign-in (lapins.auth.identities)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.agents import Agent, Role
from lapins.models.territories import Organisation, Territory
from lapins.models.types import UTCDateTime, utcnow

LINKED_BY_EMAIL = "email"  # first sign-in, matched on the provider's verified e-mail
LINKED_BY_CREATION = "created"  # the agent was created at that sign-in (OidcJitRule)


class AgentIdentity(db.Model):
    """The provider's `sub` (with its issuer) of an agent: after the first sign-in, the agent is found by it alone.

    An administrator's unlinking keeps the row, with who unlinked and when (its history); only live rows
    (unlinked_at NULL) hold an (issuer, subject) once."""

    __tablename__ = "agent_identities"
    __table_args__ = (
        Index("uq_agent_identities_live_subject", "issuer", "subject", unique=True,
              sqlite_where=text("unlinked_at IS NULL"), postgresql_where=text("unlinked_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    linked_by: Mapped[str] = mapped_column(String(20))
    last_signed_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unlinked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unlinked_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))

    agent: Mapped[Agent] = relationship(foreign_keys=[agent_id])

    def __repr__(self) -> str:
        return f"<AgentIdentity {self.id} of agent {self.agent_id}>"


class OidcJitRule(db.Model):
    """A territory's opt-in: an unknown agent whose verified e-mail ends with @email_domain is created at their first
    sign-in, with `role` in `organisation` (one of the territory's). A domain belongs to one territory at most."""

    __tablename__ = "oidc_jit_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id", ondelete="CASCADE"), index=True)
    email_domain: Mapped[str] = mapped_column(String(120), unique=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20,
                                            values_callable=lambda e: [m.value for m in e]))

    territory: Mapped[Territory] = relationship()
    organisation: Mapped[Organisation] = relationship()
