"""Agents' API tokens: issued once, kept as a SHA-256, found from the Authorization header, revoked by prefix."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import func, select, update

from lapins.infra.extensions import db
from lapins.models import Agent, ApiToken, utcnow

TOKEN_PREFIX = "lap_"
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
MAX_TOKEN_LENGTH = 200
# last_used_at is for a person reviewing tokens: a minute's precision spares a write on every request.
LAST_USED_PRECISION = timedelta(minutes=1)


class TokenError(Exception):
    """What went wrong, in French (for the command line)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(agent: Agent, label: str) -> tuple[ApiToken, str]:
    """A new token for the agent: the row, and the token itself, which is stored nowhere."""
    label = " ".join(label.split())
    if not label or len(label) > 80:
        raise TokenError("Le libellé du jeton est obligatoire (80 caractères au plus).")
    if not agent.active:
        raise TokenError("Cet agent est désactivé : il ne peut pas recevoir de jeton.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(agent_id=agent.id, label=label, token_hash=hash_token(token), prefix=token[:PREFIX_LENGTH])
    db.session.add(row)
    db.session.commit()
    return row, token


def agent_by_email(email: str) -> Agent:
    agent = db.session.scalar(select(Agent).where(func.lower(Agent.email) == email.strip().lower()))
    if agent is None:
        raise TokenError(f"Aucun agent n'a l'adresse {email.strip()}.")
    return agent


def revoke(prefix: str) -> ApiToken:
    rows = db.session.scalars(select(ApiToken).where(ApiToken.prefix == prefix.strip())).all()
    live = [row for row in rows if not row.is_revoked]
    if not rows:
        raise TokenError(f"Aucun jeton ne commence par {prefix.strip()}.")
    if not live:
        raise TokenError(f"Le jeton {prefix.strip()} est déjà révoqué.")
    if len(live) > 1:
        raise TokenError(f"Plusieurs jetons commencent par {prefix.strip()} : révoquez-les depuis la base.")
    live[0].revoked_at = utcnow()
    db.session.commit()
    return live[0]


def agent_for(header: str | None) -> Agent | None:
    """The active agent owning the live token of an `Authorization: Bearer …` header, or None."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.is_revoked or not row.agent.active:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_PRECISION:
        # Committed at once, apart from the request's work: a booking must open its own transaction (booking.py).
        db.session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now),
                           execution_options={"synchronize_session": False})
        db.session.commit()
    return db.session.get(Agent, row.agent_id)
