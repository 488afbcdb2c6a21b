"""Rate limits (Flask-Limiter) on the account forms (password, second-factor code, reset link, enrolment codes), on
the family's identity check of its link (per rdv and per client address), on its pages to move its rdv (the same,
all of them together), on every other page of its links (per client address, and per link for the answers that
change something), on the REST API (per token and per client address, all its routes together) and on signing in
with the OpenID Connect provider (per client address, the start and the callback together), on Brevo's status
callbacks (per message), on the public commune search (per client address), on the online booking's forms (per
client address, and per number for the SMS codes sent and tried: `count_online_number`).

Every attempt counts, per client address and per account tried, whether that account exists or not: the answer to
the tenth attempt on an unknown e-mail is the one given for a real account, so counting tells no one who has an
account. The keys are HMACs of the address and of the e-mail, so Redis and Flask-Limiter's log line hold neither.

Each app builds its own Limiter in `init_app` (kept in app.extensions): Flask-Limiter keeps its storage and its
`enabled` flag on the instance, and a process-wide one would carry counts from one app to the next. Counts are
shared by every process that uses the same RATELIMIT_STORAGE_URI (Redis in production); memory:// counts per process.
When Redis cannot be reached, counting goes on in the process's memory (logged) rather than refusing every login.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

from flask import Flask, current_app, render_template, request, session
from flask_limiter import Limiter, RateLimitExceeded
from limits import parse_many
from flask_login import current_user

from lapins.auth.blueprint import bp
from lapins.auth.forms import LoginForm, SecondFactorForm
from lapins.auth.passwords import ResetRequestForm
from lapins.notifications.links import rdv_id_from_token
from lapins.notifications.webhooks import brevo_callback_key

logger = logging.getLogger(__name__)

EXTENSION = "lapins.limiter"
PENDING_SECOND_FACTOR = "second_factor_pending"  # lapins.auth.views: the agent who gave their password

TOO_MANY_LOGINS = "Trop de tentatives de connexion. Réessayez dans quelques minutes."
TOO_MANY_RESETS = "Trop de demandes de lien. Réessayez dans quelques minutes."
TOO_MANY_CODES = "Trop de codes essayés. Réessayez dans quelques minutes."
TOO_MANY_CHECKS = ("Trop d'essais pour vérifier le nom de famille. Réessayez dans quelques minutes, ou appelez votre "
                   "centre de PMI.")
TOO_MANY_MOVES = ("Trop de demandes pour changer la date de ce rendez-vous. Réessayez dans quelques minutes, ou appelez "
                  "votre centre de PMI.")
FAMILY_MOVE_ENDPOINTS = ("family.move_picker", "family.confirm_move", "family.move")
TOO_MANY_REQUESTS = ("Trop de demandes depuis cette connexion ou sur ce lien. Réessayez dans quelques minutes, ou "
                     "appelez votre centre de PMI.")
# The family's other pages (FAMILY_LINK_LIMITS_PER_IP), and among them those that change something
# (FAMILY_ACTION_LIMITS_PER_LINK as well): the identity check and the move's pages have limits of their own above.
FAMILY_LINK_ENDPOINTS = ("family.rdv_page", "family.rdv_calendar", "family.cancel", "family.cancelled", "family.moved",
                         "family.offer_page", "family.accept_offer", "family.decline_offer",
                         "family.ask_earlier_slot", "family.place_page", "family.cancel_place")
FAMILY_ACTION_ENDPOINTS = ("family.cancel", "family.accept_offer", "family.decline_offer", "family.ask_earlier_slot",
                           "family.cancel_place")
MOVE_RDV_SCOPE, MOVE_IP_SCOPE = "family-move-rdv", "family-move-ip"  # their limits' buckets, shared by the three
ONLINE_BOOKING_ENDPOINTS = ("public.online_details", "public.online_waitlist", "public.online_code",
                            "public.online_resend", "public.online_session", "public.online_session_waitlist")
# Its searches, GETs that each read the agendas (lapins.public.online_views).
ONLINE_SEARCH_ENDPOINTS = ("public.online_start", "public.online_dates")
# Signing in with the OpenID Connect provider (lapins.auth.oidc_views): GETs, counted per client address.
OIDC_ENDPOINTS = ("auth.oidc_start", "auth.oidc_callback")


def _digest(kind: str, value: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def client_address() -> str:
    return address_of(request.environ)


def address_of(environ) -> str:
    """The client's address (as an HMAC); behind TRUSTED_PROXIES proxies, the one the outermost of them saw."""
    address = environ.get("REMOTE_ADDR") or "unknown"
    proxies = current_app.config["TRUSTED_PROXIES"]
    if proxies > 0:
        forwarded = [part.strip() for part in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            address = forwarded[-proxies]
    return _digest("ip", address)


def email_tried() -> str:
    return _digest("email", request.form.get("email", "").strip().lower())


def agent_pending() -> str:
    pending = session.get(PENDING_SECOND_FACTOR)
    return _digest("agent", str(pending.get("agent") if isinstance(pending, dict) else None))


def signed_in_agent() -> str:
    # The agent's id alone, as agent_pending's: not get_id(), whose session generation changes (Agent.end_sessions).
    return _digest("agent", str(getattr(current_user, "id", None)))


def rdv_of_link() -> str:
    """The rdv of the family link in the URL, as the page reads it (forged links all count as one)."""
    return _digest("rdv", str(rdv_id_from_token((request.view_args or {}).get("token", ""))))


@lru_cache(maxsize=16)
def _parsed(limits_text: str) -> list:
    return parse_many(limits_text)


def link_of_request() -> str:
    """The family link in the URL (rdv or offer), as an HMAC of its text."""
    return _digest("link", (request.view_args or {}).get("token", ""))


def count_family_move(app: Flask, address: str, rdv_id: int) -> bool:
    """Count one request to the family's move pages, as the limits wrapped around their views (init_app) count it,
    in the same buckets; False when a limit is reached (the limits hit before it have counted the request, as
    Flask-Limiter's do). For lapins.family.fast_picker, which then hands the request to Flask: the view's limits
    answer it with their 429 page."""
    limiter: Limiter = app.extensions[EXTENSION]
    if not limiter.enabled:
        return True
    prefix = [app.config["RATELIMIT_KEY_PREFIX"]] if app.config["RATELIMIT_KEY_PREFIX"] else []
    counted = [(item, [*prefix, key, scope])  # the key Flask-Limiter gives a shared limit: [prefix, key, scope]
               for setting, key, scope in (("FAMILY_MOVE_LIMITS_PER_RDV", _digest("rdv", str(rdv_id)), MOVE_RDV_SCOPE),
                                           ("FAMILY_MOVE_LIMITS_PER_IP", address, MOVE_IP_SCOPE))
               for item in _parsed(app.config[setting])]
    return all(limiter.limiter.hit(item, *key) for item, key in counted)


def count_online_number(phone: str) -> bool:
    """Count one code sent or tried for this number on the online booking pages (ONLINE_LIMITS_PER_NUMBER, an HMAC
    of the number as key); False when a limit is reached."""
    limiter: Limiter = current_app.extensions[EXTENSION]
    if not limiter.enabled:
        return True
    prefix = [current_app.config["RATELIMIT_KEY_PREFIX"]] if current_app.config["RATELIMIT_KEY_PREFIX"] else []
    key = [*prefix, _digest("phone", phone), "online-number"]
    return all(limiter.limiter.hit(item, *key) for item in _parsed(current_app.config["ONLINE_LIMITS_PER_NUMBER"]))


def api_token() -> str:
    """The bearer token sent (valid or not), as an HMAC: the API's counts are per token."""
    return _digest("token", request.headers.get("Authorization", ""))


@dataclass(frozen=True)
class Rule:
    endpoint: str
    per_account: str  # the setting holding the limits per account (per rdv for the family's check)
    per_ip: str | None  # the setting holding the limits per client address
    account: Callable[[], str]
    message: str


RULES = (
    Rule("auth.login", "LOGIN_LIMITS_PER_ACCOUNT", "LOGIN_LIMITS_PER_IP", email_tried, TOO_MANY_LOGINS),
    Rule("auth.second_factor", "SECOND_FACTOR_LIMITS_PER_ACCOUNT", "LOGIN_LIMITS_PER_IP", agent_pending,
         TOO_MANY_LOGINS),
    Rule("auth.forgot_password", "RESET_LIMITS_PER_ACCOUNT", "RESET_LIMITS_PER_IP", email_tried, TOO_MANY_RESETS),
    Rule("auth.second_factor_enrol", "SECOND_FACTOR_LIMITS_PER_ACCOUNT", None, signed_in_agent, TOO_MANY_CODES),
    Rule("auth.second_factor_disable", "SECOND_FACTOR_LIMITS_PER_ACCOUNT", None, signed_in_agent, TOO_MANY_CODES),
    Rule("family.check_identity", "FAMILY_CHECK_LIMITS_PER_RDV", "FAMILY_CHECK_LIMITS_PER_IP", rdv_of_link,
         TOO_MANY_CHECKS),
)
MESSAGES = ({rule.endpoint: rule.message for rule in RULES} | dict.fromkeys(FAMILY_LINK_ENDPOINTS, TOO_MANY_REQUESTS)
            | dict.fromkeys(FAMILY_MOVE_ENDPOINTS, TOO_MANY_MOVES) | dict.fromkeys(OIDC_ENDPOINTS, TOO_MANY_LOGINS))


def init_app(app: Flask) -> Limiter:
    """This app's limiter, its limits wrapped around the views of RULES (call it once the blueprints are in)."""
    limiter = Limiter(client_address, strategy="moving-window", headers_enabled=False, swallow_errors=True,
                      in_memory_fallback_enabled=True)
    limiter.init_app(app)
    _unhook_from_every_request(app, limiter)
    app.extensions[EXTENSION] = limiter
    if not limiter.enabled:
        return limiter
    if app.config["ENV_NAME"] == "production" and app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
        logger.warning("RATELIMIT_STORAGE_URI is memory://: each process counts login attempts on its own "
                       "(set it to the Redis URL)")
    for rule in RULES:
        view = app.view_functions[rule.endpoint]
        view = limiter.limit(app.config[rule.per_account], key_func=rule.account, methods=["POST"])(view)
        if rule.per_ip:
            view = limiter.limit(app.config[rule.per_ip], key_func=client_address, methods=["POST"],
                                 scope="ip")(view)
        app.view_functions[rule.endpoint] = view
    per_ip = limiter.shared_limit(app.config["LOGIN_LIMITS_PER_IP"], scope="oidc-ip", key_func=client_address)
    for endpoint in OIDC_ENDPOINTS:
        app.view_functions[endpoint] = per_ip(app.view_functions[endpoint])
    per_rdv = limiter.shared_limit(app.config["FAMILY_MOVE_LIMITS_PER_RDV"], scope=MOVE_RDV_SCOPE,
                                   key_func=rdv_of_link)
    per_ip = limiter.shared_limit(app.config["FAMILY_MOVE_LIMITS_PER_IP"], scope=MOVE_IP_SCOPE,
                                  key_func=client_address)
    for endpoint in FAMILY_MOVE_ENDPOINTS:
        app.view_functions[endpoint] = per_ip(per_rdv(app.view_functions[endpoint]))
    per_link = limiter.shared_limit(app.config["FAMILY_ACTION_LIMITS_PER_LINK"], scope="family-action-link",
                                    key_func=link_of_request)
    per_ip = limiter.shared_limit(app.config["FAMILY_LINK_LIMITS_PER_IP"], scope="family-link-ip",
                                  key_func=client_address)
    for endpoint in FAMILY_LINK_ENDPOINTS:
        view = per_ip(app.view_functions[endpoint])
        app.view_functions[endpoint] = per_link(view) if endpoint in FAMILY_ACTION_ENDPOINTS else view
    feed = app.view_functions["calendars.ics_feed"]  # public: its secret token is the key (lapins.calendars)
    app.view_functions["calendars.ics_feed"] = limiter.limit(app.config["CALENDAR_FEED_LIMITS_PER_IP"],
                                                             key_func=client_address, scope="calendar-feed")(feed)
    # Brevo's status callbacks, public and unsigned (their token is per message): counted per message, not per
    # address, since they all come from Brevo's few addresses.
    brevo = app.view_functions["webhooks.brevo_status"]
    app.view_functions["webhooks.brevo_status"] = limiter.limit(
        app.config["BREVO_CALLBACK_LIMITS_PER_MESSAGE"], key_func=brevo_callback_key, scope="brevo-callback")(brevo)
    search = app.view_functions["public.search_communes"]  # public: what an address field asks as one types
    app.view_functions["public.search_communes"] = limiter.limit(app.config["COMMUNE_SEARCH_LIMITS_PER_IP"],
                                                                 key_func=client_address, scope="communes")(search)
    # The online booking's pages, public: their POSTs (codes sent and tried, bookings) counted per client address.
    per_ip = limiter.shared_limit(app.config["ONLINE_BOOKING_LIMITS_PER_IP"], scope="online-ip",
                                  key_func=client_address, methods=["POST"])
    for endpoint in ONLINE_BOOKING_ENDPOINTS:
        app.view_functions[endpoint] = per_ip(app.view_functions[endpoint])
    per_ip = limiter.shared_limit(app.config["ONLINE_SEARCH_LIMITS_PER_IP"], scope="online-search-ip",
                                  key_func=client_address)
    for endpoint in ONLINE_SEARCH_ENDPOINTS:
        app.view_functions[endpoint] = per_ip(app.view_functions[endpoint])
    per_token = limiter.shared_limit(app.config["API_LIMITS_PER_TOKEN"], scope="api-token", key_func=api_token)
    per_ip = limiter.shared_limit(app.config["API_LIMITS_PER_IP"], scope="api-ip", key_func=client_address)
    for endpoint in api_endpoints(app):
        app.view_functions[endpoint] = per_ip(per_token(app.view_functions[endpoint]))
    return limiter


def api_endpoints(app: Flask) -> list[str]:
    """The API's operations, as lapins.api.routing marks them."""
    return [endpoint for endpoint, view in app.view_functions.items() if getattr(view, "api_operation", False)]


def _unhook_from_every_request(app: Flask, limiter: Limiter) -> None:
    """Only the views of RULES are limited, and their decorators check their limits themselves: Flask-Limiter's
    before/after-request hooks (for application-wide and default limits, which Lapins has none of) would only add
    about 0.15 ms to every request, the agenda's events feed included. Its teardown, which resets the request's
    context, stays."""
    app.before_request_funcs[None] = [hook for hook in app.before_request_funcs.get(None, [])
                                      if hook != limiter._check_request_limit]
    app.after_request_funcs[None] = [hook for hook in app.after_request_funcs.get(None, [])
                                     if not (isinstance(hook, partial) and hook.args[:1] == (limiter,))]


def retry_after_seconds() -> int:
    limiter: Limiter | None = current_app.extensions.get(EXTENSION)
    limit = limiter.current_limit if limiter is not None else None
    if limit is None:
        return 60
    return max(1, int(limit.reset_at - time.time()))


@bp.errorhandler(RateLimitExceeded)
def too_many_attempts(error: RateLimitExceeded):
    """The page the agent was on, with the French message, as HTTP 429 (the counts are in no log)."""
    message = MESSAGES.get(request.endpoint or "", TOO_MANY_LOGINS)
    if request.endpoint == "auth.login" or request.endpoint in OIDC_ENDPOINTS:
        page = render_template("auth/login.html", form=LoginForm(), limited=message)
    elif request.endpoint == "auth.second_factor":
        page = render_template("auth/second_factor.html", form=SecondFactorForm(formdata=None), limited=message)
    elif request.endpoint == "auth.forgot_password":
        page = render_template("auth/forgot_password.html", form=ResetRequestForm(), limited=message)
    else:
        page = render_template("auth/too_many_attempts.html", message=message)
    return page, 429, {"Retry-After": str(retry_after_seconds())}
