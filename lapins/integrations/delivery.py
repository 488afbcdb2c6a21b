"""Sending webhook deliveries: signed, one attempt at a time, retried with backoff, never twice at once.

Each run (the beat's job every minute, or a task kicked after a commit that wrote deliveries) claims the due rows
with a conditional UPDATE and a lease, so that two workers never send one delivery at the same time, and a worker
killed mid-send leaves a row that is taken up again when its lease ends. A request has a short timeout; an endpoint
that failed in a run is not tried again in that run, so one dead endpoint does not hold up the others.

The receiver checks the `X-Lapins-Signature` header: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the
webhook's secret>`, and may refuse a timestamp older than a few minutes (replays). `X-Lapins-Delivery` is the
delivery's id, the same on every attempt, so that a receiver can ignore a repeat.

An endpoint failing is heard about: after WEBHOOK_FAILURE_NOTICE_AFTER attempts failed in a row its owner (who created
it, else the organisation's administrators) gets an e-mail; once it has failed for WEBHOOK_PAUSE_AFTER_HOURS it is
paused: nothing more is sent to it, its deliveries are kept (new ones too) until « Reprendre et renvoyer » (`resume`)
sends them again, those that failed meanwhile included. One success clears the count.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta

import requests
from flask import current_app
from markupsafe import escape
from sqlalchemy import delete, or_, select, update

from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.models import Agent, AgentRole, Role, utcnow
from lapins.models.webhooks import DeliveryStatus, Webhook, WebhookDelivery
from lapins.notifications import providers
from lapins.notifications.backends import OutgoingEmail, ProviderError

logger = logging.getLogger(__name__)

DELIVER_TASK = "lapins.tasks.deliver_webhooks"
# After the n-th failed attempt, the next one comes this much later; after the last, the delivery has failed.
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
           timedelta(hours=6), timedelta(hours=12), timedelta(hours=24))
MAX_ATTEMPTS = len(BACKOFF) + 1
LEASE = timedelta(minutes=2)
PER_RUN = 200


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def kick() -> None:
    """Send now rather than at the next beat. In eager mode (tests) tasks would run inside the commit: the beat's
    run, or the test, sends them instead."""
    celery = current_app.extensions["celery"]
    if celery.conf.task_always_eager:
        return
    try:
        celery.tasks[DELIVER_TASK].delay()
    except Exception:
        logger.warning("Webhooks: broker unreachable, deliveries wait for the next beat", exc_info=True)


def deliver_due(now: datetime | None = None) -> dict[str, int]:
    """Send the due deliveries; returns counts by outcome."""
    now = now or utcnow()
    _forget_old(now)
    paused = select(Webhook.id).where(Webhook.paused_at.is_not(None))
    due = list(db.session.scalars(
        select(WebhookDelivery.id).where(or_(
            (WebhookDelivery.status == DeliveryStatus.PENDING) & (WebhookDelivery.next_attempt_at <= now),
            (WebhookDelivery.status == DeliveryStatus.SENDING) & (WebhookDelivery.lease_until <= now)),
            WebhookDelivery.webhook_id.not_in(paused))
        .order_by(WebhookDelivery.id).limit(PER_RUN)))
    db.session.commit()
    counts = {"delivered": 0, "retry": 0, "failed": 0, "postponed": 0}
    failing: set[int] = set()
    for delivery_id in due:
        outcome = _deliver_one(delivery_id, now, failing)
        if outcome:
            counts[outcome] += 1
    return counts


def _claim(delivery_id: int, now: datetime) -> bool:
    claimed = db.session.execute(
        update(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id,
            or_((WebhookDelivery.status == DeliveryStatus.PENDING) & (WebhookDelivery.next_attempt_at <= now),
                (WebhookDelivery.status == DeliveryStatus.SENDING) & (WebhookDelivery.lease_until <= now)))
        .values(status=DeliveryStatus.SENDING, lease_until=utcnow() + LEASE)
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return bool(claimed)


def _deliver_one(delivery_id: int, now: datetime, failing: set[int]) -> str | None:
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return None
    if delivery.webhook_id in failing or delivery.webhook.paused_at is not None:
        return "postponed"  # its endpoint just failed (the next run tries again), or is paused: kept
    if not _claim(delivery_id, now):
        return None  # another worker has it
    db.session.refresh(delivery)
    webhook = delivery.webhook
    code, error = None, None
    if not webhook.active:
        error = "Webhook désactivé"
    else:
        body = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(utcnow().timestamp())
        headers = {"Content-Type": "application/json", "User-Agent": "Lapins-Webhooks/1",
                   "X-Lapins-Event": delivery.event, "X-Lapins-Delivery": str(delivery.id),
                   "X-Lapins-Signature": signature(crypto.decrypt(webhook.secret_encrypted), timestamp, body)}
        try:
            response = requests.post(webhook.url, data=body, headers=headers, allow_redirects=False,
                                     timeout=(current_app.config["WEBHOOK_CONNECT_TIMEOUT"],
                                              current_app.config["WEBHOOK_READ_TIMEOUT"]))
            code = response.status_code
            if not 200 <= code < 300:
                error = f"Réponse HTTP {code}"
        except requests.Timeout:
            error = "Délai dépassé"
        except requests.RequestException as exc:
            error = f"Connexion impossible ({type(exc).__name__})"
    delivery.attempts += 1
    delivery.response_code, delivery.lease_until = code, None
    if error is None:
        delivery.status, delivery.delivered_at, delivery.last_error = DeliveryStatus.DELIVERED, utcnow(), None
        outcome = "delivered"
    elif delivery.attempts >= MAX_ATTEMPTS or not webhook.active:
        delivery.status, delivery.last_error = DeliveryStatus.FAILED, error
        outcome = "failed"
    else:
        delivery.status, delivery.last_error = DeliveryStatus.PENDING, error
        delivery.next_attempt_at = utcnow() + BACKOFF[delivery.attempts - 1]
        outcome = "retry"
    if error is not None:
        failing.add(webhook.id)
        logger.warning("Webhooks: delivery %s to webhook %s failed (attempt %d): %s", delivery.id, webhook.id,
                       delivery.attempts, error)
    if webhook.active:
        _count_endpoint_outcome(webhook, error, utcnow())
    db.session.commit()
    return outcome


def _count_endpoint_outcome(webhook: Webhook, error: str | None, now: datetime) -> None:
    """Failures in a row: the owner told after WEBHOOK_FAILURE_NOTICE_AFTER, the endpoint paused after
    WEBHOOK_PAUSE_AFTER_HOURS of them; a success starts the count again."""
    if error is None:
        webhook.consecutive_failures, webhook.failing_since, webhook.failure_notified_at = 0, None, None
        return
    webhook.consecutive_failures += 1
    webhook.failing_since = webhook.failing_since or now
    config = current_app.config
    if webhook.consecutive_failures >= config["WEBHOOK_FAILURE_NOTICE_AFTER"] and webhook.failure_notified_at is None:
        if _tell_owner(webhook, f"Webhook en échec : {webhook.consecutive_failures} envois échoués de suite",
                       f"Les {webhook.consecutive_failures} derniers envois vers {webhook.url} ont échoué (dernière "
                       f"erreur : {error}). Les événements sont gardés et de nouveau tentés.",
                       f"Sans succès d'ici {config['WEBHOOK_PAUSE_AFTER_HOURS']} h, le webhook sera mis en pause."):
            webhook.failure_notified_at = now
    if (webhook.paused_at is None
            and now - webhook.failing_since >= timedelta(hours=config["WEBHOOK_PAUSE_AFTER_HOURS"])):
        webhook.paused_at = now
        logger.warning("Webhooks: webhook %s paused after failing since %s", webhook.id,
                       webhook.failing_since.isoformat())
        _tell_owner(webhook, "Webhook mis en pause",
                    f"Les envois vers {webhook.url} échouent depuis plus de {config['WEBHOOK_PAUSE_AFTER_HOURS']} h : "
                    "le webhook est en pause. Les événements sont gardés ; « Reprendre et renvoyer » sur la page "
                    "des intégrations les envoie de nouveau.")


def _tell_owner(webhook: Webhook, subject: str, *paragraphs: str) -> bool:
    """E-mail the webhook's owner (who created it, if still active), else its organisation's administrators. No
    family's data: the address and the error only."""
    owner = webhook.created_by
    agents = [owner] if owner is not None and owner.active else list(db.session.scalars(
        select(Agent).join(AgentRole, AgentRole.agent_id == Agent.id).where(
            AgentRole.organisation_id == webhook.organisation_id, AgentRole.role == Role.ADMIN,
            Agent.active.is_(True)).order_by(Agent.id)))
    page = f"{current_app.config['PUBLIC_URL'].rstrip('/')}/integrations/organisations/{webhook.organisation_id}/webhooks"
    told = False
    for agent in agents:
        lines = [f"Bonjour {agent.first_name},", *paragraphs, f"Intégrations : {page}"]
        html = "".join(f"<p>{escape(line)}</p>" for line in lines[:-1])
        html += f'<p><a href="{escape(page)}">Intégrations</a></p>'
        try:
            providers.email_backend().send(OutgoingEmail(
                message_id=f"webhook-{webhook.id}-{agent.id}-{utcnow().timestamp():.0f}-{len(subject)}",
                to=agent.email, subject=f"[Lapins] {subject}", text="\n\n".join(lines) + "\n",
                html=f'<!doctype html><html lang="fr"><body>{html}</body></html>'))
            told = True
        except ProviderError as error:
            logger.warning("Webhooks: notice for webhook %s to agent %s not sent (code %s)", webhook.id, agent.id,
                           error.code)
    return told


