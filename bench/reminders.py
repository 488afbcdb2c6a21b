"""Reminders: the outbox's due scan over 1,000,000 rows, and 20,000 due SMS sent through Redis, one Celery worker and
a loopback Twilio, then the same 20,000 again through a loopback Brevo (the second operator), each against the floor
of a no-op task on the same worker.

Its own département, in a schema beside the other measures' (`lapins_bench_reminders`, dropped at the end):
  1. seed the département (lapins.onboarding.seeding), give its territory an SMS sender;
  2. write the outbox in bulk (COPY): 20,000 SMS reminders due now for live rdvs, the pending reminders of the other
     coming rdvs, and past messages (sent, delivered, skipped, failed) up to --outbox-rows rows;
  3. time the beat's scan (outbox.due_ids) over that table;
  4. start the loopback Twilio (`python -m tests.fakes.twilio`) and `celery -A worker worker -I bench.noop`; time
     20,000 no-op tasks, then outbox.dispatch_due until the 20,000 rows are sent, then the no-op tasks again;
     check what the fake received against the rows;
  5. the same rows made due again, and sent through `python -m tests.fakes.brevo` by a worker with SMS_BACKEND=brevo
     (figures reminders.dispatch.brevo.*), timed between no-op tasks of that worker in the same way.
"""
from __future__ import annotations

import math
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Self

from sqlalchemy import and_, func, select, text
from sqlalchemy.orm import aliased

from bench.database import BenchDatabase
from bench.measure import elapsed_ms, now_ns, summary
from config import Config

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {  # figure: (at least | at most, target)
    "reminders.dispatch.msgs_per_s": ("≥", 200),
    "reminders.dispatch.floor_ratio": ("≥", 0.5),
    "reminders.dispatch.brevo.msgs_per_s": ("≥", 200),
    "reminders.dispatch.brevo.floor_ratio": ("≥", 0.5),
    "reminders.scan.ms": ("≤", 200),
}
REMINDER_HOURS = 48  # the territory's default offset (Territory.reminder_offsets)
DUE_MARGIN = timedelta(hours=2)  # rdvs reminded now start later than this: none expires during the run
PENDING_MARGIN = timedelta(hours=1)  # no other row may fall due while the run lasts
POLL_SECONDS = 0.05
DISPATCH_TIMEOUT_SECONDS = 900
CHUNK = 10_000

# What became of the messages of the past, per channel (weights in %): Twilio reports most SMS delivered.
SMS_OUTCOMES = (("delivered", 90), ("sent", 5), ("failed", 3), ("undeliverable", 2))
EMAIL_OUTCOMES = (("sent", 98), ("failed", 2))
FAILURES = {
    "failed": ("Téléphone éteint ou hors réseau : le SMS n'a pas pu être remis.", "30003"),
    "undeliverable": ("Numéro inconnu ou qui n'est plus attribué.", "30005"),
}
EMAIL_FAILURE = ("Le serveur de messagerie a refusé l'adresse.", "550")
# Stand-ins for the stored texts (width of a real row; the scan never reads them).
SMS_BODY = ("PMI Nord - Lille Sud : RAPPEL rdv lun. 12/05 a 9h30, Centre de PMI Lille, 12 rue Pasteur. "
            "Infos/annuler : https://lapins.example.org/r/1f2e3-Ab9_xY7kQz")
EMAIL_SUBJECT = "Rappel : votre rendez-vous du lundi 12 mai à 9 h 30"
EMAIL_BODY = ("Bonjour,\n\nNous vous rappelons votre rendez-vous à la PMI :\n\nLundi 12 mai à 9 h 30\n"
              "Consultation puéricultrice\nCentre de PMI Lille, 12 rue Pasteur, 59000 Lille\n\n"
              "Pour voir, annuler ou déplacer ce rendez-vous : https://lapins.example.org/r/1f2e3-Ab9_xY7kQz\n\n"
              "En cas d'empêchement, merci de prévenir au 03 20 00 00 00.\n\nPMI Nord - Lille Sud\n") * 2

