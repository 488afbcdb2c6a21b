"""The link a family receives: a short signed URL of its rdv, `/r/<token>`, that works without an account.

The token is the rdv id and an HMAC of it (SHA-256 keyed with LINK_SECRET_KEY or SECRET_KEY, 60 bits kept):
short enough for a one-segment SMS, impossible to guess or to change into another rdv's link. Whether the link
still opens anything (the rdv is over, cancelled) is decided by the page, from the rdv itself.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

from flask import current_app

SIGNATURE_CHARS = 10


def _key() -> bytes:
    return (current_app.config.get("LINK_SECRET_KEY") or current_app.config["SECRET_KEY"]).encode()


def _signature(rdv_id: int) -> str:
    digest = hmac.new(_key(), f"rdv:{rdv_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]


def rdv_token(rdv_id: int) -> str:
    return f"{rdv_id:x}-{_signature(rdv_id)}"


def rdv_id_from_token(token: str) -> int | None:
    """The rdv id a token was made for, or None when it is malformed or forged."""
    number, _, signature = token.partition("-")
    if not number or len(number) > 12 or len(signature) != SIGNATURE_CHARS:
        return None
    try:
        rdv_id = int(number, 16)
    except ValueError:
        return None
    if rdv_id <= 0 or not hmac.compare_digest(signature, _signature(rdv_id)):
        return None
    return rdv_id


def family_url(rdv_id: int) -> str:
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/r/{rdv_token(rdv_id)}"
