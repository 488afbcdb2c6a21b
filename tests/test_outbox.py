"""The outbox: who is told what and when, and every message leaves once (console backend; Twilio in test_delivery)."""
from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from lapins.booking import book_rdv, cancel_rdv, move_rdv, set_outcome
from lapins.models import Channel, Message, MessageKind, MessageStatus, RdvStatus, Role
from lapins.notifications import outbox, timing
from lapins.notifications.gsm import is_gsm7, septets

PARIS, REUNION = ZoneInfo("Europe/Paris"), ZoneInfo("Indian/Reunion")
UTC = timezone.utc
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=UTC)  # Monday 19 October 2026, 10:00 in Paris


def local(tz: ZoneInfo, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=tz).astimezone(UTC)


@pytest.fixture()
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def make_clinic(factories, tz: str = "Europe/Paris", number: str = "92"):
    territory = factories.TerritoryFactory(timezone=tz, number=number)
    organisation = factories.OrganisationFactory(territory=territory, name="PMI Nanterre", phone="+33141371000")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Les Pâquerettes",
                                 address="12 rue de la République, 92000 Nanterre", phone="+33141371010")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif], start_time=time(8),
                           end_time=time(21), weekdays=0b1111111)
    mother = factories.UsagerFactory(territory=territory, first_name="Aïcha", last_name="Benali",
                                     phone="+33612345678", sms_consent=True, email="aicha@example.fr",
                                     email_consent=True, organisations=[organisation])
    child = factories.UsagerFactory(territory=territory, first_name="Léa", last_name="Benali", phone=None,
                                    sms_consent=False, responsible=mother, birth_date=date(2026, 5, 2),
                                    organisations=[organisation])
    return type("Clinic", (), dict(territory=territory, organisation=organisation, lieu=lieu, motif=motif,
                                   agent=agent, mother=mother, child=child))


@pytest.fixture()
def clinic(factories, clock):
    return make_clinic(factories)


def book(clinic, starts_at, usagers=None):
    return book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent],
                    usagers=usagers or [clinic.child], starts_at=starts_at, lieu=clinic.lieu)


def messages(db, **where) -> list[Message]:
    """The rows as the database holds them now: objects this session already has are refreshed, since the eager
    worker wrote through sessions of its own."""
    query = select(Message).order_by(Message.due_at, Message.id).execution_options(populate_existing=True)
    for key, value in where.items():
        query = query.where(getattr(Message, key) == value)
    return list(db.session.scalars(query))


# --- Who is told, on which channel ------------------------------------------------------------------------------

def test_a_childs_rdv_is_confirmed_to_the_responsible_person_by_sms_and_email_at_once(clinic, db):
    rdv = book(clinic, local(PARIS, 10, 23, 9, 30))

    confirmations = messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED)
    assert {(m.channel, m.usager_id) for m in confirmations} == {(Channel.SMS, clinic.mother.id),
                                                                  (Channel.EMAIL, clinic.mother.id)}
    sms = next(m for m in confirmations if m.channel == Channel.SMS)
    # Sent straight away (the booking kicks the dispatcher), by the console backend of the embedded default.
    assert sms.status == MessageStatus.SENT and sms.to_address == "+33612345678" and sms.attempts == 1
    assert "ven. 23/10 à 9h30" in sms.body and "Centre PMI Les Paquerettes" in sms.body and "/r/" in sms.body
    assert is_gsm7(sms.body) and septets(sms.body) <= 160 and sms.segments == 1


def test_no_consent_no_message_and_two_people_sharing_a_phone_get_one_sms(clinic, db, factories):
    clinic.mother.email_consent = False
    father = factories.UsagerFactory(territory=clinic.territory, phone=clinic.mother.phone, sms_consent=True)
    db.session.commit()
    rdv = book(clinic, local(PARIS, 10, 23, 9, 30), usagers=[clinic.child, father])

    sent = messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED)
    assert [(m.channel, m.to_address) for m in sent] == [(Channel.SMS, "+33612345678")]


def test_a_motif_marked_not_notified_sends_nothing(clinic, db):
    clinic.motif.notify = False
    db.session.commit()
    book(clinic, local(PARIS, 10, 23, 9, 30))
    assert messages(db) == []


# --- When reminders go out --------------------------------------------------------------------------------------

def test_the_reminder_goes_48_hours_before_on_the_local_clock_across_the_october_change(clinic, db):
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))  # Monday after the change of Sunday 25 October

    reminder = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)[0]
    # Saturday 24 at 09:00 in Paris (still summer time, UTC+2): 49 real hours before, 48 on the wall clock.
    assert reminder.due_at == datetime(2026, 10, 24, 7, 0, tzinfo=UTC)
    assert reminder.due_at.astimezone(PARIS).strftime("%a %H:%M") == "Sat 09:00"
    assert reminder.status == MessageStatus.PENDING


def test_a_reunion_territory_gets_its_own_local_times(factories, db, clock):
    clinic = make_clinic(factories, tz="Indian/Reunion", number="974")
    rdv = book(clinic, local(REUNION, 10, 23, 9, 0))

    reminder = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)[0]
    assert reminder.due_at == datetime(2026, 10, 21, 5, 0, tzinfo=UTC)  # Wednesday 09:00 in Réunion (UTC+4)
    confirmation = messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED, channel=Channel.SMS)[0]
    assert "ven. 23/10 à 9h" in confirmation.body and "à 11h" not in confirmation.body


def test_a_reminder_due_in_the_night_goes_the_evening_before_not_later(clinic, db):
    rdv = book(clinic, local(PARIS, 10, 23, 21, 0) + timedelta(hours=-0.5))  # Friday 20:30 → due Wednesday 20:30

    sms = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)[0]
    assert sms.due_at == local(PARIS, 10, 21, 19, 30)  # half an hour before the quiet hours (20:00) begin
    email = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.EMAIL)[0]
    assert email.due_at == local(PARIS, 10, 21, 20, 30)  # e-mail has no quiet hours


def test_quiet_hours_send_the_evening_before_when_the_morning_would_be_too_late():
    tz, quiet = PARIS, dict(quiet_start=time(20), quiet_end=time(8))
    rdv_at = local(PARIS, 10, 23, 8, 30)
    due = local(PARIS, 10, 22, 23, 0)
    now = local(PARIS, 10, 20, 12, 0)
    assert timing.civil_time(due, now=now, tz=tz, deadline=rdv_at, **quiet) == local(PARIS, 10, 22, 19, 30)
    # Booked at 22:00 for tomorrow 08:30: too late for the evening, so it goes at once rather than never.
    late_now = local(PARIS, 10, 22, 22, 0)
    assert timing.civil_time(late_now, now=late_now, tz=tz, deadline=rdv_at, **quiet) == late_now


