"""SMS through Brevo, the second operator: the real `brevo-python` SDK against a loopback fake of Brevo's API
(tests/fakes/brevo.py), through the outbox, its status callbacks (token per message, early, twice, never), STOP,
the operator saying « no credit » or refusing the key, answers that are not Brevo's, and the territory settings page
choosing Brevo with its own key, stored encrypted.
"""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from werkzeug.serving import make_server

from lapins.models import Channel, Message, MessageKind, MessageStatus, Territory
from lapins.notifications import outbox
from lapins.notifications.backends import OPERATOR_DOWN, OutgoingSms, PermanentError, TransientError
from lapins.notifications.brevo import BrevoSmsBackend, sender_problem
from lapins.notifications.providers import sms_backend
from lapins.notifications.webhooks import BREVO_STATUS_PATH
from tests.fakes.brevo import BrevoFake
from tests.fakes.twilio import TwilioFake
from tests.test_outbox import PARIS, book, local, make_clinic, messages
from tests.test_territory_settings import as_admin, clinic, clock, post_settings, token_of, url  # noqa: F401


PHONE = "+33612345678"  # the clinic's mother
BODY = "Rappel : rdv PMI demain 09:30, Centre PMI Nord. Infos/annuler : https://rdv.pmi.example.fr/r/1f-abc"
PUBLIC_URL = "https://rdv.pmi.example.fr"
OWN_KEY = "xkeysib-" + "0123456789abcdef" * 4 + "-" + "OwnKeyOfThe92abc"


def backend_on(fake: BrevoFake, **settings) -> BrevoSmsBackend:
    return BrevoSmsBackend.for_key(fake.api_key, {"BREVO_BASE_URL": fake.url, **settings})


def sms(to: str = PHONE, body: str = BODY, **fields) -> OutgoingSms:
    return OutgoingSms(message_id=7, to=to, body=body, **{"sender": "PMI92", **fields})


@pytest.fixture()
def on_brevo(app, brevo_app_config):
    """Brevo is the deployment's operator, on the fake; caches of backends dropped before and after."""
    settings = {**brevo_app_config, "PUBLIC_URL": PUBLIC_URL}
    saved = {key: app.config.get(key) for key in settings}
    app.config.update(settings)
    _forget_backends(app)
    yield
    app.config.update(saved)
    _forget_backends(app)


def _forget_backends(app) -> None:
    for cache in ("lapins.sms_backend", "lapins.territory_sms_backends", "lapins.operator_sms_backends"):
        app.extensions.pop(cache, None)


@pytest.fixture()
def brevo_clinic(clinic, db, on_brevo):
    clinic.territory.sms_sender = "PMI92"
    db.session.commit()
    return clinic


def created_sms(db, rdv) -> Message:
    return messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED, channel=Channel.SMS)[0]


# --- The backend ---------------------------------------------------------------------------------------------------

def test_a_sent_sms_gets_brevos_id_and_segments_with_its_tag_and_callback(brevo_fake):
    delivery = backend_on(brevo_fake).send(sms(status_callback="https://x.example/cb?m=7&t=abc"))
    [accepted] = brevo_fake.messages
    assert delivery.provider_id == str(accepted.message_id) and delivery.segments == 1
    assert (accepted.to, accepted.content, accepted.sender) == (PHONE, BODY, "PMI92")
    assert accepted.tag == "lapins-m7" and accepted.web_url == "https://x.example/cb?m=7&t=abc"


def test_a_number_as_sender_leaves_without_its_plus_and_brevos_sender_rules_are_told_in_french(brevo_fake):
    backend_on(brevo_fake).send(sms(sender="+33757000001"))
    assert brevo_fake.messages[0].sender == "33757000001"
    assert sender_problem("PMI59") is None and sender_problem("33757000001") is None
    assert "sans espace" in sender_problem("PMI 59") and "sans espace" in sender_problem("PMIHautsDeSeine")
    assert "exige un expéditeur" in sender_problem(None)


def test_a_sender_brevo_refuses_is_a_transient_error_that_does_not_blame_the_number(brevo_fake):
    with pytest.raises(TransientError) as raised:
        backend_on(brevo_fake).send(sms(sender="PMI 92"))  # stored before the territory chose Brevo
    assert raised.value.code == "sender" and "Brevo refuse l'expéditeur" in raised.value.message
    with pytest.raises(TransientError) as raised:
        backend_on(brevo_fake).send(sms(sender=None))
    assert raised.value.code == "sender" and brevo_fake.messages == []