COLUMNS = ("id", "territory_id", "rdv_id", "usager_id", "channel", "kind", "dedupe_key", "to_address", "subject",
           "body", "due_at", "expires_at", "status", "attempts", "queued_at", "claimed_at", "sent_at", "delivered_at",
           "provider_id", "segments", "error", "error_code", "created_at", "updated_at")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("rappels (reminders.*)")
    env = os.environ.get
    group.add_argument("--skip-reminders", action="store_true", help="sans les mesures des rappels")
    group.add_argument("--reminder-rdvs", type=int, default=int(env("BENCH_REMINDER_RDVS", 100_000)),
                       help="rdvs du département des rappels")
    group.add_argument("--reminder-usagers", type=int, default=int(env("BENCH_REMINDER_USAGERS", 200_000)),
                       help="usagers de ce département : assez de familles pour que chaque rappel aille à une autre")
    group.add_argument("--outbox-rows", type=int, default=int(env("BENCH_OUTBOX_ROWS", 1_000_000)),
                       help="lignes de la table messages pendant le balayage")
    group.add_argument("--due-reminders", type=int, default=int(env("BENCH_DUE_REMINDERS", 20_000)),
                       help="SMS de rappel échus d'un coup, envoyés par le worker")
    group.add_argument("--scan-runs", type=int, default=200)
    group.add_argument("--worker-concurrency", type=int, default=int(env("BENCH_WORKER_CONCURRENCY", 0)),
                       help="processus du worker Celery (0 : le défaut de Celery, un par cœur)")
    group.add_argument("--outbox-batch-size", type=int, default=Config.OUTBOX_BATCH_SIZE,
                       help="messages par tâche send_batch (OUTBOX_BATCH_SIZE)")
    group.add_argument("--skip-brevo", action="store_true", help="sans le second envoi, par le Brevo factice")
    group.add_argument("--outbox-fence", choices=("on", "off"), default="on",
                       help="la barrière des envois sur le Redis du broker (off : OUTBOX_FENCE_URL vide, le bail seul)")


# --- The phase ----------------------------------------------------------------------------------------------------

