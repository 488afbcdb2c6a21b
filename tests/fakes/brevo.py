"""A loopback stand-in for Brevo's transactional SMS API, driven by the real `brevo-python` SDK over HTTP.

`BrevoFake` is a threaded HTTP server on 127.0.0.1 that answers like api.brevo.com/v3 for what Lapins uses:

    POST /v3/transactionalSMS/sms                 send (201 + messageId, smsCount, remainingCredits; or Brevo's error JSON)
    GET  /v3/transactionalSMS/statistics/events   the SMS events, newest first (phoneNumber, tags, dates, limit/offset)
    GET  /v3/account                              the account and its plans, SMS credits among them

Every request must carry the `api-key` header of the account (401 otherwise). Tests program its faults
(`fail_next` with Brevo's JSON, an HTML page or an empty body; `hang_next`; `fail_after_accept_next`), its credits
(`credits`: 402 « not_enough_credits » once spent), numbers invalid or unsubscribed, and read what it accepted
(`messages`, `count_for`). It calls Lapins back like Brevo does — a JSON POST to the message's `webUrl`, unsigned —
with `deliver` (or `callback` for the request alone), and can do so before it answers the send
(`call_back_before_answer`).

Run alone for benchmarks: `python -m tests.fakes.brevo --port 0` prints the port it listens on, then serves until
interrupted.
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import secrets
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes.twilio import segment_count

TEST_API_KEY = "xkeysib-" + "b7e0" * 16 + "-" + "T3stK3yT3stK3y00"  # shaped like a real key
PREFIX = "/v3"
SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]{1,11}|[0-9]{3,15}")
RECIPIENT = re.compile(r"\+?[0-9]{6,15}")

ERRORS = {
    "unauthorized": (401, "Key not found"),
    "not_enough_credits": (402, "Not enough credits"),
    "invalid_parameter": (400, "Invalid parameter"),
    "missing_parameter": (400, "Missing parameter"),
    "document_not_found": (404, "Document not found"),
    "too_many_requests": (429, "Too many requests"),
    "internal_error": (500, "Internal error"),
}


@dataclass
class FakeSms:
    message_id: int
    reference: str
    to: str  # as Lapins sent it (E.164)
    sender: str
    content: str
    tag: str | None
    web_url: str | None
    created: datetime
    sms_count: int = 1
    status: str = "sent"


@dataclass(frozen=True)
class Callback:
    """What Brevo posts to a message's webUrl: `url` and its JSON body."""

    url: str
    payload: dict

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class _Fault:
    status: int | None = None  # answer this status
    body: str = "json"  # "json" (Brevo's error), "html" (a proxy's page) or "empty"
    hang: float = 0.0
    accept: bool = True  # for a hang or a gateway: process the request first
    gateway: bool = False


