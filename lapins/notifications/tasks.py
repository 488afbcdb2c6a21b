"""The worker's side of the outbox: the beat's dispatch job and the sending task (see outbox.py)."""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from lapins.notifications import outbox

logger = logging.getLogger(__name__)


@shared_task(name="lapins.notifications.dispatch_due", ignore_result=True)
def dispatch_due() -> int:
    handed = outbox.dispatch_due()
    if handed:
        logger.info("Outbox: %d message(s) handed to the workers", handed)
    return handed


@shared_task(name="lapins.notifications.send_batch", ignore_result=True, acks_late=True)
def send_batch(ids: list[int]) -> dict[str, int]:
    counts = outbox.send_batch(ids)
    logger.info("Outbox batch of %d: %s", len(ids), counts)
    return counts


def of_this_app(task_name: str):
    """The task as bound to the current Flask app's Celery (shared tasks follow the last Celery app created, which
    may belong to another Flask app in the same process, e.g. in tests)."""
    return current_app.extensions["celery"].tasks[task_name]


def enqueue_batch(ids: list[int]) -> None:
    of_this_app(send_batch.name).delay(ids)


def kick() -> None:
    """Ask the worker to dispatch now (after a booking's commit) instead of waiting for the next beat."""
    try:
        of_this_app(dispatch_due.name).delay()
    except Exception:  # the broker being down must not fail a booking: the beat will dispatch when it is back
        logger.warning("Outbox: broker unreachable, messages wait for the next beat", exc_info=True)