def test_no_credit_is_the_operator_down_code_credit_and_a_refused_key_the_code_credentials(brevo_fake):
    brevo_fake.credits = 0
    with pytest.raises(TransientError) as raised:
        backend_on(brevo_fake).send(sms())
    assert raised.value.code == "credit" and raised.value.code in OPERATOR_DOWN and not raised.value.maybe_sent
    assert "crédit SMS épuisé chez Brevo" in raised.value.message

    with pytest.raises(TransientError) as raised:
        BrevoSmsBackend.for_key("xkeysib-wrong", {"BREVO_BASE_URL": brevo_fake.url}).send(sms())
    assert raised.value.code == "credentials" and "refuse la clé API" in raised.value.message
    assert brevo_fake.messages == []


def test_the_balance_is_the_sms_credits_left(brevo_fake):
    brevo_fake.credits = 1234
    assert backend_on(brevo_fake).balance().messages == 1234
    brevo_fake.credits = None  # an account without an SMS plan
    assert backend_on(brevo_fake).balance() is None


@pytest.mark.parametrize(("status", "body", "maybe_sent"), [
    (502, "html", True),  # a gateway's page: Brevo may have taken it
    (200, "empty", True),  # a success without a body: it may have left
    (200, "html", True),
    (403, "html", False),  # a proxy refusing: nothing reached Brevo
])
def test_an_answer_that_is_not_brevos_is_a_transient_error_in_french(brevo_fake, status, body, maybe_sent):
    brevo_fake.fail_next(1, status=status, body=body)
    with pytest.raises(TransientError) as raised:
        backend_on(brevo_fake).send(sms())
    assert raised.value.maybe_sent is maybe_sent and "Brevo" in raised.value.message
    assert f"HTTP {status}" in raised.value.message


def test_a_timeout_is_transient_and_a_lost_answer_is_found_so_it_is_not_sent_twice(brevo_fake):
    backend = backend_on(brevo_fake, BREVO_TIMEOUT_SECONDS=1)
    started = datetime.now(UTC)
    brevo_fake.hang_next(1, seconds=30, accept=True)
    with pytest.raises(TransientError) as raised:
        backend.send(sms())
    assert raised.value.code == "timeout" and raised.value.maybe_sent and "1 s" in raised.value.message

    found = backend.find_sent(sms(), since=started)
    assert found is not None and found.provider_id == str(brevo_fake.messages[0].message_id)
    assert backend.find_sent(sms(body="autre"), since=started).provider_id == found.provider_id  # by its tag
    assert backend.find_sent(OutgoingSms(message_id=8, to=PHONE, body=BODY, sender="PMI92"), since=started) is None


def test_an_invalid_or_unsubscribed_number_is_a_permanent_error(brevo_fake):
    brevo_fake.mark_invalid("+33600000001")
    brevo_fake.mark_unsubscribed("+33600000002")
    with pytest.raises(PermanentError) as invalid:
        backend_on(brevo_fake).send(sms(to="+33600000001"))
    with pytest.raises(PermanentError) as unsubscribed:
        backend_on(brevo_fake).send(sms(to="+33600000002"))
    assert invalid.value.message == "Numéro de téléphone invalide."
    assert "STOP" in unsubscribed.value.message


# --- Through the outbox, and Brevo's callbacks ---------------------------------------------------------------

def test_a_booking_reaches_the_family_through_brevo_and_its_delivery_is_recorded_once(brevo_clinic, db, client,
                                                                                   brevo_fake):
    rdv = book(brevo_clinic, local(PARIS, 10, 23, 9, 30))

    message = created_sms(db, rdv)
    [received] = [m for m in brevo_fake.messages if m.to == PHONE]
    assert (received.content, received.sender) == (message.body, "PMI92")
    assert message.status == MessageStatus.SENT and message.provider_id == str(received.message_id)
    assert received.web_url.startswith(f"{PUBLIC_URL}{BREVO_STATUS_PATH}?m={message.id}&t=")

    callback = brevo_fake.callback(received.message_id, "delivered")
    assert client.post(callback.path, json=callback.payload).status_code == 204
    db.session.refresh(message)
    delivered_at = message.delivered_at
    assert message.status == MessageStatus.DELIVERED and delivered_at is not None

    # Twice (Brevo retries), then a late « sent » and a failure: nothing moves back.
    for status in ("delivered", "sent", "soft_bounce"):
        callback = brevo_fake.callback(received.message_id, status)
        assert client.post(callback.path, json=callback.payload).status_code == 204
    db.session.refresh(message)
    assert (message.status, message.delivered_at, message.error) == (MessageStatus.DELIVERED, delivered_at, None)


