"""Agents' secret ICS feed addresses: issued once, kept as a SHA-256, rotated or revoked by the agent, revoked by an
administrator, and revoked when the agent's account is deactivated (a session listener, whoever deactivates)."""
from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import event, inspect, select, update
from sqlalchemy.orm import Session

from lapins.infra.extensions import db
from lapins.models import Agent, utcnow
from lapins.models.calendars import CalendarFeed

TOKEN_PREFIX = "cal_"
# What a token may look like; anything else is refused before the database is asked.
TOKEN_SHAPE = re.compile(r"cal_[A-Za-z0-9_-]{43}", re.ASCII)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def live_feed(agent_id: int) -> CalendarFeed | None:
    return db.session.scalar(select(CalendarFeed).where(CalendarFeed.agent_id == agent_id,
                                                        CalendarFeed.revoked_at.is_(None)))


def issue(agent: Agent, *, with_family_names: bool | None = None) -> str:
    """A new address for the agent (the old one stops working); returns the token, which is stored nowhere."""
    previous = live_feed(agent.id)
    if with_family_names is None:
        with_family_names = previous.with_family_names if previous else False
    _revoke_all(agent.id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.session.add(CalendarFeed(agent_id=agent.id, token_hash=hash_token(token), with_family_names=with_family_names))
    db.session.commit()
    return token


def revoke(agent_id: int) -> bool:
    """Revokes the agent's address; False when there was none."""
    revoked = _revoke_all(agent_id)
    db.session.commit()
    return revoked > 0


def set_family_names(agent_id: int, wanted: bool) -> bool:
    feed = live_feed(agent_id)
    if feed is None:
        return False
    feed.with_family_names = wanted
    db.session.commit()
    return True


def _revoke_all(agent_id: int) -> int:
    return db.session.execute(
        update(CalendarFeed).where(CalendarFeed.agent_id == agent_id, CalendarFeed.revoked_at.is_(None))
        .values(revoked_at=utcnow()).execution_options(synchronize_session=False)).rowcount


def feed_for(token: str) -> CalendarFeed | None:
    """The live feed of an active agent for this token, or None (for any malformed, unknown or revoked token)."""
    if not isinstance(token, str) or not TOKEN_SHAPE.fullmatch(token):
        return None
    feed = db.session.scalar(select(CalendarFeed).where(CalendarFeed.token_hash == hash_token(token)))
    if feed is None or feed.is_revoked or not feed.agent.active:
        return None
    return feed


@event.listens_for(Session, "before_flush")
def _revoke_on_deactivation(session: Session, flush_context, instances) -> None:
    """An account deactivated, by whatever page or command: its feed addresses stop working for good (reactivating
    it does not bring them back)."""
    for obj in session.dirty:
        if isinstance(obj, Agent) and obj.id is not None and not obj.active:
            history = inspect(obj).attrs.active.history
            if history.deleted and any(history.deleted):
                session.connection().execute(
                    update(CalendarFeed.__table__)
                    .where(CalendarFeed.agent_id == obj.id, CalendarFeed.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))