def bench_reminders(args, database: BenchDatabase, figures: dict, failures: list[str], log) -> None:
    """Every reminders.* figure goes into `figures` as soon as it is measured; a wrong count goes into `failures`."""
    from lapins.onboarding import seeding
    from lapins.infra.extensions import db
    from lapins.models import Territory

    redis_url = os.environ.get("BENCH_REDIS_URL")
    twin = database.twin("reminders")
    app = twin.app(CELERY_BROKER_URL=redis_url or "memory://", OUTBOX_BATCH_SIZE=args.outbox_batch_size)
    figures["reminders.env.load_average_at_start"] = [round(value, 2) for value in os.getloadavg()]
    twin.reset(app)
    try:
        with app.app_context():
            log(f"Rappels 1/5 Département de {seeding._number(args.reminder_rdvs)} rdvs et "
                f"{seeding._number(args.reminder_usagers)} usagers (schéma à part)")
            began = time.perf_counter()
            territory_id = seeding.seed_departement(rdv_count=args.reminder_rdvs, usagers=args.reminder_usagers,
                                                    progress=log.indented).territory_id
            db.session.get(Territory, territory_id).sms_sender = f"PMI{seeding.DEPARTEMENT_NUMBER}"
            db.session.commit()
            figures["reminders.seed.departement_seconds"] = round(time.perf_counter() - began, 1)

            log(f"Rappels 2/5 Table messages : {seeding._number(args.outbox_rows)} lignes, dont "
                f"{seeding._number(args.due_reminders)} rappels SMS échus")
            began = time.perf_counter()
            outbox = write_outbox(territory_id, args.outbox_rows, args.due_reminders, log.indented)
            figures["reminders.seed.outbox_seconds"] = round(time.perf_counter() - began, 1)
            figures.update({f"reminders.outbox.{key}": value for key, value in outbox.mix.items()})

            log(f"Rappels 3/5 Balayage du beat (outbox.due_ids), {args.scan_runs} fois")
            scan = time_scans(args.scan_runs, warmup=max(10, args.scan_runs // 10))
            figures.update({"reminders.scan.ms": scan["p95_ms"], **{f"reminders.scan.{k}": v for k, v in scan.items()}})
            log.indented(f"p50 {scan['p50_ms']} ms, p95 {scan['p95_ms']} ms")

        if not redis_url:
            log("Rappels 4/5 Envoi : non mesuré (BENCH_REDIS_URL absent : il faut Redis, lancez `make bench`)")
            return
        concurrency = args.worker_concurrency or os.cpu_count()
        log(f"Rappels 4/5 Envoi de {seeding._number(len(outbox.due_ids))} SMS : Redis, un worker Celery "
            f"({concurrency} processus), Twilio factice")
        figures.update(measure_dispatch(app, twin, redis_url, outbox, concurrency, args.outbox_batch_size, failures,
                                        log.indented, fence=args.outbox_fence == "on"))
        if args.skip_brevo:
            return
        log(f"Rappels 5/5 Les mêmes {seeding._number(len(outbox.due_ids))} SMS à nouveau, par Brevo factice")
        make_due_again(app, outbox.due_ids)
        figures.update(measure_dispatch(app, twin, redis_url, outbox, concurrency, args.outbox_batch_size, failures,
                                        log.indented, operator="brevo", fence=args.outbox_fence == "on"))
    finally:
        twin.drop(app)


def print_verdict(figures: dict) -> None:
    print("Rappels (cibles sur PostgreSQL) :", file=sys.stderr)
    for key, (sign, target) in TARGETS.items():
        value = figures.get(key)
        met = value is not None and (value >= target if sign == "≥" else value <= target)
        verdict = "non mesuré" if value is None else "OK" if met else "MANQUÉ"
        print(f"  {key:<42} {value if value is not None else '—':>10}   cible {sign} {target:<5} {verdict}",
              file=sys.stderr)


# --- The outbox table ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Booked:
    """An rdv as the outbox sees it: when, whether it still holds, and who gets its SMS and e-mails."""

    rdv_id: int
    starts_at: datetime
    created_at: datetime
    cancelled_at: datetime | None
    revoked: bool
    revision: int
    sms: tuple[int, str] | None  # (usager id, phone) of the person texted, as outbox.recipients picks them
    email: tuple[int, str] | None


@dataclass
class Outbox:
    due_ids: list[int]
    mix: dict


def booked_rdvs(territory_id: int) -> list[Booked]:
    """Every rdv of the territory with a notified motif, and its SMS and e-mail recipients (the usager, or for a
    child the responsible person: outbox.sms_address and email_address in SQL)."""
    from lapins.infra.extensions import db
    from lapins.models import Motif, Organisation, Rdv, RdvStatus, Usager
    from lapins.models.rdvs import rdv_usagers

    person, responsible = aliased(Usager), aliased(Usager)
    rows = db.session.execute(
        select(Rdv.id, Rdv.starts_at, Rdv.created_at, Rdv.cancelled_at, Rdv.status, Rdv.revision,
               person.id, person.phone, person.sms_consent, person.phone_undeliverable_at, person.email,
               person.email_consent, responsible.id, responsible.phone, responsible.sms_consent,
               responsible.phone_undeliverable_at, responsible.email, responsible.email_consent)
        .join(Organisation, Organisation.id == Rdv.organisation_id)
        .join(Motif, and_(Motif.id == Rdv.motif_id, Motif.notify.is_(True)))
        .join(rdv_usagers, rdv_usagers.c.rdv_id == Rdv.id)
        .join(person, person.id == rdv_usagers.c.usager_id)
        .outerjoin(responsible, responsible.id == person.responsible_id)
        .where(Organisation.territory_id == territory_id)
        .order_by(Rdv.id))
    booked: dict[int, Booked] = {}
    for (rdv_id, starts_at, created_at, cancelled_at, status, revision, *people) in rows:
        if rdv_id in booked:
            continue  # one recipient per rdv is enough here
        sms = email = None
        for usager_id, phone, sms_consent, undeliverable, address, email_consent in (people[:6], people[6:]):
            if usager_id is None:
                continue
            if sms is None and phone and sms_consent and undeliverable is None:
                sms = (usager_id, phone)
            if email is None and address and email_consent:
                email = (usager_id, address)
        booked[rdv_id] = Booked(rdv_id, starts_at, created_at, cancelled_at, status == RdvStatus.REVOKED,
                                revision, sms, email)
    db.session.rollback()
    return list(booked.values())


def pick_due(future: list[Booked], count: int, now: datetime) -> list[Booked]:
    """The live rdvs whose SMS reminder falls due now: the soonest first, one per family as far as they go."""
    candidates = sorted((b for b in future if b.sms and b.cancelled_at is None and b.starts_at > now + DUE_MARGIN),
                        key=lambda b: (b.starts_at, b.rdv_id))
    chosen, families, others = [], set(), []
    for booked in candidates:
        if booked.sms[0] in families:
            others.append(booked)
        elif len(chosen) < count:
            chosen.append(booked)
            families.add(booked.sms[0])
    chosen += others[:count - len(chosen)]
    if len(chosen) < count:
        raise RuntimeError(f"seulement {len(chosen)} rdvs à venir avec un SMS possible pour {count} rappels : "
                           "augmenter --reminder-rdvs")
    return chosen


@dataclass(frozen=True)
class Planned:
    """One message of an rdv as it ended: `at` is when it was sent or skipped; status None is drawn at writing
    (what the provider answered)."""

    channel: str
    kind: str
    key: str
    due_at: datetime
    status: str | None = None
    at: datetime | None = None


def planned(booked: Booked, now: datetime, replay: str = "", sms_due_at: datetime | None = None) -> list[Planned]:
    """The messages booking an rdv plans (outbox.plan_for_rdv: confirmation, 48 h reminder; a cancellation by the
    service), each as it ended by `now`. A reminder due later (with a margin) is still pending; `sms_due_at` makes
    the SMS reminder pending and due then."""
    keys = f"{booked.rdv_id}:{booked.revision}{replay}"
    messages = []
    for channel, recipient in (("sms", booked.sms), ("email", booked.email)):
        if recipient is None:
            continue
        suffix = f"{channel}:{recipient[0]}"
        messages.append(Planned(channel, "created", f"created:{keys}:{suffix}", booked.created_at,
                                at=booked.created_at))
        reminder = f"reminder:{keys}:{REMINDER_HOURS}:{suffix}"
        due = booked.starts_at - timedelta(hours=REMINDER_HOURS)
        if channel == "sms" and sms_due_at is not None:
            messages.append(Planned(channel, "reminder", reminder, sms_due_at, "pending"))
        elif due <= booked.created_at:
            pass  # booked too late for a reminder: the confirmation told the family
        elif booked.cancelled_at is not None and booked.cancelled_at <= due:
            messages.append(Planned(channel, "reminder", reminder, due, "skipped", booked.cancelled_at))
        elif due > now + PENDING_MARGIN:
            messages.append(Planned(channel, "reminder", reminder, due, "pending"))
        else:
            messages.append(Planned(channel, "reminder", reminder, due, at=min(due, now)))
        if booked.revoked and channel == "sms":
            messages.append(Planned(channel, "cancelled", f"cancelled:{keys}:{suffix}", booked.cancelled_at,
                                    at=booked.cancelled_at))
    return messages


class RowWriter:
    """Message rows as tuples in COLUMNS order, ids in writing order, sent by seeding's bulk sink (COPY)."""

    def __init__(self, territory_id: int, rng: random.Random):
        from lapins.models import Message
        from lapins.onboarding.seeding import _BulkSink, _next_id

        self.sink = _BulkSink()
        self.next_id = _next_id(Message.__table__)
        self.territory_id, self.rng = territory_id, rng
        self.rows: list[tuple] = []
        self.statuses: Counter = Counter()

    def add(self, booked: Booked, message: Planned, shift: timedelta = timedelta(0)) -> int:
        """Writes one message; `shift` moves all its instants back (a replayed past)."""
        row_id, self.next_id = self.next_id, self.next_id + 1
        channel, status = message.channel, message.status or self._outcome(message.channel)
        usager_id, address = booked.sms if channel == "sms" else booked.email
        at = message.at - shift if message.at else None
        subject = body = provider_id = segments = queued_at = sent_at = delivered_at = error = error_code = None
        attempts = 0
        if status == "skipped":
            error = "Rendez-vous annulé"
        elif status != "pending":
            attempts, queued_at, sent_at = 1, at, at
            body, subject = (SMS_BODY, None) if channel == "sms" else (EMAIL_BODY, EMAIL_SUBJECT)
            provider_id = f"SM{row_id:032x}" if channel == "sms" else f"lapins-message-{row_id}"
            segments = 1 if channel == "sms" else None
            if status == "delivered":
                delivered_at = at + timedelta(seconds=self.rng.randint(2, 40))
            elif status in ("failed", "undeliverable"):
                error, error_code = FAILURES[status] if channel == "sms" else EMAIL_FAILURE
                provider_id = sent_at = None if status == "undeliverable" else sent_at
        instant = self.sink.instant
        created_at = min(booked.created_at, message.due_at) - shift
        self.rows.append((
            row_id, self.territory_id, booked.rdv_id, usager_id, channel, message.kind, message.key,
            address if body else None, subject, body, instant(message.due_at - shift),
            instant(booked.starts_at - shift), status, attempts, instant(queued_at), None, instant(sent_at),
            instant(delivered_at), provider_id, segments, error, error_code, instant(created_at),
            instant(at or created_at)))
        self.statuses[status] += 1
        if len(self.rows) >= CHUNK:
            self.flush()
        return row_id

    def _outcome(self, channel: str) -> str:
        outcomes = SMS_OUTCOMES if channel == "sms" else EMAIL_OUTCOMES
        return self.rng.choices([name for name, _ in outcomes], weights=[weight for _, weight in outcomes])[0]

    def flush(self) -> None:
        self.sink.insert("messages", COLUMNS, self.rows)
        self.rows = []


@contextmanager
def indexes_built_after(table):
    """A bulk load that neither updates the table's secondary indexes nor checks its foreign keys row by row: each
    index is built once at the end (as fresh as after a REINDEX), each foreign key checked in one pass (PostgreSQL;
    SQLite cannot drop a constraint). The primary key and unique constraints stay."""
    from sqlalchemy.schema import AddConstraint, DropConstraint

    from lapins.infra.extensions import db

    connection = db.session.connection()
    foreign_keys = list(table.foreign_key_constraints) if connection.dialect.name == "postgresql" else []
    for constraint in foreign_keys:
        connection.execute(DropConstraint(constraint))
    for index in table.indexes:
        index.drop(connection)
    yield
    for index in table.indexes:
        index.create(connection)
    for constraint in foreign_keys:
        connection.execute(AddConstraint(constraint))


def write_outbox(territory_id: int, total: int, due_count: int, log) -> Outbox:
    """The messages table at `total` rows: the past first (lowest ids), then the coming rdvs' messages, among them
    `due_count` SMS reminders due within the last minute. The département's past covers a few months: it is
    replayed further back in time, one span of weeks per replay, as many times as the total needs; the oldest replay
    is cut short so that the table holds exactly `total` rows."""
    from lapins.infra.extensions import db
    from lapins.models import Message, MessageStatus, utcnow
    from lapins.onboarding.seeding import _sync_sequence

    now = utcnow()
    rng = random.Random(20_260_501)
    bookings = booked_rdvs(territory_id)
    past = [b for b in bookings if b.starts_at <= now]
    future = sorted((b for b in bookings if b.starts_at > now), key=lambda b: (b.created_at, b.rdv_id))
    due = {b.rdv_id: now - timedelta(seconds=rng.uniform(0, 60)) for b in pick_due(future, due_count, now)}
    coming = [(b, planned(b, now, sms_due_at=due.get(b.rdv_id))) for b in future]
    history_rows = total - sum(len(messages) for _, messages in coming)
    per_replay = sum(len(planned(b, now)) for b in past)
    if history_rows < 0 or per_replay == 0:
        raise RuntimeError(f"{total} lignes ne suffisent pas aux rdvs à venir : augmenter --outbox-rows")
    replays = math.ceil(history_rows / per_replay)
    span = timedelta(weeks=(now - min(b.starts_at for b in past)).days // 7 + 1)
    skip = replays * per_replay - history_rows
    writer = RowWriter(territory_id, rng)
    due_ids = []
    with indexes_built_after(Message.__table__):
        for replay in reversed(range(replays)):
            for booked in past:
                messages = planned(booked, now, f"#{replay}" if replay else "")
                if skip:
                    cut = min(skip, len(messages))
                    messages, skip = messages[cut:], skip - cut
                for message in messages:
                    writer.add(booked, message, span * replay)
        for booked, messages in coming:
            for message in messages:
                row_id = writer.add(booked, message)
                if message.status == "pending" and message.due_at <= now:
                    due_ids.append(row_id)
        writer.flush()
    _sync_sequence(Message.__table__)
    db.session.commit()
    db.session.execute(text("ANALYZE messages"))
    db.session.commit()
    rows = db.session.scalar(select(func.count()).select_from(Message))
    pending_due = db.session.scalar(select(func.count()).where(Message.status == MessageStatus.PENDING,
                                                               Message.due_at <= now))
    db.session.rollback()
    if rows != total or pending_due != len(due_ids) or len(due_ids) != due_count:
        raise RuntimeError(f"table messages : {rows} lignes dont {pending_due} échues ({len(due_ids)} écrites), "
                           f"attendu {total} et {due_count}")
    log(f"{rows} lignes, {dict(sorted(writer.statuses.items()))} ; passé rejoué {replays} fois "
        f"({len(past)} rdvs passés, {len(future)} à venir)")
    return Outbox(due_ids, {"rows": rows, "due_rows": len(due_ids), "statuses": dict(sorted(writer.statuses.items())),
                            "history_replays": replays, "due_recipients": len({b.sms[0] for b in future
                                                                               if b.rdv_id in due})})


# --- The beat's scan ----------------------------------------------------------------------------------------------

def time_scans(runs: int, warmup: int) -> dict:
    """outbox.due_ids as claim_due runs it (SELECT … FOR UPDATE SKIP LOCKED, CLAIM_CHUNK rows), each followed by a
    COMMIT that claims nothing, so that every scan finds the same due rows."""
    from lapins.infra.extensions import db
    from lapins.models import utcnow
    from lapins.notifications import outbox

    now = utcnow()
    timings, found = [], 0
    for run in range(warmup + runs):
        began = now_ns()
        found = len(outbox.due_ids(now, outbox.CLAIM_CHUNK))
        took = elapsed_ms(began)
        db.session.commit()
        if run >= warmup:
            timings.append(took)
    figures = summary(timings)
    return {"p50_ms": figures["p50_ms"], "p95_ms": figures["p95_ms"], "p99_ms": figures["p99_ms"],
            "runs": figures["runs"], "rows_found": found}


# --- Sending: Redis, one worker, the loopback Twilio --------------------------------------------------------------

class TwilioFakeProcess:
    """`python -m tests.fakes.twilio` in a process of its own, with credentials made up for this run."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.account_sid, self.auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        from tests.services import dying_with_this_process

        command = [sys.executable, "-m", "tests.fakes.twilio", "--port", "0", "--account-sid", self.account_sid,
                   "--auth-token", self.auth_token]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(dying_with_this_process(command), cwd=ROOT, stdout=subprocess.PIPE,
                                            stderr=log, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        line = self.process.stdout.readline()  # the fake prints its port once it listens
        if not line.strip().isdigit():
            raise RuntimeError(f"le faux Twilio n'a pas démarré : {self.log_path.read_text()[-2000:]}")
        self.port = int(line)
        return self

    def __exit__(self, *exc) -> None:
        from tests.services import stop_process

        stop_process(self.process)

    def received(self) -> list[dict]:
        """Every message the fake accepted, read through its list API as a Twilio client would."""
        import requests

        messages, page = [], 0
        while True:
            response = requests.get(f"{self.url}/2010-04-01/Accounts/{self.account_sid}/Messages.json",
                                    params={"PageSize": 1000, "Page": page},
                                    auth=(self.account_sid, self.auth_token), timeout=60)
            response.raise_for_status()
            payload = response.json()
            messages += payload["messages"]
            if not payload["next_page_uri"]:
                return messages
            page += 1


class BrevoFakeProcess:
    """`python -m tests.fakes.brevo` in a process of its own, with an API key made up for this run."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.api_key = f"xkeysib-{secrets.token_hex(32)}-{secrets.token_hex(8)}"
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    def __enter__(self) -> Self:
        from tests.services import dying_with_this_process

        command = [sys.executable, "-m", "tests.fakes.brevo", "--port", "0", "--api-key", self.api_key]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(dying_with_this_process(command), cwd=ROOT, stdout=subprocess.PIPE,
                                            stderr=log, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"le faux Brevo n'a pas démarré : {self.log_path.read_text()[-2000:]}")
        self.port = int(line)
        return self

    def __exit__(self, *exc) -> None:
        from tests.services import stop_process

        stop_process(self.process)

    def received(self) -> list[dict]:
        """Every SMS the fake accepted (its own listing: Brevo's API lists events, not texts), shaped like the
        Twilio fake's messages for dispatch_figures."""
        import requests

        response = requests.get(f"http://127.0.0.1:{self.port}/_fake/messages", timeout=60)
        response.raise_for_status()
        return [{"sid": str(m["messageId"]), "to": m["to"], "body": m["content"], "num_segments": str(m["smsCount"])}
                for m in response.json()]


def make_due_again(app, due_ids: list[int]) -> None:
    """The rows just sent, pending and due again as before their first send (their texts kept)."""
    from sqlalchemy import update

    from lapins.infra.extensions import db
    from lapins.models import Message, MessageStatus

    with app.app_context():
        for start in range(0, len(due_ids), CHUNK):
            db.session.execute(
                update(Message).where(Message.id.in_(due_ids[start:start + CHUNK]))
                .values(status=MessageStatus.PENDING, attempts=0, queued_at=None, claimed_at=None, sent_at=None,
                        provider_id=None, segments=None, error=None, error_code=None)
                .execution_options(synchronize_session=False))
        db.session.commit()


class CeleryWorker:
    """One `celery -A worker worker` as the Procfile starts it (prefork), with the bench's no-op task included."""

    def __init__(self, env: dict, concurrency: int, log_path: Path):
        self.env, self.log_path = env, log_path
        self.command = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-I", "bench.noop",
                        "--pool=prefork", f"--concurrency={concurrency}", "--loglevel=WARNING",
                        "--hostname=bench-reminders@%h"]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        from tests.services import dying_with_this_process

        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(dying_with_this_process(self.command), cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        return self

    def __exit__(self, *exc) -> None:
        from tests.services import stop_process

        stop_process(self.process)  # SIGTERM: a warm shutdown, the tasks under way finish

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"le worker Celery s'est arrêté (code {self.process.returncode}) :\n"
                               f"{self.log_path.read_text(errors='replace')[-3000:]}")


class Broker:
    """The Redis the tasks go through, watched directly: a task is done once it has left both the queue and the
    hash of unacknowledged messages (kombu's Redis transport; tasks are acknowledged after they ran, acks_late)."""

    def __init__(self, url: str, worker: CeleryWorker):
        import redis

        self.redis, self.worker = redis.Redis.from_url(url), worker

    def busy(self) -> bool:
        return bool(self.redis.llen("celery") or self.redis.hlen("unacked"))

    def wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.busy():
            self.worker.check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"les tâches n'ont pas toutes été exécutées en {timeout:.0f} s")
            time.sleep(0.005)


def time_noop_tasks(celery, broker: Broker, count: int) -> float:
    """`count` no-op tasks sent one by one as outbox.dispatch_due sends its batches (Task.delay), from the first
    send until the worker has acknowledged the last one: tasks per second."""
    from bench.noop import NAME

    task = celery.tasks[NAME]
    began = time.perf_counter()
    for index in range(count):
        task.delay([index])
    broker.wait_idle(timeout=600)
    return count / (time.perf_counter() - began)


def time_dispatch(app, due_ids: list[int], worker: CeleryWorker) -> dict:
    """outbox.dispatch_due in this process (claim, commit, hand batches to Redis), then the database polled until
    no due row is left queued or pending: the worker has sent them all (or given up on some). Meanwhile this process
    plays the beat, every OUTBOX_DISPATCH_SECONDS."""
    from sqlalchemy import or_
    from sqlalchemy.exc import OperationalError

    from lapins.infra.extensions import db
    from lapins.models import Message, MessageStatus, utcnow
    from lapins.notifications import outbox

    with app.app_context():
        now = utcnow()
        # Two EXISTS on the (status, due_at) index: each poll stops at the first row it finds, so polling costs
        # the machine next to nothing (a count, or an OR of both, would read the table every time).
        left = select(or_(
            select(Message.id).where(Message.status == MessageStatus.QUEUED).exists(),
            select(Message.id).where(Message.status == MessageStatus.PENDING, Message.due_at <= now).exists()))
        began = time.perf_counter()
        handed = outbox.dispatch_due()
        handed_seconds = time.perf_counter() - began
        beat_every = app.config["OUTBOX_DISPATCH_SECONDS"]
        next_beat = time.perf_counter() + beat_every
        while db.session.scalar(left):
            db.session.commit()
            worker.check_running()
            if time.perf_counter() >= next_beat:
                # The beat's run, as in production: a send without a clear answer is asked about after its lease,
                # a message given back is due again. Without it such a row kept the bench waiting to its timeout.
                try:
                    outbox.dispatch_due()
                except OperationalError:  # as in production, a failed run is the next one's to redo
                    db.session.rollback()
                next_beat = time.perf_counter() + beat_every
            if time.perf_counter() - began > DISPATCH_TIMEOUT_SECONDS:
                raise RuntimeError(f"rappels non envoyés après {DISPATCH_TIMEOUT_SECONDS} s")
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - began
        rows = db.session.execute(
            select(Message.id, Message.status, Message.to_address, Message.body, Message.provider_id,
                   Message.segments, Message.attempts).where(Message.id.in_(due_ids))).all()
        db.session.rollback()
    return {"handed": handed, "handed_seconds": handed_seconds, "seconds": seconds, "rows": rows}


OPERATOR_NAMES = {"twilio": "Twilio", "brevo": "Brevo"}


def measure_dispatch(app, twin: BenchDatabase, redis_url: str, outbox: Outbox, concurrency: int, batch_size: int,
                     failures: list[str], log, operator: str = "twilio", fence: bool = True) -> dict:
    """The due rows sent through the loopback fake of `operator`, between two runs of no-op tasks on the same
    worker; Twilio's figures are reminders.dispatch.*, another operator's reminders.dispatch.<operator>.*."""
    celery = app.extensions["celery"]
    import bench.noop  # noqa: F401  (the no-op task, for Task.delay here as in the worker)

    count = len(outbox.due_ids)
    name = OPERATOR_NAMES[operator]
    fake_process = TwilioFakeProcess if operator == "twilio" else BrevoFakeProcess
    with (tempfile.TemporaryDirectory(prefix="lapins-bench-reminders-") as directory,
          fake_process(Path(directory) / f"{operator}.log") as fake):
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("CELERY_", "LAPINS_", "TWILIO_", "BREVO_", "SMS_", "OUTBOX_"))}
        env.update({"LAPINS_ENV": "production", "SECRET_KEY": secrets.token_hex(32),
                    "DATABASE_URL": twin.process_url, "CELERY_BROKER_URL": redis_url, "SMS_BACKEND": operator,
                    "OUTBOX_BATCH_SIZE": str(batch_size), "LOG_LEVEL": "WARNING",
                    "PUBLIC_URL": "https://lapins.example.org"})
        if not fence:
            env["OUTBOX_FENCE_URL"] = ""
        if operator == "twilio":
            env.update({"TWILIO_ACCOUNT_SID": fake.account_sid, "TWILIO_AUTH_TOKEN": fake.auth_token,
                        "TWILIO_BASE_URL": fake.url})
        else:
            env.update({"BREVO_API_KEY": fake.api_key, "BREVO_BASE_URL": fake.url})
        with CeleryWorker(env, concurrency, Path(directory) / "worker.log") as worker:
            broker = Broker(redis_url, worker)
            if broker.busy():
                raise RuntimeError("la file Redis n'est pas vide au départ")
            log(f"{name} factice sur 127.0.0.1:{fake.port} ; worker : {' '.join(worker.command[1:])}")
            with app.app_context():
                time_noop_tasks(celery, broker, 200)  # the worker is up and warm
                noop = [time_noop_tasks(celery, broker, count)]
            log(f"{count} tâches vides : {noop[0]:.0f} par seconde")
            dispatch = time_dispatch(app, outbox.due_ids, worker)
            log(f"{count} SMS envoyés en {dispatch['seconds']:.1f} s "
                f"(réclamés et confiés à Redis en {dispatch['handed_seconds']:.1f} s)")
            with app.app_context():
                noop.append(time_noop_tasks(celery, broker, count))
            log(f"{count} tâches vides : {noop[1]:.0f} par seconde")
        received = fake.received()
    figures = dispatch_figures(dispatch, received, noop, count, concurrency, batch_size, worker.command, failures, log,
                               operator=name)
    if operator == "twilio":
        return figures
    return {key.replace("reminders.dispatch.", f"reminders.dispatch.{operator}.", 1): value
            for key, value in figures.items()}


