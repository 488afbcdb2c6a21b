"""What every SMS or email provider implements, and the console backends of the embedded default.

lapins.notifications.providers picks the backend that the settings name.

A backend sends one message and says how it went: it returns a `Delivery`, or raises `TransientError` (try again
later: timeouts, 5xx, rate limits) or `PermanentError` (never retry: invalid number, unsubscribed). A
TransientError with `maybe_sent` is an answer that does not say whether the message left (no answer, a broken
connection, a 5xx that a proxy in front of the provider may give after the message was created): the outbox asks
`find_sent` before any new attempt; `answered` says the provider's own API gave it (its error body, e.g. Twilio's
JSON 500): its handling of the request is over, so it can be asked within seconds, not after the claim's lease. It
never touches the database; lapins.notifications.outbox records what
happened.

`find_sent` answers "did this message already leave?" for a send interrupted by a dying worker: the provider is
asked before the message is sent again, so a family never gets it twice. A backend that cannot tell returns None.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol


from lapins.notifications.gsm import segments

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderAccount:
    """A territory's operator and its own credentials, as stored: encrypted (lapins.infra.crypto), opened only to
    build its client. Credentials left None: the deployment's for that operator (environment)."""

    territory_id: int
    account_sid_encrypted: str | None = field(default=None, repr=False)  # Twilio
    auth_token_encrypted: str | None = field(default=None, repr=False)  # Twilio
    operator: str = "twilio"
    api_key_encrypted: str | None = field(default=None, repr=False)  # Brevo


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


UNANSWERED = frozenset({"timeout", "network"})  # codes of a request that got no answer at all
# Codes of a TransientError that says the operator cannot send for anyone right now (no credit left, credentials
# refused), not that this one message failed: the outbox keeps every message pending and administrators are told.
OPERATOR_DOWN = frozenset({"credit", "credentials"})


class ProviderError(Exception):
    def __init__(self, message: str, code: str | None = None, *, maybe_sent: bool | None = None,
                 answered: bool = False) -> None:
        super().__init__(message)
        self.message, self.code = message, code
        # Whether the provider may have taken the message all the same: the default follows the code.
        self.maybe_sent = code in UNANSWERED if maybe_sent is None else maybe_sent
        self.answered = answered  # the provider's API itself answered: nothing of the request is still under way


class TransientError(ProviderError):
    """Worth trying again later."""


class PermanentError(ProviderError):
    """Never worth trying again with this recipient (the number or address is flagged)."""


@dataclass(frozen=True)
class Balance:
    """What an operator says is left on the account: a count of messages where it counts in messages, else an
    amount of money in its currency."""

    messages: int | None = None
    amount: Decimal | None = None
    currency: str | None = None


class SmsBackend(Protocol):
    def send(self, sms: OutgoingSms) -> Delivery: ...

    def find_sent(self, sms: OutgoingSms, since: datetime) -> Delivery | None: ...


class BalanceReporting(Protocol):
    """A backend whose operator tells what credit is left (checked daily, see the delivery health room)."""

    def balance(self) -> Balance | None: ...


class EmailBackend(Protocol):
    def send(self, email: OutgoingEmail) -> Delivery: ...


class ConsoleSmsBackend:
    """The embedded default: nothing leaves the machine; the text is read in the dev inbox (/dev/messages)."""

    def send(self, sms: OutgoingSms) -> Delivery:
        logger.info("SMS %s kept in the dev inbox (console backend)", sms.message_id)
        return Delivery(provider_id=f"console-{sms.message_id}", segments=segments(sms.body))

    def find_sent(self, sms: OutgoingSms, since: datetime) -> Delivery | None:
        return None


class ConsoleEmailBackend:
    def send(self, email: OutgoingEmail) -> Delivery:
        logger.info("Email %s kept in the dev inbox (console backend)", email.message_id)
        return Delivery(provider_id=f"console-{email.message_id}")