def test_offsets_per_territory_and_per_motif(clinic, db):
    clinic.territory.reminder_offsets = "72, 24"
    db.session.commit()
    rdv = book(clinic, local(PARIS, 10, 26, 10, 0))
    dues = [m.due_at for m in messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.EMAIL)]
    assert dues == [local(PARIS, 10, 23, 10, 0), local(PARIS, 10, 25, 10, 0)]

    clinic.motif.reminder_offsets = "6"
    db.session.commit()
    other = book(clinic, local(PARIS, 10, 26, 11, 0))
    dues = [m.due_at for m in messages(db, rdv_id=other.id, kind=MessageKind.REMINDER, channel=Channel.EMAIL)]
    assert dues == [local(PARIS, 10, 26, 5, 0)]


@pytest.mark.parametrize("text, message", [
    ("abc", "nombres d'heures"), ("0", "entre 1 et"), ("400", "entre 1 et"), ("1,2,3,4", "Pas plus de 3"),
])
def test_bad_offsets_are_refused_with_a_french_message(text, message):
    with pytest.raises(timing.InvalidOffsets, match=message):
        timing.parse_offsets(text)


def test_a_rdv_booked_too_late_for_its_reminder_gets_only_the_confirmation(clinic, db):
    rdv = book(clinic, NOW + timedelta(hours=30))
    assert messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER) == []
    assert messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED)


# --- Sending exactly once ---------------------------------------------------------------------------------------

def test_the_reminder_leaves_when_due_and_only_once(clinic, db, clock):
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    reminder = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)[0]

    clock.move_to(reminder.due_at - timedelta(minutes=1))
    outbox.dispatch_due()
    db.session.refresh(reminder)
    assert reminder.status == MessageStatus.PENDING

    clock.move_to(reminder.due_at + timedelta(seconds=30))
    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)
    assert any(reminder.id in ids for ids in handed)
    outbox.send_batch(handed[0])
    assert outbox.send_batch(handed[0]) == {}  # the broker delivered the task twice: nothing more is sent
    outbox.dispatch_due(enqueue=handed.append)  # a second beat finds nothing to claim
    db.session.refresh(reminder)
    assert reminder.status == MessageStatus.SENT and reminder.attempts == 1 and len(handed) == 1
    assert "rappel" in reminder.body.lower() and "lun. 26/10 à 9h" in reminder.body


def test_after_the_broker_lost_its_queue_one_beat_hands_every_lost_message_over_again(clinic, db, clock, app,
                                                                                        monkeypatch):
    """Redis restarted without its queue: the rows stay queued, never claimed. Past the lease, one dispatch hands
    all of them over again, however many chunks of CLAIM_CHUNK rows that takes (here chunks of 50 for 170 rows)."""
    monkeypatch.setattr(outbox, "CLAIM_CHUNK", 50)
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    lost_at = utc_now()
    db.session.add_all([
        Message(territory_id=clinic.territory.id, rdv=rdv, usager=clinic.mother, channel=Channel.EMAIL,
                kind=MessageKind.REMINDER, status=MessageStatus.QUEUED, due_at=lost_at, queued_at=lost_at,
                expires_at=rdv.starts_at)
        for _ in range(170)])
    db.session.commit()
    lost = {message.id for message in messages(db, status=MessageStatus.QUEUED)}
    assert len(lost) == 170

    # Another task waits on the broker's send queue: theirs may be behind it, so the rows wait for the lease.
    with app.extensions["celery"].connection_for_write() as connection:
        queue = connection.SimpleQueue("celery")
        queue.put({"task": "waiting"})
    lease = app.config["OUTBOX_CLAIM_LEASE_SECONDS"]
    assert lease > app.config["OUTBOX_DISPATCH_SECONDS"]
    clock.shift(timedelta(seconds=lease - 1))
    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)
    assert handed == []  # within the lease: the task may still be on its way

    clock.shift(timedelta(seconds=2))
    outbox.dispatch_due(enqueue=handed.append)
    assert sorted(id_ for ids in handed for id_ in ids) == sorted(lost)  # all of them, each once, in one run
    assert max(len(ids) for ids in handed) <= app.config["OUTBOX_BATCH_SIZE"]
    queue.clear()


def test_with_the_broker_empty_lost_messages_are_handed_over_after_one_dispatch_interval(clinic, db, clock, app):
    """Redis came back empty: nothing can be waiting for the queued rows there, so they are handed over at the
    next beat run past OUTBOX_DISPATCH_SECONDS, not after the whole lease."""
    celery = app.extensions["celery"]
    with celery.connection_for_write() as connection:
        connection.default_channel.queue_purge("celery")
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    lost_at = utc_now()
    lost = Message(territory_id=clinic.territory.id, rdv=rdv, usager=clinic.mother, channel=Channel.EMAIL,
                   kind=MessageKind.REMINDER, status=MessageStatus.QUEUED, due_at=lost_at, queued_at=lost_at,
                   expires_at=rdv.starts_at)
    db.session.add(lost)
    db.session.commit()
    handed: list[list[int]] = []
    clock.shift(timedelta(seconds=app.config["OUTBOX_DISPATCH_SECONDS"] - 1))
    outbox.dispatch_due(enqueue=handed.append)
    assert handed == []
    clock.shift(timedelta(seconds=2))
    outbox.dispatch_due(enqueue=handed.append)
    assert handed == [[lost.id]]


