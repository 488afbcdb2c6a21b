"""Every due reminder reaches its family exactly once, or fails with a reason, whatever breaks on the way.

Real components only: `celery -A worker worker` (prefork, two processes) started as a subprocess, Redis as the
broker, the real Twilio SDK talking to the loopback fake over HTTP, and a file SQLite database or PostgreSQL. This
process plays the beat: it runs outbox.dispatch_due every DISPATCH_EVERY seconds, so interrupted sends and lost
tasks are looked into exactly as in production, only with a lease of LEASE_SECONDS instead of production's 20 s.

What a family would notice is read from the fake: how many SMS each number received, and when.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from lapins.models import Channel, Message, MessageKind, MessageStatus, utcnow
from tests import services
from tests.fakes.twilio import TwilioFake, _Fault

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "delivery-reliability-secret-key"
LEASE_SECONDS = 3  # OUTBOX_CLAIM_LEASE_SECONDS: a claim this old belongs to a dead worker
FENCE_THREADS = 4  # OUTBOX_SEND_THREADS of the fence tests: each held send holds one
LONG_LEASE_SECONDS = 120  # longer than any test here: no claim is ever taken for a dead worker's
TWILIO_TIMEOUT_SECONDS = 1  # shorter than the lease, as in production (10 s against 20 s)
BATCH_SIZE = 10
FENCE_ALIVE_SECONDS = 1  # OUTBOX_FENCE_ALIVE_SECONDS
RETRY_SECONDS = 1  # OUTBOX_RETRY_SECONDS: first retry after a 500 or a 429, doubled at each attempt
DISPATCH_EVERY = 0.25  # the beat's interval, played by this process
SETTLE_TIMEOUT = 60  # for a step the beat must reach by itself, however loaded the machine
QUIET_SECONDS = 30  # settle(): how long nothing may move past the outbox's next scheduled step
LONGEST_SETTLE = 600  # settle(): a run that keeps moving for ten minutes is a loop, not a slow machine
FINAL = {status for status in MessageStatus if status.is_final}


class ScriptedTwilio(TwilioFake):
    """The fake, plus what these tests read and change mid-run: how many times each number was asked to take an
    SMS (refused ones included), how many programmed faults are still to come, and an end to them."""

    def __init__(self) -> None:
        super().__init__()
        self._asked: Counter[str] = Counter()
        self.accept_in = 0.0  # seconds Twilio takes to accept an SMS (listing stays fast, unlike `delay`)

    def _create(self, form: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            self._asked[form.get("To", "")] += 1
        time.sleep(self.accept_in)
        return super()._create(form)

    def asked(self, to: str) -> int:
        with self._lock:
            return self._asked[to]

    @property
    def faults_left(self) -> int:
        with self._lock:
            return len(self._state.faults)

    def gateway_error_every(self, every: int, requests: int, status: int = 504) -> None:
        """Of the next `requests` API requests, one in `every` is processed (a send creates the SMS) and then
        answered `status` by the gateway in front of Twilio."""
        with self._lock:
            for number in range(1, requests + 1):
                self._state.faults.append(_Fault(status=status, gateway=True) if number % every == 0 else _Fault())

    def heal(self) -> None:
        with self._lock:
            self._state.faults.clear()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._state.in_flight


@dataclass(frozen=True)
class Reminder:
    message_id: int
    phone: str
    rdv_starts_at: datetime


class Worker:
    """`celery -A worker worker --pool prefork --concurrency 2`, in a process group of its own."""

    def __init__(self, env: dict[str, str], log: Path, name: str) -> None:
        self.log = log
        command = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--loglevel=INFO", "--pool=prefork",
                   "--concurrency=2", f"--hostname={name}@%h", "--without-mingle", "--without-gossip",
                   "--without-heartbeat"]
        with log.open("w") as output:
            self.process = subprocess.Popen(
                services.dying_with_this_process(command), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """kill -9 of the main process and its pool processes at once: no warm shutdown, no ack, no cleanup."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def freeze(self) -> None:
        """The whole worker stopped (SIGSTOP), as a machine swapping or a VM paused: alive, but silent."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def wait_ready(self, timeout: float = 30) -> Worker:
        """Until the worker consumes from the broker (Celery logs "<name> ready.")."""
        deadline = time.monotonic() + timeout
        while " ready." not in self.log.read_text(errors="replace"):
            self.assert_running()
            if time.monotonic() > deadline:
                pytest.fail(f"the worker was not ready after {timeout:.0f} s\n{self.logs()}", pytrace=False)
            time.sleep(0.05)
        return self

    def assert_running(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"the worker exited with code {self.process.returncode}\n{self.logs()}", pytrace=False)

    def logs(self) -> str:
        text = self.log.read_text(errors="replace")
        # What stopped a worker is logged long before its shutdown's own tracebacks fill the tail.
        first = text.find("Unrecoverable error")
        cause = f"--- {self.log.name}, what stopped it ---\n{text[first:first + 4000]}\n" if first >= 0 else ""
        return f"{cause}--- {self.log.name} ---\n{text[-4000:]}"


class Lapins:
    """One deployment for one test: its own database and app in this process, workers as subprocesses."""

    def __init__(self, directory: Path, database_url: str, broker_url: str, twilio: ScriptedTwilio,
                 lease_seconds: int = LEASE_SECONDS, **overrides) -> None:
        from celery import current_app as current_celery

        from lapins import create_app

        self.directory, self.twilio, self.workers, self.lease_seconds = directory, twilio, [], lease_seconds
        self._previous_celery = current_celery._get_current_object()
        settings = {
            "SECRET_KEY": SECRET_KEY, "SQLALCHEMY_DATABASE_URI": database_url, "CELERY_BROKER_URL": broker_url,
            "CELERY_TASK_ALWAYS_EAGER": False, "SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token, "TWILIO_BASE_URL": twilio.url,
            "TWILIO_TIMEOUT_SECONDS": TWILIO_TIMEOUT_SECONDS, "OUTBOX_BATCH_SIZE": BATCH_SIZE,
            "OUTBOX_CLAIM_LEASE_SECONDS": lease_seconds, "OUTBOX_RETRY_SECONDS": RETRY_SECONDS,
            # The fence on the broker's Redis, as in production, its batches taken for gone after 1 s of silence.
            "OUTBOX_FENCE_URL": broker_url, "OUTBOX_FENCE_ALIVE_SECONDS": FENCE_ALIVE_SECONDS,
            "PUBLIC_URL": "https://lapins.example.org", **overrides,
        }
        self.app = create_app("testing", **settings)
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("CELERY_", "LAPINS_", "TWILIO_", "SMS_", "OUTBOX_", "TEST_"))}
        self.env.update({key: str(value) for key, value in settings.items()
                         if key not in ("SQLALCHEMY_DATABASE_URI", "CELERY_TASK_ALWAYS_EAGER")})
        self.env.update({"LAPINS_ENV": "development", "DATABASE_URL": database_url, "LOG_LEVEL": "INFO",
                         "EMAIL_BACKEND": "console"})
        self.context = self.app.app_context()
        self.context.push()
        from lapins.infra.extensions import db

        self.db = db

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.db.session.remove()
        self.db.engine.dispose()
        self.app.extensions["celery"].close()
        self.context.pop()
        self._previous_celery.set_current()
        self._previous_celery.set_default()

    # --- the families and their reminders ---------------------------------------------------------------------

    def due_reminders(self, count: int, *, starts_in: timedelta = timedelta(hours=1),
                      first_phone: int = 0) -> list[Reminder]:
        """`count` rdvs, one family each with its own mobile and SMS consent, whose reminder is due now."""
        from lapins.models import Lieu, Motif, Organisation, Rdv, Territory, Usager

        db, now = self.db, utcnow().replace(microsecond=0)
        territory = db.session.scalar(select(Territory)) or Territory(
            number="92", name="Hauts-de-Seine", sms_sender="PMI92",
            quiet_hours_start=datetime.min.time(), quiet_hours_end=datetime.min.time())  # no quiet hours
        organisation = db.session.scalar(select(Organisation)) or Organisation(
            territory=territory, name="PMI Nanterre", phone="+33141371000")
        lieu = db.session.scalar(select(Lieu)) or Lieu(organisation=organisation, name="Centre PMI",
                                                       address="12 rue de la Paix, Nanterre", phone="+33141371010")
        motif = db.session.scalar(select(Motif)) or Motif(organisation=organisation, name="Pesée")
        db.session.add_all([territory, organisation, lieu, motif])
        db.session.flush()
        starts_at = now + starts_in
        messages = []
        for number in range(first_phone, first_phone + count):
            usager = Usager(territory=territory, first_name="Inès", last_name=f"Durand{number}",
                            phone=f"+336{10_000_000 + number}", sms_consent=True)
            rdv = Rdv(organisation=organisation, motif=motif, lieu=lieu, starts_at=starts_at,
                      ends_at=starts_at + timedelta(minutes=30), usagers=[usager])
            messages.append(Message(territory_id=territory.id, rdv=rdv, usager=usager, channel=Channel.SMS,
                                    kind=MessageKind.REMINDER, status=MessageStatus.PENDING,
                                    due_at=now - timedelta(minutes=1), expires_at=starts_at))
        db.session.add_all(messages)
        db.session.commit()
        reminders = [Reminder(message.id, message.usager.phone, starts_at) for message in messages]
        db.session.remove()
        return reminders

    def refused_at_least_once(self, reminders: list[Reminder]) -> bool:
        """Each of these messages was tried, refused, and the refusal recorded (its reason kept for the agents)."""
        return all(row.attempts >= 1 and row.error is not None for row in self.messages(reminders))

    def start_rdvs_at(self, reminders: list[Reminder], starts_at: datetime) -> list[Reminder]:
        """The rdvs of these reminders moved to `starts_at`, their messages expiring then, as booking would."""
        from lapins.models import Rdv

        ids = [reminder.message_id for reminder in reminders]
        self.db.session.execute(update(Rdv).where(Rdv.id.in_(select(Message.rdv_id).where(Message.id.in_(ids))))
                                .values(starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30)))
        self.db.session.execute(update(Message).where(Message.id.in_(ids)).values(expires_at=starts_at))
        self.db.session.commit()
        self.db.session.remove()
        return [replace(reminder, rdv_starts_at=starts_at) for reminder in reminders]

    def messages(self, reminders: list[Reminder] | None = None) -> list[Message]:
        """The rows as they are now, read afresh."""
        self.db.session.remove()
        query = select(Message).order_by(Message.id)
        if reminders is not None:
            query = query.where(Message.id.in_([reminder.message_id for reminder in reminders]))
        return list(self.db.session.scalars(query))

    def statuses(self) -> Counter[str]:
        rows = self.db.session.execute(select(Message.status, func.count()).group_by(Message.status)).all()
        self.db.session.rollback()
        return Counter({str(status): count for status, count in rows})

    def all_final(self) -> bool:
        statuses = self.statuses()
        return sum(statuses.values()) > 0 and all(MessageStatus(status) in FINAL for status in statuses)

    # --- the worker and the beat ------------------------------------------------------------------------------

    def start_worker(self) -> Worker:
        number = len(self.workers) + 1
        worker = Worker(self.env, self.directory / f"worker-{number}.log", f"reliability{number}")
        self.workers.append(worker)
        return worker

    def dispatch(self) -> None:
        """One run of the beat's job. With the broker down it fails after committing its claims, as in production:
        the rows stay queued and are handed over again once the lease is over."""
        from kombu.exceptions import OperationalError
        from sqlalchemy.exc import OperationalError as DatabaseUnavailable, PendingRollbackError

        from lapins.notifications import outbox

        try:
            outbox.dispatch_due()
        except OperationalError:
            self.db.session.rollback()
        except (DatabaseUnavailable, PendingRollbackError):  # the beat's run fails; the next one goes on
            self.db.session.rollback()
            self.db.session.remove()

    def run_beat_until(self, done: Callable[[], bool], what: str, timeout: float = SETTLE_TIMEOUT,
                       poll: float = 0.01) -> None:
        """Dispatch every DISPATCH_EVERY seconds until `done()` (checked every `poll` seconds)."""
        deadline = time.monotonic() + timeout
        next_dispatch = 0.0
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not reached after {timeout:.0f} s\n{self.progress()}", pytrace=False)
            if time.monotonic() >= next_dispatch:
                self.dispatch()
                next_dispatch = time.monotonic() + DISPATCH_EVERY
            time.sleep(poll)

    def run_beat_for(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        self.run_beat_until(lambda: time.monotonic() >= until, f"{seconds:.1f} s of beat", timeout=seconds + 5)

    def settle(self) -> None:
        """Until every message is final. Decided by what happens, not by the wall clock: the run may take as long as
        a loaded machine needs while it moves (a status changes, a request reaches Twilio); it fails once nothing
        moved for QUIET_SECONDS past the outbox's next scheduled step (a retry's due time, a claim's lease end)."""
        last, quiet_until = None, 0.0

        def final_or_moving() -> bool:
            nonlocal last, quiet_until
            if self.all_final():
                return True
            state = (sorted(self.statuses().items()), self.twilio.request_count)
            if state != last:
                last, quiet_until = state, time.monotonic() + self.next_step_in() + QUIET_SECONDS
            elif time.monotonic() > quiet_until:
                pytest.fail(f"not every message sent, failed or undeliverable, and nothing moved for {QUIET_SECONDS} s "
                            f"past the outbox's next step\n{self.progress()}", pytrace=False)
            return False

        self.run_beat_until(final_or_moving, "every message sent, failed or undeliverable (still moving)",
                            timeout=LONGEST_SETTLE, poll=0.1)

    def next_step_in(self) -> float:
        """Seconds until the outbox's next scheduled step: the earliest retry's due time, or the end of the lease of
        the oldest claim of a message not yet final (a recovery then looks into it); 0 if one is already due."""
        now = utcnow()
        due = self.db.session.scalar(select(func.min(Message.due_at)).where(Message.status == MessageStatus.PENDING))
        claimed = self.db.session.scalar(select(func.min(Message.claimed_at)).where(
            Message.claimed_at.is_not(None), Message.status.not_in(FINAL)))
        self.db.session.rollback()
        steps = [(at - now).total_seconds() for at in (due, claimed and claimed + timedelta(seconds=self.lease_seconds))
                 if at is not None]
        return max(min(steps), 0.0) if steps else 0.0

    def progress(self) -> str:
        live = [worker for worker in self.workers if worker.process.poll() is None]
        return (f"statuses {dict(self.statuses())}; the fake holds {len(self.twilio.messages)} SMS after "
                f"{self.twilio.request_count} requests; {len(live)} worker(s) running\n"
                + "\n".join(worker.logs() for worker in self.workers))


