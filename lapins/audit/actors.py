"""Who is acting right now, for the audit trail: an explicit `acting(...)` block, else what the request tells.

Agents' pages run with a signed-in agent; the family's pages, the SMS webhooks, Celery tasks and CLI commands run
without one. The recording listener asks `ambient_actor()` once per flush; the rdv's own record of who booked or
cancelled it (created_by_id, cancelled_by_*) takes precedence for those events (lapins.audit.recording).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from flask import g, has_request_context, request
from sqlalchemy import inspect

from lapins.models.audit import AuditChannel, Party


@dataclass(frozen=True)
class Actor:
    party: Party
    agent_id: int | None = None
    via: AuditChannel | None = None


SYSTEM = Actor(Party.SYSTEM)
FAMILY_ON_LINK = Actor(Party.FAMILY, via=AuditChannel.LINK)
FAMILY_ON_OFFER = Actor(Party.FAMILY, via=AuditChannel.OFFER)
FAMILY_BY_SMS = Actor(Party.FAMILY, via=AuditChannel.SMS)

# Requests that no agent makes, and who makes them. Endpoints first, then whole blueprints.
ENDPOINT_ACTORS = {
    "family.offer_page": FAMILY_ON_OFFER,
    "family.accept_offer": FAMILY_ON_OFFER,
    "family.decline_offer": FAMILY_ON_OFFER,
    "webhooks.inbound": FAMILY_BY_SMS,  # OUI, ANNULER, STOP
    "webhooks.status": Actor(Party.SYSTEM, via=AuditChannel.PROVIDER),  # a number reported undeliverable
}
BLUEPRINT_ACTORS = {"family": FAMILY_ON_LINK, "webhooks": Actor(Party.SYSTEM, via=AuditChannel.PROVIDER)}

_acting: ContextVar[Actor | None] = ContextVar("lapins_audit_actor", default=None)


@contextmanager
def acting(*, agent=None, party: Party | None = None, via: AuditChannel | None = None) -> Iterator[Actor]:
    """Name who makes the changes written inside the block (an API client, a task acting for an agent, ...)."""
    party = party or (Party.AGENT if agent is not None else Party.SYSTEM)
    if (party == Party.AGENT) != (agent is not None):
        raise ValueError("an agent's changes name the agent, and only an agent's")
    actor = Actor(party, _id_of(agent) if agent is not None else None, via)
    token = _acting.set(actor)
    try:
        yield actor
    finally:
        _acting.reset(token)


def ambient_actor() -> Actor:
    explicit = _acting.get()
    if explicit is not None:
        return explicit
    if not has_request_context():
        return SYSTEM  # a Celery task, a CLI command, a test calling a service
    known = ENDPOINT_ACTORS.get(request.endpoint or "") or BLUEPRINT_ACTORS.get(request.blueprint or "")
    if known is not None:
        return known
    # Flask-Login's user as the request already loaded it: asking `current_user` here could run the user loader
    # in the middle of a flush.
    user = g.get("_login_user")
    if user is not None and getattr(user, "is_authenticated", False):
        via = AuditChannel.API if request.blueprint == "api" else AuditChannel.AGENDA
        return Actor(Party.AGENT, _id_of(user), via)
    return SYSTEM


def _id_of(agent) -> int | None:
    """The agent's id without reloading it when a commit expired it."""
    state = inspect(agent, raiseerr=False)
    if state is not None and state.identity is not None:
        return state.identity[0]
    return getattr(agent, "id", None)