def test_only_lost_rows_are_handed_over_again_once_per_loss(clinic, db, clock, app):
    """What the broker lost is handed over again: a row queued and never claimed. Not a row a live batch holds, nor
    one settled since (skipped), however old their queued_at; and a row handed over is not handed again while its
    new task may be on its way — only if the broker loses it once more."""
    celery = app.extensions["celery"]
    with celery.connection_for_write() as connection:
        connection.default_channel.queue_purge("celery")
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    then = utc_now()

    def row(**fields):
        return Message(territory_id=clinic.territory.id, rdv=rdv, usager=clinic.mother, channel=Channel.EMAIL,
                       kind=MessageKind.REMINDER, due_at=then, queued_at=then, expires_at=rdv.starts_at, **fields)

    lost, held, settled = row(status=MessageStatus.QUEUED), row(status=MessageStatus.QUEUED, claimed_at=then), \
        row(status=MessageStatus.SKIPPED)
    db.session.add_all([lost, held, settled])
    db.session.commit()
    interval = timedelta(seconds=app.config["OUTBOX_DISPATCH_SECONDS"] + 1)
    handed: list[list[int]] = []
    clock.shift(interval)
    outbox.dispatch_due(enqueue=handed.append)
    assert handed == [[lost.id]]
    db.session.refresh(lost)
    db.session.refresh(settled)
    assert (lost.queued_at, settled.queued_at) == (utc_now(), then)

    clock.shift(timedelta(seconds=1))
    outbox.dispatch_due(enqueue=handed.append)
    assert handed == [[lost.id]]  # its task may be on its way
    clock.shift(interval)  # the broker lost it again (nothing was put on it here)
    outbox.dispatch_due(enqueue=handed.append)
    assert handed == [[lost.id], [lost.id]]


def test_the_reminders_of_the_rdvs_about_to_begin_are_handed_over_first(clinic, db, clock, app, monkeypatch):
    """A backlog (an outage just ended): 120 messages due, those of the soonest rdvs due last, claimed by chunks of
    50. They reach the workers in the order of their rdvs' start, so those about to begin are not sent after the
    ones of next week; the same, within each chunk, for messages handed over again after the broker lost them."""
    monkeypatch.setattr(outbox, "CLAIM_CHUNK", 50)
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    now = utc_now()
    backlog = [
        Message(territory_id=clinic.territory.id, rdv=rdv, usager=clinic.mother, channel=Channel.EMAIL,
                kind=MessageKind.REMINDER, status=MessageStatus.PENDING, due_at=now - timedelta(minutes=120 - number),
                expires_at=now + timedelta(hours=120 - number))
        for number in range(120)]
    db.session.add_all(backlog)
    db.session.commit()
    deadline = {message.id: message.expires_at for message in backlog}
    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)
    order = [id_ for ids in handed for id_ in ids if id_ in deadline]
    assert sorted(order) == sorted(deadline)
    assert order == sorted(order, key=deadline.get)

    # The broker lost them all (Redis restarted empty): handed over again in the same order.
    monkeypatch.setattr(outbox, "CLAIM_CHUNK", 1000)
    with app.extensions["celery"].connection_for_write() as connection:
        connection.default_channel.queue_purge("celery")
    clock.shift(timedelta(seconds=app.config["OUTBOX_DISPATCH_SECONDS"] + 1))
    again: list[list[int]] = []
    outbox.dispatch_due(enqueue=again.append)
    assert [id_ for ids in again for id_ in ids if id_ in deadline] == order


def test_a_claim_takes_at_most_its_limit_nearest_rdv_first_and_never_what_another_dispatcher_took(clinic, db,
                                                                                                 monkeypatch):
    """claim_due moves at most `limit` due messages, the soonest rdv first and those without a deadline last; a
    message another dispatcher (the beat, a booking's kick) claimed between this one's read and its update is not
    claimed a second time."""
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    now = utc_now()
    outbox.dispatch_due(now, enqueue=lambda ids: None)  # nothing else due
    due = [Message(territory_id=clinic.territory.id, rdv=rdv, usager=clinic.mother, channel=Channel.EMAIL,
                   kind=MessageKind.REMINDER, status=MessageStatus.PENDING, due_at=now - timedelta(minutes=1),
                   expires_at=deadline)
           for deadline in (None, now + timedelta(hours=3), now + timedelta(hours=1))]
    db.session.add_all(due)
    db.session.commit()
    without_deadline, later, sooner = (message.id for message in due)
    assert outbox.by_deadline([(message.id, message.expires_at) for message in due]) == [sooner, later,
                                                                                          without_deadline]
    assert outbox.claim_due(now, 2) == [sooner, later]

    read_by_the_other = outbox.due_ids(now, 10)
    assert read_by_the_other == [without_deadline]
    assert outbox.claim_due(now, 10) == [without_deadline]  # this dispatcher claims it first
    monkeypatch.setattr(outbox, "due_ids", lambda _now, _limit: read_by_the_other)
    assert outbox.claim_due(now, 10) == []  # the other one, updating what it read, claims nothing
    db.session.expire_all()
    assert [db.session.get(Message, message.id).status for message in due] == [MessageStatus.QUEUED] * 3


def test_moving_an_rdv_tells_the_family_and_reminds_at_the_new_time_only(clinic, db):
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    old_reminders = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER)

    move_rdv(actor=clinic.agent, rdv=rdv, starts_at=local(PARIS, 10, 27, 14, 0))

    for reminder in old_reminders:
        db.session.refresh(reminder)
        assert reminder.status == MessageStatus.SKIPPED and "modifié" in reminder.error
    change = messages(db, rdv_id=rdv.id, kind=MessageKind.CHANGED, channel=Channel.SMS)[0]
    assert change.status == MessageStatus.SENT and "mar. 27/10 à 14h" in change.body
    live = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, status=MessageStatus.PENDING)
    assert {m.due_at for m in live} == {local(PARIS, 10, 25, 14, 0)}


def test_changing_only_the_notes_sends_nothing(clinic, db):
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    before = len(messages(db))
    move_rdv(actor=clinic.agent, rdv=rdv, starts_at=rdv.starts_at, notes="Apporter le carnet de santé")
    assert len(messages(db)) == before


def test_a_service_cancellation_is_announced_and_stops_the_reminders(clinic, db):
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    cancel_rdv(actor=clinic.agent, rdv=rdv, status=RdvStatus.REVOKED, reason="Agent malade")

    assert all(m.status == MessageStatus.SKIPPED for m in messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER))
    cancelled = messages(db, rdv_id=rdv.id, kind=MessageKind.CANCELLED, channel=Channel.SMS)[0]
    assert cancelled.status == MessageStatus.SENT and "annul" in cancelled.body.lower()


def test_a_family_cancellation_stops_the_reminders_without_a_message(clinic, db):
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    cancel_rdv(actor=clinic.agent, rdv=rdv, status=RdvStatus.EXCUSED, reason=None)
    assert messages(db, rdv_id=rdv.id, kind=MessageKind.CANCELLED) == []
    assert all(m.status == MessageStatus.SKIPPED for m in messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER))


def test_a_restored_rdv_gets_its_reminders_back(clinic, db):
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    cancel_rdv(actor=clinic.agent, rdv=rdv, status=RdvStatus.EXCUSED, reason=None)
    set_outcome(actor=clinic.agent, rdv=rdv, status=RdvStatus.UNKNOWN)
    assert messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, status=MessageStatus.PENDING)