# --- Fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture()
def twilio():
    with ScriptedTwilio() as fake:
        yield fake


@pytest.fixture()
def start_lapins(database_url, twilio, tmp_path):
    started: list[Lapins] = []

    def start(broker_url: str, lease_seconds: int = LEASE_SECONDS, **overrides) -> Lapins:
        started.append(Lapins(tmp_path, database_url, broker_url, twilio, lease_seconds, **overrides))
        return started[-1]

    yield start
    for lapins in started:
        lapins.close()


# --- What a family notices --------------------------------------------------------------------------------------

def assert_each_family_got_its_reminder_once(lapins: Lapins, reminders: list[Reminder]) -> None:
    rows = {row.id: row for row in lapins.messages(reminders)}
    not_sent = {row.id: (str(row.status), row.error) for row in rows.values() if row.status != MessageStatus.SENT}
    assert not not_sent, f"{len(not_sent)} not sent: {list(not_sent.items())[:5]}\n{lapins.progress()}"
    received = Counter(message.to for message in lapins.twilio.messages)
    twice = {phone: count for phone, count in received.items() if count > 1}
    assert not twice, f"{len(twice)} families got their reminder more than once: {list(twice.items())[:5]}"
    by_sid = {message.sid: message for message in lapins.twilio.messages}
    for reminder in reminders:
        row = rows[reminder.message_id]
        assert lapins.twilio.count_for(reminder.phone, row.body) == 1
        assert by_sid[row.provider_id].to == reminder.phone  # the row records the SMS the family got
    assert_nothing_sent_after_the_rdv_started(lapins, reminders)


