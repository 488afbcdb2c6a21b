"""When messages stop leaving, someone hears about it: each territory's channels watched, outages announced and
their end, the daily balance check, and the figures of the delivery health page, /healthz and /metrics.

The outbox only keeps a message pending when its operator sends for no one (backends.OPERATOR_DOWN: no credit,
credentials refused); this room reads the messages table every minute (beat job `delivery-watch`) and keeps one
`ChannelState` per territory and channel. An outage begins when a message waits for an OPERATOR_DOWN reason, or
when every attempt has failed for DELIVERY_OUTAGE_MINUTES; its territory's administrators get one e-mail, and every
agent page of the territory a banner. While it lasts, one waiting message is brought forward at each run (a probe:
the outbox's backoff may hold the others half an hour); the first message that leaves ends it: the others are
brought forward, and the administrators get the count of messages delayed and of those that missed their rdv.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from markupsafe import escape
from sqlalchemy import func, or_, select, update

from lapins import policies
from lapins.infra.extensions import db
from lapins.models import Channel, Message, MessageStatus, Territory, utcnow
from lapins.models.delivery_health import ChannelState
from lapins.models.webhooks import DeliveryStatus, Webhook, WebhookDelivery
from lapins.notifications import outbox, providers, timing
from lapins.notifications.backends import OPERATOR_DOWN, OutgoingEmail, ProviderError, TransientError

logger = logging.getLogger(__name__)

WAITING = (MessageStatus.PENDING, MessageStatus.QUEUED)
CAUSES = {
    "credit": "crédit épuisé",
    "credentials": "identifiants refusés",
    "failing": "tous les envois échouent",
}
OPERATOR_NAMES = {"twilio": "Twilio", "brevo": "Brevo", "smtp": "le serveur d'envoi (SMTP)", "console": "la console"}
CHANNEL_NAMES = {"sms": "SMS", "email": "e-mails"}
BALANCE_DAYS = 10  # the default threshold: this many days of the territory's average use
USE_DAYS = 30  # the average use is taken over this many days


def operator_of(territory: Territory, channel: str) -> str:
    """The operator a territory's channel goes through: for SMS its own choice (Twilio, Brevo), else the
    deployment's; e-mails all leave through the deployment's backend."""
    if channel == Channel.SMS:
        return providers.operator_of(territory.sms_operator)
    return current_app.config["EMAIL_BACKEND"]


def format_hour(moment: datetime) -> str:
    """« 10 h 42 » (a local time)."""
    return f"{moment.hour} h {moment.minute:02d}"


def decimal_fr(value: Decimal) -> str:
    """« 7,5 » (a Decimal without its trailing zeros, with a French decimal comma)."""
    return f"{value.normalize():f}".replace(".", ",")


def cause_text(state: ChannelState) -> str:
    operator = OPERATOR_NAMES.get(state.operator, state.operator)
    what = CAUSES.get(state.cause or "", "panne")
    return f"{what} chez {operator}" if state.cause != "failing" else f"{what} ({operator})"


def banner_text(state: ChannelState, tz) -> str:
    """« Les SMS ne partent plus depuis 10 h 42 : crédit épuisé chez Twilio » (in the territory's time zone; the
    day too when it began on another day)."""
    local = state.down_since.astimezone(tz)
    today = utcnow().astimezone(tz).date()
    when = format_hour(local) if local.date() == today else f"le {local:%d/%m} à {format_hour(local)}"
    return f"Les {CHANNEL_NAMES.get(state.channel, state.channel)} ne partent plus depuis {when} : {cause_text(state)}"


# --- Watching (beat job, every minute) ---------------------------------------------------------------------------

def watch(now: datetime | None = None) -> dict[str, int]:
    """One look at every territory's channels; returns how many outages began and ended (for the logs).

    One query finds the messages waiting after a failure, for the whole deployment (the status index, due within a
    day: a retry is never due later than that); a channel without any, and not down, costs nothing more."""
    now = now or utcnow()
    failing: dict[tuple[int, str], dict[str | None, tuple[datetime, datetime, int]]] = {}
    for territory_id, channel, code, first, last, count in db.session.execute(
            select(Message.territory_id, Message.channel, Message.error_code, func.min(Message.updated_at),
                   func.max(Message.updated_at), func.count())
            .where(Message.status.in_(WAITING), Message.due_at <= now + timedelta(days=1),
                   Message.error.is_not(None), Message.attempts >= 1)
            .group_by(Message.territory_id, Message.channel, Message.error_code)):
        failing.setdefault((territory_id, str(channel)), {})[code] = (first, last, count)
    states = {(state.territory_id, state.channel): state for state in db.session.scalars(
        select(ChannelState).where(or_(ChannelState.down_since.is_not(None), ChannelState.failing_since.is_not(None))))}
    counts = {"began": 0, "ended": 0}
    for territory_id, channel in sorted(set(failing) | set(states)):
        territory = db.session.get(Territory, territory_id)
        if territory is None:
            continue
        change = _watch_channel(territory, channel, failing.get((territory_id, channel), {}),
                                states.get((territory_id, channel)), now)
        if change:
            counts[change] += 1
    return counts


def state_of(territory: Territory, channel: str) -> ChannelState:
    state = db.session.scalar(select(ChannelState).where(ChannelState.territory_id == territory.id,
                                                         ChannelState.channel == channel))
    if state is None:
        state = ChannelState(territory_id=territory.id, channel=channel, operator=operator_of(territory, channel))
        db.session.add(state)
    return state


def _watch_channel(territory: Territory, channel: str, waiting: dict[str | None, tuple[datetime, datetime, int]],
                   state: ChannelState | None, now: datetime) -> str | None:
    state = state or state_of(territory, channel)
    state.operator = operator_of(territory, channel)
    # The last success since the failures (or the outage) began: a short backward range of ix_messages_territory_sent.
    since = min([first for first, _last, _count in waiting.values()]
                + [moment for moment in (state.down_since, state.failing_since) if moment is not None])
    last_success = db.session.scalar(select(func.max(Message.sent_at)).where(
        Message.territory_id == territory.id, Message.channel == channel, Message.sent_at >= since))
    if last_success is not None:
        state.last_success_at = last_success
    # Failures a success came after say nothing of the operator now (that success is newer than their last try).
    failures = {code: (first, count) for code, (first, last, count) in waiting.items()
                if last_success is None or last > last_success}
    change = None
    if state.down_since is not None and last_success is not None and last_success > state.down_since:
        _end_outage(territory, state, now)
        change = "ended"
    elif state.down_since is None:
        down = {code: failures[code] for code in failures if code in OPERATOR_DOWN}
        if failures:
            first = min(first for first, _count in failures.values())
            state.failing_since = min(state.failing_since or first, first)
        else:
            state.failing_since = None
        outage_after = timedelta(minutes=current_app.config["DELIVERY_OUTAGE_MINUTES"])
        if down:
            state.cause = max(down, key=lambda code: down[code][1])  # the commonest, should both be there
            state.down_since = min(first for first, _count in down.values())
        elif state.failing_since is not None and now - state.failing_since >= outage_after:
            state.cause, state.down_since = "failing", state.failing_since
        if state.down_since is not None:
            change = "began"
            logger.warning("Delivery: %s of territory %s down (%s)", channel, territory.id, state.cause)
    if state.down_since is not None and state.alerted_at is None:
        if _tell_administrators(territory, *_outage_email(territory, state)):
            state.alerted_at = now
    if state.down_since is not None and change != "ended":
        _probe(territory, channel, now)
    db.session.commit()
    return change


def _civil_now(territory: Territory, channel: str, now: datetime) -> datetime:
    """Now, or for SMS in the territory's quiet hours, their end: what is brought forward never wakes a family."""
    if channel != Channel.SMS:
        return now
    return timing.civil_time(now, now=now, tz=territory.tz, quiet_start=territory.quiet_hours_start,
                             quiet_end=territory.quiet_hours_end, deadline=None)


