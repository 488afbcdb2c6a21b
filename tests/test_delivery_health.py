"""Failures that someone hears about (issue 24): an SMS operator out of credit or refusing its credentials, one that
times out, status callbacks early, twice or never, the daily balance check, the banner and the delivery health page,
/healthz and /metrics, and webhooks that fail.

Real components: the Twilio SDK against the loopback fake (which answers Twilio's own 20005 « Account not active »
once the credit is gone, and serves the Balance resource), aiosmtpd for the administrators' e-mails, the outbox run
as the beat runs it (`dispatch_due`, Celery eager) on a clock this test moves. What a family would notice is read from
the fake: how many SMS each number received, and when.
"""
from __future__ import annotations

import html
import logging
import threading
from collections import Counter
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import select, update

from lapins.infra import crypto
from lapins.integrations import delivery as webhook_delivery
from lapins.models import Channel, Message, MessageKind, MessageStatus, Rdv, Role, Usager
from lapins.models.delivery_health import ChannelState
from lapins.models.territory_admins import TerritoryAdmin
from lapins.models.webhooks import DeliveryStatus, Webhook, WebhookDelivery
from lapins.monitoring import delivery
from lapins.notifications import outbox
from lapins.notifications import webhooks as twilio_webhooks
from lapins.notifications.backends import Balance, TransientError
from lapins.notifications.twilio import TwilioSmsBackend
from tests.conftest import csrf_token_from
from tests.fakes.twilio import TwilioFake, _Fault

UTC = timezone.utc
NOW = datetime(2026, 10, 20, 8, 42, tzinfo=UTC)  # Tuesday 20 October 2026, 10:42 in Paris


@pytest.fixture()
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def on_twilio(app, twilio_app_config, smtp_app):
    saved = {key: app.config.get(key) for key in (*twilio_app_config, "TWILIO_TIMEOUT_SECONDS", "OUTBOX_SEND_THREADS")}
    app.config.update(twilio_app_config, TWILIO_TIMEOUT_SECONDS=1, OUTBOX_SEND_THREADS=4)
    app.extensions.pop("lapins.sms_backend", None)
    yield app
    app.config.update(saved)
    app.extensions.pop("lapins.sms_backend", None)


class Place:
    def __init__(self, db, factories, number: str = "93") -> None:
        self.db = db
        # No quiet hours: these tests move the clock across hours that would otherwise hold SMS.
        self.territory = factories.TerritoryFactory(number=number, name="Seine-Saint-Denis", sms_sender="PMI93",
                                                    quiet_hours_start=time(0), quiet_hours_end=time(0))
        self.organisation = factories.OrganisationFactory(territory=self.territory, name="PMI Bobigny")
        self.lieu = factories.LieuFactory(organisation=self.organisation)
        self.motif = factories.MotifFactory(organisation=self.organisation)
        self.admin = factories.AgentFactory(organisation=self.organisation, organisation__role=Role.ADMIN,
                                            email="cheffe@pmi93.example.fr")
        db.session.add(TerritoryAdmin(agent_id=self.admin.id, territory_id=self.territory.id))
        self.agent = factories.AgentFactory(organisation=self.organisation, organisation__role=Role.AGENT)
        db.session.commit()
        self.count = 0

    def due_reminders(self, count: int, starts_in: timedelta) -> dict[int, tuple[str, datetime]]:
        """`count` rdvs, a family each with its own mobile, whose reminder is due now: {message id: (phone, start)}."""
        now = datetime.now(UTC).replace(microsecond=0)
        starts_at = now + starts_in
        messages = []
        for _ in range(count):
            self.count += 1
            usager = Usager(territory=self.territory, first_name="Inès", last_name=f"Durand{self.count}",
                            phone=f"+336{20_000_000 + self.count}", sms_consent=True)
            rdv = Rdv(organisation=self.organisation, motif=self.motif, lieu=self.lieu, starts_at=starts_at,
                      ends_at=starts_at + timedelta(minutes=30), usagers=[usager])
            messages.append(Message(territory_id=self.territory.id, rdv=rdv, usager=usager, channel=Channel.SMS,
                                    kind=MessageKind.REMINDER, status=MessageStatus.PENDING,
                                    due_at=now - timedelta(minutes=1), expires_at=starts_at))
        self.db.session.add_all(messages)
        self.db.session.commit()
        return {message.id: (message.usager.phone, starts_at) for message in messages}