def assert_nothing_sent_after_the_rdv_started(lapins: Lapins, reminders: list[Reminder]) -> None:
    starts = {reminder.phone: reminder.rdv_starts_at for reminder in reminders}
    late = [message.to for message in lapins.twilio.messages
            if message.to in starts and message.date_created >= starts[message.to]]
    assert not late, f"{len(late)} SMS accepted by Twilio after the rdv started"
    for row in lapins.messages(reminders):
        assert row.sent_at is None or row.sent_at < row.expires_at, (row.id, row.sent_at, row.expires_at)


# --- 1. The worker killed mid-batch -----------------------------------------------------------------------------

def test_a_worker_killed_mid_batch_loses_no_reminder_and_sends_none_twice(start_lapins, redis_url, twilio):
    lapins = start_lapins(redis_url)
    reminders = lapins.due_reminders(200)
    twilio.delay = 0.02  # a slow network: the kill lands while batches are being sent
    worker = lapins.start_worker()

    lapins.run_beat_until(lambda: len(twilio.messages) >= 60, "a third of the reminders sent")
    # Both pool processes then wait on a request Twilio accepted but has not answered yet, and are killed there.
    twilio.hang_next(2, seconds=3, accept=True)
    lapins.run_beat_until(lambda: twilio.faults_left == 0, "both sends hanging", timeout=10, poll=0.002)
    worker.kill()
    sent_before_the_kill = len(twilio.messages)
    assert sent_before_the_kill < len(reminders), "the worker was killed after the end of the batch"
    claimed = [row for row in lapins.messages() if row.status == MessageStatus.QUEUED and row.claimed_at]
    assert claimed, "no send was interrupted"

    lapins.start_worker()
    lapins.settle()

    assert_each_family_got_its_reminder_once(lapins, reminders)
    assert len(twilio.messages) == len(reminders)