def test_a_message_whose_rdv_was_cancelled_meanwhile_is_skipped_not_sent(clinic, db, clock):
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    reminder = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)[0]
    clock.move_to(reminder.due_at)
    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)  # claimed and on the broker...
    rdv.status = RdvStatus.EXCUSED  # ...when the family cancels by phone
    db.session.commit()
    outbox.send_batch(handed[0])
    db.session.refresh(reminder)
    assert reminder.status == MessageStatus.SKIPPED and reminder.sent_at is None


def test_nothing_is_sent_after_the_rdv_started(clinic, db, clock):
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    reminder = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)[0]
    clock.move_to(rdv.starts_at + timedelta(minutes=1))  # the worker was down for days
    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)
    for ids in handed:
        outbox.send_batch(ids)
    db.session.refresh(reminder)
    assert reminder.status == MessageStatus.SKIPPED and reminder.error == "Rendez-vous déjà commencé"


def test_a_send_interrupted_by_a_dead_worker_is_sent_again_after_the_lease(clinic, db, clock, app):
    clinic.mother.email_consent = False
    db.session.commit()
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    reminder = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)[0]
    clock.move_to(reminder.due_at)
    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)
    # The worker claimed the row, then died before the provider answered.
    db.session.execute(Message.__table__.update().where(Message.id == reminder.id)
                       .values(claimed_at=reminder.due_at, attempts=1))
    db.session.commit()
    assert outbox.send_batch(handed[0]) == {}  # the redelivered task leaves a claimed row alone

    clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
    outbox.dispatch_due(enqueue=handed.append)  # the console cannot say it left: put back and sent again
    for ids in handed[1:]:
        outbox.send_batch(ids)
    db.session.refresh(reminder)
    assert reminder.status == MessageStatus.SENT and reminder.attempts == 2


# --- The whole path through the real Twilio SDK -----------------------------------------------------------------

@pytest.fixture()
def on_twilio(app, twilio_app_config):
    saved = {key: app.config.get(key) for key in twilio_app_config}
    app.config.update(twilio_app_config)
    app.extensions.pop("lapins.sms_backend", None)
    yield
    app.config.update(saved)
    app.extensions.pop("lapins.sms_backend", None)


def test_a_booking_reaches_the_family_through_twilio_and_its_delivery_is_recorded(clinic, db, client, on_twilio,
                                                                                   twilio_fake):
    clinic.territory.sms_sender = "PMI92"
    db.session.commit()
    rdv = book(clinic, local(PARIS, 10, 23, 9, 30))

    sms = messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED, channel=Channel.SMS)[0]
    received = [m for m in twilio_fake.messages if m.to == "+33612345678"]
    assert len(received) == 1 and received[0].body == sms.body and received[0].from_ == "PMI92"
    assert sms.status == MessageStatus.SENT and sms.provider_id == received[0].sid and sms.segments == 1

    callback = twilio_fake.status_request(sms.provider_id, "delivered")
    assert client.post(callback.path, data=callback.data, headers=callback.headers).status_code < 300
    db.session.refresh(sms)
    assert sms.status == MessageStatus.DELIVERED


def test_an_invalid_number_is_not_retried_and_is_flagged_for_agents(clinic, db, on_twilio, twilio_fake):
    twilio_fake.mark_invalid("+33612345678")
    clinic.territory.sms_sender = "PMI92"
    db.session.commit()
    rdv = book(clinic, local(PARIS, 10, 23, 9, 30))

    sms = messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED, channel=Channel.SMS)[0]
    assert sms.status == MessageStatus.UNDELIVERABLE and sms.error_code == "21211", sms.error
    db.session.refresh(clinic.mother)
    assert clinic.mother.phone_undeliverable_at is not None
    # Its pending reminder is skipped at send time rather than tried again.
    reminder = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)[0]
    with time_machine.travel(reminder.due_at, tick=False):
        outbox.dispatch_due()
    db.session.refresh(reminder)
    assert reminder.status == MessageStatus.SKIPPED and len(twilio_fake.messages) == 0


# --- Retries, on a clock this test moves: every attempt counted, every spacing exact ------------------------------

def sms_of(db, rdv, kind=MessageKind.CREATED) -> Message:
    return messages(db, rdv_id=rdv.id, kind=kind, channel=Channel.SMS)[0]


@pytest.fixture()
def twilio_sender(on_twilio, clinic, db):
    """Through the Twilio fake, with the territory's sender name (without one Twilio refuses every SMS)."""
    clinic.territory.sms_sender = "PMI92"
    db.session.commit()


def test_a_refusing_twilio_is_retried_with_the_configured_backoff_then_given_up_after_max_attempts(
        clinic, db, clock, app, twilio_sender, twilio_fake):
    """Twilio refuses everything (429: it took nothing). Attempt k fails at T(k); the next is due exactly
    OUTBOX_RETRY_SECONDS × 2^(k-1) later (at most LONGEST_RETRY), not a second sooner; after MAX_ATTEMPTS the
    message fails for good."""
    twilio_fake.throttle_next(10**6)
    first_retry = timedelta(seconds=app.config["OUTBOX_RETRY_SECONDS"])
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))  # a week ahead: the rdv's start never cuts the retries short
    sms = sms_of(db, rdv)
    assert (sms.status, sms.attempts, twilio_fake.request_count) == (MessageStatus.PENDING, 1, 1)
    assert "Twilio est momentanément indisponible" in sms.error

    spacings = []
    for attempt in range(1, outbox.MAX_ATTEMPTS):
        tried_at = utc_now()
        spacing = sms.due_at - tried_at
        spacings.append(spacing)
        assert spacing == min(first_retry * 2 ** (attempt - 1), outbox.LONGEST_RETRY)

        clock.move_to(sms.due_at - timedelta(seconds=1))  # a beat a second early: not retried yet
        outbox.dispatch_due()
        db.session.refresh(sms)
        assert (sms.status, sms.attempts, twilio_fake.request_count) == (MessageStatus.PENDING, attempt, attempt)

        clock.move_to(sms.due_at)  # the beat at the due time: attempt k+1, which fails too
        outbox.dispatch_due()
        db.session.refresh(sms)
        assert sms.attempts == attempt + 1 and twilio_fake.request_count == attempt + 1

    assert sms.status == MessageStatus.FAILED and sms.attempts == outbox.MAX_ATTEMPTS == 8
    assert sms.error.startswith("Abandon après 8 essais : ")
    seconds = first_retry.total_seconds()
    assert [s.total_seconds() for s in spacings] == [seconds * 2 ** k for k in range(6)] + [
        outbox.LONGEST_RETRY.total_seconds()]  # 30 s, 1, 2, 4, 8, 16 min, then 30 min at most (not 32)
    clock.shift(timedelta(days=1))
    outbox.dispatch_due()
    assert twilio_fake.request_count == outbox.MAX_ATTEMPTS  # failed is final: never tried again
    assert twilio_fake.messages == []


