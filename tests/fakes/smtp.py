"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives, and can refuse the next recipient.

Fixtures: `smtp_server` (one server per test), `smtp_app_config` (the settings that point Lapins at it) and
`smtp_app` (the session's app switched to the SMTP backend for one test, then restored).
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

HOST = "127.0.0.1"
REPLIES = {
    550: "550 5.1.1 Mailbox unavailable",
    451: "451 4.3.0 Temporary failure, try again later",
}


@dataclass(frozen=True)
class ReceivedEmail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage  # parsed with email.policy.default


class _Handler:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received: list[ReceivedEmail] = []
        self.rcpt_replies: deque[str] = deque()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            reply = self.rcpt_replies.popleft() if self.rcpt_replies else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        # Parsed as a mail client stores it: the wire's CRLF line ends become "\n" (raw keeps them).
        message = message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)
        received = ReceivedEmail(mail_from=envelope.mail_from, rcpt_tos=tuple(envelope.rcpt_tos), raw=raw,
                                 message=message)
        with self._lock:
            self.received.append(received)
        return "250 Message accepted for delivery"


class _LoopbackController(Controller):
    """Listens on a port the system chooses (port 0), so parallel runs never collide."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    def __init__(self) -> None:
        self._handler = _Handler()
        # A fixed server_hostname spares aiosmtpd a DNS lookup (socket.getfqdn) at start-up.
        self._controller = _LoopbackController(self._handler, hostname=HOST, port=0, server_hostname="smtp.test",
                                               ready_timeout=10)
        self.host = HOST
        self.port = 0

    def start(self) -> SmtpServer:
        self._controller.start()
        self.port = self._controller.port
        return self

    def stop(self) -> None:
        self._controller.stop()

    @property
    def received(self) -> list[ReceivedEmail]:
        with self._handler._lock:
            return list(self._handler.received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [received.message for received in self.received]

    @property
    def last(self) -> ReceivedEmail:
        received = self.received
        assert received, "the SMTP server received no message"
        return received[-1]

    def refuse_next_recipient(self, code: int = 550) -> None:
        """The next RCPT TO is answered `code`: 550 (mailbox unavailable, permanent) or 451 (try again later)."""
        with self._handler._lock:
            self._handler.rcpt_replies.append(REPLIES.get(code, f"{code} Refused"))


@pytest.fixture()
def smtp_server():
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def smtp_app_config(smtp_server) -> dict:
    return {
        "EMAIL_BACKEND": "smtp",
        "MAIL_SERVER": smtp_server.host,
        "MAIL_PORT": smtp_server.port,
        "MAIL_USERNAME": "",
        "MAIL_PASSWORD": "",
        "MAIL_SECURITY": "none",
        "MAIL_FROM": "PMI <ne-pas-repondre@pmi.example.fr>",
        "MAIL_TIMEOUT_SECONDS": 5,
    }


@pytest.fixture()
def smtp_app(app, smtp_app_config):
    """The session's app sending email to `smtp_server` for this test; settings and backend restored afterwards."""
    saved = {key: app.config.get(key) for key in smtp_app_config}
    app.config.update(smtp_app_config)
    app.extensions.pop("lapins.email_backend", None)
    try:
        yield app
    finally:
        app.config.update(saved)
        app.extensions.pop("lapins.email_backend", None)