def hold_every_sending_thread(lapins: Lapins, twilio: ScriptedTwilio) -> Worker:
    """A worker whose two batches have each begun their FENCE_THREADS sends, which Twilio took and holds unanswered;
    the batches' other messages not begun."""
    twilio.hang_next(10**4, seconds=3, accept=True)
    worker = lapins.start_worker()
    lapins.run_beat_until(lambda: twilio.in_flight == 2 * FENCE_THREADS, "every sending thread held", poll=0.002)
    return worker


def test_a_killed_workers_unsent_reminders_come_back_without_waiting_for_the_lease(start_lapins, redis_url, twilio):
    """The lease is two minutes: only the fence can bring the dead batches' messages back within SETTLE_TIMEOUT.
    Those Twilio took are found there and recorded, never asked for again; the others are sent by the next worker."""
    lapins = start_lapins(redis_url, LONG_LEASE_SECONDS, OUTBOX_SEND_THREADS=FENCE_THREADS)
    reminders = lapins.due_reminders(60)
    worker = hold_every_sending_thread(lapins, twilio)
    worker.kill()
    twilio.heal()
    claimed = [row for row in lapins.messages() if row.status == MessageStatus.QUEUED and row.claim_id]
    assert len(claimed) > 2 * FENCE_THREADS, "the batches had no message left to begin"

    lapins.start_worker()
    lapins.run_beat_until(lapins.all_final, "every reminder sent, the lease still running")

    assert_each_family_got_its_reminder_once(lapins, reminders)
    assert all(twilio.asked(reminder.phone) == 1 for reminder in reminders)  # the held ones not sent again


