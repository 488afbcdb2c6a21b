"""Celery bound to the Flask app: every task runs inside an application context.

The beat's jobs go to a queue of their own, BEAT_QUEUE, read by every worker (a worker started without `-Q` reads
both queues): Redis hands the queues out in turn, so a dispatch or a heartbeat waits for one task at most, never
behind thousands of queued sends. A task that loses its database (PostgreSQL restarted, its connection killed, SQLite locked for too long) is not
failed: its session is thrown away and the task retried with a growing delay (`retry_when_database_is_back`). A
worker that loses the broker tries again after a second, then 2, 3… (`worker_consumer`), not kombu's 2, 4, 6… s.
"""
from __future__ import annotations

import logging
import random

from celery import Celery, Task
from kombu import Queue
from flask import Flask, current_app
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, PendingRollbackError, StatementError

from lapins.infra.extensions import db
from lapins.infra.logs import safe_message

logger = logging.getLogger(__name__)

DEFAULT_QUEUE = "celery"  # the sends, exports, and every task not run by the beat
BEAT_QUEUE = "lapins.beat"  # the periodic jobs (lapins.tasks.PERIODIC_JOBS), and a dispatch kicked by a booking

# Errors that say the database could not be reached or dropped the connection, not that the task is wrong.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PendingRollbackError)
DATABASE_RETRIES = 30  # with the delays below, about twenty minutes of outage
LONGEST_DATABASE_DELAY = 60


class TaskDatabaseError(Exception):
    """A task's database error, with the message of lapins.infra.logs.safe_message and the original frames."""


def task_named(name: str):
    """The task as bound to the current Flask app's Celery (shared tasks follow the last Celery app created, which
    may belong to another Flask app in the same process, e.g. in tests). By name, so that a room queues another's
    task without importing it."""
    return current_app.extensions["celery"].tasks[name]


def waiting_tasks(queue: str = DEFAULT_QUEUE) -> int | None:
    """How many tasks wait on the broker in `queue`; None when the broker cannot be asked."""
    try:
        with current_app.extensions["celery"].connection_for_read() as connection:
            # Not passive: Redis keeps no key for an empty list, and a passive declaration would call it unknown.
            return connection.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False).message_count
    except Exception:  # noqa: BLE001 — a broker down or that cannot count: the caller assumes the worst
        logger.debug("broker queue %s could not be counted", queue, exc_info=True)
        return None


def is_database_unavailable(error: BaseException) -> bool:
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, DATABASE_UNAVAILABLE)


def retry_when_database_is_back(task: Task, error: BaseException, **changes) -> Exception:
    """The Retry to raise from `task` after `error` (the database unavailable): the session is rolled back and
    thrown away, and the task queued again after 1, 2, 4… s (at most a minute, with jitter), its arguments updated
    with `changes`. Run eagerly (tests, CELERY_TASK_ALWAYS_EAGER), or once its retries are spent, it fails."""
    discard_session()
    safe = TaskDatabaseError(safe_message(error)).with_traceback(error.__traceback__)
    retries = task.request.retries or 0
    if task.request.is_eager or task.request.called_directly or retries >= DATABASE_RETRIES:
        return safe
    delay = min(2 ** retries, LONGEST_DATABASE_DELAY) * random.uniform(0.8, 1.2)
    logger.warning("Task %s: database unavailable (%s), retried in %.1f s", task.name, type(error).__name__, delay)
    kwargs = {**(task.request.kwargs or {}), **changes}
    return task.retry(args=task.request.args, kwargs=kwargs, countdown=delay, max_retries=DATABASE_RETRIES, exc=safe)


def discard_session() -> None:
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 — a dead connection may refuse even this; the session is thrown away anyway
        logger.debug("rollback after a database error failed", exc_info=True)
    db.session.remove()


def celery_init_app(app: Flask, beat_schedule: dict) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                try:
                    return self.run(*args, **kwargs)
                except Exception as error:
                    if is_database_unavailable(error):
                        raise retry_when_database_is_back(self, error) from None
                    if isinstance(error, StatementError):
                        # Celery logs a failed task's exception with its text, and PostgreSQL's quotes the failing
                        # row or key (a family's name, phone or e-mail): the worker's log gets where and why.
                        raise TaskDatabaseError(safe_message(error)).with_traceback(error.__traceback__) from None
                    raise

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=app.config["CELERY_BROKER_URL"],
        result_backend=app.config["CELERY_RESULT_BACKEND"],
        task_always_eager=app.config["CELERY_TASK_ALWAYS_EAGER"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        timezone="UTC",
        beat_schedule=beat_schedule,
        task_queues=(Queue(DEFAULT_QUEUE), Queue(BEAT_QUEUE)),
        task_default_queue=DEFAULT_QUEUE,
        task_routes={entry["task"]: {"queue": BEAT_QUEUE} for entry in beat_schedule.values()},
        broker_connection_retry_on_startup=True,
        worker_consumer="lapins.infra.worker_consumer:QuickReconnect",  # read by the worker only
    )
    celery.set_default()
    app.extensions["celery"] = celery
    return celery