@pytest.mark.parametrize("starts_in, failed_at_attempt", [(timedelta(minutes=2), 3), (timedelta(seconds=90), 2)])
def test_retries_stop_when_the_next_one_would_come_at_or_after_the_rdvs_start(clinic, db, clock, app, twilio_sender,
                                                                              twilio_fake, starts_in,
                                                                              failed_at_attempt):
    """The rdv starts 2 minutes (or 90 s) after booking: attempts at +0, +30 s and +90 s. The next one, at or past
    the start (+210 s, or +90 s itself), is of no use to the family: the message fails at once with the reason
    agents read."""
    twilio_fake.throttle_next(10**6)
    assert app.config["OUTBOX_RETRY_SECONDS"] == 30
    rdv = book(clinic, NOW + starts_in)
    sms = sms_of(db, rdv)
    for attempt, seconds in enumerate((30, 90), start=2):
        assert (sms.status, sms.due_at, sms.attempts) == (
            MessageStatus.PENDING, NOW + timedelta(seconds=seconds), attempt - 1)
        clock.move_to(NOW + timedelta(seconds=seconds))
        outbox.dispatch_due()
        db.session.refresh(sms)
        if attempt == failed_at_attempt:
            break
    assert (sms.status, sms.attempts, twilio_fake.request_count) == (
        MessageStatus.FAILED, failed_at_attempt, failed_at_attempt)
    assert sms.error.startswith(f"{outbox.TOO_LATE} : ") and "Twilio est momentanément indisponible" in sms.error


def test_a_send_hanging_until_its_timeout_does_not_hold_up_the_rest_of_the_batch(clinic, db, clock, app, factories,
                                                                                  twilio_sender, twilio_fake):
    """Twilio holds the first request of a batch of six unanswered: the other five are sent meanwhile, from the
    batch's other threads, not one after the other behind it; the held one is asked about and sent once."""
    app.config.update(TWILIO_TIMEOUT_SECONDS=1, OUTBOX_SEND_THREADS=4)
    app.extensions.pop("lapins.sms_backend", None)
    clinic.mother.email_consent = False
    families = [clinic.mother] + [
        factories.UsagerFactory(territory=clinic.territory, first_name="Nour", last_name=f"Haddad{number}",
                                phone=f"+3361111000{number}", sms_consent=True, email=None, email_consent=False,
                                organisations=[clinic.organisation])
        for number in range(5)]
    db.session.commit()
    rdvs = [book(clinic, local(PARIS, 10, 26, 9 + number), usagers=[family]) for number, family in enumerate(families)]
    reminders = [messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER)[0] for rdv in rdvs]
    clock.move_to(max(reminder.due_at for reminder in reminders))
    twilio_fake.hang_next(1, seconds=30, accept=False)
    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)
    assert len(handed) == 1
    counts = outbox.send_batch(handed[0])
    assert counts == {"sent": 5, "queued": 1}, counts  # the held one keeps its claim: its fate is unknown
    assert twilio_fake.most_in_flight >= 2  # the others went while it hung

    clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
    outbox.dispatch_due()  # Twilio never got it: sent again, once
    received = sorted(message.to for message in twilio_fake.messages if "RAPPEL" in message.body.upper())
    assert received == sorted(family.phone for family in families)


# --- An answer that does not say whether the SMS left -----------------------------------------------------------

@pytest.mark.parametrize("status", [502, 503, 504, 500])
def test_a_gateway_error_after_twilio_took_the_sms_never_sends_it_twice(clinic, db, clock, app, twilio_sender,
                                                                         twilio_fake, status):
    """A proxy in front of Twilio answers a 5xx although Twilio created the message: the claim is kept, nothing is
    sent again before Twilio is asked, and Twilio's answer makes the row sent — the family gets one SMS."""
    twilio_fake.fail_after_accept_next(1, status=status)
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    sms = sms_of(db, rdv)
    assert len(twilio_fake.messages) == 1  # Twilio has it
    assert sms.status == MessageStatus.QUEUED and sms.claimed_at is not None, (str(sms.status), sms.error)
    assert f"HTTP {status}" in sms.error

    lease = timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"])
    for step in (timedelta(seconds=1), lease / 2, timedelta(days=2)):  # each beat, and days later
        clock.shift(step)
        outbox.dispatch_due()
        db.session.refresh(sms)
        assert sms.status != MessageStatus.FAILED

    assert sms.status == MessageStatus.SENT and sms.error is None
    assert sms.provider_id == twilio_fake.messages[0].sid
    assert twilio_fake.count_for("+33612345678", sms.body) == 1
    assert len(twilio_fake.sends_to("+33612345678")) == 1  # asked, never sent again


def test_a_gateway_error_after_twilio_took_the_sms_is_recorded_sent_within_seconds(clinic, db, clock, app,
                                                                                    twilio_sender, twilio_fake):
    """Twilio has the SMS behind the gateway's 504: asked ANSWERED_RECHECK after the answer, not a whole lease, and
    recorded sent then — the row does not hold up the outbox's drain for the lease."""
    twilio_fake.fail_after_accept_next(1, status=504)
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    sms = sms_of(db, rdv)
    assert (sms.status, sms.unsure_since) == (MessageStatus.QUEUED, NOW)
    requests = twilio_fake.request_count
    clock.shift(outbox.ANSWERED_RECHECK - timedelta(milliseconds=1))
    outbox.dispatch_due()
    assert twilio_fake.request_count == requests  # not asked yet
    clock.shift(timedelta(milliseconds=2))
    outbox.dispatch_due()
    db.session.refresh(sms)
    assert (sms.status, sms.unsure_since, sms.error) == (MessageStatus.SENT, None, None)
    assert sms.provider_id == twilio_fake.messages[0].sid
    assert len(twilio_fake.sends_to("+33612345678")) == 1