@pytest.fixture()
def place(db, factories, clock):
    return Place(db, factories)


def rows(db, ids) -> dict[int, Message]:
    db.session.expire_all()
    return {row.id: row for row in db.session.scalars(select(Message).where(Message.id.in_(list(ids))))}


def beat(clock, minutes: float) -> None:
    """The beat's two jobs, `minutes` later: the watcher reads what the last dispatch left, then the outbox runs."""
    clock.shift(timedelta(minutes=minutes))
    delivery.watch()
    outbox.dispatch_due()


def subjects(smtp_server) -> list[str]:
    return [str(message["Subject"]) for message in smtp_server.messages]


def body_of(message) -> str:
    return message.get_body(("plain",)).get_content()


# --- 1,000 reminders, no credit, then the account topped up ------------------------------------------------------

def test_no_credit_for_1000_due_reminders_then_recovery_loses_none_and_sends_none_twice_or_late(
        on_twilio, place, db, clock, twilio_fake, smtp_server, client, auth):
    """Twilio refuses every SMS with 20005 for 22 minutes. 900 rdvs are 3 hours away, 100 begin 20 minutes in: those
    100 families cannot be reached in time and are counted as having missed their rdv, never sent late; the 900 get
    their reminder exactly once after the top-up. The administrator gets one alert at once and one recovery notice
    with the counts; every agent page of the territory shows the banner meanwhile, in Paris time."""
    twilio_fake.run_out_of_credit()
    later = place.due_reminders(900, starts_in=timedelta(hours=3))
    soon = place.due_reminders(100, starts_in=timedelta(minutes=20))
    reminders = {**later, **soon}

    outbox.dispatch_due()
    assert Counter((row.status, row.error_code) for row in rows(db, reminders).values()) == {
        (MessageStatus.PENDING, "credit"): 1000}
    clock.shift(timedelta(minutes=1))
    delivery.watch()
    assert subjects(smtp_server) == ["[Lapins] SMS bloqués : crédit épuisé chez Twilio"]
    alert = smtp_server.messages[0]
    assert alert["To"] == "cheffe@pmi93.example.fr"
    assert "Les SMS ne partent plus depuis 10 h 42 : crédit épuisé chez Twilio." in body_of(alert)

    auth.login(place.agent)  # a plain agent of the territory: the banner on every page
    for path in ("/usagers", "/"):
        page = html.unescape(client.get(path, follow_redirects=True).get_data(as_text=True))
        assert "Les SMS ne partent plus depuis 10 h 42 : crédit épuisé chez Twilio" in page, path

    # 20 minutes later still no credit: every reminder tried again and refused, the 100 whose rdv began are not
    # sent (the beat's runs in between are left out: each would only try again what is due, likewise).
    beat(clock, 20)
    assert len(smtp_server.messages) == 1 and twilio_fake.messages == []

    twilio_fake.top_up()
    beat(clock, 1)  # the probe leaves: the operator sends again
    beat(clock, 1)  # the others are brought forward and leave
    outbox.dispatch_due()

    final = rows(db, reminders)
    received = Counter(message.to for message in twilio_fake.messages)
    for message_id, (phone, starts_at) in later.items():
        assert final[message_id].status == MessageStatus.SENT, (final[message_id].status, final[message_id].error)
        assert received[phone] == 1
    for message_id, (phone, _starts_at) in soon.items():
        assert final[message_id].status == MessageStatus.FAILED and received[phone] == 0
        assert final[message_id].error.startswith(outbox.TOO_LATE) and "crédit épuisé" in final[message_id].error
    assert max(received.values()) == 1  # 0 sent twice
    starts = dict(reminders.values())
    assert not [m for m in twilio_fake.messages if m.date_created >= starts[m.to]]  # 0 sent after the rdv began

    assert subjects(smtp_server) == ["[Lapins] SMS bloqués : crédit épuisé chez Twilio",
                                     "[Lapins] SMS de nouveau envoyés"]
    notice = body_of(smtp_server.messages[1])
    assert "1000 messages retardés, dont 100 non envoyés avant le début de leur rendez-vous" in notice
    assert "interruption depuis le 20/10 à 10 h 42 : crédit épuisé chez Twilio" in notice
    page = html.unescape(client.get("/usagers").get_data(as_text=True))
    assert "ne partent plus" not in page
    beat(clock, 5)
    assert len(smtp_server.messages) == 2  # one alert, one recovery notice: nothing more


