"""A loopback stand-in for Twilio's Messages API, driven by the real twilio SDK over HTTP (never a monkeypatch).

`TwilioFake` is a threaded HTTP server on 127.0.0.1 that answers like api.twilio.com for what Lapins uses:

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json          send (201 + Message resource, or Twilio's error JSON)
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json          list, newest first (To, From, DateSent, paging)
    GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json    fetch one
    GET  /2010-04-01/Accounts/{AccountSid}/Balance.json           what is left on the account (`balance`)

Tests program its faults (`fail_next`, `throttle_next`, `hang_next`, `fail_after_accept_next`, `delay`), make numbers invalid or
unsubscribed, run the account out of credit (`run_out_of_credit`: every send answers Twilio's 20005 "Account not
active" until `top_up`), read what it accepted (`messages`, `count_for`) and every request to send, refused or not, with when it
came (`sends_to`), and make it call Lapins back like Twilio does, signed with the SDK's RequestValidator (`deliver`,
`status_request`, `inbound_request`).

Run alone for benchmarks: `python -m tests.fakes.twilio --port 0` prints the port it listens on, then serves
until interrupted. Per-request work is small and constant on POST: no sleep unless asked, no scan of the history.
"""
from __future__ import annotations

import argparse
import base64
import json
import math
import secrets
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

API_VERSION = "2010-04-01"
TEST_ACCOUNT_SID = "AC" + "7e57" * 8  # a test value shaped like a real Account SID ("AC" + 32 hex)
TEST_AUTH_TOKEN = "5ec7e7" + "0" * 26  # 32 characters, like a real Auth Token
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# The error codes the fake answers with (the ones Lapins reacts to), with the fake's own wording.
ERRORS = {
    20001: (400, "Invalid parameter."),
    20003: (401, "Authentication failed."),
    20005: (401, "Account not active."),  # what Twilio answers once the balance ran out and it suspended the account
    20404: (404, "The requested resource was not found."),
    20429: (429, "Too many requests."),
    20500: (500, "Internal server error."),
    21211: (400, "Invalid 'To' phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number or a MessagingServiceSid is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "The recipient has unsubscribed from this sender."),
}

# GSM 03.38: the basic alphabet (one septet) and the extension table (two septets: escape + character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENDED for char in text)


def segment_count(body: str) -> int:
    """Segments as the network bills them: GSM-7 160 septets (153 when split), else UCS-2 70 units (67)."""
    if is_gsm7(body):
        units, single, part = sum(2 if char in GSM7_EXTENDED else 1 for char in body), 160, 153
    else:
        units, single, part = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / part)


def rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment.astimezone(UTC)) if moment else None


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class FakeMessage:
    sid: str
    account_sid: str
    to: str
    body: str
    from_: str | None
    messaging_service_sid: str | None
    status_callback: str | None
    date_created: datetime
    status: str = "queued"
    date_sent: datetime | None = None
    date_updated: datetime | None = None
    error_code: int | None = None
    num_segments: int = 1

    def resource(self) -> dict:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"
        return {
            "account_sid": self.account_sid, "api_version": API_VERSION, "body": self.body,
            "date_created": rfc2822(self.date_created), "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated or self.date_created), "direction": "outbound-api",
            "error_code": self.error_code, "error_message": None, "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid, "num_media": "0",
            "num_segments": str(self.num_segments), "price": None, "price_unit": "USD", "sid": self.sid,
            "status": self.status, "to": self.to, "uri": uri,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json"),
                                 "feedback": uri.replace(".json", "/Feedback.json")},
        }


@dataclass(frozen=True)
class SignedRequest:
    """A request Twilio would make to Lapins: post `data` to `url` with `headers` (X-Twilio-Signature)."""

    url: str
    data: dict[str, str]
    headers: dict[str, str]

    @property
    def path(self) -> str:
        """Path and query string, for Flask's test client."""
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class _Fault:
    status: int | None = None  # answer this HTTP status with Twilio's error JSON
    hang: float = 0.0  # seconds to hold the request before answering (or dropping it)
    accept: bool = True  # for a hang: process the request (the message is accepted) before hanging
    gateway: bool = False  # with a status: process the request, then answer the status as a proxy would (HTML)
    body: str | None = None  # process the request, then answer 200 with this body instead of Twilio's JSON


