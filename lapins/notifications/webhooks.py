"""Operators calling Lapins: Twilio's delivery statuses and the SMS families send us (STOP, OUI, ANNULER); Brevo's
delivery statuses, unsubscriptions and STOP replies (at the end of this module, its own way of checking them).

Both routes are CSRF-exempt (Twilio has no session) and accept only requests signed by Twilio
(`X-Twilio-Signature`, HMAC of the URL Twilio called and the POSTed form, keyed with the Auth Token of the Twilio
account that sent the SMS: the territory's own when it has one, else TWILIO_AUTH_TOKEN).

Which territory a request is about is read from the request before it is verified (`_territories_of`): a status
callback names our message (MessageSid, whose row knows its territory), an inbound SMS the number or Messaging
Service it was sent to (To, MessagingServiceSid), which may be shared by several territories. The signature is then
checked against each candidate token: the own tokens of those territories, and the environment's for those of
them without one (and for a request naming no territory of ours). Choosing candidates from unverified fields is
safe: a forger still needs one of those tokens, and what the view then acts on is limited to the territories whose
token did verify (`g.twilio_territory_ids`), so one territory's Auth Token never opens another territory's data.
(STOP stays what it was: any verified request withdraws SMS consent wherever the number is known, the safe way.)

The URL Twilio signed is the public one: PUBLIC_URL + path + query string. Behind a reverse proxy the request
seen here carries another host, scheme or port (http://127.0.0.1:8000/...), so the request's own URL is never
used: PUBLIC_URL must be exactly the address Twilio is given (status callbacks are built from it, see
`status_callback_url`; the inbound URL is set on the number or Messaging Service in Twilio's console).

Each request is acted on once (`act_once`): its MessageSid (and, for a status, MessageStatus) is recorded with a
unique constraint in the transaction of what it does, so the same signed request posted again (Twilio's signature
has no date: anyone who caught one could replay it, and a replayed ANNULER would cancel the next rdv) is answered
200 with nothing done, even when both copies arrive at the same moment. A delivery status is also applied by a
conditional UPDATE (`record_status`): a late or duplicated status never moves a message back nor counts twice.

Each request writes in one commit and answers at once; nothing a family sent (number, text) is logged.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import TypeVar

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import delete, inspect, or_, select, update
from sqlalchemy.exc import IntegrityError
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from lapins.infra.extensions import csrf, db
from lapins.models import Message, MessageStatus, Territory, Usager, utcnow
from lapins.models.messages import TwilioCallback
from lapins.notifications.twilio import error_text, is_undeliverable
from lapins.infra import crypto
from lapins.notifications import replies

logger = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)
csrf.exempt(bp)

STATUS_PATH = "/webhooks/twilio/statut"
INBOUND_PATH = "/webhooks/twilio/entrant"

# A message in one of these states has its final word: a late or repeated callback changes nothing.
SETTLED = frozenset({MessageStatus.DELIVERED, MessageStatus.FAILED, MessageStatus.UNDELIVERABLE,
                     MessageStatus.SKIPPED})
DELIVERED_STATUSES = frozenset({"delivered", "read"})
FAILED_STATUSES = frozenset({"undelivered", "failed"})

T = TypeVar("T")

OPT_OUT_REPLY = "Vous ne recevrez plus de SMS de rappel. Pour les réactiver, contactez votre PMI."


def status_callback_url() -> str:
    """The StatusCallback URL to give Twilio with each SMS."""
    return current_app.config["PUBLIC_URL"].rstrip("/") + STATUS_PATH


def status_callback_for(operator: str, message_id: int) -> str | None:
    """The status callback URL to give `operator` with this message (None: the console, which has none)."""
    if operator == "twilio":
        return status_callback_url()
    if operator == "brevo":
        return brevo_status_callback_url(message_id)
    return None


def twilio_signed(find_territories: Callable[[], list[Territory]]) -> Callable[[Callable], Callable]:
    """Refuses (403) a request that Twilio did not sign with the Auth Token of the territories it is about
    (`find_territories`, read from the request) or, for those without one, with TWILIO_AUTH_TOKEN; before the view
    acts on anything. The view finds in `g.twilio_territory_ids` the territories whose token verified."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            candidates = candidate_tokens(find_territories())
            if not candidates:
                logger.warning("Twilio webhook refused: no Auth Token (TWILIO_AUTH_TOKEN or the territory's) to "
                               "check the signature with")
                return Response("Signature invalide.", 403, mimetype="text/plain")
            signature, url = request.headers.get("X-Twilio-Signature", ""), signed_url()
            verified = [territory_ids for token, territory_ids in candidates.items()
                        if signature and RequestValidator(token).validate(url, request.form, signature)]
            if not verified:
                logger.warning("Twilio webhook refused: bad or missing signature on %s", request.path)
                return Response("Signature invalide.", 403, mimetype="text/plain")
            g.twilio_territory_ids = frozenset().union(*verified)
            return view(*args, **kwargs)

        return wrapped

    return decorator


