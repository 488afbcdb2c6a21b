"""Agents' CalDAV calendars, what issue 17 left open: busy times read from a server without sync tokens (RFC 6578),
through the time-range fallback, against the real Radicale behind a loopback proxy that refuses the sync REPORT as
such a server does; CalDAV URLs leading to loopback, private or link-local addresses refused (SSRF) on the settings
form and again at each connection of the worker, unless CALDAV_ALLOWED_PRIVATE_HOSTS lists them; an agent's opt-in
to personal data in their CalDAV calendar (the address of a home visit)."""
from __future__ import annotations

import html
import http.client
import socket
import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from lapins import booking
from lapins.calendars import busy, push
from lapins.calendars.caldav_client import Destinations
from lapins.models import LocationType
from lapins.models.calendars import BusyBlock, CaldavAccount, CaldavPush, PushStatus
from tests import services
from tests.radicale_server import PASSWORD, USER
from tests.test_caldav_sync import (  # noqa: F401  (fixtures: the real Radicale, the frozen clock, an office)
    WEDNESDAY_10, _busy_event, _personal_calendar, connect, frozen_time, office, radicale, server_events,
    settings_page, slots_on_wednesday,
)

NO_SYNC = (b'<?xml version="1.0" encoding="utf-8"?>\n<D:error xmlns:D="DAV:"><D:supported-report/></D:error>')


class WithoutSyncCollection:
    """A loopback HTTP proxy in front of Radicale that answers the sync-collection REPORT as a server without RFC 6578
    does (RFC 3253 §3.6: 403 Forbidden, precondition DAV:supported-report) and passes everything else through."""

    def __init__(self, upstream_port: int) -> None:
        self.refused = 0
        self.reports = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "REPORT":
                    outer.reports += 1
                    if b"sync-collection" in body:
                        outer.refused += 1
                        self.send_response(403)
                        self.send_header("Content-Type", "application/xml; charset=utf-8")
                        self.send_header("Content-Length", str(len(NO_SYNC)))
                        self.end_headers()
                        self.wfile.write(NO_SYNC)
                        return
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=10)
                headers = {key: value for key, value in self.headers.items()
                           if key.lower() not in ("host", "connection", "keep-alive", "transfer-encoding")}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_OPTIONS = do_MKCALENDAR = _relay
            do_HEAD = do_POST = do_PROPPATCH = _relay

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", services.free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_server_without_sync_tokens_is_read_by_time_range_and_its_busy_events_come_and_go(
        client, auth, office, radicale, db):
    calendar_url = radicale.make_calendar()
    proxy = WithoutSyncCollection(radicale.port)
    try:
        path = calendar_url.removeprefix(radicale.base_url)
        assert connect(client, auth, office.agent, proxy.url(path)).status_code == 302
        personal = _personal_calendar(radicale).save_event(
            _busy_event("perso-sans-jeton", WEDNESDAY_10, WEDNESDAY_10 + timedelta(minutes=30)))

        assert busy.read_all() == {"unchanged": 0, "read": 1, "failed": 0}
        assert proxy.refused >= 1 and proxy.reports > proxy.refused  # refused, then read by time range
        account = db.session.scalar(select(CaldavAccount))
        assert account.sync_token is None and account.last_error is None
        assert WEDNESDAY_10 not in slots_on_wednesday(office)
        assert WEDNESDAY_10 + timedelta(minutes=30) in slots_on_wednesday(office)

        # Without a token nothing says "unchanged": every run reads the window again, and still finds it.
        assert busy.read_all() == {"unchanged": 0, "read": 1, "failed": 0}
        assert db.session.scalar(select(func.count(BusyBlock.id))) == 1

        personal.delete()
        assert busy.read_all()["read"] == 1
        assert db.session.scalar(select(func.count(BusyBlock.id))) == 0
        assert WEDNESDAY_10 in slots_on_wednesday(office)
    finally:
        proxy.close()


# --- SSRF ---------------------------------------------------------------------------------------------------------

@pytest.fixture()
def no_private_hosts(app):
    saved = app.config["CALDAV_ALLOWED_PRIVATE_HOSTS"]
    app.config["CALDAV_ALLOWED_PRIVATE_HOSTS"] = ""
    yield app
    app.config["CALDAV_ALLOWED_PRIVATE_HOSTS"] = saved


