"""What every SMS or email provider implements, and the console backends of the embedded default.

A backend sends one message and says how it went: it returns a `Delivery`, or raises `TransientError` (try again
later: timeouts, 5xx, rate limits) or `PermanentError` (never retry: invalid number, unsubscribed). It never
touches the database; lapins.notifications.outbox records what happened.

`find_sent` answers "did this message already leave?" for a send interrupted by a dying worker: the provider is
asked before the message is sent again, so a family never gets it twice. A backend that cannot tell returns None.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from flask import Flask, current_app

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderAccount:
    """A territory's own Twilio account, as stored: encrypted (lapins.infra.crypto), opened only to build its client."""

    territory_id: int
    account_sid_encrypted: str = field(repr=False)
    auth_token_encrypted: str = field(repr=False)


@dataclass(frozen=True)
class OutgoingSms:
    message_id: int
    to: str  # E.164
    body: str  # GSM-7, one segment
    sender: str | None = None  # E.164 number or alphanumeric sender
    messaging_service_sid: str | None = None
    status_callback: str | None = None  # absolute URL the provider posts delivery statuses to
    account: ProviderAccount | None = None  # the territory's own account; None: the deployment's (environment)


@dataclass(frozen=True)
class OutgoingEmail:
    # The outbox id, or for an e-mail that is not an outbox row (agents' notices) a text reference of its own:
    # it makes the Message-ID, so it must never repeat.
    message_id: int | str
    to: str
    subject: str
    text: str
    html: str
    ics: bytes | None = None  # an iCalendar attachment
    ics_method: str | None = None  # PUBLISH or CANCEL


@dataclass(frozen=True)
class Delivery:
    provider_id: str
    segments: int | None = None


class ProviderError(Exception):
    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class TransientError(ProviderError):
    """Worth trying again later."""


class PermanentError(ProviderError):
    """Never worth trying again with this recipient (the number or address is flagged)."""


class SmsBackend(Protocol):
    def send(self, sms: OutgoingSms) -> Delivery: ...

    def find_sent(self, sms: OutgoingSms, since: datetime) -> Delivery | None: ...


class EmailBackend(Protocol):
    def send(self, email: OutgoingEmail) -> Delivery: ...


class ConsoleSmsBackend:
    """The embedded default: nothing leaves the machine; the text is read in the dev inbox (/dev/messages)."""

    def send(self, sms: OutgoingSms) -> Delivery:
        from lapins.notifications.gsm import segments

        logger.info("SMS %s kept in the dev inbox (console backend)", sms.message_id)
        return Delivery(provider_id=f"console-{sms.message_id}", segments=segments(sms.body))

    def find_sent(self, sms: OutgoingSms, since: datetime) -> Delivery | None:
        return None


class ConsoleEmailBackend:
    def send(self, email: OutgoingEmail) -> Delivery:
        logger.info("Email %s kept in the dev inbox (console backend)", email.message_id)
        return Delivery(provider_id=f"console-{email.message_id}")


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
            from lapins.notifications.twilio import TwilioSmsBackend

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
            from lapins.notifications.email import SmtpEmailBackend

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
    from lapins.notifications.twilio import TwilioSmsBackend

    key = (account.territory_id, account.account_sid_encrypted, account.auth_token_encrypted,
           app.config.get("TWILIO_BASE_URL") or "", app.config.get("TWILIO_TIMEOUT_SECONDS"))
    cache: dict[tuple, SmsBackend] = app.extensions.setdefault("lapins.territory_sms_backends", {})
    backend = cache.get(key)
    if backend is None:
        from lapins.infra import crypto

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