def _probe(territory: Territory, channel: str, now: datetime) -> None:
    """One waiting message brought forward, due at once: the operator's recovery shows within a beat or two."""
    at = _civil_now(territory, channel, now)
    first = db.session.scalar(
        select(Message.id).where(Message.territory_id == territory.id, Message.channel == channel,
                                 Message.status == MessageStatus.PENDING, Message.error.is_not(None),
                                 Message.due_at > at, or_(Message.expires_at.is_(None), Message.expires_at > at))
        .order_by(Message.expires_at, Message.id).limit(1))
    if first is not None:
        db.session.execute(update(Message).where(Message.id == first, Message.status == MessageStatus.PENDING)
                           .values(due_at=at).execution_options(synchronize_session=False))


def _end_outage(territory: Territory, state: ChannelState, now: datetime) -> None:
    """The channel sends again: what waited goes now (after the quiet hours), and the administrators hear how many
    messages were delayed and how many missed their rdv."""
    of_channel = (Message.territory_id == territory.id, Message.channel == state.channel)
    codes = OPERATOR_DOWN if state.cause in OPERATOR_DOWN else None
    held = [Message.error_code.in_(codes)] if codes else [Message.error.is_not(None)]
    waiting = db.session.scalar(select(func.count()).where(*of_channel, Message.status.in_(WAITING), *held,
                                                           Message.attempts >= 1))
    missed = db.session.scalar(select(func.count()).where(
        *of_channel, Message.status == MessageStatus.FAILED, Message.updated_at >= state.down_since,
        Message.error.like(f"{outbox.TOO_LATE}%"), *held))
    sent_late = db.session.scalar(select(func.count()).where(
        *of_channel, Message.sent_at > state.down_since, Message.attempts > 1))
    at = _civil_now(territory, state.channel, now)
    # Their tries so far were the operator's failures, not theirs: they start again with the whole retry budget
    # (a burst of 429s as everything leaves at once must not give up on a message tried 100 times over a weekend).
    db.session.execute(update(Message).where(*of_channel, Message.status == MessageStatus.PENDING, *held)
                       .values(attempts=1).execution_options(synchronize_session=False))
    db.session.execute(update(Message).where(*of_channel, Message.status == MessageStatus.PENDING, *held,
                                             Message.due_at > at)
                       .values(due_at=at).execution_options(synchronize_session=False))
    delayed = waiting + missed + sent_late
    logger.info("Delivery: %s of territory %s back (%d delayed, %d missed their rdv)", state.channel, territory.id,
                delayed, missed)
    if state.alerted_at is not None:  # told it stopped: told it is back
        _tell_administrators(territory, *_recovery_email(territory, state, delayed, missed, now))
    state.down_since = state.cause = state.alerted_at = state.failing_since = None


