"""The worker's side of the outbox: the beat's dispatch job and the sending task (see outbox.py)."""
from __future__ import annotations

import logging

from celery import shared_task

from lapins.notifications import outbox

logger = logging.getLogger(__name__)


@shared_task(name=outbox.DISPATCH_TASK, ignore_result=True)
def dispatch_due() -> int:
    handed = outbox.dispatch_due()
    if handed:
        logger.info("Outbox: %d message(s) handed to the workers", handed)
    return handed


@shared_task(name=outbox.SEND_TASK, ignore_result=True, acks_late=True)
def send_batch(ids: list[int]) -> dict[str, int]:
    counts = outbox.send_batch(ids)
    logger.info("Outbox batch of %d: %s", len(ids), counts)
    return counts

