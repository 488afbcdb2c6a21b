"""`/healthz`: can this web process reach the database and the broker, and are the worker and beat alive?

For load balancers and monitoring: no login, nothing personal. 200 when the database and the broker answer, 503
otherwise; the worker-and-beat heartbeat (a periodic job recorded by a worker) is reported but never fails the web
node, which serves agents whatever the background is doing.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from lapins.infra.extensions import db
from lapins.models import Heartbeat, utcnow

logger = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

HEARTBEAT_STALE_AFTER = timedelta(minutes=3)  # the heartbeat job runs every minute


@bp.route("/healthz")
def healthz():
    checks = {"database": _database(), "broker": _broker()}
    heartbeat = db.session.get(Heartbeat, "worker") if checks["database"] == "ok" else None
    if heartbeat is None or heartbeat.beat_at is None:
        checks["worker_and_beat"] = "aucun signe de vie"
    else:
        late = utcnow() - heartbeat.beat_at > HEARTBEAT_STALE_AFTER
        checks["worker_and_beat"] = "en retard" if late else "ok"
        checks["last_heartbeat"] = heartbeat.beat_at.isoformat()
    healthy = checks["database"] == "ok" and checks["broker"] == "ok"
    db.session.rollback()
    return jsonify(status="ok" if healthy else "erreur", checks=checks), 200 if healthy else 503


def _database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as error:  # any failure is the answer, not an error page
        logger.warning("healthz: database unreachable (%s)", type(error).__name__)
        db.session.rollback()
        return "injoignable"
    return "ok"


def _broker() -> str:
    celery = current_app.extensions["celery"]
    if celery.conf.task_always_eager:
        return "ok"  # no broker in use: tasks run in the web process
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as error:
        logger.warning("healthz: broker unreachable (%s)", type(error).__name__)
        return "injoignable"
    return "ok"
