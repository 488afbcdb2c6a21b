"""Agents' calendars: `calendar.ics_feed` (p95 of the secret ICS feed of an agent with six months of rdvs, through
the Flask app: polls, 304 revalidations, the first poll after a change, the first in a new process) and `caldav.push` (changes written per second to a loopback
Radicale through the durable queue, lapins.calendars.push).

`python -m bench.calendars`, or the last part of `make bench` (`--only calendars`): BENCH_DATABASE_URL, else a temporary SQLite file; its own
département (the benchmark's number), the tables emptied first. Figures merged into bench/results/latest.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from bench.database import BenchDatabase
from bench.measure import elapsed_ms, now_ns, summary
from bench.results import merge_results

TARGETS = {  # figure: (at least | at most, target)
    "calendar.ics_feed.p95_ms": ("≤", 50),  # polls: the body kept per process under its ETag
    "calendar.ics_feed_cold.p95_ms": ("≤", 300),  # the first poll after a change: the body built again
    # Against the floor: the same number of PUTs of ready-made bodies, straight to the server with the same client.
    "caldav.push.floor_ratio": ("≥", 0.5),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seed(rdvs_per_day: int):
    """One agent, rdvs every working day from 30 days back to six months ahead, one absence a week."""
    from lapins.calendars import feeds
    from lapins.infra.extensions import db
    from lapins.models import (
        Absence, Agent, AgentRole, Lieu, Motif, Organisation, Rdv, RdvStatus, Role, Territory, Usager,
    )
    from lapins.onboarding.seeding import DEPARTEMENT_NUMBER

    territory = Territory(number=DEPARTEMENT_NUMBER, name="Banc d'essai", timezone="Europe/Paris")
    organisation = Organisation(territory=territory, name="PMI banc")
    lieu = Lieu(organisation=organisation, name="Centre PMI banc", address="1 rue du Banc, 59000 Lille")
    motif = Motif(organisation=organisation, name="Consultation nourrisson", duration_minutes=30)
    agent = Agent(email="agenda@banc.example.fr", first_name="Claire", last_name="Banc")
    agent.roles.append(AgentRole(organisation=organisation, role=Role.AGENT))
    db.session.add_all([territory, organisation, lieu, motif, agent])
    db.session.flush()
    families = [Usager(territory=territory, first_name="Inès", last_name=f"Famille{n}", phone="+33612345678")
                for n in range(200)]
    db.session.add_all(families)
    today = datetime.now(timezone.utc).replace(hour=8, minute=0, second=0, microsecond=0)
    count = 0
    for offset in range(-30, 184):
        day = today + timedelta(days=offset)
        if day.weekday() >= 5:
            continue
        for slot in range(rdvs_per_day):
            starts = day + timedelta(minutes=30 * slot)
            rdv = Rdv(organisation=organisation, motif=motif, lieu=lieu, starts_at=starts, status=RdvStatus.UNKNOWN,
                      ends_at=starts + timedelta(minutes=30), usagers=[families[count % len(families)]])
            rdv.set_agents([agent])
            db.session.add(rdv)
            count += 1
        if day.weekday() == 4:
            db.session.add(Absence(agent=agent, title="Réunion d'équipe", first_day=day.date(), last_day=day.date(),
                                   start_time=datetime.min.time().replace(hour=14), end_time=datetime.min.time()
                                   .replace(hour=16), weekdays=0))
    db.session.commit()
    token = feeds.issue(agent)
    return agent.id, token, count


def bench_feed(app, token: str, runs: int) -> dict:
    client = app.test_client()
    path = f"/calendrier/{token}.ics"
    first = client.get(path)
    assert first.status_code == 200, first.status_code
    for _ in range(5):
        client.get(path)
    full, revalidated = [], []
    for _ in range(runs):
        started = now_ns()
        answer = client.get(path)
        full.append(elapsed_ms(started))
        started = now_ns()
        again = client.get(path, headers={"If-None-Match": answer.headers["ETag"]})
        revalidated.append(elapsed_ms(started))
        assert again.status_code == 304
    from lapins.calendars import ics
    from lapins.infra.extensions import db
    from lapins.models.calendars import CalendarFeed

    cold, first_build = [], []
    for _ in range(max(5, runs // 10)):
        ics._bodies.clear()  # as after a change: the next poll builds the body, the unchanged events kept
        started = now_ns()
        assert client.get(path).status_code == 200
        cold.append(elapsed_ms(started))
        ics._bodies.clear()
        ics._events.clear()  # as in a new process: every event written
        started = now_ns()
        assert client.get(path).status_code == 200
        first_build.append(elapsed_ms(started))
    db.session.remove()
    assert db.session.scalar(select(func.count()).select_from(CalendarFeed)) == 1
    return {"calendar.ics_feed": summary(full), "calendar.ics_feed.p95_ms": summary(full)["p95_ms"],
            "calendar.ics_feed.bytes": len(first.data), "calendar.ics_feed_304": summary(revalidated),
            "calendar.ics_feed_cold": summary(cold), "calendar.ics_feed_cold.p95_ms": summary(cold)["p95_ms"],
            "calendar.ics_feed_first": summary(first_build)}


def bench_push(app, agent_id: int, changes: int) -> dict:
    from lapins.calendars import push
    from lapins.infra import crypto
    from lapins.infra.extensions import db
    from lapins.models import Rdv, RdvAgent
    from lapins.models.calendars import CaldavAccount, CaldavPush, PushStatus
    from tests.radicale_server import PASSWORD, USER, RadicaleServer

    server = RadicaleServer().start()
    try:
        url = server.make_calendar()
        account = CaldavAccount(agent_id=agent_id, url=url, username=USER, password_encrypted=crypto.encrypt(PASSWORD))
        db.session.add(account)
        db.session.flush()
        rdv_ids = list(db.session.scalars(select(RdvAgent.rdv_id).where(RdvAgent.agent_id == agent_id)
                                          .order_by(RdvAgent.starts_at).limit(changes)))
        db.session.add_all(CaldavPush(account_id=account.id, rdv_id=rdv_id) for rdv_id in rdv_ids)
        db.session.commit()
        started = time.perf_counter()
        counts = push.deliver_due()
        seconds = time.perf_counter() - started
        left = db.session.scalar(select(func.count()).select_from(CaldavPush)
                                 .where(CaldavPush.status != PushStatus.DONE))
        on_server = len(server.events())
        assert left == 0 and on_server == len(rdv_ids), (counts, left, on_server)
        assert db.session.get(Rdv, rdv_ids[0]) is not None
        floor = _floor(server.make_calendar("floor"), rdv_ids)
        rate = len(rdv_ids) / seconds
        return {"caldav.push.changes": len(rdv_ids), "caldav.push.seconds": round(seconds, 2),
                "caldav.push.changes_per_s": round(rate, 1), "caldav.push.floor_changes_per_s": round(floor, 1),
                "caldav.push.floor_ratio": round(rate / floor, 2)}
    finally:
        server.remove()


def _floor(url: str, rdv_ids: list[int]) -> float:
    """PUTs per second of the same events, bodies built beforehand, with the caldav client alone: what the server
    and the client library cost, without the queue."""
    from lapins.calendars import ics
    from lapins.calendars.caldav_client import Calendar
    from lapins.infra.extensions import db
    from lapins.models import Rdv
    from tests.radicale_server import PASSWORD, USER

    calendar = Calendar(url, USER, PASSWORD)
    bodies = [(f"floor-{rdv_id}", ics.single_rdv_calendar(db.session.get(Rdv, rdv_id), None)) for rdv_id in rdv_ids]
    started = time.perf_counter()
    for uid, body in bodies:
        calendar.put(uid, body)
    return len(bodies) / (time.perf_counter() - started)


def bench_calendars(database: BenchDatabase, rdvs_per_day: int = 8, feed_runs: int = 100,
                    push_changes: int = 300) -> dict:
    """Both figures on `database`, emptied first (its own département): run after the other measures."""
    figures: dict = {}
    app = database.app(RATELIMIT_ENABLED=False, PUBLIC_URL="http://127.0.0.1", CALDAV_ALLOWED_PRIVATE_HOSTS="127.0.0.1")
    database.reset(app)
    with app.app_context():
        agent_id, token, count = seed(rdvs_per_day)
        log(f"{count} rdvs seeded; timing the feed ({feed_runs} runs)")
        figures.update(bench_feed(app, token, feed_runs))
        figures["calendar.ics_feed.rdvs"] = count
        log(f"writing {push_changes} changes to a loopback Radicale")
        figures.update(bench_push(app, agent_id, push_changes))
    return figures


def verdict_failures(figures: dict) -> list[str]:
    return [f"{name} = {figures.get(name)} (cible {sign} {target})" for name, (sign, target) in TARGETS.items()
            if figures.get(name) is None or (figures[name] > target if sign == "≤" else figures[name] < target)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calendars", description=__doc__)
    parser.add_argument("--rdvs-per-day", type=int, default=8)
    parser.add_argument("--feed-runs", type=int, default=100)
    parser.add_argument("--push-changes", type=int, default=300)
    args = parser.parse_args(argv)
    database = BenchDatabase.from_environment(log)
    try:
        figures = bench_calendars(database, args.rdvs_per_day, args.feed_runs, args.push_changes)
    finally:
        database.cleanup()
    merge_results(figures)
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    failures = verdict_failures(figures)
    for failure in failures:
        log(f"HORS CIBLE : {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
