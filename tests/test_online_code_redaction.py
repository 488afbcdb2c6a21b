"""The online booking's verification code is not kept in `messages.body`: blanked in the UPDATE that records it sent
(through the loopback Twilio fake and the real SDK), never while a send is in doubt (find_sent compares the text), and
blanked at its expiry when it never left; with the console backend the dev inbox shows it until it expires. The row
stays, for the delivery counts."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from lapins.models import Message, MessageKind, MessageStatus
from lapins.notifications import outbox
from tests.test_online_booking import (  # noqa: F401  (frozen_time: the autouse fixture, time frozen)
    MOBILE_E164, NOW, frozen_time, give_details, page_text, search, send_code, slot_links,
)
from tests.test_online_booking import clinic  # noqa: F401  (fixture)


@pytest.fixture()
def on_twilio(app, twilio_app_config, clinic, db):  # noqa: F811
    saved = {key: app.config.get(key) for key in twilio_app_config}
    app.config.update(twilio_app_config)
    app.extensions.pop("lapins.sms_backend", None)
    clinic.territory.sms_sender = "PMI974"
    db.session.commit()
    yield
    app.config.update(saved)
    app.extensions.pop("lapins.sms_backend", None)


def code_row(db) -> Message:
    db.session.expire_all()
    return db.session.scalars(select(Message).where(Message.kind == MessageKind.PHONE_CODE)).one()


def ask_for_a_code(client, clinic) -> None:  # noqa: F811
    assert give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1]).status_code == 302


def send_now(frozen_time) -> None:
    outbox.send_batch(outbox.claim_due(NOW + timedelta(seconds=1), 10))


def test_the_code_leaves_through_twilio_then_its_text_is_blanked(client, db, clinic, on_twilio, twilio_fake,  # noqa: F811
                                                                 frozen_time):  # noqa: F811
    ask_for_a_code(client, clinic)
    send_now(frozen_time)
    [received] = [message for message in twilio_fake.messages if message.to == MOBILE_E164]
    code = re.search(r"\b(\d{6})\b", received.body).group(1)
    row = code_row(db)
    assert row.status == MessageStatus.SENT and row.body is None
    assert row.segments == 1 and row.provider_id == twilio_fake.messages[0].sid and row.to_address == MOBILE_E164
    # The family types the code it received: the booking goes through.
    booked = send_code(client, code)
    assert booked.status_code == 302 and booked.headers["Location"].endswith("/prendre-rendez-vous/confirme")
    # Only codes are blanked: the rdv's own messages keep their text for the agents' history, its start long past.
    written = {message.id: message.body for message in db.session.scalars(
        select(Message).where(Message.kind != MessageKind.PHONE_CODE, Message.body.is_not(None)))}
    assert written
    frozen_time.shift(timedelta(days=90))
    assert outbox.redact_expired_codes() == 0
    db.session.expire_all()
    assert {message_id: db.session.get(Message, message_id).body for message_id in written} == written


def test_a_send_in_doubt_keeps_the_text_until_twilio_is_asked_and_is_never_sent_twice(
        client, db, clinic, on_twilio, twilio_fake, frozen_time, app):  # noqa: F811
    twilio_fake.fail_after_accept_next(1, status=502)  # Twilio took it, the gateway answered 502
    ask_for_a_code(client, clinic)
    send_now(frozen_time)
    row = code_row(db)
    assert row.status == MessageStatus.QUEUED and row.body and re.search(r"\b\d{6}\b", row.body)
    frozen_time.shift(timedelta(minutes=11))  # expired meanwhile: still kept, the claim is in doubt
    assert outbox.redact_expired_codes() == 0 and code_row(db).body
    outbox.dispatch_due()  # the lease is over: Twilio is asked, by the text, and has it
    row = code_row(db)
    assert row.status == MessageStatus.SENT and row.body is None and row.provider_id == twilio_fake.messages[0].sid
    assert len(twilio_fake.sends_to(MOBILE_E164)) == 1


def test_a_code_that_never_left_is_blanked_when_it_expires(client, db, clinic, on_twilio, twilio_fake,  # noqa: F811
                                                           frozen_time):  # noqa: F811
    twilio_fake.mark_invalid(MOBILE_E164)
    ask_for_a_code(client, clinic)
    send_now(frozen_time)
    row = code_row(db)
    assert row.status == MessageStatus.UNDELIVERABLE and row.body
    frozen_time.shift(timedelta(minutes=9))
    assert outbox.redact_expired_codes() == 0  # not expired yet
    frozen_time.shift(timedelta(minutes=1))
    assert outbox.redact_expired_codes() == 1
    row = code_row(db)
    assert row.body is None and row.status == MessageStatus.UNDELIVERABLE


def test_the_dev_inbox_shows_the_code_until_it_expires(client, db, clinic, auth, frozen_time):  # noqa: F811
    ask_for_a_code(client, clinic)
    send_now(frozen_time)  # the console backend: nothing leaves, the dev inbox is where it is read
    row = code_row(db)
    code = re.search(r"\b(\d{6})\b", row.body).group(1)
    assert row.status == MessageStatus.SENT
    auth.login(clinic.agent)
    assert code in page_text(client.get("/dev/messages"))
    frozen_time.shift(timedelta(minutes=10, seconds=1))
    assert outbox.redact_expired_codes() == 1
    assert code not in page_text(client.get("/dev/messages"))
    row = code_row(db)
    assert row.body is None and (row.status, row.segments) == (MessageStatus.SENT, 1)  # still counted


def test_the_beat_blanks_the_codes_every_minute(app):
    from lapins.tasks import PERIODIC_JOBS
    job = next(job for job in PERIODIC_JOBS if job.task == outbox.REDACT_TASK)
    assert job.every_seconds == 60 and outbox.REDACT_TASK in app.extensions["celery"].tasks
