"""The outbox's claims at their bounds, as the family would notice them (one SMS, never two, never one after the rdv
began). Written against the outbox room's survivors (docs/testing.md, « outbox »)."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from lapins.models import Channel, Message, MessageKind, MessageStatus
from lapins.models.types import utcnow as utc_now
from lapins.notifications import outbox
from tests.test_outbox import (  # noqa: F401 (clinic, clock, on_twilio, twilio_sender: fixtures)
    NOW, PARIS, book, clinic, clock, local, messages, on_twilio, sms_of, twilio_sender)


def test_a_send_still_under_way_keeps_its_claim_when_another_send_of_its_batch_is_given_back(
        clinic, db, clock, app, factories, twilio_sender, twilio_fake, monkeypatch):
    """One batch, two reminders, one sending thread. Léa's send hangs far past its timeout: the batch stops
    waiting and leaves it to recovery, its claim kept, since Twilio may still take it. Nour's never began: given
    back. Giving Nour's back must leave Léa's alone: given back too, it would leave again at the next beat while
    the first request may still reach Twilio, and Léa would get it twice. Kept, Twilio is asked first."""
    for key, value in {"OUTBOX_CLAIM_LEASE_SECONDS": 2, "TWILIO_TIMEOUT_SECONDS": 1, "OUTBOX_SEND_THREADS": 1}.items():
        monkeypatch.setitem(app.config, key, value)  # the app outlives the test
    app.extensions.pop("lapins.sms_backend", None)
    clinic.mother.email_consent = False
    nour = factories.UsagerFactory(territory=clinic.territory, first_name="Nour", last_name="Haddad",
                                   phone="+33611110000", sms_consent=True, email=None, email_consent=False,
                                   organisations=[clinic.organisation])
    db.session.commit()
    lea_rdv = book(clinic, local(PARIS, 10, 26, 10))
    nour_rdv = book(clinic, local(PARIS, 10, 26, 11), usagers=[nour])
    lea, nour_sms = (messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)[0]
                     for rdv in (lea_rdv, nour_rdv))
    clock.move_to(max(lea.due_at, nour_sms.due_at))
    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)
    assert [sorted(batch) for batch in handed] == [sorted([lea.id, nour_sms.id])]
    claimed_at = utc_now()

    sender, release = outbox._sender, threading.Event()

    def held(outgoing):
        send = sender(outgoing)
        if outgoing.message_id != lea.id:
            return send

        def hanging(message):  # the provider holds the request: time passes, far past timeout and lease
            clock.shift(timedelta(seconds=10))
            release.wait(30)
            return send(message)
        return hanging

    monkeypatch.setattr(outbox, "_sender", held)
    try:
        counts = outbox.send_batch(handed[0])
        db.session.expire_all()
        lea_now, nour_now = db.session.get(Message, lea.id), db.session.get(Message, nour_sms.id)
        assert counts == {"left to recovery": 1, "given back": 1}, counts
        assert (lea_now.status, lea_now.claimed_at) == (MessageStatus.QUEUED, claimed_at)
        assert (nour_now.status, nour_now.claimed_at, nour_now.queued_at, nour_now.attempts) == (
            MessageStatus.PENDING, None, None, 0)
    finally:
        release.set()  # the held request reaches Twilio after all
    deadline = time.monotonic() + 10
    while twilio_fake.count_for("+33612345678", lea.body) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)

    monkeypatch.setattr(outbox, "_sender", sender)
    clock.shift(timedelta(seconds=3))  # past the lease: Twilio is asked about Léa's, then the beat sends Nour's
    outbox.dispatch_due()
    outbox.dispatch_due()
    db.session.expire_all()
    assert db.session.get(Message, lea.id).status == MessageStatus.SENT
    assert db.session.get(Message, nour_sms.id).status == MessageStatus.SENT
    assert twilio_fake.count_for("+33612345678", lea.body) == 1  # found at Twilio, never sent again
    assert twilio_fake.count_for("+33611110000", db.session.get(Message, nour_sms.id).body) == 1


@pytest.mark.redis
def test_twilios_own_error_leaves_the_row_to_the_recheck_not_to_its_batchs_fence(clinic, db, clock, app, twilio_sender,
                                                                                 twilio_fake, redis_url):
    """With the fence on, a batch's rows carry its name until it is done with them. Twilio's own 500 (it took
    nothing) ends the batch's part: the row names no batch, and the dead-batch sweep leaves it to the recheck;
    Twilio is asked, then the SMS sent again, once."""
    saved = app.config["OUTBOX_FENCE_URL"]
    app.config["OUTBOX_FENCE_URL"] = redis_url
    try:
        twilio_fake.fail_next(1, status=500)
        rdv = book(clinic, NOW + timedelta(days=3))
        sms = sms_of(db, rdv)
        assert (sms.status, sms.claim_id, sms.unsure_since) == (MessageStatus.QUEUED, None, None)
        assert outbox.settle_dead_batches() == 0
        clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"]))
        outbox.dispatch_due()
        outbox.dispatch_due()
        db.session.refresh(sms)
        assert sms.status == MessageStatus.SENT and twilio_fake.count_for("+33612345678", sms.body) == 1
    finally:
        app.config["OUTBOX_FENCE_URL"] = saved
