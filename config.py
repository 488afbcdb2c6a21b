"""Settings read from the environment: one class per kind of deployment."""
from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"
DEFAULT_SECRET_KEY = "dev-secret-key-change-me"


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def database_url(value: str) -> str:
    """Hosting platforms hand out ``postgres://`` URLs; SQLAlchemy talks to PostgreSQL through psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix):]
    return value


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in {"1", "true", "yes", "on", "oui"}


class Config:
    ENV_NAME = "development"
    SECRET_KEY = env_str("SECRET_KEY", DEFAULT_SECRET_KEY)
    SQLALCHEMY_DATABASE_URI = database_url(env_str("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'lapins.sqlite3'}"))
    # hide_parameters: a failed statement's exception (logged with its traceback) would otherwise quote its
    # parameters, that is families' names, phones and e-mails (tests/test_no_personal_data_in_logs.py).
    # No pool_pre_ping: connections idle for a while are checked instead (lapins.infra.database.ping_idle_connections).
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"hide_parameters": True}
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", f"sqla+sqlite:///{INSTANCE_DIR / 'celery-broker.sqlite3'}")
    CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
    CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
    # Agents on shared office PCs: a session ends after a working half-day without activity.
    PERMANENT_SESSION_LIFETIME = env_int("SESSION_LIFETIME_MINUTES", 240) * 60
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
    REMEMBER_COOKIE_DURATION = 0
    WTF_CSRF_TIME_LIMIT = None  # the CSRF token lives as long as the session
    VENDOR_DIR = Path(env_str("VENDOR_DIR", str(BASE_DIR / "node_modules")))
    PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:5000")
    LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
    # Signs the family links in SMS and emails (defaults to SECRET_KEY; set it to rotate one without the other).
    LINK_SECRET_KEY = os.environ.get("LINK_SECRET_KEY") or None

    # SMS: "console" keeps them in the dev inbox (whatever the territories chose); "twilio" or "brevo" sends through
    # that operator's REST API, the default of territories that chose none (lapins.notifications.providers).
    SMS_BACKEND = env_str("SMS_BACKEND", "console")
    TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID", "")
    TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN", "")
    TWILIO_BASE_URL = env_str("TWILIO_BASE_URL", "")  # another host for Twilio's API (tests: a loopback fake)
    TWILIO_TIMEOUT_SECONDS = env_int("TWILIO_TIMEOUT_SECONDS", 10)
    BREVO_API_KEY = env_str("BREVO_API_KEY", "")
    BREVO_BASE_URL = env_str("BREVO_BASE_URL", "")  # another host for Brevo's API (tests: a loopback fake)
    BREVO_TIMEOUT_SECONDS = env_int("BREVO_TIMEOUT_SECONDS", 10)
    # Brevo's status callbacks, per message (lapins.notifications.webhooks.BREVO_STATUS_PATH).
    BREVO_CALLBACK_LIMITS_PER_MESSAGE = env_str("BREVO_CALLBACK_LIMITS_PER_MESSAGE", "30/hour")
    # Email: "console" keeps them in the dev inbox; "smtp" sends through MAIL_SERVER.
    EMAIL_BACKEND = env_str("EMAIL_BACKEND", "console")
    MAIL_SERVER = env_str("MAIL_SERVER", "localhost")
    MAIL_PORT = env_int("MAIL_PORT", 25)
    MAIL_USERNAME = env_str("MAIL_USERNAME", "")
    MAIL_PASSWORD = env_str("MAIL_PASSWORD", "")
    MAIL_SECURITY = env_str("MAIL_SECURITY", "none")  # none, starttls or tls
    MAIL_FROM = env_str("MAIL_FROM", "Lapins <ne-pas-repondre@localhost>")
    MAIL_TIMEOUT_SECONDS = env_int("MAIL_TIMEOUT_SECONDS", 15)
    # The outbox: how many messages one worker task sends, and how long a send may hold its claim.
    OUTBOX_BATCH_SIZE = env_int("OUTBOX_BATCH_SIZE", 50)
    # A claim not renewed for this long belongs to a dead worker (a live batch renews it five times a lease): the
    # provider is asked (find_sent), the message put back. A send begins only while the claim's last renewal is
    # younger than the lease minus its timeout (TWILIO_TIMEOUT_SECONDS, MAIL_TIMEOUT_SECONDS): keep the lease above
    # the longest timeout plus a margin.
    OUTBOX_CLAIM_LEASE_SECONDS = env_int("OUTBOX_CLAIM_LEASE_SECONDS", 20)
    # How often the beat dispatches due messages and takes back lost tasks and dead workers' claims: every recovery
    # waits for its next run, and one run is four indexed queries.
    OUTBOX_DISPATCH_SECONDS = env_int("OUTBOX_DISPATCH_SECONDS", 2)
    # The fence (lapins.notifications.fence): a Redis that records which sends of a batch began, so that a dead
    # worker's unsent messages come back within OUTBOX_FENCE_ALIVE_SECONDS and a dispatch, not after the lease. By
    # default the broker's Redis; empty (the embedded SQLite broker): no fence, the lease alone.
    OUTBOX_FENCE_URL = env_str("OUTBOX_FENCE_URL",
                               CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "")
    OUTBOX_FENCE_ALIVE_SECONDS = env_int("OUTBOX_FENCE_ALIVE_SECONDS", 4)
    # Sends of one batch under way at once: a provider hanging on some requests holds one thread each until the
    # timeout, the others go on (with 4, 20 % of requests hanging 10 s brought a worker down to 2 SMS/s).
    OUTBOX_SEND_THREADS = env_int("OUTBOX_SEND_THREADS", 16)
    # After a transient error (Twilio 5xx or 429, SMTP down) a message is tried again this many seconds later, then
    # twice as long after each new failure (30 minutes at most), until its rdv starts.
    OUTBOX_RETRY_SECONDS = env_int("OUTBOX_RETRY_SECONDS", 30)
    # Delivery health (lapins.monitoring.delivery): a channel whose every attempt fails this long counts as down
    # (its territory's administrators are told, a banner shows); the price of one SMS segment, to weigh a balance
    # counted in money against the territory's use (default threshold: 10 days of it); the token /metrics asks for
    # (Authorization: Bearer ...; empty: /metrics answers 404).
    DELIVERY_OUTAGE_MINUTES = env_int("DELIVERY_OUTAGE_MINUTES", 30)
    SMS_SEGMENT_PRICE = env_str("SMS_SEGMENT_PRICE", "0.08")
    METRICS_TOKEN = env_str("METRICS_TOKEN", "")
    # Waiting list: a freed slot offered to a family is held for it this long; no offer is made this close to the
    # slot; a family gets this many offers a day at most.
    WAITLIST_HOLD_MINUTES = env_int("WAITLIST_HOLD_MINUTES", 30)
    WAITLIST_STOP_BEFORE_HOURS = env_int("WAITLIST_STOP_BEFORE_HOURS", 2)
    WAITLIST_MAX_OFFERS_PER_DAY = env_int("WAITLIST_MAX_OFFERS_PER_DAY", 3)
    # A statistics export whose worker has not beaten for this long (its worker died) is started again from scratch.
    EXPORT_STALE_AFTER_SECONDS = env_int("EXPORT_STALE_AFTER_SECONDS", 300)
    # Outgoing webhooks (lapins.integrations): each request's connect and read timeouts in seconds; delivered and
    # failed deliveries (whose payloads name families) are kept in the log this many days; http:// addresses are
    # refused in production (events name families: https only).
    WEBHOOK_CONNECT_TIMEOUT = env_int("WEBHOOK_CONNECT_TIMEOUT", 3)
    WEBHOOK_READ_TIMEOUT = env_int("WEBHOOK_READ_TIMEOUT", 5)
    WEBHOOK_LOG_DAYS = env_int("WEBHOOK_LOG_DAYS", 30)
    WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", True)
    # A failing endpoint: its owner is e-mailed after this many attempts failed in a row; after failing this many
    # hours it is paused (its deliveries kept until « Reprendre et renvoyer »).
    WEBHOOK_FAILURE_NOTICE_AFTER = env_int("WEBHOOK_FAILURE_NOTICE_AFTER", 10)
    WEBHOOK_PAUSE_AFTER_HOURS = env_int("WEBHOOK_PAUSE_AFTER_HOURS", 24)
    # Personal data (lapins.privacy.retention, a daily beat job): rdvs that ended this many days ago are deleted with
    # their messages and waiting-list rows; messages this old keep their figures but lose their text and address.
    # 0 turns a rule off. Rows are handled RETENTION_BATCH_SIZE at a time, one transaction each.
    RETENTION_RDV_DAYS = env_int("RETENTION_RDV_DAYS", 730)
    RETENTION_MESSAGE_CONTENT_DAYS = env_int("RETENTION_MESSAGE_CONTENT_DAYS", 183)
    RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 1000)
    # Login rate limiting (Flask-Limiter): counts live in RATELIMIT_STORAGE_URI, Redis in production so that every
    # gunicorn worker and every machine shares them; memory:// (one process) is only good for `make run`.
    # Limits are "N/minute;M/hour" strings; every attempt counts, whether the e-mail has an account or not.
    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    RATELIMIT_STORAGE_URI = env_str("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_KEY_PREFIX = env_str("RATELIMIT_KEY_PREFIX", "lapins")
    LOGIN_LIMITS_PER_ACCOUNT = env_str("LOGIN_LIMITS_PER_ACCOUNT", "5/minute;20/hour")
    # A whole PMI office may reach Lapins through one address: high enough for its morning logins.
    LOGIN_LIMITS_PER_IP = env_str("LOGIN_LIMITS_PER_IP", "30/minute;100/hour")
    SECOND_FACTOR_LIMITS_PER_ACCOUNT = env_str("SECOND_FACTOR_LIMITS_PER_ACCOUNT", "5/minute;10/hour;30/day")
    RESET_LIMITS_PER_ACCOUNT = env_str("RESET_LIMITS_PER_ACCOUNT", "3/hour;10/day")
    RESET_LIMITS_PER_IP = env_str("RESET_LIMITS_PER_IP", "20/hour")
    # The family's identity check (/r/<token>/verifier), every POST counted, on top of the lock kept in the database
    # (5 wrong tries, 15 minutes). Per address: a mobile carrier puts many phones behind one address.
    FAMILY_CHECK_LIMITS_PER_RDV = env_str("FAMILY_CHECK_LIMITS_PER_RDV", "10/15minutes;30/day")
    FAMILY_CHECK_LIMITS_PER_IP = env_str("FAMILY_CHECK_LIMITS_PER_IP", "20/minute;100/hour")
    # The pages to move an rdv (/r/<token>/changer...), every request counted, all of them together: a family looks
    # at a few weeks of times, then moves.
    FAMILY_MOVE_LIMITS_PER_RDV = env_str("FAMILY_MOVE_LIMITS_PER_RDV", "60/15minutes;200/day")
    FAMILY_MOVE_LIMITS_PER_IP = env_str("FAMILY_MOVE_LIMITS_PER_IP", "120/minute;1000/hour")
    # Every other page of a family's links (/r/<token>, its ICS, cancelling; /o/<token>, answering an offer), per client
    # address, all together; and the answers that change something (cancel, accept, decline, « plus tôt »), per link.
    FAMILY_LINK_LIMITS_PER_IP = env_str("FAMILY_LINK_LIMITS_PER_IP", "120/minute;1000/hour")
    FAMILY_ACTION_LIMITS_PER_LINK = env_str("FAMILY_ACTION_LIMITS_PER_LINK", "10/15minutes;30/day")
    # The REST API (/api/v1), across all its routes: per token (another département's software syncing runs well
    # below it), and per client address (tokens made up by the hundred count there).
    API_LIMITS_PER_TOKEN = env_str("API_LIMITS_PER_TOKEN", "300/minute;20000/day")
    API_LIMITS_PER_IP = env_str("API_LIMITS_PER_IP", "600/minute")
    # The secret ICS feeds of agents' calendars (/calendrier/<token>.ics), per client address: calendar apps poll
    # every few minutes to hours; a whole office may share one address.
    CALENDAR_FEED_LIMITS_PER_IP = env_str("CALENDAR_FEED_LIMITS_PER_IP", "120/minute;2000/hour")
    # The public commune search (lapins.public.communes): an address field asks it at each pause in typing.
    COMMUNE_SEARCH_LIMITS_PER_IP = env_str("COMMUNE_SEARCH_LIMITS_PER_IP", "120/minute;2000/hour")
    # Online booking by families (lapins.public.online): its forms per client address (a family sends a few), the SMS
    # codes sent and tried per number (Flask-Limiter), the codes a number may ask for in an hour (counted in the
    # database), the online rdvs to come a number may hold per motif.
    ONLINE_BOOKING_LIMITS_PER_IP = env_str("ONLINE_BOOKING_LIMITS_PER_IP", "20/minute;200/hour")
    # Its searches (the lieux serving an address, « voir plus de dates »), GETs that each read the agendas: per client
    # address, high enough for families behind one carrier's shared address.
    ONLINE_SEARCH_LIMITS_PER_IP = env_str("ONLINE_SEARCH_LIMITS_PER_IP", "120/minute;1500/hour")
    ONLINE_LIMITS_PER_NUMBER = env_str("ONLINE_LIMITS_PER_NUMBER", "15/hour;40/day")
    ONLINE_CODES_PER_NUMBER = env_int("ONLINE_CODES_PER_NUMBER", 3)
    ONLINE_LIVE_RDVS_PER_NUMBER = env_int("ONLINE_LIVE_RDVS_PER_NUMBER", 2)
    # Where a kept search page's next version is computed before the clock ends it (lapins.public.kept_search):
    # `after` (the request's thread, once its response is sent: measured best, docs/benchmarks.md), `thread` (a
    # thread of each process), `inline` (before answering).
    ONLINE_SEARCH_REFRESH = env_str("ONLINE_SEARCH_REFRESH", "after")
    # The territory's own BAN geocoder (addok, docs/deploy.md), asked for a family's street where a sector splits a
    # commune by street; empty: none, the commune's lieux are all offered.
    ADDOK_URL = env_str("ADDOK_URL", "")
    # How often busy times are read back from agents' CalDAV calendars (seconds; beat job caldav-busy).
    CALDAV_BUSY_READ_SECONDS = env_int("CALDAV_BUSY_READ_SECONDS", 300)
    # Agents' CalDAV calendars over plain http:// (their app password would cross the network in clear): off in
    # production, on elsewhere for a loopback server.
    CALDAV_ALLOW_HTTP = env_bool("CALDAV_ALLOW_HTTP", True)
    # Agents' CalDAV URLs leading to loopback, private, link-local or other non-public addresses are refused (SSRF),
    # except these hosts: names, addresses or CIDR networks, comma-separated (a département's intranet CalDAV).
    CALDAV_ALLOWED_PRIVATE_HOSTS = env_str("CALDAV_ALLOWED_PRIVATE_HOSTS", "")
    # Reverse proxies (nginx, a load balancer) in front of gunicorn whose X-Forwarded-For gives the client's address.
    TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0)
    # Encrypts secrets kept in the database (TOTP secrets). Default: derived from SECRET_KEY. Several keys separated
    # by commas: the first encrypts, all decrypt (rotation).
    LAPINS_ENCRYPTION_KEY = os.environ.get("LAPINS_ENCRYPTION_KEY") or None
    # Signing in with an OpenID Connect provider (lapins.auth.oidc; ProConnect or a département's directory): on when
    # OIDC_ISSUER and OIDC_CLIENT_ID are set. Discovery reads OIDC_ISSUER/.well-known/openid-configuration.
    OIDC_ISSUER = env_str("OIDC_ISSUER", "").strip()
    OIDC_CLIENT_ID = env_str("OIDC_CLIENT_ID", "").strip()
    OIDC_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET", "")
    OIDC_TOKEN_ENDPOINT_AUTH_METHOD = env_str("OIDC_TOKEN_ENDPOINT_AUTH_METHOD", "client_secret_post")
    OIDC_SCOPES = env_str("OIDC_SCOPES", "openid email given_name usual_name")
    OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "ProConnect")  # in messages: « ... avec ProConnect »
    OIDC_BUTTON_LABEL = env_str("OIDC_BUTTON_LABEL", "Se connecter avec ProConnect")
    OIDC_ACR_VALUES = env_str("OIDC_ACR_VALUES", "")  # sent as acr_values (ProConnect: eidas1)
    # The second factor of Lapins is skipped when the ID token says the provider did MFA: one of these amr values, or
    # one of these acr values (comma-separated; empty: never by that claim).
    OIDC_MFA_AMR = env_str("OIDC_MFA_AMR", "mfa")
    OIDC_MFA_ACR = env_str("OIDC_MFA_ACR", "")
    # The ID token's and the signed userinfo's algorithms accepted, whatever discovery advertises.
    OIDC_ALGORITHMS = env_str("OIDC_ALGORITHMS", "RS256,ES256")
    # An e-mail links an account at first sign-in only when the provider says it verified it (email_verified), or
    # when the provider is trusted to give only verified e-mails (ProConnect: set it to true).
    OIDC_TRUST_EMAIL = env_bool("OIDC_TRUST_EMAIL", False)
    OIDC_TIMEOUT_SECONDS = env_int("OIDC_TIMEOUT_SECONDS", 10)  # each call to the provider (discovery, keys, token...)
    # Clock skew allowed on the ID token's times, and how early the access token counts as expired (ProConnect's
    # live 60 s: Authlib's default of 60 would find them expired at once).
    OIDC_LEEWAY_SECONDS = env_int("OIDC_LEEWAY_SECONDS", 5)


class DevelopmentConfig(Config):
    pass


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "testing-secret-key"
    SQLALCHEMY_DATABASE_URI = database_url(env_str("TEST_DATABASE_URL", "sqlite://"))
    CELERY_BROKER_URL = "memory://"
    OUTBOX_FENCE_URL = ""  # tests/test_outbox_fence.py gives its apps the test Redis
    CELERY_TASK_ALWAYS_EAGER = True
    SMS_BACKEND = "console"
    EMAIL_BACKEND = "console"
    # The in-memory SQLite database has one connection for every thread: no refresh thread beside the test's.
    ONLINE_SEARCH_REFRESH = "inline"
    RATELIMIT_ENABLED = False  # tests/test_login_limits.py turns it on for the apps it builds
    RATELIMIT_STORAGE_URI = "memory://"
    CALDAV_ALLOWED_PRIVATE_HOSTS = "127.0.0.1"  # the tests' Radicale (tests/radicale_server.py)


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 1)  # docs/deploy.md puts nginx in front of gunicorn
    WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", False)
    CALDAV_ALLOW_HTTP = env_bool("CALDAV_ALLOW_HTTP", False)


CONFIGS = {"development": DevelopmentConfig, "testing": TestingConfig, "production": ProductionConfig}


def get_config(name: str | None = None) -> type[Config]:
    name = name or os.environ.get("LAPINS_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"LAPINS_ENV inconnu : {name!r} (attendu : {', '.join(CONFIGS)})") from None