class Listener:
    """A bare TCP listener on 127.0.0.1 that records every byte it is sent: what reached the internal network."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(0.5)
            try:
                while chunk := conn.recv(4096):
                    self.received += chunk
            except OSError:
                pass
            conn.close()

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/agent/lapins/",
    "http://localhost:{port}/agent/lapins/",
    "http://[::ffff:127.0.0.1]:{port}/agent/lapins/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.7/caldav/",
    "http://[fd00::1]/caldav/",
])
def test_a_calendar_url_on_the_internal_network_is_refused_in_french_and_nothing_is_sent(
        client, auth, office, no_private_hosts, db, url):
    listener = Listener()
    try:
        response = connect(client, auth, office.agent, url.format(port=listener.port))
        assert response.status_code == 422
        assert "mène à un serveur du réseau interne" in html.unescape(response.get_data(as_text=True))
        assert db.session.scalar(select(func.count(CaldavAccount.id))) == 0
    finally:
        listener.close()
    assert listener.received == b"" and listener.connections == 0


def test_a_name_that_resolves_elsewhere_at_connection_time_is_refused_before_a_byte_is_sent(
        client, auth, office, no_private_hosts, db, monkeypatch):
    """DNS rebinding: the name is public when the form resolves it, loopback when the connection is made."""
    listener = Listener()
    real = socket.getaddrinfo
    answers = []

    def rebinding(host, port, *args, **kwargs):
        if host == "agenda.exemple.fr":
            answers.append(host)
            first = len(answers) == 1
            return real("93.184.216.34" if first else "127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        response = connect(client, auth, office.agent, f"http://agenda.exemple.fr:{listener.port}/agent/lapins/")
        assert response.status_code == 422
        assert "réseau interne (127.0.0.1)" in html.unescape(response.get_data(as_text=True))
        assert len(answers) >= 2  # the form's check, then the connection's own resolution
    finally:
        listener.close()
    assert listener.received == b""
    assert db.session.scalar(select(func.count(CaldavAccount.id))) == 0


def test_a_calendar_no_longer_allowed_is_refused_at_push_time_and_nothing_is_lost(
        client, auth, office, radicale, app, db):
    assert connect(client, auth, office.agent, radicale.make_calendar()).status_code == 302  # allowed: 127.0.0.1
    app.config["CALDAV_ALLOWED_PRIVATE_HOSTS"] = ""
    try:
        rdv = office.rdv()
        row = db.session.scalar(select(CaldavPush).where(CaldavPush.rdv_id == rdv.id))
        db.session.refresh(row)
        assert row.status == PushStatus.PENDING
        assert "réseau interne" in settings_page(client)
        assert server_events(radicale) == {}
    finally:
        app.config["CALDAV_ALLOWED_PRIVATE_HOSTS"] = "127.0.0.1"
    push.retry_now(row.account_id)
    db.session.commit()
    push.deliver_due()
    assert list(server_events(radicale)) and db.session.get(CaldavPush, row.id).status == PushStatus.DONE


@pytest.mark.parametrize(("setting", "host", "address", "refused"), [
    ("", "caldav.cg59.fr", "10.20.3.4", True),
    ("caldav.cg59.fr", "caldav.cg59.fr", "10.20.3.4", False),
    ("caldav.cg59.fr", "autre.cg59.fr", "10.20.3.4", True),
    ("10.20.0.0/16", "autre.cg59.fr", "10.20.3.4", False),
    ("10.20.0.0/16", "autre.cg59.fr", "10.21.3.4", True),
    ("", "nuage.exemple.fr", "93.184.216.34", False),
    ("", "x", "169.254.169.254", True),
    ("", "x", "::1", True),
    ("", "x", "::ffff:192.168.1.1", True),
    ("", "x", "100.64.0.1", True),
    ("", "x", "0.0.0.0", True),
    ("", "x", "224.0.0.1", True),
])
def test_the_allowed_private_hosts_setting(setting, host, address, refused):
    assert Destinations.parse(setting).refuses(host, address) is refused


# --- Personal data in the CalDAV calendar, only when chosen -------------------------------------------------------

def test_the_caldav_calendar_gets_a_home_visits_address_only_when_the_agent_chose_it(
        client, auth, office, radicale, factories, db):
    visit = factories.MotifFactory(organisation=office.organisation, name="Visite à domicile",
                                   location_type=LocationType.HOME)
    factories.PlageFactory(agent=office.agent, lieu=office.lieu, first_day=date(2026, 3, 2), motifs=[visit],
                           start_time=WEDNESDAY_10.time(), end_time=WEDNESDAY_10.time().replace(hour=17),
                           weekdays=0b0011111)
    office.family.address_street, office.family.address_postcode = "8 rue des Lilas", "75020"
    office.family.address_commune = "Paris"
    db.session.commit()
    url = radicale.make_calendar()
    assert connect(client, auth, office.agent, url).status_code == 302
    rdv = booking.book_rdv(actor=office.agent, motif=visit, agents=[office.agent], usagers=[office.family],
                           starts_at=WEDNESDAY_10 + timedelta(hours=2))
    (event,) = server_events(radicale).values()
    assert "LOCATION" not in event and "Lilas" not in event.to_ical().decode()

    token = settings_page(client).split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/preferences/agendas/caldav", data={"csrf_token": token, "url": url, "username": USER,
                                                     "password": PASSWORD, "with_personal_data": "y"})
    (event,) = [found for found in server_events(radicale).values() if str(found["X-LAPINS-RDV"]) == str(rdv.id)]
    assert str(event["LOCATION"]) == "8 rue des Lilas, 75020 Paris"
    assert "Durand" in str(event["SUMMARY"])