def test_a_silence_is_asked_about_within_seconds_but_sent_again_only_a_lease_after_it(clinic, db, clock, app,
                                                                                      twilio_sender, twilio_fake):
    """No answer (the client's timeout), Twilio never created the SMS: looked for soon and then further and further
    apart — not found each time, yet never sent again, never failed, before a whole lease after the silence (Twilio
    could still be working on the request); then sent again, once."""
    app.config.update(TWILIO_TIMEOUT_SECONDS=1)
    app.extensions.pop("lapins.sms_backend", None)
    lease = timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"])
    twilio_fake.hang_next(1, seconds=30, accept=False)
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    sms = sms_of(db, rdv)
    silence = sms.unsure_since
    assert sms.status == MessageStatus.QUEUED and silence is not None and twilio_fake.messages == []
    requests = twilio_fake.request_count
    looks = []
    while utc_now() + timedelta(seconds=2) < silence + lease:  # the beat, every 2 s
        clock.shift(timedelta(seconds=2))
        outbox.dispatch_due()
        db.session.refresh(sms)
        assert (sms.status, sms.attempts) == (MessageStatus.QUEUED, 1)
        if twilio_fake.request_count > requests:
            looks.append((utc_now() - silence).total_seconds())
            requests = twilio_fake.request_count
    assert len(twilio_fake.sends_to("+33612345678")) == 1  # asked, not sent again
    # Within seconds (the first beat), then each time at least twice as long after the silence: [2, 6, 14] here.
    assert looks[0] <= 2 and len(looks) >= 3, looks
    assert all(later >= 2 * earlier for earlier, later in zip(looks, looks[1:])), looks

    clock.move_to(silence + lease + timedelta(seconds=1))
    outbox.dispatch_due()
    db.session.refresh(sms)
    assert (sms.status, sms.attempts, sms.unsure_since) == (MessageStatus.SENT, 2, None)
    assert twilio_fake.count_for("+33612345678", sms.body) == 1


def test_a_gateway_error_is_not_failed_when_the_rdv_starts_before_twilio_is_asked(clinic, db, clock, app,
                                                                                  twilio_sender, twilio_fake):
    """The rdv begins while the claim waits out its lease: Twilio has the SMS, so the row ends sent, not failed."""
    twilio_fake.fail_after_accept_next(1, status=504)
    rdv = book(clinic, NOW + timedelta(seconds=30))
    sms = sms_of(db, rdv)
    clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
    outbox.dispatch_due()
    db.session.refresh(sms)
    assert sms.status == MessageStatus.SENT and len(twilio_fake.sends_to("+33612345678")) == 1


def test_a_5xx_with_nothing_at_twilio_is_sent_again_once_twilio_says_so(clinic, db, clock, app, twilio_sender,
                                                                       twilio_fake):
    twilio_fake.fail_next(1, status=503)  # refused before anything was created
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    sms = sms_of(db, rdv)
    assert sms.status == MessageStatus.QUEUED and twilio_fake.messages == []
    clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
    outbox.dispatch_due()  # Twilio holds nothing: put back, due now, and sent
    db.session.refresh(sms)
    assert (sms.status, sms.attempts) == (MessageStatus.SENT, 2)
    assert twilio_fake.count_for("+33612345678", sms.body) == 1


def test_twilios_own_500_is_asked_about_within_seconds_and_later_ones_further_apart(clinic, db, clock, app,
                                                                                     twilio_sender, twilio_fake):
    """Twilio itself answers 500 (its JSON error): its handling of the request is over, so the claim is looked into
    ANSWERED_RECHECK later, not a whole lease — Twilio asked first, the SMS then sent once. A second 500 waits twice
    as long. (A gateway's 5xx is asked about as soon but sent again only a lease after it: the tests above.)"""
    recheck = outbox.ANSWERED_RECHECK
    lease = timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"])
    assert 4 * recheck < lease
    twilio_fake.fail_next(1, status=500)
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    sms = sms_of(db, rdv)
    assert (sms.status, sms.attempts, twilio_fake.messages) == (MessageStatus.QUEUED, 1, [])
    assert "HTTP 500" in sms.error

    clock.shift(recheck - timedelta(milliseconds=1))
    outbox.dispatch_due()
    db.session.refresh(sms)
    assert (sms.status, sms.attempts) == (MessageStatus.QUEUED, 1)  # not yet: nothing asked, nothing sent
    assert twilio_fake.request_count == 1

    twilio_fake.answer_next(1)  # the look-up
    twilio_fake.fail_next(1, status=500)  # the new attempt
    clock.shift(timedelta(milliseconds=2))
    outbox.dispatch_due()  # asked (nothing there), sent again: a second 500
    db.session.refresh(sms)
    assert (sms.status, sms.attempts) == (MessageStatus.QUEUED, 2)
    assert len(twilio_fake.sends_to("+33612345678")) == 2

    clock.shift(2 * recheck - timedelta(milliseconds=1))
    outbox.dispatch_due()
    db.session.refresh(sms)
    assert (sms.status, sms.attempts) == (MessageStatus.QUEUED, 2)  # twice as long after the second one
    clock.shift(timedelta(milliseconds=2))
    outbox.dispatch_due()
    db.session.refresh(sms)
    assert (sms.status, sms.attempts) == (MessageStatus.SENT, 3)
    assert twilio_fake.count_for("+33612345678", sms.body) == 1


def _interrupted(clinic, rdv, claimed_at, number, attempts: int = 1) -> Message:
    """An SMS a worker died sending: queued, its claim left at `claimed_at`."""
    return Message(territory_id=clinic.territory.id, rdv=rdv, usager=clinic.mother, channel=Channel.SMS,
                   kind=MessageKind.REMINDER, status=MessageStatus.QUEUED, due_at=claimed_at, queued_at=claimed_at,
                   claimed_at=claimed_at, expires_at=rdv.starts_at, to_address=f"+3361234{number:04d}",
                   body=f"Rappel {number}", attempts=attempts)


def test_interrupted_sends_are_asked_about_all_at_once_not_one_after_the_other(clinic, db, clock, app,
                                                                                twilio_sender, twilio_fake):
    """Twenty claims left by interrupted sends: the beat asks Twilio about them from several threads at once (one
    after the other, hundreds of them outlasted the beat's interval), and puts each back once."""
    app.config.update(OUTBOX_SEND_THREADS=4)
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    claimed_at = utc_now()
    interrupted = [_interrupted(clinic, rdv, claimed_at, number) for number in range(20)]
    db.session.add_all(interrupted)
    db.session.commit()
    twilio_fake.delay = 0.2
    before = twilio_fake.request_count  # the booking's confirmation
    clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
    assert outbox.recover_stale_claims() == 20

    assert twilio_fake.most_in_flight >= 2
    assert twilio_fake.request_count - before == 20  # one look-up each
    for message in interrupted:
        db.session.refresh(message)
        assert (message.status, message.claimed_at) == (MessageStatus.PENDING, None)