def dispatch_figures(dispatch: dict, received: list[dict], noop: list[float], count: int, concurrency: int,
                     batch_size: int, command: list[str], failures: list[str], log, operator: str = "Twilio") -> dict:
    """The rates, and the rows checked against what the fake received: each row sent once, in one segment."""
    rows = dispatch["rows"]
    sent = [row for row in rows if row.status == "sent"]
    by_sid = {message["sid"]: message for message in received}
    matched = sum(1 for row in sent if (message := by_sid.get(row.provider_id))
                  and message["to"] == row.to_address and message["body"] == row.body)
    duplicates = len(received) - len({(message["to"], message["body"]) for message in received})
    multi_segment = (sum(1 for message in received if message["num_segments"] != "1")
                     + sum(1 for row in sent if row.segments != 1))
    statuses = Counter(str(row.status) for row in rows)
    rate = len(sent) / dispatch["seconds"]
    noop_rate = sum(noop) / len(noop)
    figures = {
        "reminders.dispatch.msgs_per_s": round(rate, 1),
        "reminders.dispatch.floor_ratio": round(rate / noop_rate, 3),
        "reminders.dispatch.noop_tasks_per_s": round(noop_rate, 1),
        "reminders.dispatch.noop_runs_tasks_per_s": [round(value, 1) for value in noop],
        "reminders.dispatch.seconds": round(dispatch["seconds"], 2),
        "reminders.dispatch.handed_seconds": round(dispatch["handed_seconds"], 2),
        "reminders.dispatch.sms": count,
        "reminders.dispatch.tasks": math.ceil(count / batch_size),
        "reminders.dispatch.errors": len(rows) - len(sent),
        "reminders.dispatch.statuses": dict(sorted(statuses.items())),
        "reminders.dispatch.attempts_over_one": sum(1 for row in rows if row.attempts != 1),
        "reminders.dispatch.fake_received": len(received),
        "reminders.dispatch.fake_matched": matched,
        "reminders.dispatch.duplicates": duplicates,
        "reminders.dispatch.multi_segment": multi_segment,
        "reminders.dispatch.recipients": len({message["to"] for message in received}),
        "reminders.dispatch.config": {
            "broker": "redis", "pool": "prefork", "concurrency": concurrency, "cpu_count": os.cpu_count(),
            "outbox_batch_size": batch_size, "worker_prefetch_multiplier": 1, "task_acks_late": True,
            "command": " ".join(["celery", *command[3:]]),
        },
    }
    checks = {
        "réclamés par dispatch_due": (dispatch["handed"], count), "lignes envoyées": (len(sent), count),
        f"SMS reçus par le faux {operator}": (len(received), count), "reçus qui sont ceux des lignes": (matched, count),
        "doublons": (duplicates, 0), "SMS de plus d'un segment": (multi_segment, 0),
    }
    for what, (value, expected) in checks.items():
        if value != expected:
            failures.append(f"rappels ({operator}) : {what} = {value}, attendu {expected}")
    log(f"{operator} : {rate:.0f} SMS/s, tâche vide {noop_rate:.0f}/s : rapport {rate / noop_rate:.2f} ; "
        f"{len(received)} reçus, {duplicates} doublon(s), états {dict(statuses)}")
    return figures