INBOUND, STATUS = "inbound", "status"  # TwilioCallback.kind


def act_once(kind: str, action: Callable[[], T]) -> tuple[bool, T | None]:
    """Runs `action` and commits, for the first copy of this signed request only: (True, its result); any other
    copy gets (False, None) and nothing is done.

    The request's row (TwilioCallback: its MessageSid, and MessageStatus for a status) is flushed before the action
    and committed with it: a copy arriving meanwhile waits on the unique index for that commit, then fails on it
    (IntegrityError) and does nothing. Should the action roll back a refusal of its own (an rdv cancelled by someone
    else meanwhile), the row is written again after it, so that no later copy acts either. An action that fails
    (500) leaves no row. Called once the view knows it has something to do for the territories whose token verified,
    so that a copy signed with a token that speaks for none of them cannot use up the request."""
    sid = request.form.get("MessageSid", "").strip()[:64]
    if not sid:  # Twilio always sends one: without it, a request cannot be told from its copies
        logger.warning("Twilio webhook without MessageSid on %s: nothing done", request.path)
        return False, None
    status = request.form.get("MessageStatus", "").strip().lower()[:20] if kind == STATUS else ""
    record = TwilioCallback(kind=kind, message_sid=sid, status=status)
    if not _recorded(record):
        logger.info("Twilio %s callback %s %s already handled: nothing done", kind, sid, status)
        return False, None
    result = action()
    if inspect(record).transient:
        _recorded(TwilioCallback(kind=kind, message_sid=sid, status=status))
    db.session.commit()
    return True, result


def _recorded(record: TwilioCallback) -> bool:
    """Adds and flushes the request's row; False when it was there already (a copy of a request handled)."""
    db.session.add(record)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def candidate_tokens(territories: list[Territory]) -> dict[str, frozenset[int]]:
    """Auth Token → the territories (ids) a request signed with it may be about."""
    by_token: dict[str, set[int]] = {}
    environment = current_app.config.get("TWILIO_AUTH_TOKEN")
    if environment:
        by_token[environment] = set()
    for territory in territories:
        if territory.twilio_auth_token_encrypted:
            try:
                token = crypto.decrypt(territory.twilio_auth_token_encrypted)
            except crypto.InvalidToken:
                logger.warning("Territory %s: its Twilio Auth Token cannot be decrypted", territory.id)
                continue
            by_token.setdefault(token, set()).add(territory.id)
        elif environment:
            by_token[environment].add(territory.id)
    return {token: frozenset(ids) for token, ids in by_token.items()}


def _status_territories() -> list[Territory]:
    sid = request.form.get("MessageSid", "")
    territory_id = db.session.scalar(select(Message.territory_id).where(Message.provider_id == sid)) if sid else None
    territory = db.session.get(Territory, territory_id) if territory_id is not None else None
    return [territory] if territory is not None else []


