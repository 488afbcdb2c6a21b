"""The worker's side of the calendars: writing the queued changes, reading busy times back."""
from __future__ import annotations

import logging

from celery import shared_task

from lapins.calendars import busy, push

logger = logging.getLogger(__name__)


@shared_task(name=push.PUSH_TASK, ignore_result=True, acks_late=True)
def push_due() -> dict[str, int]:
    counts = push.deliver_due()
    if any(counts.values()):
        logger.info("CalDAV: %s", counts)
    return counts


@shared_task(name=busy.READ_TASK, ignore_result=True)
def read_busy() -> dict[str, int]:
    return busy.read_all()
