"""Secrets kept encrypted at rest in the database (TOTP secrets; later the territories' Twilio credentials).

`encrypt(text)` returns a Fernet token (AES-128-CBC with HMAC-SHA256, timestamped), `decrypt(token)` gives the text
back. The keys come from the LAPINS_ENCRYPTION_KEY setting, or from SECRET_KEY when it is not set. Each key is any
string: HKDF-SHA256 turns it into a Fernet key, so a passphrase works as well as `Fernet.generate_key()`'s output.
LAPINS_ENCRYPTION_KEY may list several keys separated by commas: the first encrypts, every one decrypts, so a key is
rotated by putting the new one first and calling `reencrypt` on the stored values before dropping the old one.

Changing SECRET_KEY while LAPINS_ENCRYPTION_KEY is unset makes the values encrypted before unreadable: production
deployments set LAPINS_ENCRYPTION_KEY (docs/deploy.md).
"""
from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

__all__ = ["InvalidToken", "decrypt", "encrypt", "reencrypt"]

# Changing this string changes every derived key: it only names what the keys are for.
_HKDF_INFO = b"lapins encryption at rest v1"


def _derive(secret: str) -> bytes:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret.encode())
    return base64.urlsafe_b64encode(key)


def _secrets() -> list[str]:
    configured = current_app.config.get("LAPINS_ENCRYPTION_KEY") or ""
    keys = [key.strip() for key in configured.split(",") if key.strip()]
    return keys or [current_app.config["SECRET_KEY"]]


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(_derive(secret)) for secret in _secrets()])


def encrypt(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The text; raises InvalidToken when no configured key opens it (a key changed) or it was altered."""
    return _fernet().decrypt(token.encode("ascii")).decode()


def reencrypt(token: str) -> str:
    """The same text encrypted with the first key, for rotating keys."""
    return _fernet().rotate(token.encode("ascii")).decode("ascii")
