"""SMS through Twilio's REST API with the official SDK, and what Twilio's error codes mean for a family's number.

One `twilio.rest.Client` per process and Twilio account (providers.sms_backend caches the backend of the
deployment's account, and one per territory that has its own credentials). Its HTTP client (`PooledHttpClient`)
is the SDK's `HttpClient` over a urllib3 pool, not `requests`: the pool keeps connections to Twilio alive between
messages and is shared by the outbox's sending threads, and the proxy settings are read once, not at each request.
No request is ever retried by the client: a POST that timed out may have been accepted, and only the outbox
decides, after `find_sent`, to send again.

Error codes are the one table both the sending path and the status webhook read (`UNDELIVERABLE_CODES`,
`error_text`). A configuration error (credentials, sender, geographic permissions) is never blamed on the
family's number: it is a TransientError, retried until the message's deadline and visible to the agents.
"""
from __future__ import annotations

import codecs
import json
import logging
import os
import threading
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote, urlencode

import certifi
import requests
import urllib3
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ConnectTimeoutError, ProtocolError, ProxyError, ReadTimeoutError, SSLError

from lapins.notifications.backends import (
    Balance, Delivery, OutgoingSms, PermanentError, ProviderError, TransientError,
)

logger = logging.getLogger(__name__)

# The number itself cannot get our SMS (invalid, not a mobile, unknown, blocked, unsubscribed): the message is
# undeliverable and the usager's phone is flagged until an agent changes it. The text is shown to agents.
UNDELIVERABLE_CODES = {
    "21211": "Numéro de téléphone invalide.",
    "21214": "Numéro de téléphone injoignable.",
    "21612": "Ce numéro ne peut pas recevoir de SMS.",
    "21614": "Ce numéro n'est pas un numéro de mobile : il ne peut pas recevoir de SMS.",
    "21635": "Ce numéro est un numéro fixe : il ne peut pas recevoir de SMS.",
    "21610": "La personne a refusé les SMS (réponse STOP) : plus aucun SMS ne peut lui être envoyé.",
    "30004": "Les SMS sont bloqués sur ce numéro (par la personne ou son opérateur).",
    "30005": "Numéro inconnu ou qui n'est plus attribué.",
    "30006": "Numéro fixe ou opérateur injoignable : ce numéro ne peut pas recevoir de SMS.",
}

# Failures that say nothing against the number: the message failed (or will be retried), the phone stays usable.
OTHER_ERRORS = {
    "20003": "Identifiants Twilio refusés : vérifier TWILIO_ACCOUNT_SID et TWILIO_AUTH_TOKEN.",
    "20429": "Trop de demandes envoyées à Twilio en même temps.",
    "21408": "Le compte Twilio n'autorise pas l'envoi de SMS vers cette région (permissions géographiques).",
    "21603": "Aucun expéditeur SMS configuré (numéro ou service de messagerie Twilio).",
    "21606": "L'expéditeur SMS configuré n'est pas autorisé par Twilio pour cet envoi.",
    "21659": "L'expéditeur SMS configuré n'appartient pas au compte Twilio.",
    "30001": "File d'attente Twilio saturée : SMS non envoyé.",
    "30002": "Compte Twilio suspendu : SMS non envoyé.",
    "30003": "Téléphone éteint ou hors réseau : le SMS n'a pas pu être remis.",
    "30007": "SMS filtré par l'opérateur.",
    "30008": "Échec de remise inconnu de l'opérateur.",
    "10001": "Compte Twilio inactif (crédit épuisé ?) : SMS non envoyé.",
    "20005": "Compte Twilio inactif (crédit épuisé ?) : SMS non envoyé.",
}

# The account cannot send for anyone: its balance ran out (Twilio suspends it, 20005 "Account not active" on the
# API, 10001 in the logs, 30002 on a message's status) or an HTTP 402; or its credentials are refused (20003, 401).
# Sent as the outbox's OPERATOR_DOWN codes, so that messages wait instead of failing and administrators are told.
NO_CREDIT_CODES = frozenset({"10001", "20005", "30002"})
REFUSED_CREDENTIALS_CODES = frozenset({"20003"})

# find_sent looks at this many of the number's latest messages at most.
FIND_SENT_LIMIT = 200
FIND_SENT_PAGE_SIZE = 50
# Twilio's clock and ours may differ a little, and date_created has one-second precision.
CLOCK_SLACK = timedelta(minutes=1)


