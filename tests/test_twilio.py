"""SMS through Twilio: the real SDK against a loopback fake of Twilio's API, and Twilio's callbacks to Lapins.

Nothing leaves 127.0.0.1: TWILIO_BASE_URL points the SDK at tests.fakes.twilio, which also signs the status
callbacks and inbound SMS it posts back, like Twilio does.
"""
from __future__ import annotations

import base64
import http.client
import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from werkzeug.serving import make_server

from lapins import create_app
from lapins.infra.extensions import db as _db
from lapins.models import Channel, Message, MessageKind, MessageStatus, Usager, utcnow
from lapins.notifications.backends import OutgoingSms, PermanentError, TransientError
from lapins.notifications.providers import sms_backend
from lapins.notifications.gsm import is_gsm7, segments
from lapins.notifications.twilio import TwilioSmsBackend
from lapins.notifications.webhooks import INBOUND_PATH, OPT_OUT_REPLY, STATUS_PATH, status_callback_url

if TYPE_CHECKING:
    from tests.fakes.twilio import TwilioFake

# The fixtures twilio_fake and twilio_app_config (tests/conftest.py may load them for every module too). The module
# is imported by pytest, not here, so that its asserts are rewritten.
pytest_plugins = ["tests.fakes.twilio"]

PUBLIC_URL = "https://rdv.pmi.example.fr"  # what Twilio calls; the test client plays the proxy behind it
PHONE = "+33612345678"
BODY = "Rappel : rdv PMI demain 09:30, Centre PMI Nord. Infos/annuler : https://rdv.pmi.example.fr/r/1f-abc"


@pytest.fixture(scope="module")
def app():
    """The testing app with the webhooks blueprint, on the test database (create_app registers it later)."""
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=os.environ.get("TEST_DATABASE_URL", "sqlite://"),
                     WTF_CSRF_ENABLED=True, SERVER_NAME=None, PUBLIC_URL=PUBLIC_URL)
    if "webhooks" not in app.blueprints:
        from lapins.notifications.webhooks import bp

        app.register_blueprint(bp)
    with app.app_context():
        _db.create_all()
        yield app
        _db.session.remove()


@pytest.fixture()
def twilio_app(app, db, twilio_app_config):
    """The app with SMS_BACKEND=twilio on the fake; the cached backend is dropped before and after."""
    saved = {key: app.config.get(key) for key in [*twilio_app_config, "PUBLIC_URL"]}
    app.config.update(twilio_app_config)
    app.extensions.pop("lapins.sms_backend", None)
    yield app
    app.config.update(saved)
    app.extensions.pop("lapins.sms_backend", None)


def backend_on(fake: TwilioFake, **settings) -> TwilioSmsBackend:
    return TwilioSmsBackend.from_config({"TWILIO_ACCOUNT_SID": fake.account_sid,
                                         "TWILIO_AUTH_TOKEN": fake.auth_token, "TWILIO_BASE_URL": fake.url,
                                         **settings})


def sms(to: str = PHONE, body: str = BODY, **fields) -> OutgoingSms:
    return OutgoingSms(message_id=1, to=to, body=body, **{"sender": "PMI", **fields})


# --- sending -------------------------------------------------------------------------------------------------


def test_a_sent_sms_gets_twilios_sid_and_segment_count(twilio_app, twilio_fake):
    delivery = sms_backend(twilio_app).send(sms(status_callback=status_callback_url()))

    [accepted] = twilio_fake.messages
    assert delivery.provider_id == accepted.sid and delivery.provider_id.startswith("SM")
    assert delivery.segments == 1
    assert (accepted.to, accepted.body, accepted.from_) == (PHONE, BODY, "PMI")
    assert accepted.status_callback == f"{PUBLIC_URL}{STATUS_PATH}"


def test_a_long_text_with_an_emoji_is_counted_in_ucs2_segments(twilio_fake):
    delivery = backend_on(twilio_fake).send(sms(body="Merci 🙂 " + "x" * 70))
    assert delivery.segments == 2