def _outage_email(territory: Territory, state: ChannelState) -> tuple[str, str, str]:
    banner = banner_text(state, territory.tz)
    channel = CHANNEL_NAMES.get(state.channel, state.channel)
    advice = {
        "credit": "Rechargez le compte auprès de l'opérateur : les messages en attente partiront dès qu'il enverra "
                  "de nouveau, tant que leur rendez-vous n'a pas commencé.",
        "credentials": "Vérifiez les identifiants de l'opérateur dans les paramètres du territoire.",
    }.get(state.cause or "", "Les envois sont retentés jusqu'au début de chaque rendez-vous.")
    return (f"{channel} bloqués : {cause_text(state)}", f"{banner}.", advice)


def _recovery_email(territory: Territory, state: ChannelState, delayed: int, missed: int,
                    now: datetime) -> tuple[str, str, str]:
    channel = CHANNEL_NAMES.get(state.channel, state.channel)
    since = state.down_since.astimezone(territory.tz)
    back = now.astimezone(territory.tz)
    told = (f"Les {channel} partent de nouveau depuis {format_hour(back)} (interruption depuis le "
            f"{since:%d/%m} à {format_hour(since)} : {cause_text(state)}).")
    counts = (f"{delayed} message{'s' if delayed > 1 else ''} retardé{'s' if delayed > 1 else ''}, dont {missed} "
              f"non envoyé{'s' if missed > 1 else ''} avant le début de {'leur' if missed > 1 else 'son'} "
              "rendez-vous (à retrouver dans « À confirmer » et l'historique des SMS).")
    return (f"{channel} de nouveau envoyés", told, counts)


def _tell_administrators(territory: Territory, subject: str, *paragraphs: str) -> bool:
    """One e-mail to each administrator of the territory; True when at least one left (none: tried again at the
    next run). No family's data in it."""
    public_url = current_app.config["PUBLIC_URL"].rstrip("/")
    page = f"{public_url}/sante-des-envois/{territory.id}"
    sent = False
    for agent in policies.territory_administrators(territory):
        lines = [f"Bonjour {agent.first_name},", *paragraphs, f"Santé des envois : {page}"]
        html = "".join(f"<p>{escape(line)}</p>" for line in lines[:-1])
        html += f'<p><a href="{escape(page)}">Santé des envois</a></p>'
        email = OutgoingEmail(
            message_id=f"delivery-{territory.id}-{agent.id}-{utcnow().timestamp():.0f}-{abs(hash(subject)) % 10**6}",
            to=agent.email, subject=f"[Lapins] {subject}", text="\n\n".join(lines) + "\n",
            html=f'<!doctype html><html lang="fr"><body>{html}</body></html>')
        try:
            providers.email_backend().send(email)
            sent = True
        except ProviderError as error:
            logger.warning("Delivery alert to agent %s not sent (code %s)", agent.id, error.code)
    return sent


# --- The daily balance check -------------------------------------------------------------------------------------