def error_text(code: str | int | None) -> str:
    """What an agent reads about a Twilio error code, in French."""
    key = str(code) if code is not None else ""
    known = UNDELIVERABLE_CODES.get(key) or OTHER_ERRORS.get(key)
    if known:
        return known
    return f"Le SMS n'a pas pu être remis (erreur Twilio {key})." if key else "Le SMS n'a pas pu être remis."


def is_undeliverable(code: str | int | None) -> bool:
    return code is not None and str(code) in UNDELIVERABLE_CODES


class TwilioSmsBackend:
    def __init__(self, client: Client, timeout: float) -> None:
        self.client = client
        self.timeout = timeout

    @classmethod
    def from_config(cls, config: Mapping) -> TwilioSmsBackend:
        account_sid, auth_token = config.get("TWILIO_ACCOUNT_SID"), config.get("TWILIO_AUTH_TOKEN")
        if not account_sid or not auth_token:
            raise RuntimeError("SMS_BACKEND=twilio : TWILIO_ACCOUNT_SID et TWILIO_AUTH_TOKEN doivent être définis.")
        return cls.for_account(account_sid, auth_token, config)

    @classmethod
    def for_account(cls, account_sid: str, auth_token: str, config: Mapping) -> TwilioSmsBackend:
        """The backend of one Twilio account (the deployment's or a territory's); the rest of the settings
        (TWILIO_BASE_URL, TWILIO_TIMEOUT_SECONDS) are the deployment's."""
        timeout = float(config.get("TWILIO_TIMEOUT_SECONDS") or 10)
        # As many kept connections as the outbox has sending threads: beyond the pool's size, each send would open
        # (and TLS-handshake) a connection of its own.
        threads = int(config.get("OUTBOX_SEND_THREADS") or 0)
        http_client = PooledHttpClient(timeout=timeout, logger=_sdk_logger(),
                                       pool_size=max(threads, min(32, (os.cpu_count() or 1) + 4)))
        client = Client(account_sid, auth_token, http_client=http_client)
        base_url = (config.get("TWILIO_BASE_URL") or "").rstrip("/")
        if base_url:
            # Every Messages call (create, list, next pages, fetch) builds its URL from the `api` domain's
            # base_url (twilio.base.domain.Domain.absolute_url); the Client creates that domain once and keeps
            # it, so setting it here sends the whole Messages API to this host instead of https://api.twilio.com.
            client.api.base_url = base_url
        return cls(client, timeout)

    def send(self, sms: OutgoingSms) -> Delivery:
        params: dict[str, str] = {"to": sms.to, "body": sms.body}
        if sms.messaging_service_sid:
            params["messaging_service_sid"] = sms.messaging_service_sid
        if sms.sender:
            params["from_"] = sms.sender
        if sms.status_callback:
            params["status_callback"] = sms.status_callback
        try:
            message = self.client.messages.create(**params)
        except Exception as error:
            mapped = _provider_error(error, self.timeout)
            if mapped is None:
                raise
            raise mapped from None
        if not message.sid:
            # A 2xx whose body is not Twilio's Message (empty, a proxy's page the SDK read as nothing): the SMS may
            # have been taken; find_sent is asked before any new attempt.
            raise TransientError("Le SMS n'a peut-être pas été envoyé : réponse illisible de Twilio, vérification "
                                 "avant tout nouvel essai.", code="network", maybe_sent=True)
        logger.info("SMS %s accepted by Twilio as %s", sms.message_id, message.sid)
        return Delivery(provider_id=message.sid, segments=_segments(message.num_segments))

    def find_sent(self, sms: OutgoingSms, since: datetime) -> Delivery | None:
        """The message Twilio holds with this exact body for this number, created after `since` (1 min slack).

        Not filtered by DateSent: a message still queued at Twilio has no date_sent yet, and that is precisely
        the one an interrupted send must not repeat. Twilio lists the newest first; the scan stops at the first
        message sent before the cutoff.
        """
        cutoff = (since if since.tzinfo else since.replace(tzinfo=UTC)) - CLOCK_SLACK
        try:
            for message in self.client.messages.stream(to=sms.to, limit=FIND_SENT_LIMIT,
                                                       page_size=FIND_SENT_PAGE_SIZE):
                if message.date_sent and message.date_sent < cutoff:
                    break
                if (message.body == sms.body and message.status != "canceled"
                        and message.date_created and message.date_created >= cutoff):
                    logger.info("SMS %s already accepted by Twilio as %s: not sent again", sms.message_id,
                                message.sid)
                    return Delivery(provider_id=message.sid, segments=_segments(message.num_segments))
        except Exception as error:
            mapped = _provider_error(error, self.timeout, asking=True)
            if mapped is None:
                raise
            raise mapped from None
        return None

    def balance(self) -> Balance | None:
        """What is left on the account (Twilio's Balance resource, an amount in the account's currency); None
        when Twilio's answer cannot be read. A refused account raises like a send (code credit or credentials)."""
        try:
            answer = self.client.api.v2010.account.balance.fetch()
        except Exception as error:
            mapped = _provider_error(error, self.timeout, asking=True)
            if mapped is None:
                raise
            raise mapped from None
        try:
            return Balance(amount=Decimal(str(answer.balance)), currency=answer.currency or None)
        except (InvalidOperation, TypeError, ValueError):
            logger.warning("Twilio balance: an answer that is not a number")
            return None