def _inbound_territories() -> list[Territory]:
    """The territories whose sender (number or Messaging Service) the SMS was sent to, taking replies or not."""
    to, service = request.form.get("To", "").strip(), request.form.get("MessagingServiceSid", "").strip()
    conditions = [Territory.sms_sender == to] if to else []
    if service:
        conditions.append(Territory.twilio_messaging_service_sid == service)
    if not conditions:
        return []
    return list(db.session.scalars(select(Territory).where(or_(*conditions))))


def signed_url() -> str:
    """The URL Twilio called, as it signed it: PUBLIC_URL, never the host the proxy handed us."""
    url = current_app.config["PUBLIC_URL"].rstrip("/") + request.path
    if request.query_string:
        url += "?" + request.query_string.decode()
    return url


@bp.post(STATUS_PATH)
@twilio_signed(_status_territories)
def status():
    sid = request.form.get("MessageSid", "")
    message = db.session.scalar(select(Message).where(Message.provider_id == sid)) if sid else None
    if message is None or message.territory_id not in g.twilio_territory_ids:
        # Not ours (another application on the account) or not recorded yet: Twilio must not retry it. A final
        # status for a sid not recorded yet may have overtaken the send's answer: kept a day for it.
        if message is None and sid:
            _keep_early(sid)
        return Response("", 200)
    done, _ = act_once(STATUS, lambda: record_status(message, request.form.get("MessageStatus", "").lower(),
                                                     request.form.get("ErrorCode") or None, utcnow()))
    return Response("", 204 if done else 200)  # a copy: 200, and Twilio stops there too


EARLY = "early"  # TwilioCallback.kind of a final status that came before its send's answer
EARLY_KEPT = timedelta(days=1)


def _keep_early(sid: str) -> None:
    """A final status (delivered, undelivered...) for a MessageSid the outbox has not recorded yet: Twilio's
    callback overtook the answer to the send (or the send timed out and find_sent will record it). Kept, with its
    error code, for `apply_early_statuses`. Only the environment's token can have verified it (the message, not yet
    ours, names no territory), so it will apply only to a territory using that account."""
    status = request.form.get("MessageStatus", "").strip().lower()
    if status not in DELIVERED_STATUSES | FAILED_STATUSES:
        return
    code = (request.form.get("ErrorCode") or "").strip()
    value = f"{status}:{code}"[:20] if code else status
    if _recorded(TwilioCallback(kind=EARLY, message_sid=sid[:64], status=value)):
        db.session.commit()
        logger.info("Twilio status %s for %s came before its send was recorded: kept", status, sid[:64])


def apply_early_statuses(now: datetime | None = None) -> int:
    """The kept early statuses whose message is now recorded, applied (record_status: never moving a message back);
    those kept longer than EARLY_KEPT (another application's messages) forgotten. Beat job `sms-early-statuses`."""
    now = now or utcnow()
    applied = 0
    for callback, message in db.session.execute(
            select(TwilioCallback, Message).join(Message, Message.provider_id == TwilioCallback.message_sid)
            .where(TwilioCallback.kind == EARLY).order_by(TwilioCallback.id)).all():
        territory = db.session.get(Territory, message.territory_id)
        if territory is not None and not territory.has_twilio_credentials:
            status, _, code = callback.status.partition(":")
            record_status(message, status, code or None, now)
            applied += 1
        db.session.delete(callback)
    db.session.execute(delete(TwilioCallback).where(TwilioCallback.kind == EARLY,
                                                    TwilioCallback.received_at < now - EARLY_KEPT))
    db.session.commit()
    return applied


def record_status(message: Message, twilio_status: str, error_code: str | None, now: datetime) -> None:
    """Applies a Twilio delivery status to a message, never moving it back from a settled state.

    A conditional UPDATE: of two statuses at the same moment (a duplicate, a late one), only the first settles the
    message, and only it flags an undeliverable phone."""
    if twilio_status in DELIVERED_STATUSES:
        values = {"status": MessageStatus.DELIVERED, "delivered_at": now}
    elif twilio_status in FAILED_STATUSES:
        error_code = error_code[:20] if error_code else None
        values = {"status": MessageStatus.UNDELIVERABLE if is_undeliverable(error_code) else MessageStatus.FAILED,
                  "error_code": error_code, "error": error_text(error_code)}
    else:
        return  # queued, accepted, sending, sent: the message stays as the outbox left it (sent).
    settle(message, values, now)