def test_a_messaging_service_can_stand_for_the_sender(twilio_fake):
    delivery = backend_on(twilio_fake).send(sms(sender=None, messaging_service_sid="MG" + "1" * 32))
    accepted = twilio_fake.get(delivery.provider_id)
    assert accepted.messaging_service_sid == "MG" + "1" * 32 and accepted.from_ is None


def test_one_client_per_process_keeps_its_connection_alive(twilio_app, twilio_fake):
    backend = sms_backend(twilio_app)
    for index in range(5):
        sms_backend(twilio_app).send(sms(body=f"{BODY} {index}"))
    assert sms_backend(twilio_app) is backend
    assert twilio_fake.request_count == 5 and twilio_fake.connection_count == 1


def test_the_backend_is_not_built_without_credentials():
    with pytest.raises(RuntimeError, match="TWILIO_ACCOUNT_SID et TWILIO_AUTH_TOKEN"):
        TwilioSmsBackend.from_config({"TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": "secret"})


@pytest.mark.parametrize("status", [500, 503, 429])
def test_an_unavailable_or_throttling_twilio_is_a_transient_error_and_the_retry_goes_through(twilio_fake, status):
    backend = backend_on(twilio_fake)
    twilio_fake.fail_next(1, status=status)
    with pytest.raises(TransientError) as raised:
        backend.send(sms())
    assert f"HTTP {status}" in raised.value.message
    # A 5xx does not say Twilio took nothing (a gateway may answer it after Twilio created the SMS); a 429 does.
    assert raised.value.maybe_sent == (status >= 500)
    assert twilio_fake.count_for(PHONE, BODY) == 0

    backend.send(sms())
    assert twilio_fake.count_for(PHONE, BODY) == 1


def test_a_timeout_is_transient_and_waits_no_longer_than_the_configured_timeout(twilio_fake):
    backend = backend_on(twilio_fake, TWILIO_TIMEOUT_SECONDS=1)
    assert backend.client.http_client.timeout == 1  # what the HTTP client waits for an answer, at most
    # Twilio would accept it and answer 201 after a minute: the error says the client gave up before the answer,
    # on its own timeout, without this test reading a clock.
    twilio_fake.hang_next(1, seconds=60)
    with pytest.raises(TransientError) as raised:
        backend.send(sms())
    assert raised.value.code == "timeout" and "1 s" in raised.value.message


def test_a_send_whose_answer_was_lost_is_found_so_it_is_not_sent_twice(twilio_fake):
    backend = backend_on(twilio_fake, TWILIO_TIMEOUT_SECONDS=1)
    started = datetime.now(UTC)
    twilio_fake.hang_next(1, seconds=10, accept=True)
    with pytest.raises(TransientError):
        backend.send(sms())

    found = backend.find_sent(sms(), since=started)
    assert found is not None and found.provider_id == twilio_fake.messages[0].sid
    assert twilio_fake.count_for(PHONE, BODY) == 1


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateway_error_after_twilio_took_the_sms_may_have_sent_it_and_find_sent_says_so(twilio_fake, status):
    backend = backend_on(twilio_fake)
    started = datetime.now(UTC)
    twilio_fake.fail_after_accept_next(1, status=status)
    with pytest.raises(TransientError) as raised:
        backend.send(sms())
    assert raised.value.maybe_sent and f"HTTP {status}" in raised.value.message
    assert PHONE not in raised.value.message
    found = backend.find_sent(sms(), since=started)
    assert found is not None and found.provider_id == twilio_fake.messages[0].sid


def test_twilio_out_of_reach_is_a_transient_network_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = TwilioSmsBackend.from_config({"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "x",
                                            "TWILIO_BASE_URL": f"http://127.0.0.1:{port}"})
    with pytest.raises(TransientError) as raised:
        backend.send(sms())
    assert raised.value.code == "network"