def test_a_callback_that_never_comes_leaves_the_message_sent_and_sent_once(brevo_clinic, db, clock, brevo_fake):
    rdv = book(brevo_clinic, local(PARIS, 10, 23, 9, 30))
    clock.shift(timedelta(hours=2))
    outbox.dispatch_due()
    message = created_sms(db, rdv)
    assert message.status == MessageStatus.SENT and brevo_fake.count_for(PHONE, message.body) == 1


def test_a_hard_bounce_flags_the_number_and_an_unsubscription_or_a_stop_reply_withdraws_consent(
        brevo_clinic, db, client, brevo_fake):
    rdv = book(brevo_clinic, local(PARIS, 10, 23, 9, 30))
    message = created_sms(db, rdv)
    callback = brevo_fake.callback(message.provider_id, "hard_bounce")
    assert client.post(callback.path, json=callback.payload).status_code == 204
    db.session.refresh(message)
    db.session.refresh(brevo_clinic.mother)
    assert message.status == MessageStatus.UNDELIVERABLE and brevo_clinic.mother.phone_undeliverable_at is not None

    brevo_clinic.mother.phone_undeliverable_at = None
    db.session.commit()
    callback = brevo_fake.callback(message.provider_id, "replied", reply=" Stop. ")
    assert client.post(callback.path, json=callback.payload).status_code == 204
    db.session.refresh(brevo_clinic.mother)
    assert brevo_clinic.mother.sms_consent is False

    brevo_clinic.mother.sms_consent = True
    db.session.commit()
    callback = brevo_fake.callback(message.provider_id, "replied", reply="Merci")
    client.post(callback.path, json=callback.payload)
    db.session.refresh(brevo_clinic.mother)
    assert brevo_clinic.mother.sms_consent is True  # any other reply changes nothing
    callback = brevo_fake.callback(message.provider_id, "unsubscribe")
    assert client.post(callback.path, json=callback.payload).status_code == 204
    db.session.refresh(brevo_clinic.mother)
    assert brevo_clinic.mother.sms_consent is False


def test_a_number_brevo_says_is_unsubscribed_is_flagged_and_not_retried(brevo_clinic, db, brevo_fake):
    brevo_fake.mark_unsubscribed(PHONE)
    rdv = book(brevo_clinic, local(PARIS, 10, 23, 9, 30))
    message = created_sms(db, rdv)
    db.session.refresh(brevo_clinic.mother)
    assert message.status == MessageStatus.UNDELIVERABLE and "STOP" in message.error
    assert brevo_clinic.mother.phone_undeliverable_at is not None and brevo_fake.messages == []


def test_a_callback_with_a_bad_token_is_refused_and_one_for_an_unknown_message_is_ignored(brevo_clinic, db, client,
                                                                                       brevo_fake, caplog):
    rdv = book(brevo_clinic, local(PARIS, 10, 23, 9, 30))
    message = created_sms(db, rdv)
    callback = brevo_fake.callback(message.provider_id, "delivered")
    forged = callback.path.replace("&t=", "&t=0")
    for path in (forged, f"{BREVO_STATUS_PATH}?m={message.id}", f"{BREVO_STATUS_PATH}?m=abc&t=x", BREVO_STATUS_PATH,
                 callback.path.replace(f"m={message.id}", f"m={message.id + 1}")):
        assert client.post(path, json=callback.payload).status_code == 403
    db.session.refresh(message)
    assert message.status == MessageStatus.SENT

    gone_id = message.id
    assert client.post(callback.path, data="<html>", content_type="text/html").status_code == 400
    db.session.delete(message)
    db.session.commit()
    assert client.post(callback.path, json=callback.payload).status_code == 200
    logged = caplog.text
    assert str(gone_id) in logged and PHONE not in logged and PHONE.lstrip("+") not in logged