def _provider_error(error: Exception, timeout: float, asking: bool = False) -> ProviderError | None:
    """Twilio's or the network's failure as the outbox understands it (None: not one, a bug to let through).

    The original exception is not chained (`from None` at the call sites): its text and URL may carry the
    family's phone number, which must not reach logs or the agents' screens.
    `code` says what happened: Twilio's error code (or the HTTP status), "timeout" (the request left and no answer
    came) or "network" (no connection, or it broke mid-request). After those, and after any 5xx, the message may
    have been accepted all the same (`maybe_sent`): ask find_sent before sending it again.
    """
    what = "Twilio n'a pas pu être interrogé" if asking else "Le SMS n'a pas été envoyé"
    if isinstance(error, TwilioRestException):
        code = str(error.code or error.status)
        if error.status >= 500:
            # A 5xx does not say the message was refused: a gateway in front of Twilio (502, 503, 504) may answer
            # it after Twilio created the message. find_sent is asked before any new attempt. Twilio's own error
            # (its JSON, with one of its codes: the SDK puts the HTTP status there for any other page) says its
            # handling of the request is over: find_sent can be asked within seconds, not a lease later.
            return TransientError(f"{what} : Twilio est momentanément indisponible (HTTP {error.status}), "
                                  "nouvel essai plus tard.", code=code, maybe_sent=not asking,
                                  answered=error.code is not None and error.code != error.status)
        if error.status == 429:
            return TransientError(f"{what} : Twilio est momentanément indisponible (HTTP {error.status}), "
                                  "nouvel essai plus tard.", code=code)
        if code in NO_CREDIT_CODES or error.status == 402:
            return TransientError(f"{what} : crédit épuisé ou compte suspendu chez Twilio (code Twilio {code}).",
                                  code="credit")
        if code in REFUSED_CREDENTIALS_CODES or error.status == 401:
            return TransientError(f"{what} : {error_text('20003')[0].lower()}{error_text('20003')[1:-1]} "
                                  f"(code Twilio {code}).", code="credentials")
        if not asking and code in UNDELIVERABLE_CODES:
            return PermanentError(UNDELIVERABLE_CODES[code], code=code)
        reason = error_text(code).rstrip(".")
        return TransientError(f"{what} : {reason[0].lower()}{reason[1:]} (code Twilio {code}).", code=code)
    page_response = error.args[1] if isinstance(error, TwilioException) and len(error.args) > 1 else None
    if getattr(page_response, "status_code", None):
        # A list page that did not answer 200: the SDK raises a bare TwilioException carrying the response.
        status = page_response.status_code
        return TransientError(f"{what} : Twilio a répondu HTTP {status}, nouvel essai plus tard.", code=str(status),
                              maybe_sent=not asking and status >= 500)
    # urllib3's (PooledHttpClient) and requests' (a client given by hand) network errors, as requests sorted them:
    # a connection never made (even on a connect timeout) or broken is "network"; "timeout" is an answer not come.
    if isinstance(error, ConnectTimeoutError | ProtocolError | SSLError | ProxyError
                  | requests.exceptions.ConnectionError):
        return TransientError(f"{what} : Twilio est injoignable (erreur réseau).", code="network")
    if isinstance(error, ReadTimeoutError | requests.exceptions.Timeout):
        return TransientError(f"{what} : Twilio n'a pas répondu en {timeout:g} s.", code="timeout")
    if isinstance(error, Urllib3Error | requests.exceptions.RequestException | TwilioException | ValueError):
        # ValueError: an answer that is not Twilio's JSON (a proxy's error page...).
        return TransientError(f"{what} : réponse inattendue de Twilio.", code="network")
    return None