def settle(message: Message, values: dict, now: datetime) -> None:
    """Gives a message its final status (`values`) unless it has one already; flags the phone when it is
    undeliverable. Whatever operator reported it."""
    settled = db.session.execute(
        update(Message).where(Message.id == message.id, Message.status.not_in(SETTLED)).values(**values)
        .execution_options(synchronize_session=False)).rowcount
    if settled and values["status"] == MessageStatus.UNDELIVERABLE:
        flag_undeliverable_phone(message, values["error"], now)


def flag_undeliverable_phone(message: Message, reason: str, now: datetime) -> None:
    """No more SMS to this number until an agent changes it: every usager who has it is flagged."""
    phone = message.to_address or (message.usager.phone if message.usager else None)
    if not phone:
        return
    usagers = db.session.scalars(select(Usager).where(Usager.phone == phone)).all()
    for usager in usagers:
        usager.phone_undeliverable_at = usager.phone_undeliverable_at or now
        usager.phone_error = reason
    logger.info("Message %s: phone flagged undeliverable for %d usager(s)", message.id, len(usagers))


# --- inbound SMS ---------------------------------------------------------------------------------------------


def withdraw_sms_consent(phone: str) -> str | None:
    """STOP: every usager with this number stops receiving SMS. The reply, or None when the number is unknown."""
    result = db.session.execute(update(Usager).where(Usager.phone == phone).values(sms_consent=False)
                                .execution_options(synchronize_session=False))
    logger.info("Inbound SMS: SMS consent withdrawn for %d usager(s)", result.rowcount)
    return OPT_OUT_REPLY if result.rowcount else None


# A normalised keyword → what it does with the sender's phone (E.164); returns the reply text, or None.
INBOUND_KEYWORDS: dict[str, Callable[[str], str | None]] = {
    keyword: withdraw_sms_consent for keyword in ("STOP", "STOP SMS", "ARRET", "DESABONNER", "UNSUBSCRIBE")
}


def normalize_keyword(body: str) -> str:
    """ " Arrêt. " → "ARRET": accents dropped, upper case, spaces collapsed, end punctuation ignored."""
    decomposed = unicodedata.normalize("NFKD", body)
    text = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(text.upper().split()).strip(" .!?;,")


@bp.post(INBOUND_PATH)
@twilio_signed(_inbound_territories)
def inbound():
    """STOP from anyone; OUI / ANNULER where the territory's sender takes replies (lapins.notifications.replies)."""
    keyword = normalize_keyword(request.form.get("Body", ""))
    phone = request.form.get("From", "").strip()
    handler = INBOUND_KEYWORDS.get(keyword)
    reply = None
    if phone and handler:
        _, reply = act_once(INBOUND, lambda: handler(phone))
    elif phone and (territory_ids := [
            territory_id for territory_id in replies.territories_reached(
                request.form.get("To", "").strip(), request.form.get("MessagingServiceSid", "").strip())
            if territory_id in g.twilio_territory_ids]):
        _, reply = act_once(INBOUND, lambda: replies.answer(phone, territory_ids, replies.parse(keyword)))
    db.session.commit()
    twiml = MessagingResponse()
    if reply:
        twiml.message(reply)
    return Response(str(twiml), 200, mimetype="application/xml")


# --- Brevo's delivery statuses ------------------------------------------------------------------------------------
#
# Brevo signs nothing it posts back. Each SMS is given its own callback URL, PUBLIC_URL + BREVO_STATUS_PATH +
# ?m=<outbox id>&t=<token>, the token an HMAC of that id under SECRET_KEY, compared in constant time: a request
# without the token of its message is refused (403) before anything is read. Only whoever can read that URL (Brevo,
# our logs of the reverse proxy) can post a status, and only for that message. Statuses are applied by `settle`, a
# conditional UPDATE: a repeated or late one changes nothing, one arriving before the send returned is kept
# (outbox._sent_values). Brevo's unsubscription event, or a reply STOP, withdraws SMS consent like Twilio's STOP.

