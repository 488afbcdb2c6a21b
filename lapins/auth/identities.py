"""Which agent an OpenID Connect sign-in is: by the provider's `sub` once linked; at the first sign-in, by the
verified e-mail the provider gives (then the link is made); an unknown e-mail creates an agent only where a
territory opted into it for that e-mail's domain (OidcJitRule). A deactivated agent is refused. A territory may
require the provider for its agents (Territory.oidc_required): their password is then refused.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from lapins.auth.oidc import ProviderIdentity
from lapins.infra.extensions import db
from lapins.models import Agent, AgentRole, Organisation, Role, Territory, utcnow
from lapins.models.identities import LINKED_BY_CREATION, LINKED_BY_EMAIL, AgentIdentity, OidcJitRule

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"
INACTIVE = "inactive"
UNVERIFIED = "unverified"
LINKED_ELSEWHERE = "linked_elsewhere"


@dataclass(frozen=True)
class Outcome:
    agent: Agent | None
    refusal: str | None = None  # one of the constants above


def live_identity(issuer: str, subject: str) -> AgentIdentity | None:
    return db.session.scalar(select(AgentIdentity).where(
        AgentIdentity.issuer == issuer, AgentIdentity.subject == subject, AgentIdentity.unlinked_at.is_(None)))


def live_identities(agent_ids) -> dict[int, AgentIdentity]:
    """The live link of each of these agents (the newest, should there be several providers over time)."""
    rows = db.session.scalars(select(AgentIdentity).where(
        AgentIdentity.agent_id.in_(list(agent_ids)), AgentIdentity.unlinked_at.is_(None)).order_by(AgentIdentity.id))
    return {row.agent_id: row for row in rows}


def agent_for(identity: ProviderIdentity) -> Outcome:
    """The agent this sign-in opens, or why none; the link made or its last use recorded (committed)."""
    try:
        return _agent_for(identity)
    except IntegrityError:  # the same person's first sign-in, twice at once: the other one made the link
        db.session.rollback()
        return _agent_for(identity)


def _agent_for(identity: ProviderIdentity) -> Outcome:
    link = live_identity(identity.issuer, identity.subject)
    if link is not None:
        if not link.agent.active:
            return Outcome(None, INACTIVE)
        link.last_signed_in_at = utcnow()
        db.session.commit()
        return Outcome(link.agent)
    # First sign-in with this account: the e-mail, when the provider vouches for it.
    if not identity.email or not identity.email_verified:
        return Outcome(None, UNVERIFIED)
    email = identity.email.strip().lower()
    agent = db.session.scalar(select(Agent).where(func.lower(Agent.email) == email))
    if agent is not None:
        if not agent.active:
            return Outcome(None, INACTIVE)
        if db.session.scalar(select(AgentIdentity.id).where(
                AgentIdentity.agent_id == agent.id, AgentIdentity.issuer == identity.issuer,
                AgentIdentity.unlinked_at.is_(None)).limit(1)) is not None:
            return Outcome(None, LINKED_ELSEWHERE)  # then by sub only: another account of the provider
        _link(agent, identity, LINKED_BY_EMAIL)
        db.session.commit()
        logger.info("Agent %s linked to an OIDC account at first sign-in", agent.id)
        return Outcome(agent)
    rule = jit_rule_for(email)
    if rule is None:
        return Outcome(None, UNKNOWN)
    agent = Agent(email=email, first_name=(identity.given_name or "").strip()[:80] or "Agent",
                  last_name=(identity.family_name or "").strip()[:80] or email.split("@")[0][:80])
    agent.roles.append(AgentRole(organisation_id=rule.organisation_id, role=rule.role))
    db.session.add(agent)
    db.session.flush()
    _link(agent, identity, LINKED_BY_CREATION)
    db.session.commit()
    logger.info("Agent %s created at first OIDC sign-in (rule %s)", agent.id, rule.id)
    return Outcome(agent)


def _link(agent: Agent, identity: ProviderIdentity, how: str) -> None:
    db.session.add(AgentIdentity(agent_id=agent.id, issuer=identity.issuer, subject=identity.subject, linked_by=how,
                                 last_signed_in_at=utcnow()))
    db.session.flush()


def jit_rule_for(email: str) -> OidcJitRule | None:
    domain = email.rsplit("@", 1)[-1].lower()
    return db.session.scalar(select(OidcJitRule).where(OidcJitRule.email_domain == domain))


DOMAIN = re.compile(r"(?=.{3,120}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}", re.ASCII)


class RuleRefused(ValueError):
    """Why a just-in-time rule cannot be saved, in French."""


def save_jit_rule(territory: Territory, email_domain: str, organisation_name: str, role: str) -> OidcJitRule:
    """The territory creates, at their first sign-in, the unknown agents of this e-mail domain, with `role` in its
    organisation named `organisation_name`. Committed."""
    domain = email_domain.strip().lower().lstrip("@")
    if not DOMAIN.fullmatch(domain):
        raise RuleRefused(f"Domaine de messagerie invalide : « {email_domain} » (exemple : departement92.fr).")
    organisation = db.session.scalar(select(Organisation).where(
        Organisation.territory_id == territory.id, func.lower(Organisation.name) == organisation_name.strip().lower()))
    if organisation is None:
        raise RuleRefused(f"Aucun service « {organisation_name} » dans ce département.")
    rule = db.session.scalar(select(OidcJitRule).where(OidcJitRule.email_domain == domain))
    if rule is not None and rule.territory_id != territory.id:
        raise RuleRefused(f"Le domaine {domain} est déjà celui d'un autre département.")
    if rule is None:
        rule = OidcJitRule(territory_id=territory.id, email_domain=domain)
        db.session.add(rule)
    rule.organisation_id, rule.role = organisation.id, Role(role)
    db.session.commit()
    return rule


def remove_jit_rule(territory: Territory, email_domain: str) -> bool:
    rule = db.session.scalar(select(OidcJitRule).where(
        OidcJitRule.territory_id == territory.id, OidcJitRule.email_domain == email_domain.strip().lower()))
    if rule is None:
        return False
    db.session.delete(rule)
    db.session.commit()
    return True


def jit_rules(territory: Territory) -> list[OidcJitRule]:
    return list(db.session.scalars(select(OidcJitRule).where(OidcJitRule.territory_id == territory.id)
                                   .order_by(OidcJitRule.email_domain)))


def oidc_required_for(agent: Agent) -> bool:
    """Whether one of the agent's territories requires its agents to sign in with the provider."""
    return bool(db.session.scalar(
        select(Territory.id).join(Organisation, Organisation.territory_id == Territory.id)
        .join(AgentRole, AgentRole.organisation_id == Organisation.id)
        .where(AgentRole.agent_id == agent.id, Territory.oidc_required.is_(True)).limit(1)))


def unlink(agent: Agent, actor: Agent) -> bool:
    """An administrator unlinks the agent from their provider account(s): the rows stay, with who and when (the
    history), and the agent's sessions end; their next sign-in with the provider links by e-mail again. Committed by
    the caller. False when there was nothing to unlink."""
    rows = list(db.session.scalars(select(AgentIdentity).where(
        AgentIdentity.agent_id == agent.id, AgentIdentity.unlinked_at.is_(None))))
    for row in rows:
        row.unlinked_at = utcnow()
        row.unlinked_by_id = actor.id
    if rows:
        agent.end_sessions()
    return bool(rows)