def test_refused_credentials_keep_messages_pending_and_are_told_as_such(on_twilio, place, db, clock, twilio_fake,
                                                                         smtp_server, app):
    place.territory.twilio_account_sid_encrypted = crypto.encrypt(twilio_fake.account_sid)
    place.territory.twilio_auth_token_encrypted = crypto.encrypt("not-the-token-at-all-0000000000000")
    db.session.commit()
    reminders = place.due_reminders(3, starts_in=timedelta(hours=5))
    for _ in range(12):  # more than MAX_ATTEMPTS tries: never failed for that reason
        beat(clock, 20)
    assert {(row.status, row.error_code) for row in rows(db, reminders).values()} == {
        (MessageStatus.PENDING, "credentials")}
    assert subjects(smtp_server) == ["[Lapins] SMS bloqués : identifiants refusés chez Twilio"]


def test_an_operator_failing_for_longer_than_the_setting_counts_as_an_outage(on_twilio, place, db, clock, app,
                                                                             twilio_fake, smtp_server):
    assert app.config["DELIVERY_OUTAGE_MINUTES"] == 30
    twilio_fake.throttle_next(10**6)  # 429 on everything
    place.due_reminders(2, starts_in=timedelta(hours=6))
    outbox.dispatch_due()
    for _ in range(29):  # the beat, every minute
        beat(clock, 1)
    assert smtp_server.messages == []  # failing, not yet for 30 minutes
    beat(clock, 1)
    assert subjects(smtp_server) == ["[Lapins] SMS bloqués : tous les envois échouent (Twilio)"]
    state = db.session.scalar(select(ChannelState))
    assert state.cause == "failing" and state.down_since == NOW


# --- Timeouts, callbacks early, twice or never -------------------------------------------------------------------