def check_balances(now: datetime | None = None) -> int:
    """Read each territory's SMS balance where its operator tells it; warn its administrators (once a day at most)
    below the threshold. Returns how many warnings left."""
    now = now or utcnow()
    warned = 0
    for territory in db.session.scalars(select(Territory).order_by(Territory.id)).all():
        try:
            backend = providers.sms_backend(account=outbox.provider_account(territory))
        except (TransientError, RuntimeError):
            continue  # unreadable credentials (the watcher tells that already), or no Twilio account configured
        if not hasattr(backend, "balance"):
            continue
        try:
            balance = backend.balance()
        except ProviderError as error:
            logger.warning("Balance of territory %s not read (code %s)", territory.id, error.code)
            continue
        if balance is None:
            continue
        state = state_of(territory, str(Channel.SMS))
        state.balance_amount = Decimal(balance.messages) if balance.messages is not None else balance.amount
        state.balance_unit = "SMS" if balance.messages is not None else (balance.currency or "")
        state.balance_checked_at = now
        threshold = balance_threshold(territory, state)
        if (threshold is not None and state.balance_amount is not None and state.balance_amount < threshold
                and (state.balance_warned_at is None or now - state.balance_warned_at >= timedelta(hours=20))):
            amount = f"{decimal_fr(state.balance_amount)} {state.balance_unit}".strip()
            if _tell_administrators(
                    territory, "Crédit SMS bientôt épuisé",
                    f"Il reste {amount} sur le compte SMS ({OPERATOR_NAMES.get(state.operator, state.operator)}), "
                    f"sous le seuil de {decimal_fr(threshold)} {state.balance_unit}.".replace(" .", "."),
                    "Rechargez le compte avant qu'il ne soit épuisé : les SMS s'arrêteraient."):
                state.balance_warned_at = now
                warned += 1
        db.session.commit()
    return warned


def balance_threshold(territory: Territory, state: ChannelState) -> Decimal | None:
    """The threshold set on the health page, else BALANCE_DAYS of the territory's average use (segments a day
    over USE_DAYS; priced at SMS_SEGMENT_PRICE when the operator counts money)."""
    if state.balance_threshold is not None:
        return state.balance_threshold
    since = utcnow() - timedelta(days=USE_DAYS)
    segments = db.session.scalar(select(func.coalesce(func.sum(func.coalesce(Message.segments, 1)), 0)).where(
        Message.territory_id == territory.id, Message.channel == Channel.SMS, Message.sent_at >= since)) or 0
    if not segments:
        return None
    use = Decimal(segments) * BALANCE_DAYS / USE_DAYS
    if state.balance_unit != "SMS":
        use *= Decimal(str(current_app.config["SMS_SEGMENT_PRICE"]))
    return use.quantize(Decimal("0.01"))


# --- Figures: the health page, /healthz, /metrics ----------------------------------------------------------------

@dataclass
class ChannelFigures:
    name: str
    channel: str  # "sms", "email" or "webhook"
    last_success: datetime | None
    pending: int
    oldest_pending: timedelta | None
    failures_day: dict[str, int] = field(default_factory=dict)
    failures_month: dict[str, int] = field(default_factory=dict)
    segments_month: int | None = None
    state: ChannelState | None = None
    webhook: Webhook | None = None


def territory_figures(territory: Territory, now: datetime | None = None) -> list[ChannelFigures]:
    now = now or utcnow()
    figures = []
    for channel in (str(Channel.SMS), str(Channel.EMAIL)):
        state = db.session.scalar(select(ChannelState).where(ChannelState.territory_id == territory.id,
                                                             ChannelState.channel == channel))
        operator = operator_of(territory, channel)
        of_channel = (Message.territory_id == territory.id, Message.channel == channel)
        pending, oldest = db.session.execute(select(func.count(), func.min(Message.due_at)).where(
            *of_channel, Message.status.in_(WAITING), Message.due_at <= now)).one()
        label = f"SMS — {OPERATOR_NAMES.get(operator, operator)}" if channel == Channel.SMS else \
            f"E-mails — {OPERATOR_NAMES.get(operator, operator)}"
        item = ChannelFigures(
            name=label, channel=channel,
            last_success=db.session.scalar(select(func.max(Message.sent_at)).where(*of_channel)),
            pending=pending, oldest_pending=(now - oldest) if oldest else None,
            failures_day=_message_failures(of_channel, now - timedelta(days=1)),
            failures_month=_message_failures(of_channel, now - timedelta(days=30)), state=state)
        if channel == Channel.SMS:
            month_start = now.astimezone(territory.tz).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            item.segments_month = db.session.scalar(select(func.coalesce(func.sum(Message.segments), 0)).where(
                *of_channel, Message.sent_at >= month_start)) or 0
        figures.append(item)
    for webhook in db.session.scalars(select(Webhook).join(Webhook.organisation)
                                      .where(Webhook.organisation.has(territory_id=territory.id))
                                      .order_by(Webhook.id)):
        figures.append(webhook_figures(webhook, now))
    return figures


