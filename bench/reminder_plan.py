"""The J-3 + J-1 plan (issue 18): how long planning two reminders per rdv takes.

Two figures, `python -m bench.reminder_plan` alone or within `python -m bench` (`--only reminder-plan`):
  1. `reminder_plan.instants`: the instants of the J-3 and J-1 SMS reminders of --plan-rdvs rdvs (1,000,000 by
     default) spread over a year of Europe/Paris wall times (both DST changes), quiet hours 20:00–08:30 moving
     reminders earlier: lapins.notifications.timing alone, the arithmetic every booking does;
  2. `reminder_plan.outbox`: the outbox rows of --plan-outbox-rdvs rdvs (20,000 by default) written as a booking
     writes them (outbox.plan_for_rdv: confirmation, J-3 and J-1, by SMS and e-mail), committed by 1,000, in a
     schema of its own (`lapins_bench_reminder_plan`, dropped at the end).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import date, datetime, time as clock_time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.orm import selectinload

from bench.database import BenchDatabase
from bench.results import merge_results

PARIS = ZoneInfo("Europe/Paris")
OFFSETS = (72, 24)
QUIET = (clock_time(20, 0), clock_time(8, 30))
YEAR_START = date(2026, 1, 1)
CHUNK = 1_000


def add_arguments(parser) -> None:
    group = parser.add_argument_group("plan J-3 + J-1 (reminder_plan.*)")
    env = os.environ.get
    group.add_argument("--plan-rdvs", type=int, default=int(env("BENCH_PLAN_RDVS", 1_000_000)),
                       help="rdvs dont on calcule les instants des rappels J-3 et J-1")
    group.add_argument("--plan-outbox-rdvs", type=int, default=int(env("BENCH_PLAN_OUTBOX_RDVS", 20_000)),
                       help="rdvs dont on écrit les lignes de la table messages comme une réservation")


def wall_times(count: int, seed: int = 18) -> list[datetime]:
    """`count` rdv starts on the quarter-hour between 07:00 and 18:45, Paris time, over 2026 (UTC instants)."""
    chosen = random.Random(seed)
    starts = []
    for _ in range(count):
        day = YEAR_START + timedelta(days=chosen.randrange(365))
        minutes = 7 * 60 + 15 * chosen.randrange(48)
        starts.append(datetime.combine(day, clock_time(minutes // 60, minutes % 60), PARIS).astimezone(timezone.utc))
    return starts


def time_instants(count: int) -> dict:
    from lapins.notifications import timing

    starts = wall_times(count)
    now = datetime.combine(YEAR_START, clock_time(0), PARIS).astimezone(timezone.utc) - timedelta(days=7)
    planned = earlier = 0
    began = time.perf_counter()
    for starts_at in starts:
        for hours in OFFSETS:
            due = timing.reminder_due(starts_at, hours, PARIS)
            at = timing.reminder_time(due, now=now, tz=PARIS, quiet_start=QUIET[0], quiet_end=QUIET[1])
            if at is not None:
                planned += 1
                earlier += at < due
    seconds = time.perf_counter() - began
    return {"rdvs": count, "reminders": planned, "moved_earlier": earlier, "seconds": round(seconds, 2),
            "rdvs_per_s": round(count / seconds) if seconds else None}


def time_outbox(database: BenchDatabase, count: int, log) -> dict:
    from lapins.infra.extensions import db
    from lapins.models import (
        Agent, Lieu, Message, MessageKind, Motif, Organisation, Rdv, RdvStatus, Territory, Usager,
    )
    from lapins.models.rdvs import RdvAgent, rdv_usagers
    from lapins.notifications import outbox
    from lapins.onboarding.seeding import DEPARTEMENT_NUMBER

    twin = database.twin("reminder_plan")
    app = twin.app(CELERY_BROKER_URL="memory://")
    twin.reset(app)
    try:
        with app.app_context():
            territory = Territory(number=DEPARTEMENT_NUMBER, name="Banc J-3 J-1", timezone="Europe/Paris",
                                  reminder_offsets="72,24", quiet_hours_start=QUIET[0], quiet_hours_end=QUIET[1])
            organisation = Organisation(territory=territory, name="PMI du banc")
            lieu = Lieu(organisation=organisation, name="Centre de PMI", address="1 place de la Mairie")
            motif = Motif(organisation=organisation, name="Pesée", duration_minutes=30)
            agent = Agent(email="banc.plan@example.org", first_name="Banc", last_name="Plan")
            db.session.add_all([territory, organisation, lieu, motif, agent])
            db.session.commit()
            log(f"Plan J-3 + J-1 : {count} rdvs et leurs familles")
            usager_ids = list(db.session.scalars(insert(Usager).returning(Usager.id), [
                {"territory_id": territory.id, "first_name": "Prénom", "last_name": f"Famille {index}",
                 "phone": f"+3361{index:07d}", "sms_consent": True, "email": f"famille{index}@example.org",
                 "email_consent": True} for index in range(count)]))
            starts = sorted(wall_times(count))
            rdv_ids = list(db.session.scalars(insert(Rdv).returning(Rdv.id), [
                {"organisation_id": organisation.id, "motif_id": motif.id, "lieu_id": lieu.id, "starts_at": start,
                 "ends_at": start + timedelta(minutes=30), "status": RdvStatus.UNKNOWN} for start in starts]))
            db.session.execute(insert(rdv_usagers), [{"rdv_id": rdv_id, "usager_id": usager_id}
                                                     for rdv_id, usager_id in zip(rdv_ids, usager_ids)])
            db.session.execute(insert(RdvAgent), [{"rdv_id": rdv_id, "agent_id": agent.id, "starts_at": start,
                                                   "ends_at": start + timedelta(minutes=30), "live": True}
                                                  for rdv_id, start in zip(rdv_ids, starts)])
            db.session.commit()
            now = datetime.combine(YEAR_START, clock_time(0), PARIS).astimezone(timezone.utc) - timedelta(days=7)
            log("Plan J-3 + J-1 : lignes de la table messages écrites comme à la réservation")
            began = time.perf_counter()
            for first in range(0, len(rdv_ids), CHUNK):
                rdvs = db.session.scalars(
                    select(Rdv).where(Rdv.id.in_(rdv_ids[first:first + CHUNK]))
                    .options(selectinload(Rdv.usagers).selectinload(Usager.responsible), selectinload(Rdv.motif),
                             selectinload(Rdv.organisation).selectinload(Organisation.territory))).all()
                for rdv in rdvs:
                    outbox.plan_for_rdv(rdv, MessageKind.CREATED, now=now)
                db.session.commit()
            seconds = time.perf_counter() - began
            rows = db.session.query(Message).count()
            reminders = db.session.query(Message).filter(Message.kind == MessageKind.REMINDER).count()
            db.session.rollback()
        return {"rdvs": count, "rows": rows, "reminders": reminders, "seconds": round(seconds, 2),
                "rdvs_per_s": round(count / seconds) if seconds else None}
    finally:
        twin.drop(app)


def bench_reminder_plan(args, database: BenchDatabase, figures: dict, log) -> None:
    log(f"Plan J-3 + J-1 : instants des rappels de {args.plan_rdvs} rdvs")
    figures.update({f"reminder_plan.instants.{key}": value for key, value in time_instants(args.plan_rdvs).items()})
    if args.plan_outbox_rdvs:
        figures.update({f"reminder_plan.outbox.{key}": value
                        for key, value in time_outbox(database, args.plan_outbox_rdvs, log).items()})


def print_verdict(figures: dict) -> None:
    if "reminder_plan.instants.seconds" not in figures:
        return
    print(f"  reminder_plan : {figures['reminder_plan.instants.reminders']} rappels J-3/J-1 pour "
          f"{figures['reminder_plan.instants.rdvs']} rdvs calculés en {figures['reminder_plan.instants.seconds']} s",
          file=sys.stderr)
    if "reminder_plan.outbox.seconds" in figures:
        print(f"  reminder_plan : {figures['reminder_plan.outbox.rows']} lignes pour "
              f"{figures['reminder_plan.outbox.rdvs']} rdvs écrites en {figures['reminder_plan.outbox.seconds']} s "
              f"({figures['reminder_plan.outbox.rdvs_per_s']} rdvs/s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reminder_plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    database = BenchDatabase.from_environment(log)
    figures: dict = {}
    try:
        bench_reminder_plan(args, database, figures, log)
    finally:
        database.cleanup()
    merged = merge_results(figures)
    print(json.dumps({key: merged[key] for key in sorted(figures)}, indent=2, ensure_ascii=False))
    print_verdict(merged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
