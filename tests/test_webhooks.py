"""Outgoing webhooks: an organisation's other systems hear of rdv and usager changes, signed, retried, logged.

A real HTTP server on loopback receives them; the deliveries are sent by `deliver_due`, the beat's job (tests run
Celery eagerly, so no task is kicked from inside a commit).
"""
from __future__ import annotations

import hashlib
import hmac
import html
import json
import threading
import time as clock
from datetime import datetime, time, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.infra import crypto
from lapins.booking import BookingError, book_rdv, cancel_rdv, move_rdv
from lapins.infra.extensions import db
from lapins.integrations import delivery
from lapins.models import RdvStatus, Role
from lapins.models.rdvs import CancellationChannel
from lapins.models.webhooks import DeliveryStatus, Webhook, WebhookDelivery
from tests.conftest import csrf_token_from

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


class Receiver:
    """A loopback endpoint that records what it receives; `answer` sets its HTTP status, `delay` its slowness."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.answer, self.delay = 200, 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.delay:
                    clock.sleep(receiver.delay)
                receiver.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/evenements"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [json.loads(item["body"])["event"] for item in self.received]


@pytest.fixture()
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture()
def frozen():
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture()
def org(factories):
    organisation = factories.OrganisationFactory(name="PMI Belleville")
    lieu = factories.LieuFactory(organisation=organisation)
    motif = factories.MotifFactory(organisation=organisation, duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=NOW.date(), motifs=[motif], start_time=time(9),
                           end_time=time(12), weekdays=0b0011111)
    usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation])

    def book(hour: int = 10, **kwargs):
        return book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[usager], lieu=lieu,
                        starts_at=datetime(2026, 3, 4, hour, tzinfo=PARIS), **kwargs)

    return type("Org", (), dict(organisation=organisation, lieu=lieu, motif=motif, agent=agent, admin=admin,
                                usager=usager, book=staticmethod(book)))


def add_webhook(organisation, url: str, secret: str = "secret-de-test") -> Webhook:
    webhook = Webhook(organisation_id=organisation.id, url=url, secret_encrypted=crypto.encrypt(secret))
    db.session.add(webhook)
    db.session.commit()
    return webhook


def deliveries() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_an_admin_adds_a_webhook_and_reads_its_secret_once(client, auth, org, receiver):
    auth.login(org.admin)
    page = client.get(f"/integrations/organisations/{org.organisation.id}/webhooks")
    assert page.status_code == 200
    response = client.post(f"/integrations/organisations/{org.organisation.id}/webhooks", data={
        "csrf_token": csrf_token_from(page.get_data(as_text=True)), "url": receiver.url, "description": "SI PMI"})

    text = response.get_data(as_text=True)
    secret = text.split('id="secret-webhook">')[1].split("<")[0]
    [webhook] = db.session.scalars(select(Webhook)).all()
    assert response.status_code == 200 and webhook.url == receiver.url and len(secret) >= 40
    assert secret not in webhook.secret_encrypted and crypto.decrypt(webhook.secret_encrypted) == secret
    assert secret not in client.get(f"/integrations/organisations/{org.organisation.id}/webhooks").get_data(as_text=True)


@pytest.mark.parametrize("url, message", [
    ("javascript:alert(1)", "Adresse invalide"),
    ("pas une adresse", "Adresse invalide"),
    ("https://" + "a" * 600 + ".fr", "Adresse trop longue"),
    ("", "Indiquez l'adresse"),
])
def test_a_bad_address_is_refused_in_french_and_nothing_is_stored(client, auth, org, url, message):
    auth.login(org.admin)
    page = client.get(f"/integrations/organisations/{org.organisation.id}/webhooks")
    response = client.post(f"/integrations/organisations/{org.organisation.id}/webhooks", data={
        "csrf_token": csrf_token_from(page.get_data(as_text=True)), "url": url})
    assert response.status_code == 422 and message in html.unescape(response.get_data(as_text=True))
    assert db.session.scalar(select(func.count(Webhook.id))) == 0


def test_production_takes_only_https_addresses(app, client, auth, org, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOKS_ALLOW_HTTP", False)
    auth.login(org.admin)
    page = client.get(f"/integrations/organisations/{org.organisation.id}/webhooks")
    response = client.post(f"/integrations/organisations/{org.organisation.id}/webhooks", data={
        "csrf_token": csrf_token_from(page.get_data(as_text=True)), "url": "http://si.departement.fr/hook"})
    assert response.status_code == 422 and "https://" in html.unescape(response.get_data(as_text=True))


def test_only_the_organisations_admins_manage_its_webhooks(client, auth, org, factories):
    auth.login(org.agent)
    assert client.get(f"/integrations/organisations/{org.organisation.id}/webhooks").status_code == 403
    other = factories.OrganisationFactory()
    auth.logout()
    auth.login(org.admin)
    assert client.get(f"/integrations/organisations/{other.id}/webhooks").status_code == 404


def test_a_booking_is_announced_signed_after_its_commit_not_during_it(org, receiver, frozen):
    add_webhook(org.organisation, receiver.url, secret="s3cret")
    rdv = org.book()

    [pending] = deliveries()
    assert pending.event == "rdv.created" and pending.status == DeliveryStatus.PENDING
    assert receiver.received == []  # the booking did not wait for the endpoint

    assert delivery.deliver_due()["delivered"] == 1
    [request] = receiver.received
    timestamp, digest = (part.split("=", 1)[1] for part in request["headers"]["X-Lapins-Signature"].split(","))
    expected = hmac.new(b"s3cret", f"{timestamp}.".encode() + request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(digest, expected)
    body = json.loads(request["body"])
    assert body["event"] == "rdv.created" and request["headers"]["X-Lapins-Event"] == "rdv.created"
    assert body["data"]["id"] == rdv.id and body["data"]["starts_at"] == "2026-03-04T09:00:00Z"
    assert body["data"]["agent_ids"] == [org.agent.id] and body["data"]["usager_ids"] == [org.usager.id]
    assert request["headers"]["X-Lapins-Delivery"] == str(pending.id)
    assert deliveries()[0].status == DeliveryStatus.DELIVERED


def test_moves_cancellations_and_usager_changes_are_announced_and_other_organisations_hear_nothing(
        org, receiver, factories, frozen):
    add_webhook(org.organisation, receiver.url)
    elsewhere = Receiver()
    try:
        other = factories.OrganisationFactory(territory=org.organisation.territory)
        add_webhook(other, elsewhere.url)
        rdv = org.book()
        move_rdv(actor=org.agent, rdv=rdv, starts_at=datetime(2026, 3, 4, 11, tzinfo=PARIS))
        org.usager.phone = "+33698765432"
        db.session.commit()
        org.usager.phone_error = "réponse de l'opérateur"  # not a change other systems care about
        db.session.commit()
        cancel_rdv(actor=None, rdv=rdv, status=RdvStatus.EXCUSED, reason=None, via=CancellationChannel.LINK)
        delivery.deliver_due()

        assert receiver.events() == ["rdv.created", "rdv.updated", "usager.updated", "rdv.cancelled"]
        moved, cancelled = (json.loads(receiver.received[i]["body"])["data"] for i in (1, 3))
        assert moved["starts_at"] == "2026-03-04T10:00:00Z"
        assert cancelled["status"] == "excused" and cancelled["cancelled_via"] == "link"
        assert cancelled["cancelled_by"] == "family"
        assert elsewhere.received == []
    finally:
        elsewhere.server.shutdown()
        elsewhere.server.server_close()


def test_a_refused_booking_announces_nothing(org, receiver, frozen):
    add_webhook(org.organisation, receiver.url)
    org.book()
    with pytest.raises(BookingError):
        org.book()  # the same time again: refused and rolled back
    assert [sent.event for sent in deliveries()] == ["rdv.created"]


def test_a_failing_endpoint_is_retried_with_backoff_and_gets_the_same_delivery(org, receiver, frozen):
    add_webhook(org.organisation, receiver.url)
    org.book()
    receiver.answer = 500

    assert delivery.deliver_due()["retry"] == 1
    [sent] = deliveries()
    assert sent.status == DeliveryStatus.PENDING and sent.attempts == 1 and sent.last_error == "Réponse HTTP 500"
    assert timedelta(seconds=55) < sent.next_attempt_at - NOW < timedelta(minutes=2)
    assert delivery.deliver_due() == {"delivered": 0, "retry": 0, "failed": 0, "postponed": 0}  # not due yet

    receiver.answer = 200
    frozen.shift(timedelta(minutes=2))
    assert delivery.deliver_due()["delivered"] == 1
    assert deliveries()[0].status == DeliveryStatus.DELIVERED
    first, second = receiver.received
    assert first["headers"]["X-Lapins-Delivery"] == second["headers"]["X-Lapins-Delivery"]


def test_a_slow_endpoint_times_out_and_does_not_hold_up_the_others(app, org, receiver, factories, frozen,
                                                                    monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_READ_TIMEOUT", 1)
    slow = Receiver()
    slow.delay = 3
    try:
        add_webhook(org.organisation, slow.url)
        add_webhook(org.organisation, receiver.url)
        org.book(hour=10)
        org.book(hour=11)

        counts = delivery.deliver_due()

        # The slow endpoint was tried once, timed out, and its second event waits for the next run.
        assert counts == {"delivered": 2, "retry": 1, "failed": 0, "postponed": 1}
        assert receiver.events() == ["rdv.created", "rdv.created"]
        slow_rows = [sent for sent in deliveries() if sent.webhook.url == slow.url]
        assert {sent.status for sent in slow_rows} == {DeliveryStatus.PENDING}
        assert [sent.last_error for sent in slow_rows if sent.attempts] == ["Délai dépassé"]
    finally:
        slow.server.shutdown()
        slow.server.server_close()


def test_after_the_last_attempt_the_log_shows_the_failure_and_an_admin_sends_it_again(client, auth, org, receiver,
                                                                                      frozen, app, monkeypatch):
    # One delivery's attempts over eight days: the endpoint is never paused here (tests/test_delivery_health.py).
    monkeypatch.setitem(app.config, "WEBHOOK_PAUSE_AFTER_HOURS", 24 * 30)
    add_webhook(org.organisation, receiver.url)
    org.book()
    receiver.answer = 503
    for _ in range(delivery.MAX_ATTEMPTS):
        delivery.deliver_due()
        frozen.shift(timedelta(days=1))
    [sent] = deliveries()
    assert sent.status == DeliveryStatus.FAILED and sent.attempts == delivery.MAX_ATTEMPTS

    auth.login(org.admin)
    page = client.get(f"/integrations/organisations/{org.organisation.id}/webhooks")
    text = html.unescape(page.get_data(as_text=True))
    assert "Échec" in text and "HTTP 503" in text and "Relancer" in text
    client.post(f"/integrations/livraisons/{sent.id}/relancer", data={"csrf_token": csrf_token_from(text)})
    receiver.answer = 200
    assert delivery.deliver_due()["delivered"] == 1
    assert deliveries()[0].status == DeliveryStatus.DELIVERED


def test_a_delivery_claimed_by_a_worker_that_died_is_sent_after_its_lease(org, receiver, frozen):
    add_webhook(org.organisation, receiver.url)
    org.book()
    [sent] = deliveries()
    assert delivery._claim(sent.id, datetime.now(timezone.utc))  # a worker claimed it, then was killed before sending

    assert delivery.deliver_due()["delivered"] == 0 and receiver.received == []
    frozen.shift(delivery.LEASE + timedelta(seconds=1))
    assert delivery.deliver_due()["delivered"] == 1 and len(receiver.received) == 1


def test_old_deliveries_leave_the_log(org, receiver, frozen):
    add_webhook(org.organisation, receiver.url)
    org.book()
    delivery.deliver_due()
    frozen.shift(timedelta(days=31))
    delivery.deliver_due()
    assert deliveries() == []


def test_organisations_without_webhooks_get_no_rows(org):
    org.book()
    assert deliveries() == []