class ForwardingProxy(ThreadingHTTPServer):
    """A plain HTTP proxy on 127.0.0.1 (absolute-form requests, as a client sends them to an http:// URL through a
    proxy): it forwards each one and records what it carried, with the Proxy-Authorization it was given."""

    daemon_threads = True

    def __init__(self) -> None:
        self.carried: list[tuple[str, str, str | None]] = []
        super().__init__(("127.0.0.1", 0), _ForwardingHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _ForwardingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        target = urlsplit(self.path)
        self.server.carried.append((self.command, target.path, self.headers.get("Proxy-Authorization")))
        length = int(self.headers.get("Content-Length") or 0)
        headers = {key: value for key, value in self.headers.items()
                   if key.lower() not in ("proxy-authorization", "proxy-connection", "connection", "host")}
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
        upstream.request(self.command, f"{target.path}?{target.query}" if target.query else target.path,
                         body=self.rfile.read(length) if length else None, headers=headers)
        answer = upstream.getresponse()
        body = answer.read()
        upstream.close()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _forward

    def log_message(self, *args) -> None:  # the test reads `carried`, not stderr
        pass


@pytest.fixture()
def forwarding_proxy():
    proxy = ForwardingProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_the_proxy_of_the_environment_carries_the_sms_unless_no_proxy_names_the_host(twilio_fake, forwarding_proxy,
                                                                                     monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "NO_PROXY", "ALL_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    # The proxy's credentials, as an operator writes them in the URL (an @ in the password percent-encoded).
    monkeypatch.setenv("HTTP_PROXY", forwarding_proxy.url.replace("://", "://lapins:pr%40xy@"))
    through_proxy = backend_on(twilio_fake)
    delivery = through_proxy.send(sms())
    assert twilio_fake.get(delivery.provider_id).to == PHONE
    [(method, path, authorization)] = forwarding_proxy.carried
    assert (method, path) == ("POST", f"/2010-04-01/Accounts/{twilio_fake.account_sid}/Messages.json")
    assert authorization == "Basic " + base64.b64encode(b"lapins:pr@xy").decode()
    assert through_proxy.find_sent(sms(), datetime.now(UTC) - timedelta(minutes=1)) is not None
    assert [method for method, _path, _auth in forwarding_proxy.carried] == ["POST", "GET"]

    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    backend_on(twilio_fake).send(sms(body=f"{BODY} 2"))
    assert twilio_fake.count_for(PHONE, f"{BODY} 2") == 1
    assert len(forwarding_proxy.carried) == 2  # straight to Twilio
    through_proxy.send(sms(body=f"{BODY} 3"))  # read when the client was built: still through its proxy
    assert len(forwarding_proxy.carried) == 3


def test_a_proxy_that_cannot_be_reached_is_a_transient_network_error(twilio_fake, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("http_proxy", f"127.0.0.1:{port}")  # no scheme: an http:// proxy, as requests read it
    with pytest.raises(TransientError) as raised:
        backend_on(twilio_fake).send(sms())
    assert raised.value.code == "network"
    assert twilio_fake.request_count == 0


@pytest.mark.parametrize(("mark", "code"), [("mark_invalid", "21211"), ("mark_unsubscribed", "21610")])
def test_an_invalid_or_unsubscribed_number_is_a_permanent_error_with_twilios_code(twilio_fake, mark, code):
    getattr(twilio_fake, mark)(PHONE)
    with pytest.raises(PermanentError) as raised:
        backend_on(twilio_fake).send(sms())
    assert raised.value.code == code
    assert PHONE not in raised.value.message and BODY not in raised.value.message


def test_refused_credentials_are_a_transient_error_that_does_not_blame_the_number(twilio_fake):
    backend = TwilioSmsBackend.from_config({"TWILIO_ACCOUNT_SID": twilio_fake.account_sid,
                                            "TWILIO_AUTH_TOKEN": "not-the-token", "TWILIO_BASE_URL": twilio_fake.url})
    with pytest.raises(TransientError) as raised:
        backend.send(sms())
    assert not isinstance(raised.value, PermanentError)
    assert raised.value.code == "credentials" and "TWILIO_AUTH_TOKEN" in raised.value.message


# --- find_sent -----------------------------------------------------------------------------------------------


def test_find_sent_finds_the_same_text_to_the_same_number_and_nothing_else(twilio_fake):
    backend = backend_on(twilio_fake)
    since = datetime.now(UTC)
    delivery = backend.send(sms())

    assert backend.find_sent(sms(), since) == delivery
    assert backend.find_sent(sms(body=BODY + " (modifié)"), since) is None
    assert backend.find_sent(sms(to="+33698765432"), since) is None


def test_find_sent_ignores_the_same_text_sent_long_before(twilio_fake):
    twilio_fake.add_message(PHONE, BODY, date_created=datetime.now(UTC) - timedelta(hours=2))
    assert backend_on(twilio_fake).find_sent(sms(), since=datetime.now(UTC) - timedelta(minutes=5)) is None


def test_find_sent_reads_past_the_first_page(twilio_fake):
    backend = backend_on(twilio_fake)
    since = datetime.now(UTC)
    delivery = backend.send(sms())
    for index in range(60):
        twilio_fake.add_message(PHONE, f"Autre message {index}", date_created=datetime.now(UTC),
                                status="queued")
    assert backend.find_sent(sms(), since) == delivery


def test_find_sent_failing_to_ask_is_a_transient_error(twilio_fake):
    twilio_fake.fail_next(1, status=503)
    with pytest.raises(TransientError):
        backend_on(twilio_fake).find_sent(sms(), datetime.now(UTC))


def test_neither_phone_numbers_nor_texts_reach_the_logs(twilio_fake, caplog, monkeypatch):
    # Alembic's logging set-up (test_migrations) disables the loggers that existed then: switch ours back on.
    for name in ("lapins.notifications.twilio", "lapins.notifications.twilio.sdk", "urllib3.connectionpool"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    backend = backend_on(twilio_fake)
    with caplog.at_level("INFO"):  # urllib3 logs URLs (find_sent: To=...) at DEBUG only
        backend.send(sms())
        backend.find_sent(sms(), datetime.now(UTC) - timedelta(minutes=1))
        twilio_fake.fail_next(1, status=503)
        with pytest.raises(TransientError):
            backend.find_sent(sms(), datetime.now(UTC))
    assert caplog.records
    assert PHONE not in caplog.text and PHONE[1:] not in caplog.text and "Rappel" not in caplog.text


# --- status callbacks ----------------------------------------------------------------------------------------


@pytest.fixture()
def usager(factories):
    return factories.UsagerFactory(phone=PHONE)


def sent_message(twilio_app, usager: Usager) -> Message:
    """Sends an SMS through the fake and records it as the outbox does."""
    delivery = sms_backend(twilio_app).send(sms(to=usager.phone, status_callback=status_callback_url()))
    message = Message(territory_id=usager.territory_id, usager_id=usager.id, channel=Channel.SMS,
                      kind=MessageKind.REMINDER, to_address=usager.phone, body=BODY, due_at=utcnow(),
                      status=MessageStatus.SENT, sent_at=utcnow(), provider_id=delivery.provider_id,
                      segments=delivery.segments)
    _db.session.add(message)
    _db.session.commit()
    return message


def post(client, request):
    return client.post(request.path, data=request.data, headers=request.headers)


def reloaded(instance):
    _db.session.expire_all()
    return _db.session.get(type(instance), instance.id)


def test_a_delivered_callback_signed_by_twilio_marks_the_message_delivered(twilio_app, twilio_fake, client, usager):
    message = sent_message(twilio_app, usager)

    response = post(client, twilio_fake.status_request(message.provider_id, "delivered"))

    assert response.status_code == 204
    message = reloaded(message)
    assert message.status == MessageStatus.DELIVERED and message.delivered_at is not None


def forged_wrong_token(fake, request):
    return fake.sign(request.url, request.data, auth_token="0" * 32)


def forged_altered_param(fake, request):
    return type(request)(request.url, {**request.data, "MessageStatus": "undelivered", "ErrorCode": "30005"},
                         request.headers)


def forged_without_signature(fake, request):
    return type(request)(request.url, request.data, {})


def forged_other_url(fake, request):
    return fake.sign("https://ailleurs.example.org" + STATUS_PATH, request.data)


@pytest.mark.parametrize("forge", [forged_wrong_token, forged_altered_param, forged_without_signature,
                                   forged_other_url])
def test_a_forged_status_callback_is_refused_and_changes_nothing(twilio_app, twilio_fake, client, usager, forge):
    message = sent_message(twilio_app, usager)
    genuine = twilio_fake.status_request(message.provider_id, "delivered")

    response = post(client, forge(twilio_fake, genuine))

    assert response.status_code == 403
    assert reloaded(message).status == MessageStatus.SENT
    assert reloaded(usager).phone_undeliverable_at is None


def test_late_callbacks_never_move_a_message_back(twilio_app, twilio_fake, client, usager):
    message = sent_message(twilio_app, usager)
    post(client, twilio_fake.status_request(message.provider_id, "delivered"))
    delivered_at = reloaded(message).delivered_at

    for late in ("sent", "queued", "undelivered"):
        assert post(client, twilio_fake.status_request(message.provider_id, late)).status_code == 204

    message = reloaded(message)
    assert message.status == MessageStatus.DELIVERED and message.delivered_at == delivered_at
    assert message.error_code is None


def test_a_sent_callback_keeps_the_message_sent(twilio_app, twilio_fake, client, usager):
    message = sent_message(twilio_app, usager)
    assert post(client, twilio_fake.status_request(message.provider_id, "sent")).status_code == 204
    assert reloaded(message).status == MessageStatus.SENT


def test_an_unknown_number_error_makes_the_message_undeliverable_and_flags_everyone_with_that_number(
        twilio_app, twilio_fake, client, usager, factories):
    same_phone = factories.UsagerFactory(phone=PHONE)
    other_phone = factories.UsagerFactory(phone="+33698765432")
    message = sent_message(twilio_app, usager)

    response = post(client, twilio_fake.status_request(message.provider_id, "undelivered", error_code=30005))

    assert response.status_code == 204
    message = reloaded(message)
    assert message.status == MessageStatus.UNDELIVERABLE and message.error_code == "30005"
    assert "Numéro inconnu" in message.error
    for flagged in (reloaded(usager), reloaded(same_phone)):
        assert flagged.phone_undeliverable_at is not None and "Numéro inconnu" in flagged.phone_error
    assert reloaded(other_phone).phone_undeliverable_at is None


def test_a_phone_switched_off_fails_the_message_but_keeps_the_number(twilio_app, twilio_fake, client, usager):
    message = sent_message(twilio_app, usager)

    post(client, twilio_fake.status_request(message.provider_id, "undelivered", error_code=30003))

    message = reloaded(message)
    assert message.status == MessageStatus.FAILED and message.error_code == "30003"
    assert "éteint" in message.error
    assert reloaded(usager).phone_undeliverable_at is None


def test_a_callback_about_a_message_we_do_not_know_is_acknowledged_and_ignored(twilio_app, twilio_fake, client,
                                                                              usager):
    message = sent_message(twilio_app, usager)
    unknown = twilio_fake.sign(f"{PUBLIC_URL}{STATUS_PATH}",
                               {"MessageSid": "SM" + "0" * 32, "MessageStatus": "undelivered", "ErrorCode": "30005"})

    assert post(client, unknown).status_code == 200
    assert reloaded(message).status == MessageStatus.SENT
    assert reloaded(usager).phone_undeliverable_at is None


def test_a_replayed_status_callback_is_acknowledged_and_does_nothing(twilio_app, twilio_fake, client, usager, caplog):
    """The same signed callback posted again (Twilio retrying, or anyone replaying it): 200 and nothing done, so a
    number an agent has checked since is not flagged again, and nothing is counted twice."""
    from lapins.models.messages import TwilioCallback

    message = sent_message(twilio_app, usager)
    callback = twilio_fake.status_request(message.provider_id, "undelivered", error_code=30005)
    assert post(client, callback).status_code == 204
    checked = reloaded(usager)
    assert checked.phone_undeliverable_at is not None
    checked.phone_undeliverable_at = checked.phone_error = None  # an agent checked the number with the family
    _db.session.commit()

    caplog.set_level(logging.INFO, logger="lapins.notifications.webhooks")
    assert [post(client, callback).status_code for _ in range(2)] == [200, 200]
    assert reloaded(usager).phone_undeliverable_at is None
    assert "flagged undeliverable" not in caplog.text and "already handled" in caplog.text
    assert reloaded(message).status == MessageStatus.UNDELIVERABLE
    recorded = _db.session.scalars(_db.select(TwilioCallback)).all()
    assert [(row.kind, row.message_sid, row.status) for row in recorded] == [
        ("status", message.provider_id, "undelivered")]


def test_of_two_statuses_at_the_same_moment_only_the_first_settles_the_message(twilio_app, usager):
    """The second callback's request read the message before the first's commit: the conditional UPDATE finds it
    settled and neither moves it nor flags the phone."""
    from lapins.notifications.webhooks import record_status

    message = sent_message(twilio_app, usager)
    seen_by_the_second = reloaded(message)
    _db.session.expunge(seen_by_the_second)  # still sent, as the second request read it
    record_status(reloaded(message), "delivered", None, utcnow())
    _db.session.commit()
    assert seen_by_the_second.status == MessageStatus.SENT
    record_status(seen_by_the_second, "undelivered", "30005", utcnow())
    _db.session.commit()
    assert reloaded(message).status == MessageStatus.DELIVERED and reloaded(message).error_code is None
    assert reloaded(usager).phone_undeliverable_at is None


def test_a_signed_request_without_message_sid_does_nothing(twilio_app, twilio_fake, client, usager):
    """Twilio always sends one; without it a request could not be told from its copies."""
    request = twilio_fake.sign(f"{PUBLIC_URL}{INBOUND_PATH}", {"From": PHONE, "Body": "STOP", "To": "+33700000000"})
    response = post(client, request)
    assert response.status_code == 200 and "<Message>" not in response.get_data(as_text=True)
    assert reloaded(usager).sms_consent is True


# --- inbound SMS ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["STOP", " stop ", "Stop.", "STOP SMS", "Arrêt", "ARRET", "désabonner",
                                  "Unsubscribe"])
def test_stop_withdraws_sms_consent_of_every_usager_with_that_number_and_answers_in_twiml(
        twilio_app, twilio_fake, client, factories, text):
    parent = factories.UsagerFactory(phone=PHONE)
    same_phone = factories.UsagerFactory(phone=PHONE)
    neighbour = factories.UsagerFactory(phone="+33698765432")

    response = post(client, twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_=PHONE, body=text))

    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert f"<Message>{OPT_OUT_REPLY}</Message>" in response.get_data(as_text=True)
    assert not reloaded(parent).sms_consent and not reloaded(same_phone).sms_consent
    assert reloaded(neighbour).sms_consent


def test_the_stop_reply_fits_one_gsm7_segment():
    assert is_gsm7(OPT_OUT_REPLY) and segments(OPT_OUT_REPLY) == 1


@pytest.mark.parametrize("text", ["Merci !", "STOPPER la pluie", "oui", ""])
def test_any_other_text_changes_nothing_and_gets_an_empty_answer(twilio_app, twilio_fake, client, factories, text):
    parent = factories.UsagerFactory(phone=PHONE)

    response = post(client, twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_=PHONE, body=text))

    assert response.status_code == 200
    assert "<Message>" not in response.get_data(as_text=True)
    assert reloaded(parent).sms_consent


