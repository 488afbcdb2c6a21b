"""Background jobs. Every periodic job is declared once, in PERIODIC_JOBS: what runs, how often."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from celery import shared_task

from lapins.calendars import tasks as calendar_tasks  # noqa: F401  (registers the CalDAV tasks)
from lapins.infra.extensions import db
from lapins.integrations import delivery
from lapins.models import Heartbeat, utcnow
from lapins.monitoring import delivery as delivery_health
from lapins.notifications import tasks as notification_tasks  # noqa: F401  (registers the outbox tasks)
from lapins.notifications import webhooks as twilio_webhooks
from lapins.privacy import retention
from lapins.stats import exports
from lapins.waitlist import offers


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    task: str
    every_seconds: float
    expires_seconds: float | None = None
    setting: str | None = None  # a setting that overrides every_seconds (expiry scales with it)


PERIODIC_JOBS = [
    PeriodicJob("worker-heartbeat", "lapins.tasks.record_heartbeat", every_seconds=60, expires_seconds=55),
    # Claims the messages that are due and hands them to the workers (lapins.notifications.outbox).
    PeriodicJob("outbox-dispatch", "lapins.notifications.dispatch_due", every_seconds=60, expires_seconds=55,
                setting="OUTBOX_DISPATCH_SECONDS"),
    # Blanks the text of the online booking's verification codes once expired (lapins.notifications.outbox).
    PeriodicJob("phone-codes-redact", "lapins.notifications.redact_expired_codes", every_seconds=60,
                expires_seconds=55),
    # Expires the holds of offered slots and offers open freed slots to the waiting list (lapins.waitlist.offers).
    PeriodicJob("waitlist-reallocate", "lapins.tasks.reallocate_freed_slots", every_seconds=60, expires_seconds=55),
    # Takes up again the statistics exports whose worker stopped beating (lapins.stats.exports.reclaim_stale).
    PeriodicJob("exports-reclaim", "lapins.tasks.reclaim_stale_exports", every_seconds=60, expires_seconds=55),
    # Sends the due deliveries of outgoing webhooks, first tries and retries (lapins.integrations.delivery).
    PeriodicJob("webhooks-deliver", "lapins.tasks.deliver_webhooks", every_seconds=60, expires_seconds=55),
    # Writes agents' rdv changes to their CalDAV calendars, retries included (lapins.calendars.push).
    PeriodicJob("caldav-push", "lapins.calendars.push_due", every_seconds=60, expires_seconds=55),
    # Reads the busy times of agents' CalDAV calendars (lapins.calendars.busy), sync tokens first.
    PeriodicJob("caldav-busy", "lapins.calendars.read_busy", every_seconds=300, expires_seconds=280,
                setting="CALDAV_BUSY_READ_SECONDS"),
    # Watches each territory's channels: an operator that stops sending (no credit, credentials refused, failing
    # for DELIVERY_OUTAGE_MINUTES) announced to its administrators, and its end (lapins.monitoring.delivery).
    PeriodicJob("delivery-watch", "lapins.tasks.watch_delivery", every_seconds=60, expires_seconds=55),
    # Applies the delivery statuses Twilio sent before the send's answer was recorded (lapins.notifications.webhooks).
    PeriodicJob("sms-early-statuses", "lapins.tasks.apply_early_sms_statuses", every_seconds=60, expires_seconds=55),
    # Reads the SMS balance where the operator tells it, warns below the threshold (lapins.monitoring.delivery).
    PeriodicJob("delivery-balance", "lapins.tasks.check_sms_balances", every_seconds=24 * 3600, expires_seconds=3600),
    # Deletes rdvs past RETENTION_RDV_DAYS and blanks messages past RETENTION_MESSAGE_CONTENT_DAYS
    # (lapins.privacy.retention), in batches; a run the worker did not take within an hour waits for the next day.
    PeriodicJob("personal-data-retention", "lapins.tasks.apply_retention", every_seconds=24 * 3600,
                expires_seconds=3600),
]


def beat_schedule(config: Mapping | None = None) -> dict:
    schedule = {}
    for job in PERIODIC_JOBS:
        every, expires = job.every_seconds, job.expires_seconds
        if config is not None and job.setting and config.get(job.setting):
            every = float(config[job.setting])
            expires = expires and expires * every / job.every_seconds
        schedule[job.name] = {"task": job.task, "schedule": every, "options": {"expires": expires}}
    return schedule


@shared_task(name="lapins.tasks.record_heartbeat")
def record_heartbeat(name: str = "worker") -> None:
    heartbeat = db.session.get(Heartbeat, name) or Heartbeat(name=name)
    heartbeat.beat_at = utcnow()
    db.session.add(heartbeat)
    db.session.commit()


@shared_task(name="lapins.tasks.build_export")
def build_export(export_id: int) -> None:
    """Builds a statistics export recorded in `exports` (lapins.stats.exports); its page shows the progress."""
    exports.run_export(export_id)


@shared_task(name="lapins.tasks.reclaim_stale_exports", ignore_result=True)
def reclaim_stale_exports() -> int:
    return len(exports.reclaim_stale())


@shared_task(name="lapins.tasks.reallocate_freed_slots", ignore_result=True)
def reallocate_freed_slots() -> int:
    return offers.reallocate()


@shared_task(name="lapins.tasks.deliver_webhooks", ignore_result=True)
def deliver_webhooks() -> dict[str, int]:
    return delivery.deliver_due()


@shared_task(name="lapins.tasks.apply_retention", ignore_result=True)
def apply_retention() -> dict[str, int]:
    return asdict(retention.run())


@shared_task(name="lapins.tasks.watch_delivery", ignore_result=True)
def watch_delivery() -> dict[str, int]:
    return delivery_health.watch()


@shared_task(name="lapins.tasks.check_sms_balances", ignore_result=True)
def check_sms_balances() -> int:
    return delivery_health.check_balances()


@shared_task(name="lapins.tasks.apply_early_sms_statuses", ignore_result=True)
def apply_early_sms_statuses() -> int:
    return twilio_webhooks.apply_early_statuses()