def test_a_frozen_worker_whose_messages_were_taken_back_sends_none_of_them_when_it_wakes(start_lapins, redis_url,
                                                                                      twilio):
    """Frozen past its fence's expiry, the worker's messages go to another worker; woken, its held sends are
    answered and its batches go on, but they begin no send any more: each family still gets one SMS."""
    lapins = start_lapins(redis_url, LONG_LEASE_SECONDS, OUTBOX_SEND_THREADS=FENCE_THREADS)
    reminders = lapins.due_reminders(60)
    frozen = hold_every_sending_thread(lapins, twilio)
    frozen.freeze()
    twilio.heal()
    lapins.start_worker()
    lapins.run_beat_until(lapins.all_final, "every reminder sent while the first worker is frozen")

    frozen.thaw()
    # Its two batches end (their held sends answered, the rest refused by the fence) and say so in its log.
    lapins.run_beat_until(lambda: frozen.log.read_text(errors="replace").count("Outbox batch of") >= 2,
                          "the woken worker's batches over")
    frozen.assert_running()
    assert_each_family_got_its_reminder_once(lapins, reminders)
    assert all(twilio.asked(reminder.phone) == 1 for reminder in reminders)
    assert "given back" in frozen.log.read_text(errors="replace"), frozen.logs()


# --- 2. Redis restarted: the tasks on it are lost ---------------------------------------------------------------