@dataclass
class _State:
    messages: list[FakeSms] = field(default_factory=list)
    by_id: dict[int, FakeSms] = field(default_factory=dict)
    by_to: dict[str, list[FakeSms]] = field(default_factory=lambda: defaultdict(list))
    events: list[dict] = field(default_factory=list)
    faults: deque[_Fault] = field(default_factory=deque)
    invalid: set[str] = field(default_factory=set)
    unsubscribed: set[str] = field(default_factory=set)
    requests: int = 0
    callbacks_before_answer: int = 0


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class BrevoFake:
    def __init__(self, api_key: str = TEST_API_KEY, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        self.delay = 0.0
        self.credits: float | None = None  # None: unlimited; else spent one per segment, 402 once at 0
        self._ids = itertools.count(int(time.time() * 1000) % 10**9 * 1000)
        self._state = _State()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = _Server((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- life cycle -----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """What BREVO_BASE_URL is set to (https://api.brevo.com/v3 stands here)."""
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def start(self) -> BrevoFake:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="brevo-fake", daemon=True)
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

    def fail_next(self, count: int = 1, status: int = 500, body: str = "json") -> None:
        """The next `count` API requests answer `status` with Brevo's error JSON, an HTML page or an empty body."""
        self._add_faults(count, _Fault(status=status, body=body))

    def hang_next(self, count: int = 1, seconds: float = 30.0, accept: bool = True) -> None:
        """The next `count` requests wait `seconds` before answering; with `accept` the SMS is taken first."""
        self._add_faults(count, _Fault(hang=seconds, accept=accept))

    def hang_every(self, every: int, requests: int, seconds: float = 30.0, accept: bool = True) -> None:
        """Of the next `requests` API requests, one in `every` hangs `seconds` (taken first with `accept`)."""
        with self._lock:
            for number in range(1, requests + 1):
                self._state.faults.append(_Fault(hang=seconds, accept=accept) if number % every == 0 else _Fault())

    def fail_after_accept_next(self, count: int = 1, status: int = 504, body: str = "html") -> None:
        """The next `count` requests are processed (a send takes the SMS), then answered `status` by a gateway."""
        self._add_faults(count, _Fault(status=status, body=body, gateway=True))

    def _add_faults(self, count: int, fault: _Fault) -> None:
        with self._lock:
            self._state.faults.extend([fault] * count)

    def heal(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def mark_invalid(self, *numbers: str) -> None:
        with self._lock:
            self._state.invalid.update(numbers)

    def mark_unsubscribed(self, *numbers: str) -> None:
        """Sending to these numbers is refused: the person replied STOP (Brevo's blacklist)."""
        with self._lock:
            self._state.unsubscribed.update(numbers)

    def call_back_before_answer(self, count: int = 1) -> None:
        """The next `count` accepted SMS are reported delivered to their webUrl before the send is answered."""
        with self._lock:
            self._state.callbacks_before_answer += count

    # --- what was accepted ----------------------------------------------------------------------------------

    @property
    def messages(self) -> list[FakeSms]:
        with self._lock:
            return list(self._state.messages)

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._state.requests

    def count_for(self, to: str, body: str) -> int:
        with self._lock:
            return sum(1 for message in self._state.by_to.get(to, ()) if message.content == body)

    def get(self, message_id: int | str) -> FakeSms:
        with self._lock:
            return self._state.by_id[int(message_id)]

    # --- calling Lapins back --------------------------------------------------------------------------------

    def callback(self, message_id: int | str, status: str = "delivered", *, reply: str | None = None,
                 url: str | None = None) -> Callback:
        """Moves a message to `status` and returns the callback Brevo would post about it."""
        now = datetime.now(UTC)
        with self._lock:
            message = self._state.by_id[int(message_id)]
            message.status = status
            self._event(message, _event_name(status), now)
        target = url or message.web_url
        if not target:
            raise ValueError(f"message {message_id} has no webUrl")
        payload = {"id": secrets.randbelow(10**9), "to": message.to.lstrip("+"), "sms_count": message.sms_count,
                   "credits_used": message.sms_count, "ts_event": int(now.timestamp()),
                   "messageId": message.message_id, "msg_status": status, "status": "OK", "description": status,
                   "type": "sms", "tag": message.tag or "", "date": now.strftime("%Y-%m-%d %H:%M:%S"),
                   "reply": reply or ""}
        return Callback(url=target, payload=payload)

    def deliver(self, message_id: int | str, status: str = "delivered", *, reply: str | None = None,
                url: str | None = None, timeout: float = 10.0) -> int:
        """Posts the callback over HTTP; returns the HTTP status Lapins answered."""
        return self.post(self.callback(message_id, status, reply=reply, url=url), timeout=timeout)

    @staticmethod
    def post(callback: Callback, timeout: float = 10.0) -> int:
        import requests

        return requests.post(callback.url, json=callback.payload, timeout=timeout).status_code

    # --- the API, called by the handler threads -------------------------------------------------------------

    def _event(self, message: FakeSms, name: str, at: datetime) -> None:
        self._state.events.append({"phoneNumber": message.to.lstrip("+"), "date": at.isoformat(),
                                   "messageId": str(message.message_id), "event": name, "tag": message.tag})

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            self._state.requests += 1
            return self._state.faults.popleft() if self._state.faults else None

    def _send(self, body: dict) -> tuple[int, dict]:
        to, sender, content = str(body.get("recipient") or ""), str(body.get("sender") or ""), body.get("content")
        if not to or not sender or not content:
            return _error("missing_parameter")
        if not SENDER.fullmatch(sender):
            return _error("invalid_parameter", "Invalid sender name")
        with self._lock:
            invalid, unsubscribed = to in self._state.invalid, to in self._state.unsubscribed
        if invalid or not RECIPIENT.fullmatch(to):
            return _error("invalid_parameter", "Invalid phone number")
        if unsubscribed:
            return _error("invalid_parameter", "Recipient is blacklisted (unsubscribed)")
        count = segment_count(content)
        tags = body.get("tag")
        tag = tags[0] if isinstance(tags, list) and tags else tags
        with self._lock:
            if self.credits is not None:
                if self.credits < count:
                    return _error("not_enough_credits")
                self.credits -= count
            message = FakeSms(message_id=next(self._ids), reference=secrets.token_hex(10), to=to, sender=sender,
                              content=content, tag=tag, web_url=body.get("webUrl"),
                              created=datetime.now(UTC), sms_count=count)
            self._state.messages.append(message)
            self._state.by_id[message.message_id] = message
            self._state.by_to[to].append(message)
            self._event(message, "sent", message.created)
            remaining = self.credits
        answer = {"reference": message.reference, "messageId": message.message_id, "smsCount": count,
                  "usedCredits": float(count)}
        if remaining is not None:
            answer["remainingCredits"] = float(remaining)
        return 201, answer

    def _events(self, query: dict[str, str]) -> tuple[int, dict]:
        try:
            limit = min(max(int(query.get("limit", 50)), 1), 100)
            offset = max(int(query.get("offset", 0)), 0)
        except ValueError:
            return _error("invalid_parameter")
        phone = query.get("phoneNumber", "").lstrip("+")
        wanted_tags: set[str] = set()
        if "tags" in query:
            try:
                parsed = json.loads(query["tags"])
                wanted_tags = set(parsed) if isinstance(parsed, list) else {str(parsed)}
            except ValueError:
                wanted_tags = {query["tags"]}
        start, end = query.get("startDate"), query.get("endDate")
        with self._lock:
            events = list(self._state.events)
        selected = [e for e in events
                    if (not phone or e["phoneNumber"] == phone) and (not wanted_tags or e["tag"] in wanted_tags)
                    and (not start or e["date"][:10] >= start) and (not end or e["date"][:10] <= end)
                    and (not query.get("event") or e["event"] == query["event"])]
        if query.get("sort") != "asc":
            selected.reverse()
        return 200, {"events": selected[offset:offset + limit]}

    def _account(self) -> tuple[int, dict]:
        with self._lock:
            credits = self.credits
        plans = [{"type": "payAsYouGo", "credits": 0, "creditsType": "sendLimit"}]
        if credits is not None:
            plans.append({"type": "sms", "credits": credits, "creditsType": "sendLimit"})
        return 200, {"email": "pmi@example.fr", "firstName": "PMI", "lastName": "Test", "companyName": "Département",
                     "address": {"city": "Lille", "country": "France", "street": "1 rue", "zipCode": "59000"},
                     "plan": plans, "relay": {"enabled": False, "data": {}}}


def _event_name(status: str) -> str:
    return {"hard_bounce": "hardBounces", "soft_bounce": "softBounces", "unsubscribe": "unsubscription",
            "unsubscribed": "unsubscription", "replied": "replies", "reply": "replies"}.get(status, status)


def _error(code: str, message: str | None = None) -> tuple[int, dict]:
    status, text = ERRORS[code]
    return status, {"code": code, "message": message or text}


def _handler_for(fake: BrevoFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format, *args) -> None:
            pass

        def do_POST(self) -> None:
            self._serve("POST")

        def do_GET(self) -> None:
            if not self._fake_only():
                self._serve("GET")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            fault = fake._next_fault()
            if fake.delay:
                time.sleep(fake.delay)
            if fault and fault.hang and not fault.accept:
                fake._released.wait(fault.hang)
                self.close_connection = True
                return
            if fault and fault.status and not fault.gateway:
                code = {401: "unauthorized", 402: "not_enough_credits", 404: "document_not_found",
                        429: "too_many_requests"}.get(fault.status, "internal_error")
                self._answer(fault.status, {**_error(code)[1]}, body=fault.body)
                return
            status, payload, accepted = self._route(method, raw)
            if fault and fault.gateway:
                self._answer(fault.status, payload, body=fault.body)
                return
            if fault and fault.hang:
                fake._released.wait(fault.hang)
            if accepted is not None and accepted.web_url:
                with fake._lock:
                    early = fake._state.callbacks_before_answer > 0
                    fake._state.callbacks_before_answer -= early
                if early:
                    fake.deliver(accepted.message_id)
            self._answer(status, payload)

        def _route(self, method: str, raw: str) -> tuple[int, dict, FakeSms | None]:
            parts = urlsplit(self.path)
            if self.headers.get("api-key") != fake.api_key:
                return *_error("unauthorized"), None
            path = parts.path[len(PREFIX):] if parts.path.startswith(PREFIX) else ""
            if path == "/transactionalSMS/sms" and method == "POST":
                try:
                    body = json.loads(raw or "{}")
                except ValueError:
                    return *_error("invalid_parameter"), None
                status, payload = fake._send(body)
                return status, payload, fake.get(payload["messageId"]) if status == 201 else None
            if path == "/transactionalSMS/statistics/events" and method == "GET":
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                return *fake._events(query), None
            if path == "/account" and method == "GET":
                return *fake._account(), None
            return *_error("document_not_found"), None

        def _fake_only(self) -> bool:
            """GET /_fake/messages: every SMS accepted, with its text (the fake's own, not Brevo's: for the bench,
            which checks each row against what arrived)."""
            if urlsplit(self.path).path != "/_fake/messages":
                return False
            listing = [{"messageId": m.message_id, "to": m.to, "content": m.content, "smsCount": m.sms_count}
                       for m in fake.messages]
            self._answer(200, listing)
            return True

        def _answer(self, status: int, payload: dict | list, body: str = "json") -> None:
            if body == "html":
                data, kind = f"<html><body><h1>{status}</h1></body></html>".encode(), "text/html"
            elif body == "empty":
                data, kind = b"", "application/json"
            else:
                data, kind = json.dumps(payload).encode(), "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                self.close_connection = True

    return Handler


# --- pytest fixtures ------------------------------------------------------------------------------------------


@pytest.fixture()
def brevo_fake():
    """A fresh fake Brevo on 127.0.0.1 for this test, stopped afterwards."""
    with BrevoFake() as fake:
        yield fake


@pytest.fixture()
def brevo_app_config(brevo_fake) -> dict:
    """Settings that point Lapins' Brevo backend at `brevo_fake`, Brevo the deployment's operator."""
    return {"SMS_BACKEND": "brevo", "BREVO_API_KEY": brevo_fake.api_key, "BREVO_BASE_URL": brevo_fake.url}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A loopback fake of Brevo's transactional SMS API (127.0.0.1 only).")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--api-key", default=TEST_API_KEY)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to every request")
    args = parser.parse_args(argv)
    fake = BrevoFake(args.api_key, port=args.port)
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