def _message_failures(of_channel, since: datetime) -> dict[str, int]:
    rows = db.session.execute(
        select(Message.error_code, func.count()).where(
            *of_channel, Message.updated_at >= since, Message.error.is_not(None),
            Message.status.in_([MessageStatus.FAILED, MessageStatus.UNDELIVERABLE, MessageStatus.PENDING,
                                MessageStatus.QUEUED]))
        .group_by(Message.error_code))
    return {code or "autre": count for code, count in rows}


def webhook_figures(webhook: Webhook, now: datetime) -> ChannelFigures:
    of_hook = WebhookDelivery.webhook_id == webhook.id
    pending, oldest = db.session.execute(select(func.count(), func.min(WebhookDelivery.created_at)).where(
        of_hook, WebhookDelivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]))).one()

    def failures(since: datetime) -> dict[str, int]:
        rows = db.session.execute(select(WebhookDelivery.last_error, func.count()).where(
            of_hook, WebhookDelivery.created_at >= since, WebhookDelivery.last_error.is_not(None))
            .group_by(WebhookDelivery.last_error))
        return {error: count for error, count in rows}

    return ChannelFigures(
        name=f"Webhook {webhook.description or webhook.url}", channel="webhook",
        last_success=db.session.scalar(select(func.max(WebhookDelivery.delivered_at)).where(of_hook)),
        pending=pending, oldest_pending=(now - oldest) if oldest else None,
        failures_day=failures(now - timedelta(days=1)), failures_month=failures(now - timedelta(days=30)),
        webhook=webhook)


def deployment_figures(now: datetime | None = None, *, detailed: bool = True) -> dict:
    """Numbers only, for /healthz and /metrics: no name, no address, territories and webhooks by id. /healthz,
    asked every few seconds by load balancers, leaves out (`detailed`) what scans a day or a month of messages."""
    now = now or utcnow()
    channels = {}
    for channel in (str(Channel.SMS), str(Channel.EMAIL)):
        pending, oldest = db.session.execute(select(func.count(), func.min(Message.due_at)).where(
            Message.channel == channel, Message.status.in_(WAITING), Message.due_at <= now)).one()
        channels[channel] = {"pending": pending,
                             "oldest_pending_seconds": int((now - oldest).total_seconds()) if oldest else 0}
        if detailed:
            channels[channel]["failed_24h"] = db.session.scalar(select(func.count()).where(
                Message.channel == channel, Message.updated_at >= now - timedelta(days=1),
                Message.status.in_([MessageStatus.FAILED, MessageStatus.UNDELIVERABLE])))
    outages = [{"territory": state.territory_id, "channel": state.channel, "cause": state.cause,
                "seconds": int((now - state.down_since).total_seconds())}
               for state in db.session.scalars(select(ChannelState).where(ChannelState.down_since.is_not(None))
                                               .order_by(ChannelState.id))]
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    segments = {territory: int(total or 0) for territory, total in db.session.execute(
        select(Message.territory_id, func.sum(Message.segments)).where(
            Message.channel == Channel.SMS, Message.sent_at >= month_start).group_by(Message.territory_id))
        } if detailed else {}
    webhooks = {}
    for webhook_id, paused_at, failures in db.session.execute(
            select(Webhook.id, Webhook.paused_at, Webhook.consecutive_failures).where(Webhook.active.is_(True))
            .order_by(Webhook.id)):
        pending = db.session.scalar(select(func.count()).where(
            WebhookDelivery.webhook_id == webhook_id,
            WebhookDelivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING])))
        webhooks[webhook_id] = {"pending": pending, "consecutive_failures": failures, "paused": paused_at is not None}
    figures = {"channels": channels, "outages": outages, "webhooks": webhooks}
    if detailed:
        figures["segments_month"] = segments
    return figures


def outages_for(territory_ids: set[int]) -> list[ChannelState]:
    """The channels down in these territories, for the banner."""
    if not territory_ids:
        return []
    return list(db.session.scalars(select(ChannelState).where(
        ChannelState.territory_id.in_(sorted(territory_ids)), ChannelState.down_since.is_not(None))
        .order_by(ChannelState.territory_id, ChannelState.channel)))