def resume(webhook: Webhook) -> int:
    """« Reprendre et renvoyer »: the endpoint unpaused, its waiting deliveries due now and those that failed since it
    began failing sent again as first attempts. Returns how many are to be sent."""
    now = utcnow()
    replay = [WebhookDelivery.status == DeliveryStatus.PENDING]
    if webhook.failing_since is not None:
        replay.append((WebhookDelivery.status == DeliveryStatus.FAILED)
                      & (WebhookDelivery.created_at >= webhook.failing_since - max(BACKOFF) * 2))
    replayed = db.session.execute(
        update(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id, or_(*replay))
        .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, last_error=None)
        .execution_options(synchronize_session=False)).rowcount
    webhook.paused_at = webhook.failing_since = webhook.failure_notified_at = None
    webhook.consecutive_failures = 0
    db.session.commit()
    kick()
    return replayed


def retry(delivery: WebhookDelivery) -> None:
    """An administrator sends a failed delivery again, as a first attempt."""
    delivery.status, delivery.attempts, delivery.next_attempt_at = DeliveryStatus.PENDING, 0, utcnow()
    delivery.last_error = None
    db.session.commit()
    kick()


def _forget_old(now: datetime) -> None:
    """Payloads name families: delivered and failed ones are kept for the log only WEBHOOK_LOG_DAYS."""
    limit = now - timedelta(days=current_app.config["WEBHOOK_LOG_DAYS"])
    db.session.execute(delete(WebhookDelivery).where(
        WebhookDelivery.status.in_([DeliveryStatus.DELIVERED, DeliveryStatus.FAILED]),
        WebhookDelivery.created_at < limit).execution_options(synchronize_session=False))
    db.session.commit()


def recent_deliveries(webhook_ids: list[int], limit: int = 100) -> list[WebhookDelivery]:
    if not webhook_ids:
        return []
    return list(db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id.in_(webhook_ids))
                                   .order_by(WebhookDelivery.id.desc()).limit(limit)))


def webhooks_of(organisation_id: int) -> list[Webhook]:
    return list(db.session.scalars(select(Webhook).where(Webhook.organisation_id == organisation_id)
                                   .order_by(Webhook.id)))