def test_each_interrupted_send_of_one_claim_is_settled_on_its_own_answer(clinic, db, clock, app, twilio_sender,
                                                                         twilio_fake):
    """A dead batch's rows share its claim: the one Twilio has is recorded sent (dated from the claim, with
    Twilio's id), the one it has not goes back to be sent, the one interrupted MAX_ATTEMPTS times is given up —
    each by its own answer, none by another's."""
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    claimed_at = utc_now()
    found, missing, worn = (_interrupted(clinic, rdv, claimed_at, 1), _interrupted(clinic, rdv, claimed_at, 2),
                            _interrupted(clinic, rdv, claimed_at, 3, attempts=outbox.MAX_ATTEMPTS))
    db.session.add_all([found, missing, worn])
    db.session.commit()
    held = twilio_fake.add_message(found.to_address, found.body, claimed_at)
    clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
    assert outbox.recover_stale_claims() == 3
    for message in (found, missing, worn):
        db.session.refresh(message)
    assert (found.status, found.provider_id, found.sent_at) == (MessageStatus.SENT, held.sid, claimed_at)
    assert (missing.status, missing.claimed_at, missing.due_at) == (MessageStatus.PENDING, None, utc_now())
    assert missing.error == "Envoi interrompu (worker arrêté) : nouvel essai"
    assert (worn.status, worn.claimed_at) == (MessageStatus.FAILED, None)
    assert worn.error == f"Abandon après {outbox.MAX_ATTEMPTS} envois interrompus"


def test_a_claim_settled_while_twilio_was_asked_is_left_as_it_is_now(clinic, db, clock, app, twilio_sender,
                                                                     twilio_fake, monkeypatch):
    """While the beat asks Twilio about two interrupted sends, a status callback settles one and another dispatch
    takes the other back: the beat's answers, now stale, change neither."""
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    claimed_at = utc_now()
    delivered, retaken = _interrupted(clinic, rdv, claimed_at, 1), _interrupted(clinic, rdv, claimed_at, 2)
    db.session.add_all([delivered, retaken])
    db.session.commit()
    ask = outbox._find_all_sent
    later_claim = claimed_at + timedelta(seconds=5)

    def meanwhile(claims):
        answers = ask(claims)
        with db.engine.begin() as other:
            other.execute(Message.__table__.update().where(Message.id == delivered.id)
                          .values(status=MessageStatus.DELIVERED))
            other.execute(Message.__table__.update().where(Message.id == retaken.id)
                          .values(claimed_at=later_claim))
        return answers

    monkeypatch.setattr(outbox, "_find_all_sent", meanwhile)
    clock.shift(timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"] + 1))
    outbox.recover_stale_claims()
    db.session.expire_all()
    assert (db.session.get(Message, delivered.id).status, db.session.get(Message, retaken.id).claimed_at) == (
        MessageStatus.DELIVERED, later_claim)
    assert db.session.get(Message, retaken.id).status == MessageStatus.QUEUED


def test_a_retry_falling_in_the_quiet_hours_waits_for_the_morning(clinic, db, clock, app, twilio_sender, twilio_fake):
    clock.move_to(local(PARIS, 10, 19, 19, 59) + timedelta(seconds=50))  # 10 s before the quiet hours (20:00–08:00)
    twilio_fake.throttle_next(1)
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    sms = sms_of(db, rdv)
    assert sms.status == MessageStatus.PENDING and sms.attempts == 1
    assert sms.due_at == local(PARIS, 10, 20, 8, 0)  # +30 s would be 20:00:20: the morning instead
    clock.move_to(sms.due_at)
    outbox.dispatch_due()
    db.session.refresh(sms)
    assert (sms.status, sms.attempts, twilio_fake.request_count) == (MessageStatus.SENT, 2, 2)


def test_an_invalid_number_is_tried_exactly_once_however_long_the_beat_runs(clinic, db, clock, app, twilio_sender,
                                                                            twilio_fake):
    """Permanent errors are final: no retry, no recovery of the claim after the lease, whatever the clock does."""
    twilio_fake.mark_invalid("+33612345678")
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    sms = sms_of(db, rdv)
    assert (sms.status, sms.attempts, sms.error_code) == (MessageStatus.UNDELIVERABLE, 1, "21211")
    assert twilio_fake.request_count == 1
    lease = timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"])
    for step in (lease + timedelta(seconds=1), timedelta(minutes=30), timedelta(days=1)):
        clock.shift(step)
        outbox.dispatch_due()
    db.session.refresh(sms)
    assert (sms.status, sms.attempts) == (MessageStatus.UNDELIVERABLE, 1)
    assert twilio_fake.request_count == 1  # neither retried nor looked for (find_sent) again


def test_a_send_that_can_no_longer_begin_safely_is_given_back_not_sent(clinic, db, clock, app, twilio_sender,
                                                                       twilio_fake, monkeypatch):
    """The batch's thread reaches a send too long after its claim's last renewal (it could still be under way when
    the claim looks abandoned): not sent, given back — pending, due now, its attempt not counted — and sent once by
    the next dispatch. A row another batch has claimed meanwhile (its lease ran out) stays that batch's."""
    _rdv, sms, email, batch = _reminders_handed(clinic, db, clock)
    lease = timedelta(seconds=app.config["OUTBOX_CLAIM_LEASE_SECONDS"])
    sender = outbox._sender
    other_claim = utc_now() + lease

    def sender_reached_late(outgoing):
        if utc_now() < other_claim:
            clock.shift(lease)  # e.g. a machine stalled between the claim and the send
            db.session.execute(Message.__table__.update().where(Message.id == email.id)
                               .values(claimed_at=other_claim))
            db.session.commit()  # the other batch's claim, committed: its row lock released
        return sender(outgoing)

    monkeypatch.setattr(outbox, "_sender", sender_reached_late)
    requests = twilio_fake.request_count  # the booking's confirmation
    counts = outbox.send_batch(batch)
    assert counts["given back"] == 1, counts  # the SMS; the e-mail is the other batch's
    db.session.refresh(email)
    assert (email.status, email.claimed_at) == (MessageStatus.QUEUED, other_claim)
    db.session.refresh(sms)
    assert (sms.status, sms.claimed_at, sms.queued_at, sms.attempts) == (MessageStatus.PENDING, None, None, 0)
    assert sms.due_at == utc_now() and twilio_fake.request_count == requests

    monkeypatch.setattr(outbox, "_sender", sender)
    outbox.dispatch_due()
    db.session.refresh(sms)
    assert (sms.status, sms.attempts) == (MessageStatus.SENT, 1)
    assert twilio_fake.count_for("+33612345678", sms.body) == 1


@pytest.mark.parametrize("taken_meanwhile", [False, True])
def test_a_batch_cut_off_by_the_database_is_taken_back_by_its_retry_without_a_second_sms(clinic, db, clock,
                                                                                        twilio_sender, twilio_fake,
                                                                                        monkeypatch, taken_meanwhile):
    """The database goes away mid-batch, after the SMS left and before the e-mail began: the task's retry gets the
    claim it held, the SMS Twilio took (recorded sent, not sent again) and the e-mail never begun (taken back and
    sent) — no waiting for the lease, nothing twice, no attempt counted twice. Rows another batch claimed before
    the retry (`taken_meanwhile`) are that batch's: the retry neither records nor sends them."""
    _rdv, sms, email, batch = _reminders_handed(clinic, db, clock)
    assert sms.id < email.id  # sent in this order
    timeout = outbox._timeout

    requests = twilio_fake.request_count

    def database_gone_at_the_email(outgoing, config):  # the e-mail's row claimed, its send not begun
        if outgoing.message_id == email.id:
            for _ in range(500):  # the SMS under way first (its thread may not have begun yet)
                if twilio_fake.request_count > requests:
                    break
                threading.Event().wait(0.01)
            raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))
        return timeout(outgoing, config)

    monkeypatch.setattr(outbox, "_timeout", database_gone_at_the_email)
    with pytest.raises(outbox.SendInterrupted) as cut:
        outbox.send_batch(batch)
    interrupted = cut.value
    assert interrupted.not_begun == [email.id] and list(interrupted.delivered) == [sms.id]
    sid = interrupted.delivered[sms.id][0]
    assert twilio_fake.count_for("+33612345678", twilio_fake.get(sid).body) == 1
    db.session.rollback()

    db.session.refresh(email)
    assert (email.status, email.claimed_at) == (MessageStatus.QUEUED, interrupted.tokens[-1])
    monkeypatch.setattr(outbox, "_timeout", timeout)
    clock.shift(timedelta(seconds=1))  # the task's first retry
    other_claim = utc_now()
    if taken_meanwhile:
        db.session.execute(Message.__table__.update().where(Message.id.in_([sms.id, email.id]))
                           .values(claimed_at=other_claim))
        db.session.commit()
    clock.shift(timedelta(seconds=1))
    counts = outbox.send_batch(batch, earlier_claims=interrupted.tokens, resume=interrupted.not_begun,
                               delivered=interrupted.delivered)
    db.session.expire_all()
    sms, email = db.session.get(Message, sms.id), db.session.get(Message, email.id)
    assert twilio_fake.count_for("+33612345678", sms.body) == 1
    if taken_meanwhile:
        assert counts == {}, counts
        assert [(row.status, row.claimed_at) for row in (sms, email)] == [(MessageStatus.QUEUED, other_claim)] * 2
        return
    assert counts == {"sent": 1}, counts  # the e-mail; the SMS was recorded before
    assert (sms.status, sms.provider_id, sms.segments, sms.attempts) == (MessageStatus.SENT, sid, 1, 1)
    assert (email.status, email.attempts) == (MessageStatus.SENT, 1)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _taken_meanwhile(monkeypatch, db, taken: Message, token: datetime) -> None:
    """Between this batch's read of its rows and its claim (`_fix`), another batch (the same task delivered twice)
    takes `taken`: its claim is written as the first text of this batch is being composed."""
    prepare = outbox._prepare

    def prepare_after_the_other_claim(message, now):
        if db.session.get(Message, taken.id).claimed_at is None:
            db.session.execute(Message.__table__.update().where(Message.id == taken.id)
                               .values(claimed_at=token, attempts=1))
        return prepare(message, now)

    monkeypatch.setattr(outbox, "_prepare", prepare_after_the_other_claim)