def test_no_credit_keeps_the_message_pending_with_the_reason_for_agents(brevo_clinic, db, brevo_fake):
    brevo_fake.credits = 0
    rdv = book(brevo_clinic, local(PARIS, 10, 23, 9, 30))
    message = created_sms(db, rdv)
    assert (message.status, message.error_code) == (MessageStatus.PENDING, "credit")
    assert "crédit SMS épuisé chez Brevo" in message.error and brevo_fake.messages == []


def test_an_html_answer_after_brevo_took_the_sms_is_never_a_500_nor_a_second_sms(brevo_clinic, db, clock, app,
                                                                               brevo_fake):
    brevo_fake.fail_after_accept_next(1, status=502, body="html")
    rdv = book(brevo_clinic, local(PARIS, 10, 23, 9, 30))
    message = created_sms(db, rdv)
    assert message.status == MessageStatus.QUEUED and "HTTP 502" in message.error  # kept: asked before any retry
    clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
    outbox.dispatch_due()
    message = created_sms(db, rdv)
    [received] = brevo_fake.messages
    assert message.status == MessageStatus.SENT and message.provider_id == str(received.message_id)


# --- A callback before the send returns, over real HTTP ---------------------------------------------------------

@pytest.fixture()
def live_brevo(app, on_brevo):
    """The app on 127.0.0.1, PUBLIC_URL its address: the fake's callbacks reach it over HTTP."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    app.config["PUBLIC_URL"] = f"http://127.0.0.1:{server.server_port}"
    yield app.config["PUBLIC_URL"]
    server.shutdown()
    thread.join(timeout=5)


def test_a_delivery_reported_before_the_send_returns_is_kept(clinic, db, live_brevo, brevo_fake):
    clinic.territory.sms_sender = "PMI92"
    db.session.commit()
    brevo_fake.call_back_before_answer(1)
    rdv = book(clinic, local(PARIS, 10, 23, 9, 30))
    message = created_sms(db, rdv)
    [received] = brevo_fake.messages
    assert received.status == "delivered"  # the callback was posted, and answered, before the send's answer
    assert message.status == MessageStatus.DELIVERED and message.provider_id == str(received.message_id)
    assert message.sent_at is not None and message.delivered_at is not None


# --- The territory settings page --------------------------------------------------------------------------------

@pytest.fixture()
def twilio_deployment(app, twilio_fake, brevo_fake):
    """Twilio is the deployment's operator; Brevo has no key in the environment, only the fake's address."""
    settings = {"SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": twilio_fake.account_sid,
                "TWILIO_AUTH_TOKEN": twilio_fake.auth_token, "TWILIO_BASE_URL": twilio_fake.url,
                "BREVO_API_KEY": "", "BREVO_BASE_URL": brevo_fake.url, "PUBLIC_URL": PUBLIC_URL}
    saved = {key: app.config.get(key) for key in settings}
    app.config.update(settings)
    _forget_backends(app)
    yield twilio_fake
    app.config.update(saved)
    _forget_backends(app)


def post_operator(client, territory, **data):
    return client.post(url(territory, "/operateur"), data={**data, "csrf_token": token_of(client, territory)})


def test_a_territory_chooses_brevo_with_its_own_key_stored_encrypted_and_its_sms_leave_through_it(
        as_admin, clinic, db, factories, twilio_deployment, brevo_fake, app):
    twilio_fake = twilio_deployment
    brevo_fake.api_key = OWN_KEY
    clinic.territory.sms_sender = "PMI92"
    neighbour = make_clinic(factories, number="93")
    neighbour.territory.sms_sender = "PMI93"
    neighbour.mother.phone = "+33698765432"
    db.session.commit()

    response = post_operator(as_admin, clinic.territory, operator="brevo", brevo_api_key=OWN_KEY)
    assert response.status_code == 302
    page = as_admin.get(url(clinic.territory)).get_data(as_text=True)
    assert "Opérateur SMS enregistré." in page and OWN_KEY not in page and "se termine par …2abc" in page
    stored = db.session.execute(text("SELECT sms_operator, brevo_api_key_encrypted FROM territories WHERE id = :id"),
                                {"id": clinic.territory.id}).one()
    assert stored.sms_operator == "brevo" and stored.brevo_api_key_encrypted
    assert OWN_KEY not in stored.brevo_api_key_encrypted and "0123456789abcdef" not in stored.brevo_api_key_encrypted

    book(clinic, local(PARIS, 10, 23, 9, 30))
    book(neighbour, local(PARIS, 10, 23, 10, 0))
    assert [(m.to, m.sender) for m in brevo_fake.messages] == [(PHONE, "PMI92")]
    assert [(m.to, m.from_) for m in twilio_fake.messages] == [("+33698765432", "PMI93")]


def test_a_key_brevo_refuses_or_a_malformed_one_gets_a_french_message_and_nothing_is_stored(
        as_admin, clinic, db, twilio_deployment, brevo_fake):
    clinic.territory.sms_sender = "PMI92"
    db.session.commit()
    response = post_operator(as_admin, clinic.territory, operator="brevo", brevo_api_key=OWN_KEY)  # not the fake's
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "Brevo refuse cette clé API" in html and OWN_KEY not in html

    response = post_operator(as_admin, clinic.territory, operator="brevo", brevo_api_key="sib-123")
    assert response.status_code == 422 and "xkeysib-" in response.get_data(as_text=True)

    brevo_fake.fail_next(1, status=503, body="html")
    response = post_operator(as_admin, clinic.territory, operator="brevo", brevo_api_key=brevo_fake.api_key)
    assert response.status_code == 422 and "réessayez dans quelques minutes" in response.get_data(as_text=True)

    response = post_operator(as_admin, clinic.territory, operator="brevo")  # no key here nor in the environment
    assert response.status_code == 422 and "pas de compte Brevo" in response.get_data(as_text=True)
    response = post_operator(as_admin, clinic.territory, operator="orange")
    assert response.status_code == 422 and "dans la liste" in response.get_data(as_text=True)
    territory = db.session.get(Territory, clinic.territory.id)
    db.session.refresh(territory)
    assert (territory.sms_operator, territory.brevo_api_key_encrypted) == (None, None)


def test_brevo_refuses_a_sender_with_a_space_and_replies_on_the_settings_page(as_admin, clinic, db, twilio_deployment,
                                                                              brevo_fake):
    clinic.territory.sms_sender = "PMI 92"
    db.session.commit()
    response = post_operator(as_admin, clinic.territory, operator="brevo", brevo_api_key=brevo_fake.api_key)
    assert response.status_code == 422 and "ne convient pas à Brevo" in response.get_data(as_text=True)

    clinic.territory.sms_sender = "PMI92"
    db.session.commit()
    assert post_operator(as_admin, clinic.territory, operator="brevo",
                         brevo_api_key=brevo_fake.api_key).status_code == 302
    response = post_settings(as_admin, clinic.territory, sms_sender="PMI 92")
    assert response.status_code == 422 and "ne convient pas à Brevo" in response.get_data(as_text=True)
    response = post_settings(as_admin, clinic.territory, sms_sender="+33757000001", takes_replies="y")
    assert response.status_code == 422 and "Avec Brevo" in response.get_data(as_text=True)
    db.session.refresh(clinic.territory)
    assert clinic.territory.sms_sender == "PMI92" and not clinic.territory.sms_takes_replies


def test_deleting_the_key_and_going_back_to_the_deployments_operator(as_admin, clinic, db, twilio_deployment,
                                                                     brevo_fake):
    clinic.territory.sms_sender = "PMI92"
    db.session.commit()
    assert post_operator(as_admin, clinic.territory, operator="brevo",
                         brevo_api_key=brevo_fake.api_key).status_code == 302
    assert post_operator(as_admin, clinic.territory, operator="", delete_brevo_api_key="y").status_code == 302
    db.session.refresh(clinic.territory)
    assert (clinic.territory.sms_operator, clinic.territory.brevo_api_key_encrypted) == (None, None)
    book(clinic, local(PARIS, 10, 23, 9, 30))
    assert [m.to for m in twilio_deployment.messages] == [PHONE] and brevo_fake.messages == []


def test_a_territory_that_chose_brevo_without_a_key_anywhere_keeps_its_sms_pending_with_the_reason(
        clinic, db, twilio_deployment):
    clinic.territory.sms_sender = "PMI92"
    clinic.territory.sms_operator = "brevo"  # chosen when the deployment had a key, since removed
    db.session.commit()
    rdv = book(clinic, local(PARIS, 10, 23, 9, 30))
    message = created_sms(db, rdv)
    assert (message.status, message.error_code) == (MessageStatus.PENDING, "credentials")
    assert "Brevo sans identifiants propres" in message.error


def test_brevos_callbacks_are_rate_limited_per_message_and_refused_ones_count_too(tmp_path):
    """An app of its own with limiting on, over a SQLite file (as tests/test_calendar_feed.py does)."""
    from lapins import create_app
    from lapins.infra.extensions import db as database
    from lapins.notifications.webhooks import brevo_status_callback_url

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'brevo.sqlite3'}",
                     RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://", PUBLIC_URL=PUBLIC_URL,
                     BREVO_CALLBACK_LIMITS_PER_MESSAGE="3/minute")
    with app.app_context():
        database.create_all()
        try:
            client = app.test_client()
            path = brevo_status_callback_url(1).removeprefix(PUBLIC_URL)  # no such message: 200, counted
            statuses = [client.post(path, json={"msg_status": "delivered"}).status_code for _ in range(4)]
            forged = client.post(path.replace("&t=", "&t=0"), json={}).status_code
            other = client.post(brevo_status_callback_url(2).removeprefix(PUBLIC_URL), json={}).status_code
        finally:
            database.session.remove()
    assert statuses == [200, 200, 200, 429] and forged == 429 and other == 200


def test_find_sent_and_sending_log_no_phone_number(brevo_fake, caplog, app):
    import logging

    caplog.set_level(logging.DEBUG)  # the root logger's; httpx's own level is create_app's (configure_logging)
    backend = backend_on(brevo_fake)
    backend.send(sms())
    backend.find_sent(sms(), since=datetime.now(UTC))
    assert brevo_fake.request_count == 2
    assert PHONE not in caplog.text and PHONE.lstrip("+") not in caplog.text and "33612345678" not in caplog.text


def test_a_refused_deployment_key_keeps_the_message_pending_with_the_code_credentials(brevo_clinic, db, app,
                                                                                     brevo_fake):
    brevo_fake.api_key = OWN_KEY  # Brevo no longer knows the environment's key
    rdv = book(brevo_clinic, local(PARIS, 10, 23, 9, 30))
    message = created_sms(db, rdv)
    assert (message.status, message.error_code) == (MessageStatus.PENDING, "credentials")
    assert "Brevo refuse la clé API" in message.error and brevo_fake.messages == []


def test_brevo_timing_out_on_every_second_request_sends_each_family_its_sms_once(brevo_clinic, db, clock, app,
                                                                               factories, brevo_fake):
    """Every second send is taken by Brevo but answered too late: the outbox asks Brevo (find_sent) before any new
    attempt, a lease later, and finds each of them; no family gets two SMS, none gets none."""
    app.config["BREVO_TIMEOUT_SECONDS"] = 1
    _forget_backends(app)
    try:
        families = [brevo_clinic.mother] + [
            factories.UsagerFactory(territory=brevo_clinic.territory, first_name="Nour", last_name=f"Haddad{number}",
                                    phone=f"+3361111000{number}", sms_consent=True, email=None, email_consent=False,
                                    organisations=[brevo_clinic.organisation])
            for number in range(5)]
        brevo_clinic.mother.email_consent = False
        db.session.commit()
        brevo_fake.hang_every(2, requests=6, seconds=30, accept=True)
        rdvs = [book(brevo_clinic, local(PARIS, 10, 26, 9 + number), usagers=[family])
                for number, family in enumerate(families)]
        first = [created_sms(db, rdv) for rdv in rdvs]
        assert [m.status for m in first].count(MessageStatus.QUEUED) == 3  # unanswered: kept, to be asked about
        clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
        outbox.dispatch_due()
        settled = [created_sms(db, rdv) for rdv in rdvs]
        assert {m.status for m in settled} == {MessageStatus.SENT}
        assert {m.provider_id for m in settled} == {str(m.message_id) for m in brevo_fake.messages}
        assert sorted(m.to for m in brevo_fake.messages) == sorted(family.phone for family in families)
    finally:
        app.config["BREVO_TIMEOUT_SECONDS"] = 10
