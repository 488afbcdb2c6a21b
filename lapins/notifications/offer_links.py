"""The link of an offer, `/o/<token>`: the offer id and an HMAC of it, like the rdv links (lapins.notifications.links).

Signed under its own prefix, so an rdv's token never opens an offer and the other way round; written and read by the
same functions as the rdv links (one canonical form for both).
"""
from __future__ import annotations

import base64
import hashlib
import hmac

from flask import current_app

from lapins.notifications.links import SIGNATURE_CHARS, signed_id, signed_token


def _signature(offer_id: int) -> str:
    key = (current_app.config.get("LINK_SECRET_KEY") or current_app.config["SECRET_KEY"]).encode()
    digest = hmac.new(key, f"offer:{offer_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]


def offer_token(offer_id: int) -> str:
    return signed_token(offer_id, _signature)


def offer_id_from_token(token: str) -> int | None:
    """The offer id a token was made for, or None when it is malformed or forged."""
    return signed_id(token, _signature)


def offer_url(offer_id: int) -> str:
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/o/{offer_token(offer_id)}"