def _reminders_handed(clinic, db, clock):
    """An rdv's SMS and e-mail reminders, due and handed to the broker in one batch: (rdv, sms, email, batch)."""
    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    sms, email = (messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=channel)[0]
                  for channel in (Channel.SMS, Channel.EMAIL))
    clock.move_to(sms.due_at)
    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)
    return rdv, sms, email, handed[0]


def test_a_row_another_batch_claimed_after_this_one_read_it_is_neither_written_nor_sent(clinic, db, clock,
                                                                                          monkeypatch):
    _rdv, sms, email, batch = _reminders_handed(clinic, db, clock)
    other_claim = sms.due_at - timedelta(seconds=1)
    _taken_meanwhile(monkeypatch, db, sms, other_claim)

    counts = outbox.send_batch(batch)

    db.session.expire_all()
    sms, email = db.session.get(Message, sms.id), db.session.get(Message, email.id)
    assert counts == {"sent": 1}
    assert email.status == MessageStatus.SENT and email.attempts == 1
    # The other batch's row: still its claim, its attempt counted once, no text written by this batch.
    assert (sms.status, sms.claimed_at, sms.attempts, sms.body) == (MessageStatus.QUEUED, other_claim, 1, None)


def test_a_row_another_batch_claimed_is_not_skipped_by_this_one_either(clinic, db, clock, monkeypatch):
    rdv, sms, email, batch = _reminders_handed(clinic, db, clock)
    rdv.status = RdvStatus.EXCUSED  # cancelled by phone: both reminders are no longer wanted...
    db.session.commit()
    other_claim = sms.due_at - timedelta(seconds=1)
    _taken_meanwhile(monkeypatch, db, sms, other_claim)  # ...and the SMS is the other batch's to settle

    counts = outbox.send_batch(batch)

    db.session.expire_all()
    sms, email = db.session.get(Message, sms.id), db.session.get(Message, email.id)
    assert counts == {"skipped": 1}
    assert email.status == MessageStatus.SKIPPED and email.error == "Rendez-vous annulé"
    assert (sms.status, sms.claimed_at, sms.error) == (MessageStatus.QUEUED, other_claim, None)
