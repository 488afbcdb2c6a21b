"""Reminders under faults (`reminders.faults.<scenario>`): what the families notice when something breaks mid-run.

Each scenario is a deployment of its own, as docs/deploy.md runs it: a PostgreSQL and a Redis server started here
(so that they can be restarted), two `celery -A worker worker --queues=celery,lapins.beat` and one `celery -A worker
beat` with production's outbox settings, the loopback Twilio (tests/fakes/twilio.py) in this process, answering
after --fault-latency seconds as a real API does. --fault-reminders SMS reminders are due at once, plus
--fault-near-start more whose rdvs begin 0.5 to 4 minutes later. After a third of them reached Twilio, the fault:

  worker_kill               kill -9 of one worker (main process and pool), started again 0.1 s later, as systemd's
                            Restart=always does (docs/deploy.md)
  worker_lost               the same kill, never started again (its machine gone): half the capacity from then on,
                            so no drain goal (a third of the run at full speed, the rest at half: 1.67 at best)
  redis_restart             Redis stopped (its queue lost: no persistence) and started again 2 s later
  postgres_restart          PostgreSQL stopped (fast shutdown: every connection cut) and started again 3 s later
  provider_500              30 % of Twilio's next answers are HTTP 500 (nothing created)
  provider_hang             20 % of Twilio's next requests hang past TWILIO_TIMEOUT_SECONDS (half after creating the SMS)
  gateway_504_after_accept  5 % of the next requests are answered 504 by a gateway after Twilio created the SMS

The same run without a fault comes first. Figures per scenario: received, duplicates, lost (a family whose rdv had
not begun and who got nothing), skipped_late (near-start reminders not sent before their rdv), sent_after_start,
drain_seconds (from the first dispatch until every row is final), fault_seconds, drain_ratio (to the fault-free
run). Goals: 0 duplicates, 0 lost, drain ≤ 1.5 × fault-free + the fault's duration, no more skipped_late than without
the fault.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("worker_kill", "worker_lost", "redis_restart", "postgres_restart", "provider_500", "provider_hang",
             "gateway_504_after_accept")
RUN_TIMEOUT_SECONDS = 400
POLL_SECONDS = 0.2
DRAIN_GOAL_RATIO = 1.5
NO_DRAIN_GOAL = {"worker_lost"}  # capacity lost for good: what is judged is duplicates, losses and lateness
RESTART_SECONDS = 0.1  # systemd's RestartSec default


def add_arguments(parser) -> None:
    group = parser.add_argument_group("rappels sous pannes (reminders.faults.*)")
    env = os.environ.get
    group.add_argument("--skip-faults", action="store_true", help="sans le banc des pannes")
    group.add_argument("--fault-reminders", type=int, default=int(env("BENCH_FAULT_REMINDERS", 600)),
                       help="rappels SMS échus d'un coup dans chaque scénario")
    group.add_argument("--fault-near-start", type=int, default=int(env("BENCH_FAULT_NEAR_START", 40)),
                       help="rappels de plus, dont le rdv commence 0,5 à 4 minutes après")
    group.add_argument("--fault-latency", type=float, default=float(env("BENCH_FAULT_LATENCY", 0.1)),
                       help="secondes que le faux Twilio met à répondre")
    group.add_argument("--fault-scenarios", default=env("BENCH_FAULT_SCENARIOS", ",".join(SCENARIOS)),
                       help=f"scénarios, séparés par des virgules, parmi : {', '.join(SCENARIOS)}")


def bench_faults(args, figures: dict, failures: list[str], log) -> None:
    from tests import services

    scenarios = [name.strip() for name in args.fault_scenarios.split(",") if name.strip()]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"scénarios inconnus : {', '.join(sorted(unknown))}")
    postgres = services.PostgresServer().start()
    try:
        baseline = None
        for scenario in ["fault_free", *scenarios]:
            log(f"Pannes : {scenario} ({args.fault_reminders} rappels + {args.fault_near_start} proches du rdv)")
            result = FaultRun(scenario, postgres, args, log.indented).run()
            if baseline is None:
                baseline = result
            result["drain_ratio"] = round(result["drain_seconds"] / baseline["drain_seconds"], 2)
            figures.update({f"reminders.faults.{scenario}.{key}": value for key, value in result.items()})
            log.indented(summary_line(result))
            for what in ("duplicates", "lost", "sent_after_start"):
                if result[what]:
                    failures.append(f"pannes {scenario} : {what} = {result[what]}, attendu 0")
    finally:
        postgres.stop()


def summary_line(result: dict) -> str:
    return (f"reçus {result['received']}, doublons {result['duplicates']}, perdus {result['lost']}, "
            f"non envoyés avant le rdv {result['skipped_late']}, vidé en {result['drain_seconds']} s "
            f"(panne {result['fault_seconds']} s)")


def print_verdict(figures: dict) -> None:
    free = {key.rsplit(".", 1)[1]: value for key, value in figures.items()
            if key.startswith("reminders.faults.fault_free.")}
    if not free:
        return
    print("Rappels sous pannes (0 doublon, 0 perdu ; vidage ≤ 1,5 × sans panne + durée de la panne) :",
          file=sys.stderr)
    for scenario in ["fault_free", *SCENARIOS]:
        prefix = f"reminders.faults.{scenario}."
        result = {key.removeprefix(prefix): value for key, value in figures.items() if key.startswith(prefix)}
        if not result:
            continue
        drain_goal = DRAIN_GOAL_RATIO * free["drain_seconds"] + result["fault_seconds"]
        met = (result["duplicates"] == 0 and result["lost"] == 0
               and (scenario in NO_DRAIN_GOAL or result["drain_seconds"] <= drain_goal)
               and result["skipped_late"] <= free["skipped_late"])
        print(f"  {scenario:<26} {summary_line(result)}, rapport {result['drain_ratio']} "
              f"{'OK' if met else 'MANQUÉ'}", file=sys.stderr)


class FaultRun:
    """One scenario: its database, Redis, fake Twilio, workers and beat, from the first dispatch to the last row."""

    def __init__(self, scenario: str, postgres, args, log) -> None:
        self.scenario, self.postgres, self.args, self.log = scenario, postgres, args, log
        self.processes: dict[str, subprocess.Popen] = {}

    def run(self) -> dict:
        from tests import services
        from tests.fakes.twilio import TwilioFake

        databases = services.PostgresDatabases(self.postgres.admin_url)
        name = databases.create("lapins_bench_faults")
        self.redis = services.RedisServer().start()
        self.twilio = TwilioFake(account_sid="AC" + secrets.token_hex(16), auth_token=secrets.token_hex(16)).start()
        self.twilio.delay = self.args.fault_latency
        try:
            with tempfile.TemporaryDirectory(prefix="lapins-bench-faults-") as directory:
                self.directory = Path(directory)
                return self._measure(databases.url(name))
        finally:
            for process in self.processes.values():
                services.stop_process(process, signal.SIGKILL)
            self.twilio.stop()
            self.redis.stop()
            databases.drop(name)

    def _measure(self, database_url: str) -> dict:
        from lapins import create_app
        from lapins.infra.extensions import db

        settings = {"SQLALCHEMY_DATABASE_URI": database_url, "CELERY_BROKER_URL": self.redis.url(0),
                    "SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": self.twilio.account_sid,
                    "TWILIO_AUTH_TOKEN": self.twilio.auth_token, "TWILIO_BASE_URL": self.twilio.url,
                    "LOG_LEVEL": "WARNING", "PUBLIC_URL": "https://lapins.example.org"}
        app = create_app("development", **settings)
        with app.app_context():
            db.create_all()
            self._start_services(database_url)
            rows = seed(self.args.fault_reminders, self.args.fault_near_start)
            # The beat only now: started with the workers, it dispatched the rows as the seed committed them, and
            # fast workers had sent them all before the clock below started.
            self._start_beat()
            began = time.monotonic()
            self._dispatch()
            fault_seconds = self._inject_fault_after(len(rows) // 3, began)
            drain = self._wait_until_final(began)
            result = self._figures(rows, drain, fault_seconds)
            db.session.remove()
            db.engine.dispose()
        return result

    # --- the deployment -------------------------------------------------------------------------------------------

    def _start_services(self, database_url: str) -> None:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("CELERY_", "LAPINS_", "TWILIO_", "SMS_", "OUTBOX_", "BENCH_"))}
        env.update({"LAPINS_ENV": "production", "SECRET_KEY": secrets.token_hex(32), "DATABASE_URL": database_url,
                    "CELERY_BROKER_URL": self.redis.url(0), "SMS_BACKEND": "twilio",
                    "TWILIO_ACCOUNT_SID": self.twilio.account_sid, "TWILIO_AUTH_TOKEN": self.twilio.auth_token,
                    "TWILIO_BASE_URL": self.twilio.url, "LOG_LEVEL": "WARNING",
                    "PUBLIC_URL": "https://lapins.example.org"})
        celery = [sys.executable, "-m", "celery", "-A", "worker"]
        self._worker_commands = {f"worker{number}": [*celery, "worker", "--loglevel=INFO", "--concurrency=2",
                                                     "--queues=celery,lapins.beat", f"--hostname=faults{number}@%h"]
                                 for number in (1, 2)}
        self._beat_command = [*celery, "beat", "--loglevel=WARNING", "--schedule", str(self.directory / "beat")]
        self._env = env
        for name in self._worker_commands:
            self._start_worker(name, name)
        deadline = time.monotonic() + 60
        for name in ("worker1", "worker2"):
            while " ready." not in (self.directory / f"{name}.log").read_text(errors="replace"):
                if time.monotonic() > deadline or self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} n'a pas démarré :\n{self._log_tail(name)}")
                time.sleep(0.1)

    def _start_worker(self, name: str, log: str) -> None:
        from tests.services import dying_with_this_process

        with (self.directory / f"{log}.log").open("w") as output:
            self.processes[log] = subprocess.Popen(
                dying_with_this_process(self._worker_commands[name]), cwd=ROOT, env=self._env,
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def _start_beat(self) -> None:
        from tests.services import dying_with_this_process

        with (self.directory / "beat.log").open("w") as output:
            self.processes["beat"] = subprocess.Popen(
                dying_with_this_process(self._beat_command), cwd=ROOT, env=self._env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def _log_tail(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")[-3000:]

    def _dispatch(self) -> None:
        """What a booking's kick does: one dispatch at once, instead of waiting for the beat's next run."""
        from lapins.notifications import outbox

        outbox.dispatch_due()

    # --- the fault ------------------------------------------------------------------------------------------------

    def _inject_fault_after(self, received: int, began: float) -> float:
        """Wait until Twilio received `received` SMS, break what the scenario breaks; returns the fault's duration."""
        while len(self.twilio.messages) < received:
            if time.monotonic() - began > RUN_TIMEOUT_SECONDS:
                raise RuntimeError(f"{received} SMS non reçus avant la panne")
            time.sleep(0.02)
        started = time.monotonic()
        scenario = self.scenario
        if scenario in ("worker_kill", "worker_lost"):
            os.killpg(self.processes["worker1"].pid, signal.SIGKILL)
            if scenario == "worker_kill":
                # Its supervisor sees it die and starts it again: a new worker with no memory of the old one's
                # batches, which only the fence or the lease give back. Its start-up counts against the drain.
                self.processes["worker1"].wait()
                time.sleep(RESTART_SECONDS)
                self._start_worker("worker1", "worker1-restarted")
            return 0.0
        if scenario == "redis_restart":
            self.redis.stop()  # no persistence: the queue is gone
            time.sleep(2)
            self.redis.start()  # the same port
        elif scenario == "postgres_restart":
            self.postgres.restart(down_seconds=3)
        elif scenario in ("provider_500", "provider_hang", "gateway_504_after_accept"):
            # At most as many requests as messages are left to send: with fast workers, the rest of the run may
            # need fewer requests than --fault-reminders / 2, and the fault would then never end.
            left = self.args.fault_reminders + self.args.fault_near_start - len(self.twilio.messages)
            self._program_provider(scenario, max(min(self.args.fault_reminders // 2, left), 1))
            while self._faults_left() and time.monotonic() - started < RUN_TIMEOUT_SECONDS:
                if self._all_final():  # every row settled: the requests the fault waits for will not come
                    with self.twilio._lock:
                        self.twilio._state.faults.clear()
                    break
                time.sleep(0.05)
        return round(time.monotonic() - started, 1)

    def _program_provider(self, scenario: str, requests: int) -> None:
        from tests.fakes.twilio import _Fault

        timeout = 10  # TWILIO_TIMEOUT_SECONDS in production
        faults = []
        for number in range(requests):
            if scenario == "provider_500" and number % 10 < 3:
                faults.append(_Fault(status=500))
            elif scenario == "provider_hang" and number % 5 == 0:
                faults.append(_Fault(hang=timeout + 5, accept=number % 10 == 0))
            elif scenario == "gateway_504_after_accept" and number % 20 == 0:
                faults.append(_Fault(status=504, gateway=True))
            else:
                faults.append(_Fault())
        with self.twilio._lock:
            self.twilio._state.faults.extend(faults)

    def _all_final(self) -> bool:
        from sqlalchemy import select
        from sqlalchemy.exc import DBAPIError

        from lapins.infra.extensions import db
        from lapins.models import Message, MessageStatus

        try:
            left = db.session.scalar(select(select(Message.id).where(
                Message.status.in_([MessageStatus.PENDING, MessageStatus.QUEUED])).exists()))
            db.session.rollback()
        except DBAPIError:
            db.session.remove()
            return False
        return not left

    def _faults_left(self) -> int:
        with self.twilio._lock:
            return len(self.twilio._state.faults)

    # --- the end, and what the families got -----------------------------------------------------------------------

    def _wait_until_final(self, began: float) -> float:
        from sqlalchemy import select
        from sqlalchemy.exc import DBAPIError

        from lapins.infra.extensions import db
        from lapins.models import Message, MessageStatus

        unfinished = select(Message.id).where(Message.status.in_([MessageStatus.PENDING, MessageStatus.QUEUED])).exists()
        while True:
            try:
                left = db.session.scalar(select(unfinished))
                db.session.rollback()
            except DBAPIError:  # PostgreSQL restarting: this process's connections were cut too
                db.session.remove()
                db.engine.dispose()
                left = True
            if not left:
                return round(time.monotonic() - began, 1)
            if time.monotonic() - began > RUN_TIMEOUT_SECONDS:
                raise RuntimeError(f"rappels non terminés après {RUN_TIMEOUT_SECONDS} s :\n{self._log_tail('worker2')}")
            time.sleep(POLL_SECONDS)

    def _figures(self, rows: list[tuple[int, str, datetime, bool]], drain: float, fault_seconds: float) -> dict:
        from sqlalchemy import select

        from lapins.infra.extensions import db
        from lapins.models import Message, MessageStatus

        received = self.twilio.messages
        statuses = dict(db.session.execute(select(Message.id, Message.status)).all())
        db.session.rollback()
        got = Counter(message.to for message in received)
        first = {}
        for message in received:
            first.setdefault(message.to, message.date_created)
        lost = skipped_late = after_start = 0
        for message_id, phone, starts_at, near in rows:
            if got[phone] == 0 and not near:
                lost += 1
            if near and statuses[message_id] != MessageStatus.SENT:
                skipped_late += 1
            if phone in first and first[phone] >= starts_at:
                after_start += 1
        return {"received": len(received), "duplicates": len(received) - len({(m.to, m.body) for m in received}),
                "lost": lost, "skipped_late": skipped_late, "sent_after_start": after_start,
                "drain_seconds": drain, "fault_seconds": fault_seconds,
                "statuses": dict(Counter(str(status) for status in statuses.values()))}


def seed(count: int, near_start: int) -> list[tuple[int, str, datetime, bool]]:
    """`count` families whose rdv is in two hours and `near_start` whose rdv begins 30 s to 4 min from now, one SMS
    reminder due now each (the near ones last in line). Returns (message id, phone, rdv start, near) per row."""
    from lapins.infra.extensions import db
    from lapins.models import (
        Channel, Lieu, Message, MessageKind, MessageStatus, Motif, Organisation, Rdv, Territory, Usager, utcnow,
    )

    now = utcnow().replace(microsecond=0)
    midnight = datetime.min.time()
    territory = Territory(number="92", name="Hauts-de-Seine", sms_sender="PMI92", quiet_hours_start=midnight,
                          quiet_hours_end=midnight)
    organisation = Organisation(territory=territory, name="PMI Nanterre", phone="+33141371000")
    lieu = Lieu(organisation=organisation, name="Centre PMI", address="12 rue de la Paix, Nanterre",
                phone="+33141371010")
    motif = Motif(organisation=organisation, name="Pesée")
    db.session.add_all([territory, organisation, lieu, motif])
    db.session.flush()
    messages, nears = [], []
    for number in range(count + near_start):
        near = number >= count
        starts_at = (now + timedelta(seconds=30 + 210 * (number - count) / max(near_start - 1, 1)) if near
                     else now + timedelta(hours=2))
        usager = Usager(territory=territory, first_name="Inès", last_name=f"Durand{number}",
                        phone=f"+336{10_000_000 + number}", sms_consent=True)
        rdv = Rdv(organisation=organisation, motif=motif, lieu=lieu, starts_at=starts_at,
                  ends_at=starts_at + timedelta(minutes=30), usagers=[usager])
        nears.append(near)
        messages.append(Message(territory_id=territory.id, rdv=rdv, usager=usager, channel=Channel.SMS,
                                kind=MessageKind.REMINDER, status=MessageStatus.PENDING,
                                due_at=now - timedelta(seconds=30 if near else 60), expires_at=starts_at))
    db.session.add_all(messages)
    db.session.flush()
    rows = [(message.id, message.usager.phone, message.expires_at, near) for message, near in zip(messages, nears)]
    db.session.commit()  # read before: after the commit, each row was loaded again, one query at a time
    return rows