class PooledHttpClient(HttpClient):
    """The SDK's HTTP client over one urllib3 pool (per proxy), for the threads of a process to share.

    What `requests` did at each request, done once: the proxy settings (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,
    NO_PROXY, either case) and the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi's) are read from the
    environment when the client is built, and the route to each host is decided at its first request. Each request
    waits `timeout` seconds at most to connect and as long for the answer; none is retried, and no redirect is
    followed (the SDK's defaults).
    """

    def __init__(self, timeout: float | None = None, logger: logging.Logger | None = None,
                 environ: Mapping[str, str] | None = None, pool_size: int = min(32, (os.cpu_count() or 1) + 4)):
        super().__init__(logger or _sdk_logger(), False, timeout)
        environ = os.environ if environ is None else environ
        self.proxies = _proxies(environ)
        ca_certs = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or certifi.where()
        # block=False: a thread finding every connection busy opens one more, dropped after use (as requests does).
        self._settings = {"maxsize": pool_size, "block": False, "ca_certs": ca_certs, "retries": False}
        self._direct = urllib3.PoolManager(**self._settings)
        self._managers: dict[str, urllib3.PoolManager] = {}
        self._routes: dict[tuple[str, str], urllib3.PoolManager] = {}
        self._lock = threading.Lock()  # the sending threads may meet on a host's first request

    def request(self, method: str, url: str, params: dict | None = None, data: dict | None = None,
                headers: dict | None = None, auth: tuple[str, str] | None = None, timeout: float | None = None,
                allow_redirects: bool = False) -> Response:
        if timeout is None:
            timeout = self.timeout
        elif timeout <= 0:
            raise ValueError(timeout)
        method = method.upper()
        headers = dict(headers or {})
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params, doseq=True)}"
        body = None
        if data:
            if headers.get("Content-Type") in ("application/json", "application/scim+json"):
                body = json.dumps(data, allow_nan=False).encode()
            else:
                body = urlencode(data, doseq=True)
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if auth:
            headers.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        if self.logger.isEnabledFor(logging.INFO):  # the SDK's log lines are formatted before being filtered
            self.log_request({"method": method, "url": url, "params": None, "headers": headers})
        answer = self._manager(url).request(
            method, url, body=body, headers=headers, redirect=allow_redirects, retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout))
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info("Response Status Code: %s", answer.status)
        charset = _charset(answer.headers.get("Content-Type", ""))
        return Response(answer.status, answer.data.decode(charset, errors="replace"), answer.headers)

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urllib3.util.parse_url(url)
        key = (parts.scheme or "http", parts.netloc or "")
        manager = self._routes.get(key)
        if manager is None:
            with self._lock:
                manager = self._routes.get(key)
                if manager is None:
                    proxy = self.proxies.get(key[0]) or self.proxies.get("all")
                    if proxy and urllib.request.proxy_bypass_environment(parts.host or "", self.proxies):
                        proxy = None
                    manager = self._routes[key] = self._proxy_manager(proxy) if proxy else self._direct
        return manager

    def _proxy_manager(self, proxy: str) -> urllib3.PoolManager:
        manager = self._managers.get(proxy)
        if manager is None:
            parts = urllib3.util.parse_url(proxy)
            proxy_headers = (urllib3.make_headers(proxy_basic_auth=unquote(parts.auth)) if parts.auth else None)
            bare = parts._replace(auth=None).url
            manager = self._managers[proxy] = urllib3.ProxyManager(bare, proxy_headers=proxy_headers,
                                                                   **self._settings)
        return manager


def _proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """{scheme: proxy URL, "no": NO_PROXY} from the environment, the lower-case name first (as urllib's
    getproxies_environment and requests read them); a proxy given without a scheme is an http:// one."""
    proxies = {}
    for name in ("http", "https", "all", "no"):
        value = environ.get(f"{name}_proxy") or environ.get(f"{name.upper()}_PROXY")
        if value:
            proxies[name] = value if name == "no" or "://" in value else f"http://{value}"
    return proxies


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            try:
                return codecs.lookup(value.strip('"\'')).name
            except LookupError:  # a charset Python does not know: read as UTF-8 (bad bytes replaced)
                break
    return "utf-8"  # JSON's encoding, and what Twilio sends


def _segments(value) -> int | None:
    """num_segments is a string, and "0" while a Messaging Service has not yet picked a sender: unknown."""
    try:
        return int(value) or None
    except (TypeError, ValueError):
        return None


def _sdk_logger() -> logging.Logger:
    # The SDK logs every request at INFO, query string included: a find_sent would put the family's phone
    # number in the logs. Its logger here only speaks from WARNING up.
    sdk_logger = logging.getLogger("lapins.notifications.twilio.sdk")
    sdk_logger.setLevel(logging.WARNING)
    return sdk_logger
