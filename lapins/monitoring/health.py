"""`/healthz`: can this web process reach the database and the broker, and are the worker and beat alive?

For load balancers and monitoring: no login, nothing personal. 200 when the database and the broker answer, 503
otherwise; the worker-and-beat heartbeat (a periodic job recorded by a worker) is reported but never fails the web
node, which serves agents whatever the background is doing. `delivery` gives the delivery figures (numbers and
ids only: messages waiting and the oldest one's age per channel, failures over 24 h, channels down, webhooks).

`/metrics` gives the same figures as Prometheus text, to a scraper holding METRICS_TOKEN (`Authorization: Bearer`,
compared in constant time); without the setting it answers 404.
"""
from __future__ import annotations

import hmac
import logging
from datetime import timedelta

from flask import Blueprint, Response, abort, current_app, jsonify, request
from sqlalchemy import text

from lapins.infra.extensions import db
from lapins.models import Heartbeat, utcnow
from lapins.monitoring import delivery

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
    figures = _delivery_figures() if checks["database"] == "ok" else None
    db.session.rollback()
    return jsonify(status="ok" if healthy else "erreur", checks=checks, delivery=figures), 200 if healthy else 503


def _delivery_figures() -> dict | None:
    try:
        return delivery.deployment_figures(detailed=False)
    except Exception as error:  # the figures never fail the health check itself
        logger.warning("healthz: delivery figures not read (%s)", type(error).__name__)
        db.session.rollback()
        return None


@bp.route("/metrics")
def metrics():
    token = current_app.config.get("METRICS_TOKEN") or ""
    if not token:
        abort(404)
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {token}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return Response("jeton manquant ou invalide\n", status=401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    figures = delivery.deployment_figures()
    heartbeat = db.session.get(Heartbeat, "worker")
    db.session.rollback()
    return Response(prometheus_text(figures, heartbeat.beat_at if heartbeat else None),
                    content_type="text/plain; version=0.0.4; charset=utf-8")


def prometheus_text(figures: dict, heartbeat_at) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> None:
        lines.extend([f"# HELP lapins_{name} {help_text}", f"# TYPE lapins_{name} {kind}"])
        for labels, value in samples:
            label_text = ",".join(f'{key}="{value_}"' for key, value_ in labels.items())
            lines.append(f"lapins_{name}{{{label_text}}} {value:g}" if label_text else f"lapins_{name} {value:g}")

    channels = figures["channels"]
    metric("messages_pending", "gauge", "Messages due and not yet sent.",
           [({"channel": name}, values["pending"]) for name, values in channels.items()])
    metric("messages_oldest_pending_seconds", "gauge", "Age of the oldest message due and not yet sent.",
           [({"channel": name}, values["oldest_pending_seconds"]) for name, values in channels.items()])
    metric("messages_failed_24h", "gauge", "Messages failed or undeliverable over the last 24 hours.",
           [({"channel": name}, values["failed_24h"]) for name, values in channels.items()])
    metric("channel_down_seconds", "gauge", "How long a territory's channel has sent for no one.",
           [({"territory": str(outage["territory"]), "channel": outage["channel"], "cause": outage["cause"]},
             outage["seconds"]) for outage in figures["outages"]])
    metric("sms_segments_month", "gauge", "SMS segments sent this month (UTC), per territory.",
           [({"territory": str(territory)}, count) for territory, count in figures["segments_month"].items()])
    metric("webhook_pending", "gauge", "Webhook deliveries waiting, per endpoint.",
           [({"webhook": str(webhook)}, values["pending"]) for webhook, values in figures["webhooks"].items()])
    metric("webhook_consecutive_failures", "gauge", "Webhook attempts failed in a row, per endpoint.",
           [({"webhook": str(webhook)}, values["consecutive_failures"])
            for webhook, values in figures["webhooks"].items()])
    metric("webhook_paused", "gauge", "1 when the endpoint is paused after failing too long.",
           [({"webhook": str(webhook)}, int(values["paused"])) for webhook, values in figures["webhooks"].items()])
    if heartbeat_at is not None:
        metric("worker_heartbeat_age_seconds", "gauge", "Seconds since the worker and beat last proved alive.",
               [({}, (utcnow() - heartbeat_at).total_seconds())])
    return "\n".join(lines) + "\n"


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
