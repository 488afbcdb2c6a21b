"""Background jobs. Every periodic job is declared once, in PERIODIC_JOBS: what runs, how often."""
from __future__ import annotations

from dataclasses import dataclass

from celery import shared_task

from lapins.extensions import db
from lapins.models import Heartbeat, utcnow


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    task: str
    every_seconds: float
    expires_seconds: float | None = None


PERIODIC_JOBS = [
    PeriodicJob("worker-heartbeat", "lapins.tasks.record_heartbeat", every_seconds=60, expires_seconds=55),
]


def beat_schedule() -> dict:
    return {
        job.name: {"task": job.task, "schedule": job.every_seconds, "options": {"expires": job.expires_seconds}}
        for job in PERIODIC_JOBS
    }


@shared_task(name="lapins.tasks.record_heartbeat")
def record_heartbeat(name: str = "worker") -> None:
    heartbeat = db.session.get(Heartbeat, name) or Heartbeat(name=name)
    heartbeat.beat_at = utcnow()
    db.session.add(heartbeat)
    db.session.commit()