def test_a_redis_restart_loses_the_queued_tasks_but_no_reminder(start_lapins, own_redis, twilio):
    lapins = start_lapins(own_redis.url(0))
    reminders = lapins.due_reminders(200)
    twilio.delay = 0.02
    lapins.start_worker()

    lapins.run_beat_until(lambda: len(twilio.messages) >= 40, "a fifth of the reminders sent")
    own_redis.stop()  # no persistence: every task waiting on the broker is gone
    lapins.run_beat_for(1.5)  # the beat keeps claiming meanwhile: its tasks cannot reach the broker
    own_redis.start()
    lost = [row for row in lapins.messages() if row.status == MessageStatus.QUEUED and row.claimed_at is None]
    assert lost, "no queued message was waiting on the broker when Redis stopped"

    lapins.settle()

    assert_each_family_got_its_reminder_once(lapins, reminders)
    assert len(twilio.messages) == len(reminders)
    for worker in lapins.workers:
        worker.assert_running()  # the worker found Redis again by itself
        # ...trying again after a second, not after kombu's 2 s then 4 s (lapins.infra.worker_consumer)
        retries = re.findall(r"Trying again (in [\d.]+ seconds?|now)", worker.log.read_text(errors="replace"))
        assert retries and retries[0] == "in 1.00 second", retries


# --- 3. Twilio answering 500, then 429, then not answering ------------------------------------------------------

