"""The backend each message goes through: the one the settings name, or a territory's own Twilio account."""
from __future__ import annotations

from flask import Flask, current_app

from lapins.infra import crypto
from lapins.notifications.backends import (
    ConsoleEmailBackend, ConsoleSmsBackend, EmailBackend, ProviderAccount, SmsBackend, TransientError,
)
from lapins.notifications.email import SmtpEmailBackend
from lapins.notifications.twilio import TwilioSmsBackend


def sms_backend(app: Flask | None = None, account: ProviderAccount | None = None) -> SmsBackend:
    """The SMS backend chosen by SMS_BACKEND, built once per process; with SMS_BACKEND=twilio and a territory's own
    `account`, the backend of that account (built once per process and credentials, see `_account_backend`)."""
    app = app or current_app
    if account is not None and app.config["SMS_BACKEND"] == "twilio":
        return _account_backend(app, account)
    backend = app.extensions.get("lapins.sms_backend")
    if backend is None:
        name = app.config["SMS_BACKEND"]
        if name == "twilio":
            backend = TwilioSmsBackend.from_config(app.config)
        elif name == "console":
            backend = ConsoleSmsBackend()
        else:
            raise RuntimeError(f"SMS_BACKEND inconnu : {name!r} (choix : console, twilio).")
        app.extensions["lapins.sms_backend"] = backend
    return backend


def email_backend(app: Flask | None = None) -> EmailBackend:
    """The email backend chosen by EMAIL_BACKEND, built once per process."""
    app = app or current_app
    backend = app.extensions.get("lapins.email_backend")
    if backend is None:
        name = app.config["EMAIL_BACKEND"]
        if name == "smtp":
            backend = SmtpEmailBackend.from_config(app.config)
        elif name == "console":
            backend = ConsoleEmailBackend()
        else:
            raise RuntimeError(f"EMAIL_BACKEND inconnu : {name!r} (choix : console, smtp).")
        app.extensions["lapins.email_backend"] = backend
    return backend


def _account_backend(app: Flask, account: ProviderAccount) -> SmsBackend:
    """The Twilio backend of a territory's own account, cached on its stored (encrypted) credentials and the
    deployment's Twilio settings: the same credentials reuse one client and its kept-alive connection; new ones
    (saved again, or deleted and the environment's used) replace the territory's old client."""
    key = (account.territory_id, account.account_sid_encrypted, account.auth_token_encrypted,
           app.config.get("TWILIO_BASE_URL") or "", app.config.get("TWILIO_TIMEOUT_SECONDS"))
    cache: dict[tuple, SmsBackend] = app.extensions.setdefault("lapins.territory_sms_backends", {})
    backend = cache.get(key)
    if backend is None:
        try:
            account_sid = crypto.decrypt(account.account_sid_encrypted)
            auth_token = crypto.decrypt(account.auth_token_encrypted)
        except crypto.InvalidToken:
            raise TransientError("Identifiants Twilio du département illisibles (la clé LAPINS_ENCRYPTION_KEY a "
                                 "changé ?) : un administrateur doit les saisir de nouveau.", code="credentials") from None
        backend = TwilioSmsBackend.for_account(account_sid, auth_token, app.config)
        for stale in [known for known in cache if known[0] == account.territory_id]:
            del cache[stale]
        cache[key] = backend
    return backend