class EverySecondTimesOut(TwilioFake):
    """Every second API request (sends and find_sent's listings alike) is held past the client's timeout; of
    those, one in two was processed first (the SMS left, only the answer is lost), the other dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def _next_fault(self):
        with self._lock:
            self._state.requests += 1
            self.count += 1
            if self.count % 2:
                return None
            return _Fault(hang=2.5, accept=(self.count // 2) % 2 == 0)


def test_an_operator_timing_out_on_every_second_request_loses_nothing_and_sends_nothing_twice(
        app, place, db, clock, smtp_app):
    with EverySecondTimesOut() as fake:
        saved = {key: app.config.get(key) for key in ("SMS_BACKEND", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                                                        "TWILIO_BASE_URL", "TWILIO_TIMEOUT_SECONDS")}
        app.config.update(SMS_BACKEND="twilio", TWILIO_ACCOUNT_SID=fake.account_sid,
                          TWILIO_AUTH_TOKEN=fake.auth_token, TWILIO_BASE_URL=fake.url, TWILIO_TIMEOUT_SECONDS=1)
        app.extensions.pop("lapins.sms_backend", None)
        try:
            reminders = place.due_reminders(24, starts_in=timedelta(hours=4))
            lease = timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"])
            for _ in range(40):
                outbox.dispatch_due()
                if all(row.status == MessageStatus.SENT for row in rows(db, reminders).values()):
                    break
                clock.shift(lease + timedelta(seconds=1))
            final = rows(db, reminders)
            assert {row.status for row in final.values()} == {MessageStatus.SENT}
            received = Counter(message.to for message in fake.messages)
            assert all(received[phone] == 1 for phone, _start in reminders.values()), received
            assert {row.provider_id for row in final.values()} == {message.sid for message in fake.messages}
        finally:
            app.config.update(saved)
            app.extensions.pop("lapins.sms_backend", None)


def test_status_callbacks_before_the_send_returns_twice_or_never(on_twilio, place, db, clock, app, client,
                                                                 twilio_fake, caplog):
    ids = list(place.due_reminders(3, starts_in=timedelta(hours=4)))
    # One send is held past the timeout after Twilio took it: Twilio's callback arrives before Lapins knows the
    # SMS's sid. It is answered (no retry storm) and kept; find_sent records the SMS after the lease, then the
    # kept status applies.
    twilio_fake.hang_next(1, seconds=2.5, accept=True)
    outbox.dispatch_due()
    rows_now = rows(db, ids)
    [early] = [message_id for message_id in ids if rows_now[message_id].status == MessageStatus.QUEUED]
    twice, never = [message_id for message_id in ids if message_id != early]
    assert rows_now[early].provider_id is None
    [taken] = [m for m in twilio_fake.messages if m.to == place_phone(db, early)]
    callback = twilio_fake.status_request(taken.sid, "delivered")
    assert client.post(callback.path, data=callback.data, headers=callback.headers).status_code == 200
    clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
    outbox.dispatch_due()
    rows_now = rows(db, [early, twice, never])
    assert rows_now[early].status == MessageStatus.SENT and rows_now[early].provider_id == taken.sid
    # The beat's job (tasks.apply_early_sms_statuses): the early status applies once the sid is known.
    assert twilio_webhooks.apply_early_statuses() == 1
    assert rows(db, [early])[early].status == MessageStatus.DELIVERED
    assert twilio_webhooks.apply_early_statuses() == 0

    # Twice: the first applies, the copy changes nothing.
    callback = twilio_fake.status_request(rows_now[twice].provider_id, "delivered")
    assert client.post(callback.path, data=callback.data, headers=callback.headers).status_code == 204
    assert client.post(callback.path, data=callback.data, headers=callback.headers).status_code == 200
    rows_now = rows(db, [early, twice, never])
    assert rows_now[twice].status == MessageStatus.DELIVERED
    # Never: the message stays sent, and counts as the channel's last success.
    assert rows_now[never].status == MessageStatus.SENT
    assert Counter(message.to for message in twilio_fake.messages).most_common(1)[0][1] == 1

    # A bad signature, and a callback for a message Lapins never sent: a log line, no 500, nothing changed.
    caplog.set_level(logging.INFO)
    forged = twilio_fake.status_request(rows_now[never].provider_id, "undelivered", error_code=30005)
    assert client.post(forged.path, data=forged.data, headers={"X-Twilio-Signature": "AAAA"}).status_code == 403
    stranger = twilio_fake.add_message("+33699999999", "autre", datetime.now(UTC), status="sent")
    stranger.status_callback = callback.url
    unknown = twilio_fake.status_request(stranger.sid, "delivered")
    assert client.post(unknown.path, data=unknown.data, headers=unknown.headers).status_code == 200
    assert rows(db, [never])[never].status == MessageStatus.SENT
    assert "bad or missing signature" in caplog.text
    assert "+336" not in caplog.text and "+33699999999" not in caplog.text


def place_phone(db, message_id: int) -> str:
    return db.session.get(Message, message_id).usager.phone


@pytest.mark.parametrize("body", ["", "<html><body>Maintenance</body></html>"])
def test_an_operator_answering_an_empty_body_or_html_loses_nothing_and_sends_nothing_twice(
        on_twilio, place, db, clock, app, twilio_fake, body, caplog):
    caplog.set_level(logging.INFO)
    [message_id] = place.due_reminders(1, starts_in=timedelta(hours=4))
    twilio_fake.garble_next(1, body)
    outbox.dispatch_due()
    row = rows(db, [message_id])[message_id]
    assert row.status == MessageStatus.QUEUED and row.error  # not failed, not sent again before find_sent
    clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
    outbox.dispatch_due()
    row = rows(db, [message_id])[message_id]
    assert row.status == MessageStatus.SENT and len(twilio_fake.messages) == 1
    assert row.usager.phone not in caplog.text


# --- The balance ---------------------------------------------------------------------------------------------------

def test_twilio_balance_is_read_through_the_sdk(twilio_fake):
    backend = TwilioSmsBackend.from_config({"TWILIO_ACCOUNT_SID": twilio_fake.account_sid,
                                            "TWILIO_AUTH_TOKEN": twilio_fake.auth_token,
                                            "TWILIO_BASE_URL": twilio_fake.url})
    twilio_fake.set_balance("12.34", "EUR")
    assert backend.balance() == Balance(amount=Decimal("12.34"), currency="EUR")
    wrong = TwilioSmsBackend.from_config({"TWILIO_ACCOUNT_SID": twilio_fake.account_sid,
                                          "TWILIO_AUTH_TOKEN": "x" * 32, "TWILIO_BASE_URL": twilio_fake.url})
    with pytest.raises(TransientError) as raised:
        wrong.balance()
    assert raised.value.code == "credentials"


def test_the_daily_check_warns_once_below_ten_days_of_use_and_the_threshold_is_set_on_the_health_page(
        on_twilio, place, db, clock, twilio_fake, smtp_server, client, auth):
    # 300 segments over the last 30 days: 10 a day, so 100 segments for ten days, 8.00 EUR at 0.08 a segment.
    for day in range(30):
        db.session.add(Message(territory_id=place.territory.id, channel=Channel.SMS, kind=MessageKind.REMINDER,
                               status=MessageStatus.DELIVERED, due_at=NOW - timedelta(days=day, hours=1),
                               sent_at=NOW - timedelta(days=day, hours=1), segments=10))
    db.session.commit()
    twilio_fake.set_balance("7.50", "EUR")
    assert delivery.check_balances() == 1
    assert subjects(smtp_server) == ["[Lapins] Crédit SMS bientôt épuisé"]
    assert "Il reste 7,5 EUR" in body_of(smtp_server.messages[0]) and "seuil de 8 EUR" in body_of(smtp_server.messages[0])
    clock.shift(timedelta(hours=2))
    assert delivery.check_balances() == 0  # once a day at most

    auth.login(place.admin)
    page = client.get(f"/sante-des-envois/{place.territory.id}")
    text = html.unescape(page.get_data(as_text=True))
    assert "<strong>7,5 EUR</strong>" in text and "(actuellement <strong data-threshold>8</strong>)" in text
    bad = client.post(f"/sante-des-envois/{place.territory.id}", data={"csrf_token": csrf_token_from(text),
                                                                        "threshold": "beaucoup"})
    assert bad.status_code == 422 and "Indiquez un nombre positif" in html.unescape(bad.get_data(as_text=True))
    saved = client.post(f"/sante-des-envois/{place.territory.id}", data={"csrf_token": csrf_token_from(text),
                                                                          "threshold": "5,50"})
    assert saved.status_code == 302
    clock.shift(timedelta(days=1))
    assert delivery.check_balances() == 0  # 7.50 is above the 5.50 set by hand
    assert len(smtp_server.messages) == 1


# --- The health page, /healthz, /metrics ---------------------------------------------------------------------------

def test_the_health_page_shows_each_channel_to_territory_administrators_only(on_twilio, place, db, clock, client,
                                                                            auth, twilio_fake, factories):
    reminders = place.due_reminders(3, starts_in=timedelta(hours=4))
    twilio_fake.mark_invalid(place_phone(db, next(iter(reminders))))
    outbox.dispatch_due()
    organisation_webhook = Webhook(organisation_id=place.organisation.id, url="https://si.example.fr/hook",
                                   description="SI du département", secret_encrypted=crypto.encrypt("s"))
    db.session.add(organisation_webhook)
    db.session.commit()
    clock.shift(timedelta(minutes=5))

    auth.login(place.agent)
    assert client.get(f"/sante-des-envois/{place.territory.id}").status_code == 403
    assert "Santé des envois" not in client.get("/usagers").get_data(as_text=True)
    auth.logout()
    auth.login(place.admin)
    menu = client.get("/usagers").get_data(as_text=True)
    assert "Santé des envois" in menu
    assert client.get("/sante-des-envois").headers["Location"].endswith(f"/sante-des-envois/{place.territory.id}")
    text = html.unescape(client.get(f"/sante-des-envois/{place.territory.id}").get_data(as_text=True))
    assert "SMS — Twilio" in text and "Webhook SI du département" in text
    sms_row = text.split('data-channel="sms"')[1].split("</tr>")[0]
    assert "mardi 20 octobre 2026 à 10h42" in sms_row  # last success, Paris time
    assert "21211 : <strong>1</strong>" in sms_row  # the invalid number, by cause
    assert "<td>2</td>" in sms_row  # segments this month
    other = factories.TerritoryFactory()
    assert client.get(f"/sante-des-envois/{other.id}").status_code == 404


def test_healthz_gives_numbers_only_and_metrics_need_the_token(on_twilio, place, db, clock, client, app,
                                                              twilio_fake, monkeypatch):
    twilio_fake.run_out_of_credit()
    place.due_reminders(2, starts_in=timedelta(hours=4))
    outbox.dispatch_due()
    clock.shift(timedelta(minutes=3))
    delivery.watch()
    answer = client.get("/healthz").get_json()
    # Both retried 30 s after their first try: due since 150 s.
    assert answer["delivery"]["channels"]["sms"] == {"pending": 2, "oldest_pending_seconds": 150}
    assert answer["delivery"]["outages"] == [{"territory": place.territory.id, "channel": "sms", "cause": "credit",
                                              "seconds": 180}]
    raw = client.get("/healthz").get_data(as_text=True)
    assert "+336" not in raw and "Inès" not in raw and "Durand" not in raw

    monkeypatch.setitem(app.config, "METRICS_TOKEN", "")
    assert client.get("/metrics").status_code == 404
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "jeton-de-supervision-0123456789")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer mauvais"}).status_code == 401
    metrics = client.get("/metrics", headers={"Authorization": "Bearer jeton-de-supervision-0123456789"})
    text = metrics.get_data(as_text=True)
    assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'lapins_messages_pending{channel="sms"} 2' in text and 'lapins_messages_failed_24h{channel="sms"} 0' in text
    assert f'lapins_channel_down_seconds{{territory="{place.territory.id}",channel="sms",cause="credit"}} 180' in text


def test_the_banner_is_only_for_the_territorys_agents_and_in_its_time_zone(place, db, clock, client, auth,
                                                                           factories):
    reunion = factories.TerritoryFactory(timezone="Indian/Reunion")
    organisation = factories.OrganisationFactory(territory=reunion)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    db.session.add_all([ChannelState(territory_id=reunion.id, channel="sms", operator="twilio", cause="credit",
                                     down_since=NOW),
                        ChannelState(territory_id=place.territory.id, channel="email", operator="smtp",
                                     cause="failing", down_since=NOW - timedelta(days=1))])
    db.session.commit()
    auth.login(agent)
    text = html.unescape(client.get("/usagers").get_data(as_text=True))
    assert "Les SMS ne partent plus depuis 12 h 42 : crédit épuisé chez Twilio" in text  # 08:42 UTC, UTC+4
    assert "Les e-mails ne partent plus" not in text  # another territory's
    auth.logout()
    auth.login(place.agent)
    text = html.unescape(client.get("/usagers").get_data(as_text=True))
    assert ("Les e-mails ne partent plus depuis le 19/10 à 10 h 42 : tous les envois échouent "
            "(le serveur d'envoi (SMTP))") in text
    assert "Les SMS ne partent plus" not in text


# --- Webhooks that fail ----------------------------------------------------------------------------------------------

class Receiver:
    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answer, self.received = 503, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.received.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(receiver.answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/evenements"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def new_delivery(webhook: Webhook, db, number: int) -> WebhookDelivery:
    sent = WebhookDelivery(webhook_id=webhook.id, event="rdv.created", payload={"id": number})
    db.session.add(sent)
    db.session.commit()
    return sent


def test_a_failing_webhook_tells_its_owner_then_is_paused_and_one_click_resumes_and_replays(
        place, db, clock, client, auth, receiver, smtp_app, smtp_server, app, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_FAILURE_NOTICE_AFTER", 3)
    assert app.config["WEBHOOK_PAUSE_AFTER_HOURS"] == 24
    webhook = Webhook(organisation_id=place.organisation.id, url=receiver.url, secret_encrypted=crypto.encrypt("s"),
                      created_by_id=place.admin.id)
    db.session.add(webhook)
    db.session.commit()
    for number in range(3):
        new_delivery(webhook, db, number)
    webhook_delivery.deliver_due()  # one attempt per run for a failing endpoint
    for _ in range(2):
        clock.shift(timedelta(minutes=6))
        webhook_delivery.deliver_due()
    assert subjects(smtp_server) == ["[Lapins] Webhook en échec : 3 envois échoués de suite"]
    assert smtp_server.messages[0]["To"] == "cheffe@pmi93.example.fr"
    for _ in range(48):  # two days of failures: paused at the first one after 24 h
        clock.shift(timedelta(hours=1))
        webhook_delivery.deliver_due()
    db.session.refresh(webhook)
    assert webhook.paused_at is not None
    assert subjects(smtp_server)[1:] == ["[Lapins] Webhook mis en pause"]
    tried = len(receiver.received)
    later = new_delivery(webhook, db, 99)  # new events are kept while paused
    clock.shift(timedelta(hours=3))
    assert webhook_delivery.deliver_due()["delivered"] == 0 and len(receiver.received) == tried
    assert db.session.get(WebhookDelivery, later.id).status == DeliveryStatus.PENDING

    receiver.answer = 200
    auth.login(place.admin)
    page = html.unescape(client.get(f"/integrations/organisations/{place.organisation.id}/webhooks")
                         .get_data(as_text=True))
    assert "En pause depuis le" in page and "Reprendre et renvoyer" in page
    answer = client.post(f"/integrations/webhooks/{webhook.id}/reprendre", data={"csrf_token": csrf_token_from(page)},
                         follow_redirects=True)
    assert "Webhook repris : 4 événements de nouveau envoyés" in html.unescape(answer.get_data(as_text=True))
    counts = webhook_delivery.deliver_due()
    assert counts["delivered"] == 4
    db.session.expire_all()
    assert {sent.status for sent in db.session.scalars(select(WebhookDelivery))} == {DeliveryStatus.DELIVERED}
    assert db.session.get(Webhook, webhook.id).paused_at is None


def test_after_a_long_outage_a_burst_of_429_at_the_recovery_gives_up_on_no_message(
        on_twilio, place, db, clock, twilio_fake, smtp_server):
    twilio_fake.run_out_of_credit()
    reminders = place.due_reminders(3, starts_in=timedelta(days=3))
    outbox.dispatch_due()
    beat(clock, 1)
    # A weekend of tries refused for want of credit: the next one half an hour away, at the longest backoff.
    db.session.execute(update(Message).values(attempts=60, due_at=datetime.now(UTC) + outbox.LONGEST_RETRY))
    db.session.commit()
    twilio_fake.top_up()
    beat(clock, 1)  # the probe leaves
    clock.shift(timedelta(minutes=1))
    delivery.watch()  # the recovery: the others brought forward, their retry budget whole again
    twilio_fake.throttle_next(2)  # everything leaving at once: Twilio answers 429
    outbox.dispatch_due()
    assert {row.status for row in rows(db, reminders).values()} == {MessageStatus.SENT, MessageStatus.PENDING}
    beat(clock, 1)
    final = rows(db, reminders)
    assert {row.status for row in final.values()} == {MessageStatus.SENT}
    assert Counter(message.to for message in twilio_fake.messages) == Counter(
        phone for phone, _start in reminders.values())


def test_a_territory_on_brevo_is_watched_and_told_under_brevos_name(on_twilio, place, db, clock, brevo_fake,
                                                                   brevo_app_config, smtp_server, app):
    """The deployment sends through Twilio, this territory chose Brevo: Brevo's « no credit » keeps its reminders
    pending, the alert and the recovery notice name Brevo, and every family gets its SMS once after the top-up."""
    app.config.update(BREVO_API_KEY=brevo_app_config["BREVO_API_KEY"],
                      BREVO_BASE_URL=brevo_app_config["BREVO_BASE_URL"])
    for cache in ("lapins.territory_sms_backends", "lapins.operator_sms_backends"):
        app.extensions.pop(cache, None)
    place.territory.sms_operator = "brevo"
    db.session.commit()
    brevo_fake.credits = 0
    reminders = place.due_reminders(5, starts_in=timedelta(hours=3))
    outbox.dispatch_due()
    assert {(row.status, row.error_code) for row in rows(db, reminders).values()} == {(MessageStatus.PENDING, "credit")}
    clock.shift(timedelta(minutes=1))
    delivery.watch()
    assert subjects(smtp_server) == ["[Lapins] SMS bloqués : crédit épuisé chez Brevo"]

    brevo_fake.credits = None
    beat(clock, 1)
    beat(clock, 1)
    outbox.dispatch_due()
    assert {row.status for row in rows(db, reminders).values()} == {MessageStatus.SENT}
    assert len(brevo_fake.messages) == 5 and len({message.to for message in brevo_fake.messages}) == 5
    assert subjects(smtp_server)[1:] == ["[Lapins] SMS de nouveau envoyés"]
