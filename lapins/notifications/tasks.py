"""The worker's side of the outbox: the beat's dispatch job and the sending task (see outbox.py)."""
from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task

from lapins.infra.celery_app import is_database_unavailable, retry_when_database_is_back
from lapins.models import utcnow
from lapins.notifications import outbox

logger = logging.getLogger(__name__)


@shared_task(name=outbox.DISPATCH_TASK, ignore_result=True)
def dispatch_due() -> int:
    handed = outbox.dispatch_due()
    if handed:
        logger.info("Outbox: %d message(s) handed to the workers", handed)
    return handed


@shared_task(name=outbox.SEND_TASK, ignore_result=True, acks_late=True, bind=True)
def send_batch(self, ids: list[int], claim: str | None = None) -> dict[str, int]:
    """`claim`: set on a retry after the database went away, the claim this batch had taken; the retry takes its
    rows back instead of leaving them to wait out the lease (outbox.send_batch, `resume`)."""
    claimed_at = datetime.fromisoformat(claim) if claim else utcnow()
    try:
        counts = outbox.send_batch(ids, claimed_at, resume=claim is not None)
    except Exception as error:
        if not is_database_unavailable(error):
            raise
        raise retry_when_database_is_back(self, error, claim=claimed_at.isoformat()) from None
    logger.info("Outbox batch of %d: %s", len(ids), counts)
    return counts