@dataclass
class _State:
    messages: list[FakeMessage] = field(default_factory=list)
    by_sid: dict[str, FakeMessage] = field(default_factory=dict)
    by_to: dict[str, list[FakeMessage]] = field(default_factory=lambda: defaultdict(list))
    faults: deque[_Fault] = field(default_factory=deque)
    invalid: set[str] = field(default_factory=set)
    unsubscribed: set[str] = field(default_factory=set)
    requests: int = 0
    connections: int = 0
    sends: list[SendRequest] = field(default_factory=list)
    in_flight: int = 0  # API requests being served right now
    most_in_flight: int = 0
    balance: str = "100.00"  # the Balance resource's amount, in `currency`
    currency: str = "EUR"
    no_credit: bool = False


@dataclass(frozen=True)
class SendRequest:
    """A POST to Messages.json as the fake received it: to whom, when (arrival), and the HTTP status answered
    (None when it was dropped unanswered). Refused and faulty requests are there too."""

    to: str
    at: datetime
    status: int | None


class _Server(ThreadingHTTPServer):
    # socketserver's backlog is 5: a worker's sixteen sending threads per process connecting at once had their SYNs
    # dropped and retried a second later, past a test's 1 s timeout — a "network" error no real API gives.
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client killed mid-request (a worker killed by a test or a benchmark): nothing to report
        super().handle_error(request, client_address)


