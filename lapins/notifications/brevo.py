"""SMS through Brevo's transactional SMS API with its official SDK (PyPI `brevo-python`), and what its answers mean.

One `brevo.Brevo` client per process and API key (providers.sms_backend caches them like Twilio's): its httpx
client keeps the connection alive. The SDK's own retries are off (`max_retries=0`): a POST that timed out may have
been accepted, and only the outbox decides, after `find_sent`, to send again.

Brevo signs nothing it posts back: each SMS carries its own status callback URL with a token (an HMAC of the
outbox id, lapins.notifications.webhooks.brevo_status_callback_url) that the webhook compares in constant time.
`find_sent` reads Brevo's SMS event report for the message's tag (`lapins-m<outbox id>`) and number: it sees a
message once Brevo has recorded an event for it (« sent », « accepted »...), seconds after it took it; a message
taken but without any event yet is not seen (see docs/deploy.md, « Opérateur SMS »).

What a failure says, for the outbox: 402 or « not_enough_credits » → TransientError code "credit", 401/403 → code
"credentials" (backends.OPERATOR_DOWN: the operator cannot send for anyone); a number Brevo calls invalid or
unsubscribed → PermanentError; any other 4xx → TransientError (a configuration error is never blamed on the
family's number); 5xx, an unreadable answer (HTML, empty), a timeout → TransientError that may have been sent.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import httpx
from brevo import Brevo
from brevo.core.api_error import ApiError
from brevo.core.parse_error import ParsingError

from lapins.notifications.backends import (
    Balance, Delivery, OutgoingSms, PermanentError, ProviderError, TransientError,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.brevo.com/v3"
# Brevo's rule for a sender: up to 11 letters and digits (no space, no accent), or a number of up to 15 digits.
ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]{1,11}")
NUMERIC_SENDER = re.compile(r"\+?[0-9]{3,15}")
API_KEY = re.compile(r"xkeysib-[0-9a-f]{64}-[0-9A-Za-z]{16}")
TAG_PREFIX = "lapins-m"
# find_sent reads at most this many events of the number (Brevo's pages hold 100 at most).
FIND_SENT_PAGE_SIZE = 100
FIND_SENT_PAGES = 3

UNSUBSCRIBED_TEXT = "La personne a refusé les SMS (réponse STOP) : plus aucun SMS ne peut lui être envoyé."
INVALID_NUMBER_TEXT = "Numéro de téléphone invalide."
# Words of Brevo's messages (its `message` field, English) that speak of the number itself.
_UNSUBSCRIBED_WORDS = ("blacklist", "blocklist", "unsubscri", "opted out", "opt-out")
_INVALID_NUMBER_WORDS = ("invalid phone", "invalid recipient", "recipient is invalid", "invalid mobile",
                         "not a valid phone", "invalid number")


def sender_problem(sender: str | None) -> str | None:
    """Why Brevo would refuse this sender (French, for the settings page), or None."""
    if not sender:
        return "Brevo exige un expéditeur : indiquez un nom (11 lettres ou chiffres au plus) ou un numéro."
    if NUMERIC_SENDER.fullmatch(sender) or ALPHANUMERIC_SENDER.fullmatch(sender):
        return None
    return (f"L'expéditeur « {sender} » ne convient pas à Brevo : un nom compte 1 à 11 lettres ou chiffres, sans "
            "espace ni accent (exemple : PMI59), ou un numéro de 15 chiffres au plus.")


def brevo_sender(sender: str) -> str:
    """A number leaves without its « + » (Brevo takes digits only); a name as it is."""
    return sender.lstrip("+") if NUMERIC_SENDER.fullmatch(sender) else sender


def tag_of(message_id: int) -> str:
    return f"{TAG_PREFIX}{message_id}"


class BrevoSmsBackend:
    def __init__(self, client: Brevo, timeout: float, http: httpx.Client | None = None) -> None:
        self.client = client
        self.timeout = timeout
        self.http = http

    @classmethod
    def from_config(cls, config: Mapping) -> BrevoSmsBackend:
        api_key = config.get("BREVO_API_KEY")
        if not api_key:
            raise RuntimeError("SMS_BACKEND=brevo : BREVO_API_KEY doit être défini.")
        return cls.for_key(api_key, config)

    @classmethod
    def for_key(cls, api_key: str, config: Mapping) -> BrevoSmsBackend:
        """The backend of one Brevo API key (the deployment's or a territory's); BREVO_BASE_URL and
        BREVO_TIMEOUT_SECONDS are the deployment's."""
        timeout = float(config.get("BREVO_TIMEOUT_SECONDS") or 10)
        base_url = (config.get("BREVO_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        # The httpx client is ours, so that its timeout is BREVO_TIMEOUT_SECONDS and it can be closed.
        http = httpx.Client(timeout=timeout)
        return cls(Brevo(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0, httpx_client=http),
                   timeout, http)

    def close(self) -> None:
        """Closes the connection of a backend built for one question (the settings page checking a key)."""
        if self.http is not None:
            self.http.close()

    def send(self, sms: OutgoingSms) -> Delivery:
        if not sms.sender:
            raise TransientError("Le SMS n'a pas été envoyé : aucun expéditeur SMS configuré pour Brevo.",
                                 code="sender")
        params = {"recipient": sms.to, "sender": brevo_sender(sms.sender), "content": sms.body,
                  "type": "transactional", "tag": tag_of(sms.message_id), "unicode_enabled": False}
        if sms.status_callback:
            params["web_url"] = sms.status_callback
        try:
            answer = self.client.transactional_sms.send_transac_sms(**params)
            provider_id = str(answer.message_id)
        except Exception as error:
            mapped = _provider_error(error, self.timeout)
            if mapped is None:
                raise
            raise mapped from None
        logger.info("SMS %s accepted by Brevo as %s", sms.message_id, provider_id)
        return Delivery(provider_id=provider_id, segments=answer.sms_count or None)

    def find_sent(self, sms: OutgoingSms, since: datetime) -> Delivery | None:
        """The message Brevo recorded an event for under this message's tag and number since `since` (a day's
        slack: the report filters on whole days), or None."""
        start = (since if since.tzinfo else since.replace(tzinfo=UTC)) - timedelta(days=1)
        tag = tag_of(sms.message_id)
        try:
            for page in range(FIND_SENT_PAGES):
                report = self.client.transactional_sms.get_sms_events(
                    phone_number=sms.to, tags=json.dumps([tag]), start_date=start.date().isoformat(),
                    end_date=datetime.now(UTC).date().isoformat(), limit=FIND_SENT_PAGE_SIZE,
                    offset=page * FIND_SENT_PAGE_SIZE)
                events = report.events or []
                for event in events:
                    if event.tag == tag and event.message_id:
                        logger.info("SMS %s already accepted by Brevo as %s: not sent again", sms.message_id,
                                    event.message_id)
                        return Delivery(provider_id=str(event.message_id))
                if len(events) < FIND_SENT_PAGE_SIZE:
                    break
        except Exception as error:
            mapped = _provider_error(error, self.timeout, asking=True)
            if mapped is None:
                raise
            raise mapped from None
        return None

    def balance(self) -> Balance | None:
        """The SMS credits left (Brevo counts them in credits: one per SMS to mainland France), or None when the
        account has no SMS plan. Raises TransientError like `send` (code "credentials" for a refused key)."""
        try:
            account = self.client.account.get_account()
        except Exception as error:
            mapped = _provider_error(error, self.timeout, asking=True)
            if mapped is None:
                raise
            raise mapped from None
        for plan in account.plan or []:
            if plan.type == "sms":
                return Balance(messages=int(plan.credits))
        return None


def _error_fields(body) -> tuple[str, str]:
    """Brevo's error JSON ({"code": ..., "message": ...}) as (code, message), lower case; empty when not JSON."""
    if isinstance(body, Mapping):
        code, message = body.get("code"), body.get("message")
    else:
        code, message = getattr(body, "code", None), getattr(body, "message", None)
    return str(code or "").lower(), str(message or "").lower()


def _provider_error(error: Exception, timeout: float, asking: bool = False) -> ProviderError | None:
    """Brevo's or the network's failure as the outbox understands it (None: not one, a bug to let through).

    The SDK's exception is never chained nor logged: its text holds the request's headers and body, the family's
    number with them."""
    what = "Brevo n'a pas pu être interrogé" if asking else "Le SMS n'a pas été envoyé"
    if isinstance(error, ApiError):
        status = error.status_code or 0
        code, message = _error_fields(error.body)
        readable = bool(code or message)
        if 200 <= status < 300:
            # A 2xx whose body is not Brevo's JSON (a proxy's page, an empty body): the message may have left.
            return TransientError(f"{what} : réponse illisible de Brevo (HTTP {status}), nouvel essai plus tard.",
                                  code="unreadable", maybe_sent=not asking)
        if status == 402 or code == "not_enough_credits":
            return TransientError(f"{what} : crédit SMS épuisé chez Brevo. Rechargez le compte Brevo.",
                                  code="credit")
        if status in (401, 403) and (readable or status == 401):
            return TransientError(f"{what} : Brevo refuse la clé API (HTTP {status}) : vérifiez BREVO_API_KEY ou "
                                  "la clé du département, et les adresses IP autorisées du compte.",
                                  code="credentials")
        if status >= 500 or not readable:
            # A 5xx, or an answer that is not Brevo's (a gateway's HTML page): it does not say the message was
            # refused, a gateway may give it after Brevo took it. find_sent is asked before any new attempt.
            return TransientError(f"{what} : Brevo est momentanément indisponible (HTTP {status}), "
                                  "nouvel essai plus tard.", code=str(status), maybe_sent=not asking and status >= 500)
        if status == 429:
            return TransientError(f"{what} : trop de demandes envoyées à Brevo en même temps.", code="429")
        if not asking and any(word in message for word in _UNSUBSCRIBED_WORDS):
            return PermanentError(UNSUBSCRIBED_TEXT, code="unsubscribed")
        if not asking and any(word in message for word in _INVALID_NUMBER_WORDS):
            return PermanentError(INVALID_NUMBER_TEXT, code="invalid_number")
        if "sender" in message:
            return TransientError(f"{what} : Brevo refuse l'expéditeur configuré (HTTP {status}).", code="sender")
        return TransientError(f"{what} : Brevo a refusé la demande (HTTP {status}, {code or 'sans code'}).",
                              code=str(status))
    if isinstance(error, ParsingError):
        status = error.status_code or 0
        return TransientError(f"{what} : réponse inattendue de Brevo (HTTP {status}).", code="unreadable",
                              maybe_sent=not asking and (200 <= status < 300 or status >= 500))
    if isinstance(error, httpx.TimeoutException):
        return TransientError(f"{what} : Brevo n'a pas répondu en {timeout:g} s.", code="timeout")
    if isinstance(error, httpx.TransportError):
        return TransientError(f"{what} : Brevo est injoignable (erreur réseau).", code="network")
    if isinstance(error, ValueError | TypeError | AttributeError):
        # pydantic's ValidationError is a ValueError: a 2xx whose JSON is not what Brevo answers.
        return TransientError(f"{what} : réponse inattendue de Brevo.", code="unreadable", maybe_sent=not asking)
    return None
