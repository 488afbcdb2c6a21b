"""The link a family receives: a short signed URL of its rdv, `/r/<token>`, that works without an account.

The token is the rdv id and an HMAC of it (SHA-256 keyed with LINK_SECRET_KEY or SECRET_KEY, 60 bits kept):
short enough for a one-segment SMS, impossible to guess or to change into another rdv's link. Whether the link
still opens anything (the rdv is over, cancelled) is decided by the page, from the rdv itself.

`signed_token` and `signed_id` write and read every signed link of this form (the offers' too, lapins.notifications.offer_links).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

from flask import current_app

SIGNATURE_CHARS = 10


def _key() -> bytes:
    return (current_app.config.get("LINK_SECRET_KEY") or current_app.config["SECRET_KEY"]).encode()


def _signature(rdv_id: int) -> str:
    digest = hmac.new(_key(), f"rdv:{rdv_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]


def signed_token(row_id: int, sign: Callable[[int], str]) -> str:
    return f"{row_id:x}-{sign(row_id)}"


def signed_id(token: str, sign: Callable[[int], str]) -> int | None:
    """The id a `signed_token` was made for, or None when the token is malformed or forged.

    Only the exact form `signed_token` writes is accepted: int(…, 16) alone would also read "0x1", "+1", "0001" or
    "1_0", giving one rdv many links, each of which would escape any check made on the link's text.
    """
    number, _, signature = token.partition("-")
    row_id = _strict_hex(number)
    if row_id is None:
        return None
    # Compared as bytes: compare_digest refuses non-ASCII str, and the signature comes straight from the URL. It
    # refuses a signature of another length too, so no length check of our own (one would only be checked twice).
    if not hmac.compare_digest(signature.encode(), sign(row_id).encode()):
        return None
    return row_id


def _strict_hex(number: str) -> int | None:
    """A positive id written exactly as `f"{id:x}"` writes it, else None."""
    if not number or len(number) > 12:
        return None
    try:
        row_id = int(number, 16)
    except ValueError:
        return None
    return row_id if row_id > 0 and f"{row_id:x}" == number else None


def rdv_token(rdv_id: int) -> str:
    return signed_token(rdv_id, _signature)


def rdv_id_from_token(token: str) -> int | None:
    """The rdv id a token was made for (a guardian's own link included), or None when it is malformed or forged."""
    link = link_of(token)
    return link[0] if link is not None else None


def family_url(rdv_id: int, guardian_id: int | None = None) -> str:
    token = guardian_token(rdv_id, guardian_id) if guardian_id is not None else rdv_token(rdv_id)
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/r/{token}"


# A child with two responsible adults (issue 23.3): each gets the rdv's link *for them*, `<rdv>g<guardian>-<sig>`,
# signed over both ids, so the page and what is done there know which adult acted (the other one is told), and one
# adult's link cannot be turned into the other's. 'g' is not a hex digit, so the two forms never read as each other.

def _guardian_signature(rdv_id: int, guardian_id: int) -> str:
    digest = hmac.new(_key(), f"rdv:{rdv_id}:guardian:{guardian_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]


def guardian_token(rdv_id: int, guardian_id: int) -> str:
    return f"{rdv_id:x}g{guardian_id:x}-{_guardian_signature(rdv_id, guardian_id)}"


def link_of(token: str) -> tuple[int, int | None] | None:
    """(rdv id, guardian id or None) of an rdv's link, either form; None when it is malformed or forged."""
    number, _, signature = token.partition("-")
    if "g" not in number:
        rdv_id = signed_id(token, _signature)
        return (rdv_id, None) if rdv_id is not None else None
    rdv_part, _, guardian_part = number.partition("g")
    rdv_id, guardian_id = ids = _strict_hex(rdv_part), _strict_hex(guardian_part)
    if None in ids:
        return None
    if not hmac.compare_digest(signature.encode(), _guardian_signature(rdv_id, guardian_id).encode()):
        return None
    return rdv_id, guardian_id


def move_url(rdv_id: int) -> str:
    """The page where the family picks another time for its rdv (after the identity check of its rdv's page)."""
    return f"{family_url(rdv_id)}/changer"


# A family's place in a collective session has its own link, signed apart from rdvs' (another HMAC message), so a
# place's token never opens an rdv nor the other way round: `/r/p/<token>` cancels only that place.

def _place_signature(participation_id: int) -> str:
    digest = hmac.new(_key(), f"place:{participation_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]


def place_token(participation_id: int) -> str:
    return signed_token(participation_id, _place_signature)


def place_id_from_token(token: str) -> int | None:
    return signed_id(token, _place_signature)


def place_url(participation_id: int) -> str:
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/r/p/{place_token(participation_id)}"