def test_twilio_failing_for_a_while_delays_reminders_but_never_past_the_rdv(start_lapins, redis_url, twilio):
    lapins = start_lapins(redis_url)
    lapins.start_worker().wait_ready()
    twilio.fail_next(10**6, status=500)
    outage_began = time.monotonic()
    soon = lapins.due_reminders(4, starts_in=timedelta(hours=1))  # these rdvs will start during the outage
    later = lapins.due_reminders(100, first_phone=100)

    lapins.run_beat_for(2 - (time.monotonic() - outage_began))
    twilio.heal()
    twilio.throttle_next(10**6)
    # The `soon` rdvs are brought forward to start during the outage once each of their reminders was refused:
    # waited for, not assumed from a delay (on a loaded machine a worker may reach them only after any fixed one,
    # and a reminder never tried is skipped, not failed). Twilio then refuses until they have started, so their
    # messages can only fail, whatever the clock did.
    lapins.run_beat_until(lambda: lapins.refused_at_least_once(soon), "each soon reminder refused once")
    soon = lapins.start_rdvs_at(soon, utcnow().replace(microsecond=0) + timedelta(seconds=2))
    lapins.run_beat_until(lambda: utcnow() > soon[0].rdv_starts_at, "the soon rdvs started", timeout=30)
    twilio.heal()
    # Then a few requests get no answer in time: two were accepted all the same, two never reached Twilio.
    twilio.hang_next(2, seconds=3, accept=True)
    twilio.hang_next(2, seconds=3, accept=False)
    lapins.settle()

    assert_each_family_got_its_reminder_once(lapins, later)
    attempts = Counter(row.attempts for row in lapins.messages(later))
    assert max(attempts) > 1, attempts  # retried
    # With a backoff: after the k-th request for a number was refused (500, 429), the next one comes no sooner
    # than RETRY_SECONDS × 2^(k-1). A lower bound on the time between two requests, which a slow machine can only
    # make longer, so that no outcome here depends on the load. The exact attempt count and spacing, on a clock
    # the test moves, are in tests/test_outbox.py.
    early = []
    for reminder in later:
        sends = twilio.sends_to(reminder.phone)
        for attempt, (refused, following) in enumerate(zip(sends, sends[1:]), start=1):
            backoff = timedelta(seconds=RETRY_SECONDS * 2 ** (attempt - 1))
            if refused.status in (429, 500) and following.at - refused.at < backoff:
                early.append((reminder.phone, attempt, (following.at - refused.at).total_seconds()))
    assert not early, f"{len(early)} retries came before their backoff: {early[:5]}"
    assert any(len(twilio.sends_to(reminder.phone)) > 1 for reminder in later)
    for row in lapins.messages(soon):
        assert row.status == MessageStatus.FAILED, (str(row.status), row.error, row.attempts)
        assert row.error.startswith("Non envoyé avant le début du rendez-vous : "), row.error
        assert "Twilio est momentanément indisponible" in row.error, row.error
        assert twilio.count_for(row.to_address, row.body) == 0
    assert_nothing_sent_after_the_rdv_started(lapins, soon + later)


# --- 4. Numbers Twilio refuses for good -------------------------------------------------------------------------

def test_an_invalid_or_unsubscribed_number_is_tried_once_and_flagged(start_lapins, redis_url, twilio):
    # No worker is killed here: with a two-minute lease, a send slowed down by a loaded machine is never mistaken
    # for a dead worker's and tried again, so "tried once" is the code's doing, not the clock's. The same on a
    # clock the test moves: tests/test_outbox.py.
    lapins = start_lapins(redis_url, lease_seconds=LONG_LEASE_SECONDS)
    reminders = lapins.due_reminders(30)
    invalid, unsubscribed, valid = reminders[:3], reminders[3:6], reminders[6:]
    twilio.mark_invalid(*(reminder.phone for reminder in invalid))
    twilio.mark_unsubscribed(*(reminder.phone for reminder in unsubscribed))
    lapins.start_worker()

    lapins.settle()  # an undeliverable message is final: neither a retry nor a recovery takes it again

    assert_each_family_got_its_reminder_once(lapins, valid)
    for group, code, reason in ((invalid, "21211", "Numéro de téléphone invalide."),
                                (unsubscribed, "21610", "La personne a refusé les SMS (réponse STOP)")):
        for row in lapins.messages(group):
            assert row.status == MessageStatus.UNDELIVERABLE and row.error_code == code, (str(row.status), row.error)
            assert row.error.startswith(reason) and row.attempts == 1
            assert row.usager.phone_undeliverable_at is not None and row.usager.phone_error.startswith(reason)
            assert twilio.asked(row.to_address) == 1 and twilio.count_for(row.to_address, row.body) == 0


# --- 5. Twilio slow to answer: a batch outlasts the lease -------------------------------------------------------

def test_a_batch_slower_than_the_lease_sends_nothing_twice(start_lapins, redis_url, twilio):
    # One send at a time: the batch lasts five seconds, longer than the lease, and lives on its renewed claim.
    lapins = start_lapins(redis_url, OUTBOX_SEND_THREADS=1)
    reminders = lapins.due_reminders(BATCH_SIZE)  # one batch: the other pool process is free to take over
    twilio.accept_in = 0.5  # under the timeout; but a batch of ten then holds its claims longer than the lease
    lapins.start_worker()

    lapins.settle()

    assert_each_family_got_its_reminder_once(lapins, reminders)