class TwilioFake:
    def __init__(self, account_sid: str = TEST_ACCOUNT_SID, auth_token: str = TEST_AUTH_TOKEN,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.delay = 0.0  # seconds added to every request, to play a slow network
        self._state = _State()
        self._lock = threading.Lock()
        self._released = threading.Event()  # set on stop: hanging requests end at once
        self._expected_auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._server = _Server((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- life cycle -----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """What TWILIO_BASE_URL is set to (the SDK's https://api.twilio.com stands here)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TwilioFake:
        # A short poll interval: stop() (each test's teardown) returns in milliseconds, not half a second.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="twilio-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- programmable behaviour -----------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """The next `count` API requests answer `status` (500, 503, 429...) with Twilio's error JSON."""
        self._add_faults(count, _Fault(status=status))

    def answer_next(self, count: int = 1) -> None:
        """The next `count` API requests are answered as usual: the faults programmed after them come later."""
        self._add_faults(count, _Fault())

    def throttle_next(self, count: int = 1) -> None:
        """The next `count` API requests answer 429 Too Many Requests (code 20429)."""
        self.fail_next(count, status=429)

    def hang_next(self, count: int = 1, seconds: float = 30.0, accept: bool = True) -> None:
        """The next `count` API requests wait `seconds` before answering: the client times out.

        With `accept` the request is processed first (the message is sent, only the answer is late: the case
        an interrupted send must not repeat); without it the request is dropped unanswered.
        """
        self._add_faults(count, _Fault(hang=seconds, accept=accept))

    def fail_after_accept_next(self, count: int = 1, status: int = 504) -> None:
        """The next `count` API requests are processed (a POST creates the message, kept and listed like any
        other), then answered `status` with a gateway's HTML page instead of Twilio's JSON: what a proxy or load
        balancer in front of Twilio returns when Twilio's answer comes too late for it."""
        self._add_faults(count, _Fault(status=status, gateway=True))

    def garble_next(self, count: int = 1, body: str = "") -> None:
        """The next `count` API requests are processed (a POST creates the message), then answered 200 with `body`
        (empty, or a proxy's HTML page) instead of Twilio's JSON: an answer that does not say what happened."""
        self._add_faults(count, _Fault(body=body))

    def _add_faults(self, count: int, fault: _Fault) -> None:
        with self._lock:
            self._state.faults.extend([fault] * count)

    def mark_invalid(self, *numbers: str) -> None:
        """Sending to these numbers answers 400 with code 21211."""
        with self._lock:
            self._state.invalid.update(numbers)

    def mark_unsubscribed(self, *numbers: str) -> None:
        """Sending to these numbers answers 400 with code 21610 (the person texted STOP)."""
        with self._lock:
            self._state.unsubscribed.update(numbers)

    def run_out_of_credit(self) -> None:
        """Every send is refused with 20005 (Account not active) and the balance reads 0, until `top_up`."""
        with self._lock:
            self._state.no_credit, self._state.balance = True, "0.00"

    def top_up(self, amount: str = "100.00") -> None:
        with self._lock:
            self._state.no_credit, self._state.balance = False, amount

    def set_balance(self, amount: str, currency: str = "EUR") -> None:
        with self._lock:
            self._state.balance, self._state.currency = amount, currency

    def reset_numbers(self) -> None:
        with self._lock:
            self._state.invalid.clear()
            self._state.unsubscribed.clear()

    def add_message(self, to: str, body: str, date_created: datetime, status: str = "delivered",
                    from_: str | None = "+33700000000") -> FakeMessage:
        """Puts a message in the account's history, as if sent earlier (by anyone)."""
        sent = date_created if status in {"sent", "delivered", "undelivered"} else None
        return self._store(to=to, body=body, from_=from_, messaging_service_sid=None, status_callback=None,
                           date_created=date_created, status=status, date_sent=sent)

    # --- what was accepted ----------------------------------------------------------------------------------

    @property
    def messages(self) -> list[FakeMessage]:
        with self._lock:
            return list(self._state.messages)

    @property
    def request_count(self) -> int:
        """API requests answered (any status), for throughput and retry assertions."""
        with self._lock:
            return self._state.requests

    @property
    def most_in_flight(self) -> int:
        """The most API requests the fake was serving at the same moment (a client sending in parallel)."""
        with self._lock:
            return self._state.most_in_flight

    @property
    def connection_count(self) -> int:
        """TCP connections opened by clients: with keep-alive, one per client however many requests."""
        with self._lock:
            return self._state.connections

    def sends_to(self, to: str) -> list[SendRequest]:
        """Every request to send an SMS to `to`, in the order they arrived, answered or not."""
        with self._lock:
            return [send for send in self._state.sends if send.to == to]

    def count_for(self, to: str, body: str) -> int:
        with self._lock:
            return sum(1 for message in self._state.by_to.get(to, ()) if message.body == body)

    def get(self, sid: str) -> FakeMessage:
        with self._lock:
            return self._state.by_sid[sid]

    # --- calling Lapins back, signed like Twilio ------------------------------------------------------------

    def sign(self, url: str, data: dict[str, str], auth_token: str | None = None) -> SignedRequest:
        from twilio.request_validator import RequestValidator

        signature = RequestValidator(auth_token or self.auth_token).compute_signature(url, data)
        return SignedRequest(url=url, data=dict(data), headers={"X-Twilio-Signature": signature})

    def status_request(self, sid: str, status: str = "delivered", error_code: int | str | None = None,
                       url: str | None = None) -> SignedRequest:
        """Moves a message to `status` and returns the signed status callback Twilio would post about it."""
        now = datetime.now(UTC)
        with self._lock:
            message = self._state.by_sid[sid]
            message.status, message.date_updated = status, now
            if status in {"sent", "delivered", "undelivered"} and message.date_sent is None:
                message.date_sent = now
            message.error_code = int(error_code) if error_code is not None else None
        target = url or message.status_callback
        if not target:
            raise ValueError(f"message {sid} has no StatusCallback URL")
        data = {"AccountSid": message.account_sid, "ApiVersion": API_VERSION, "MessageSid": sid, "SmsSid": sid,
                "MessageStatus": status, "SmsStatus": status, "To": message.to, "From": message.from_ or ""}
        if message.messaging_service_sid:
            data["MessagingServiceSid"] = message.messaging_service_sid
        if error_code is not None:
            data["ErrorCode"] = str(error_code)
        return self.sign(target, data)

    def deliver(self, sid: str, status: str = "delivered", error_code: int | str | None = None,
                url: str | None = None, timeout: float = 10.0) -> int:
        """Posts the status callback over HTTP to the message's StatusCallback URL; returns the HTTP status."""
        return self.post(self.status_request(sid, status, error_code, url), timeout=timeout)

    def inbound_request(self, url: str, from_: str, body: str, to: str = "+33700000000") -> SignedRequest:
        """The signed request Twilio posts to a number's messaging webhook when someone texts it."""
        sid = new_sid("SM")
        data = {"AccountSid": self.account_sid, "ApiVersion": API_VERSION, "Body": body, "From": from_, "To": to,
                "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "SmsStatus": "received", "NumMedia": "0",
                "NumSegments": str(segment_count(body))}
        return self.sign(url, data)

    @staticmethod
    def post(request: SignedRequest, timeout: float = 10.0) -> int:
        import requests

        return requests.post(request.url, data=request.data, headers=request.headers, timeout=timeout).status_code

    # --- the API, called by the handler threads -------------------------------------------------------------

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            self._state.requests += 1
            return self._state.faults.popleft() if self._state.faults else None

    def _store(self, *, to, body, from_, messaging_service_sid, status_callback, date_created, status="queued",
               date_sent=None) -> FakeMessage:
        message = FakeMessage(sid=new_sid("SM"), account_sid=self.account_sid, to=to, body=body, from_=from_,
                              messaging_service_sid=messaging_service_sid, status_callback=status_callback,
                              date_created=date_created, status=status, date_sent=date_sent,
                              num_segments=segment_count(body))
        with self._lock:
            self._state.messages.append(message)
            self._state.by_sid[message.sid] = message
            self._state.by_to[to].append(message)
        return message

    def _create(self, form: dict[str, str]) -> tuple[int, dict]:
        to, body = form.get("To", "").strip(), form.get("Body", "")
        from_, service = form.get("From") or None, form.get("MessagingServiceSid") or None
        if not to:
            return _error(21604)
        if not body:
            return _error(21602)
        if not from_ and not service:
            return _error(21603)
        with self._lock:
            invalid, unsubscribed = to in self._state.invalid, to in self._state.unsubscribed
            if self._state.no_credit:
                return _error(20005)
        if invalid or not to.startswith("+") or not to[1:].isdigit():
            return _error(21211)
        if unsubscribed:
            return _error(21610)
        message = self._store(to=to, body=body, from_=from_, messaging_service_sid=service,
                              status_callback=form.get("StatusCallback") or None,
                              date_created=datetime.now(UTC).replace(microsecond=0),
                              status="queued" if from_ else "accepted")
        return 201, message.resource()

    def _list(self, query: dict[str, list[str]]) -> tuple[int, dict]:
        first = {key: values[0] for key, values in query.items() if values}
        try:
            page_size = min(max(int(first.get("PageSize", DEFAULT_PAGE_SIZE)), 1), MAX_PAGE_SIZE)
            page = max(int(first.get("Page", 0)), 0)
            sent_on, sent_from, sent_to = (_date_bounds(first.get(key)) for key in ("DateSent", "DateSent>",
                                                                                      "DateSent<"))
        except ValueError:
            return _error(20001)
        with self._lock:
            pool = list(self._state.by_to.get(first["To"], ())) if "To" in first else list(self._state.messages)
        selected = [
            m for m in pool
            if ("From" not in first or m.from_ == first["From"])
            and (sent_on is None or (m.date_sent and sent_on[0] <= m.date_sent <= sent_on[1]))
            and (sent_from is None or (m.date_sent and m.date_sent >= sent_from[0]))
            and (sent_to is None or (m.date_sent and m.date_sent <= sent_to[1]))
        ]
        selected.reverse()  # newest first, like Twilio (messages are stored in creation order)
        selected.sort(key=lambda m: m.date_created, reverse=True)
        start = page * page_size
        chunk = selected[start:start + page_size]
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"
        filters = {key: value for key, value in first.items() if key not in {"Page", "PageSize", "PageToken"}}

        def page_uri(number: int) -> str:
            return f"{base}?{urlencode({**filters, 'PageSize': page_size, 'Page': number})}"

        more = start + page_size < len(selected)
        return 200, {
            "messages": [m.resource() for m in chunk], "page": page, "page_size": page_size,
            "start": start, "end": start + max(len(chunk) - 1, 0), "uri": page_uri(page),
            "first_page_uri": page_uri(0), "previous_page_uri": page_uri(page - 1) if page else None,
            "next_page_uri": f"{page_uri(page + 1)}&PageToken=PA{chunk[-1].sid}" if more else None,
        }

    def _balance(self) -> tuple[int, dict]:
        with self._lock:
            return 200, {"account_sid": self.account_sid, "balance": self._state.balance,
                         "currency": self._state.currency}

    def _fetch(self, sid: str) -> tuple[int, dict]:
        with self._lock:
            message = self._state.by_sid.get(sid)
        return (200, message.resource()) if message else _error(20404)


def _error(code: int) -> tuple[int, dict]:
    status, text = ERRORS.get(code, (400, "Bad request."))
    return status, {"code": code, "message": text, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                    "status": status}


def _date_bounds(value: str | None) -> tuple[datetime, datetime] | None:
    """A DateSent filter value: YYYY-MM-DD covers the whole (UTC) day, a full instant only itself."""
    if not value:
        return None
    if len(value) == 10:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        return day, day + timedelta(days=1) - timedelta(microseconds=1)
    moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return moment, moment


def _handler_for(fake: TwilioFake) -> type[BaseHTTPRequestHandler]:
    prefix = f"/{API_VERSION}/Accounts/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects
        # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm and the client's delayed
        # ACK hold every answer ~40 ms.
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake._state.connections += 1

        def log_message(self, format, *args) -> None:  # 20,000 requests must not flood stderr
            pass

        def do_POST(self) -> None:
            self._serve("POST")

        def do_GET(self) -> None:
            self._serve("GET")

        def _serve(self, method: str) -> None:
            with fake._lock:
                fake._state.in_flight += 1
                fake._state.most_in_flight = max(fake._state.most_in_flight, fake._state.in_flight)
            try:
                self._serve_counted(method)
            finally:
                with fake._lock:
                    fake._state.in_flight -= 1

        def _serve_counted(self, method: str) -> None:
            arrived = datetime.now(UTC)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            fault = fake._next_fault()
            if fake.delay:
                time.sleep(fake.delay)
            if fault and fault.hang and not fault.accept:
                self._record_send(method, raw, arrived, None)
                fake._released.wait(fault.hang)
                self.close_connection = True
                return
            if fault and fault.gateway:
                self._route(method, raw)
                self._record_send(method, raw, arrived, fault.status)
                self._answer(fault.status, f"<html><body><h1>{fault.status} Gateway Time-out</h1></body></html>",
                             "text/html")
                return
            if fault and fault.body is not None:
                self._route(method, raw)
                self._record_send(method, raw, arrived, 200)
                self._answer(200, fault.body, "text/html" if fault.body else "application/json")
                return
            if fault and fault.status:
                code = {429: 20429, 401: 20003, 404: 20404}.get(fault.status, 20500)
                status, payload = fault.status, {**_error(code)[1], "status": fault.status}
            else:
                status, payload = self._route(method, raw)
            self._record_send(method, raw, arrived, status)
            if fault and fault.hang:
                fake._released.wait(fault.hang)
            self._answer(status, payload)

        def _record_send(self, method: str, raw: str, arrived: datetime, status: int | None) -> None:
            if method == "POST" and urlsplit(self.path).path.endswith("/Messages.json"):
                to = parse_qs(raw).get("To", [""])[0]
                with fake._lock:
                    fake._state.sends.append(SendRequest(to=to, at=arrived, status=status))

        def _route(self, method: str, raw: str) -> tuple[int, dict]:
            parts = urlsplit(self.path)
            if not parts.path.startswith(prefix):
                return _error(20404)
            account, _, rest = parts.path[len(prefix):].partition("/")
            if self.headers.get("Authorization") != fake._expected_auth or account != fake.account_sid:
                return _error(20003)
            if rest == "Messages.json" and method == "POST":
                return fake._create({key: values[0] for key, values in parse_qs(raw).items()})
            if rest == "Messages.json" and method == "GET":
                return fake._list(parse_qs(parts.query))
            if rest == "Balance.json" and method == "GET":
                return fake._balance()
            if rest.startswith("Messages/") and rest.endswith(".json") and method == "GET":
                return fake._fetch(rest[len("Messages/"):-len(".json")])
            return _error(20404)

        def _answer(self, status: int, payload: dict | str, content_type: str = "application/json") -> None:
            data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", f"{content_type}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up waiting (a timeout test): nothing to answer to
                self.close_connection = True

    return Handler


# --- pytest fixtures (tests/conftest.py loads this module with pytest_plugins) ------------------------------


@pytest.fixture()
def twilio_fake():
    """A fresh fake Twilio on 127.0.0.1 for this test, stopped afterwards."""
    with TwilioFake() as fake:
        yield fake


@pytest.fixture()
def twilio_app_config(twilio_fake) -> dict:
    """Settings that point Lapins' Twilio backend at `twilio_fake`."""
    return {"SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": twilio_fake.account_sid,
            "TWILIO_AUTH_TOKEN": twilio_fake.auth_token, "TWILIO_BASE_URL": twilio_fake.url}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A loopback fake of Twilio's Messages API (127.0.0.1 only).")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--account-sid", default=TEST_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=TEST_AUTH_TOKEN)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to every request")
    args = parser.parse_args(argv)
    fake = TwilioFake(args.account_sid, args.auth_token, port=args.port)
    fake.delay = args.delay
    print(fake.port, flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()


if __name__ == "__main__":
    main()