def test_stop_from_a_number_we_do_not_know_gets_an_empty_answer(twilio_app, twilio_fake, client, factories):
    parent = factories.UsagerFactory(phone=PHONE)

    response = post(client, twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_="+33600000009",
                                                        body="STOP"))

    assert response.status_code == 200 and "<Message>" not in response.get_data(as_text=True)
    assert reloaded(parent).sms_consent


def test_inbound_needs_no_csrf_token_but_a_signature(twilio_app, twilio_fake, client, factories):
    parent = factories.UsagerFactory(phone=PHONE)
    signed = twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_=PHONE, body="STOP")

    assert client.post(INBOUND_PATH, data=signed.data).status_code == 403
    assert post(client, forged_wrong_token(twilio_fake, signed)).status_code == 403
    assert reloaded(parent).sms_consent

    assert twilio_app.config["WTF_CSRF_ENABLED"]
    assert post(client, signed).status_code == 200
    assert not reloaded(parent).sms_consent


# --- over real HTTP ------------------------------------------------------------------------------------------


@pytest.fixture()
def live_url(twilio_app):
    """The app served on 127.0.0.1, with PUBLIC_URL its own address (port included, as Twilio signs it)."""
    server = make_server("127.0.0.1", 0, twilio_app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    twilio_app.config["PUBLIC_URL"] = f"http://127.0.0.1:{server.server_port}"
    yield twilio_app.config["PUBLIC_URL"]
    server.shutdown()
    thread.join(timeout=5)


def test_twilio_posting_callbacks_over_http_reaches_the_app(twilio_app, twilio_fake, live_url, usager):
    message = sent_message(twilio_app, usager)
    assert twilio_fake.get(message.provider_id).status_callback == f"{live_url}{STATUS_PATH}"

    assert twilio_fake.deliver(message.provider_id, "delivered") == 204
    assert reloaded(message).status == MessageStatus.DELIVERED

    assert twilio_fake.post(twilio_fake.inbound_request(f"{live_url}{INBOUND_PATH}", PHONE, "STOP")) == 200
    assert not reloaded(usager).sms_consent


def test_a_territorys_own_account_gets_one_client_of_its_own_rebuilt_only_when_its_credentials_change(twilio_app):
    from lapins.infra import crypto
    from lapins.notifications.backends import ProviderAccount

    def account(token: str) -> ProviderAccount:
        return ProviderAccount(territory_id=7, account_sid_encrypted=crypto.encrypt("AC" + "1" * 32),
                               auth_token_encrypted=crypto.encrypt(token))

    first = account("a" * 32)
    backend = sms_backend(twilio_app, account=first)
    assert backend is sms_backend(twilio_app, account=first) and backend is not sms_backend(twilio_app)
    assert sms_backend(twilio_app, account=account("b" * 32)) is not backend
    assert len(twilio_app.extensions["lapins.territory_sms_backends"]) == 1  # the territory's old client is gone
    assert "a" * 32 not in repr(first) and first.auth_token_encrypted not in repr(first)
    twilio_app.extensions.pop("lapins.territory_sms_backends", None)


def test_a_territorys_credentials_that_no_key_opens_are_a_transient_error_for_agents(twilio_app):
    from lapins.notifications.backends import ProviderAccount

    broken = ProviderAccount(territory_id=8, account_sid_encrypted="gAAAA-not-a-token", auth_token_encrypted="x")
    with pytest.raises(TransientError, match="illisibles"):
        sms_backend(twilio_app, account=broken)