# --- 6. A gateway answering 504 after Twilio took the SMS -------------------------------------------------------

def test_a_gateway_504_after_twilio_took_the_sms_sends_nothing_twice(start_lapins, redis_url, twilio):
    lapins = start_lapins(redis_url)
    reminders = lapins.due_reminders(200)
    twilio.gateway_error_every(20, requests=400, status=504)  # 5 % of the requests, sends and look-ups alike
    lapins.start_worker()

    lapins.settle()

    assert_each_family_got_its_reminder_once(lapins, reminders)
    answered_504 = [send for reminder in reminders for send in twilio.sends_to(reminder.phone) if send.status == 504]
    assert len(answered_504) >= 5, "the gateway answered too few sends with 504 for this test to mean anything"


# --- 7. PostgreSQL drops the workers' connections mid-run -------------------------------------------------------

@pytest.mark.postgres
def test_database_connections_killed_mid_run_make_tasks_retry_not_fail(postgres_server, postgres_url, redis_url,
                                                                       twilio, tmp_path):
    """pg_terminate_backend on every connection of the database, three times, while the worker sends: its tasks
    retry once the database answers again, and a batch cut off mid-way takes back what it safely can (the sends it
    had not begun, and records those Twilio took) instead of leaving them to the lease — with a two-minute lease,
    the reminders arrive in seconds all the same, each once."""
    lapins = Lapins(tmp_path, postgres_url, redis_url, twilio, lease_seconds=LONG_LEASE_SECONDS)
    try:
        reminders = lapins.due_reminders(200)
        # Twilio takes a tenth of a second: when a connection is killed, other sends of the batch are under way.
        # The retry must neither send those again (they may not be at Twilio yet) nor leave them to the lease.
        twilio.delay = 0.1
        worker = lapins.start_worker()
        lapins.run_beat_until(lambda: len(twilio.messages) >= 30, "some reminders sent")
        database = postgres_url.rsplit("/", 1)[1]
        killed = 0
        for _ in range(3):
            with postgres_server._connect() as connection:  # the server's administrator, on its own connection
                killed += len(connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()", (database,)).fetchall())
            lapins.db.session.remove()
            lapins.db.engine.dispose()  # this process's own connections were killed too
            lapins.run_beat_for(0.4)
        assert killed >= 3

        lapins.settle()

        assert_each_family_got_its_reminder_once(lapins, reminders)
        log = worker.log.read_text(errors="replace")
        assert "database unavailable" in log, "no task met the killed connections"
        assert "raised unexpected" not in log, worker.logs()  # no task failed for good
    finally:
        lapins.close()


# --- 8. The beat's jobs behind a long queue of sends ------------------------------------------------------------

def test_the_beats_jobs_run_at_once_behind_a_long_queue_of_sends(start_lapins, redis_url, twilio):
    """Thirty batches wait on the broker when the beat's heartbeat is queued: the worker (started without --queues,
    it reads both; the Procfile and docs/deploy.md name them) runs it after a batch or two, not after the queue."""
    from lapins.infra.celery_app import task_named
    from lapins.models import Heartbeat

    lapins = start_lapins(redis_url, lease_seconds=LONG_LEASE_SECONDS)
    reminders = lapins.due_reminders(300)
    twilio.delay = 0.05  # half a second a batch of ten: the queue lasts about eight seconds on two processes
    lapins.dispatch()  # the thirty batches, all on the send queue
    task_named("lapins.tasks.record_heartbeat").delay()  # then the beat's job
    lapins.start_worker()

    def heartbeat_recorded() -> bool:
        lapins.db.session.remove()
        return lapins.db.session.get(Heartbeat, "worker") is not None

    lapins.run_beat_until(heartbeat_recorded, "the heartbeat recorded", poll=0.02)
    sent_by_then = len(twilio.messages)
    assert sent_by_then < len(reminders) / 2, f"the heartbeat waited for {sent_by_then} SMS"
    lapins.settle()
    assert_each_family_got_its_reminder_once(lapins, reminders)
