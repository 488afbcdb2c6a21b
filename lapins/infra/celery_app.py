"""Celery bound to the Flask app: every task runs inside an application context."""
from __future__ import annotations

from celery import Celery, Task
from flask import Flask, current_app
from sqlalchemy.exc import StatementError

from lapins.infra.logs import safe_message


class TaskDatabaseError(Exception):
    """A task's database error, with the message of lapins.infra.logs.safe_message and the original frames."""


def task_named(name: str):
    """The task as bound to the current Flask app's Celery (shared tasks follow the last Celery app created, which
    may belong to another Flask app in the same process, e.g. in tests). By name, so that a room queues another's
    task without importing it."""
    return current_app.extensions["celery"].tasks[name]


def celery_init_app(app: Flask, beat_schedule: dict) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                try:
                    return self.run(*args, **kwargs)
                except StatementError as error:
                    # Celery logs a failed task's exception with its text, and PostgreSQL's quotes the failing row
                    # or key (a family's name, phone or e-mail): the worker's log gets where it failed and why.
                    safe = TaskDatabaseError(safe_message(error)).with_traceback(error.__traceback__)
                    raise safe from None

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
        broker_connection_retry_on_startup=True,
    )
    celery.set_default()
    app.extensions["celery"] = celery
    return celery
