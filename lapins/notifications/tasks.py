"""The worker's side of the outbox: the beat's dispatch job and the sending task (see outbox.py)."""
from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task

from lapins.infra.celery_app import retry_when_database_is_back
from lapins.notifications import outbox

logger = logging.getLogger(__name__)


@shared_task(name=outbox.DISPATCH_TASK, ignore_result=True)
def dispatch_due() -> int:
    handed = outbox.dispatch_due()
    if handed:
        logger.info("Outbox: %d message(s) handed to the workers", handed)
    return handed


@shared_task(name=outbox.REDACT_TASK, ignore_result=True)
def redact_expired_codes() -> int:
    return outbox.redact_expired_codes()


@shared_task(name=outbox.SEND_TASK, ignore_result=True, acks_late=True, bind=True)
def send_batch(self, ids: list[int], claims: list[str] | None = None, resume: list[int] | None = None,
               delivered: dict[str, list] | None = None) -> dict[str, int]:
    """`claims`, `resume`, `delivered`: set on a retry after the database went away (outbox.SendInterrupted), so that
    the batch takes back what it safely can instead of leaving it to wait out the lease."""
    known = {int(key): (value[0], value[1]) for key, value in (delivered or {}).items()}
    try:
        counts = outbox.send_batch(ids, earlier_claims=[datetime.fromisoformat(at) for at in claims or ()],
                                   resume=resume or (), delivered=known)
    except outbox.SendInterrupted as interrupted:
        raise retry_when_database_is_back(
            self, interrupted.__cause__, claims=[at.isoformat() for at in interrupted.tokens],
            resume=interrupted.not_begun,
            delivered={str(key): list(value) for key, value in interrupted.delivered.items()}) from None
    logger.info("Outbox batch of %d: %s", len(ids), counts)
    return counts