BREVO_STATUS_PATH = "/webhooks/brevo/statut"
BREVO_DELIVERED = frozenset({"delivered"})
BREVO_UNDELIVERABLE = frozenset({"hard_bounce", "hardbounce", "hardbounces", "invalid_number"})
BREVO_FAILED = frozenset({"soft_bounce", "softbounce", "softbounces", "blocked", "rejected", "skip", "skipped",
                          "error"})
BREVO_UNSUBSCRIBED = frozenset({"unsubscribe", "unsubscribed", "unsubscription"})
BREVO_REPLIED = frozenset({"replied", "reply", "replies"})
BREVO_ERRORS = {
    "undeliverable": "Numéro inconnu, invalide ou qui ne reçoit pas de SMS (Brevo : échec définitif).",
    "failed": "Le SMS n'a pas pu être remis (Brevo : {status}).",
}


def brevo_token(message_id: int) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"brevo-status:{message_id}".encode(), hashlib.sha256).hexdigest()[:32]


def brevo_status_callback_url(message_id: int) -> str:
    return (f"{current_app.config['PUBLIC_URL'].rstrip('/')}{BREVO_STATUS_PATH}"
            f"?m={message_id}&t={brevo_token(message_id)}")


def brevo_callback_key() -> str:
    """The rate limit's key: the message the callback names (lapins.auth.limits)."""
    return "brevo:" + request.args.get("m", "")[:20]


@bp.post(BREVO_STATUS_PATH)
def brevo_status():
    """A delivery status (or an unsubscription, a reply) of one SMS sent through Brevo."""
    raw_id, token = request.args.get("m", ""), request.args.get("t", "")
    if not raw_id.isdigit() or len(raw_id) > 18 or not hmac.compare_digest(token.encode(), brevo_token(int(raw_id)).encode()):
        logger.warning("Brevo callback refused: bad or missing token")
        return Response("Jeton invalide.", 403, mimetype="text/plain")
    message = db.session.get(Message, int(raw_id))
    if message is None:
        logger.info("Brevo callback for message %s, unknown here: nothing done", raw_id)
        return Response("", 200)
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        logger.warning("Brevo callback for message %s without a JSON object: nothing done", message.id)
        return Response("Corps illisible.", 400, mimetype="text/plain")
    status = str(payload.get("msg_status") or payload.get("event") or "").strip().lower()[:30]
    brevo_id = str(payload.get("messageId") or "")[:64]
    if message.provider_id and brevo_id and brevo_id != message.provider_id:
        logger.info("Brevo callback for message %s names another Brevo message: nothing done", message.id)
        return Response("", 200)
    now = utcnow()
    if status in BREVO_DELIVERED:
        settle(message, {"status": MessageStatus.DELIVERED, "delivered_at": now}, now)
    elif status in BREVO_UNDELIVERABLE:
        settle(message, {"status": MessageStatus.UNDELIVERABLE, "error_code": status[:20],
                         "error": BREVO_ERRORS["undeliverable"]}, now)
    elif status in BREVO_FAILED:
        settle(message, {"status": MessageStatus.FAILED, "error_code": status[:20],
                         "error": BREVO_ERRORS["failed"].format(status=status)[:255]}, now)
    elif status in BREVO_UNSUBSCRIBED or (
            status in BREVO_REPLIED
            and INBOUND_KEYWORDS.get(normalize_keyword(str(payload.get("reply") or ""))) is withdraw_sms_consent):
        if message.to_address:
            withdraw_sms_consent(message.to_address)
    else:
        logger.info("Brevo callback for message %s: status %r, nothing to do", message.id, status)
    db.session.commit()
    return Response("", 204)
