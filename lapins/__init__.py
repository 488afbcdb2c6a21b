"""Lapins: appointments and reminders for départements' PMI services."""
from __future__ import annotations

import logging

from flask import Flask

from config import Config, get_config


def create_app(config: type[Config] | str | None = None, **overrides) -> Flask:
    app = Flask(__name__, template_folder="../templates", instance_relative_config=False)
    config_class = config if isinstance(config, type) else get_config(config)
    app.config.from_object(config_class)
    app.config.update(overrides)
    check_production_secrets(app)
    configure_logging(app)
    register_extensions(app)
    register_listeners(app)
    register_converters(app)
    register_blueprints(app)
    register_fast_paths(app)
    register_rate_limits(app)
    register_errorhandlers(app)
    register_security_headers(app)
    register_commands(app)
    register_template_helpers(app)
    return app


def check_production_secrets(app: Flask) -> None:
    from config import DEFAULT_SECRET_KEY

    if app.config["ENV_NAME"] == "production" and app.config["SECRET_KEY"] in ("", DEFAULT_SECRET_KEY):
        raise RuntimeError("SECRET_KEY doit être défini dans l'environnement en production (clé par défaut refusée).")


def configure_logging(app: Flask) -> None:
    from lapins.infra.logs import WithoutQueryStrings

    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # These log request URLs at DEBUG/INFO, which would put families' phone numbers in the logs.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("twilio").setLevel(logging.WARNING)
    # httpx (under Brevo's SDK) logs each request's URL at INFO: find_sent's holds the family's number.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("caldav").setLevel(logging.ERROR)  # its debug and warnings quote requests and answers
    werkzeug = logging.getLogger("werkzeug")  # the development server's request lines (make run)
    if not any(isinstance(existing, WithoutQueryStrings) for existing in werkzeug.filters):
        werkzeug.addFilter(WithoutQueryStrings())


def register_extensions(app: Flask) -> None:
    from lapins import models  # noqa: F401  (tables must be known before Migrate binds)
    from lapins.auth import oidc
    from lapins.auth.sessions import SlidingSessionInterface
    from lapins.infra.celery_app import celery_init_app
    from lapins.infra.database import configure_engine
    from lapins.infra.extensions import csrf, db, login_manager, migrate
    from lapins.tasks import beat_schedule

    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
    migrate.init_app(app, db, render_as_batch=True)
    csrf.init_app(app)
    app.session_interface = SlidingSessionInterface()
    login_manager.init_app(app)
    oidc.init_app(app)  # the OpenID Connect provider's client, when one is configured
    celery_init_app(app, beat_schedule(app.config))


def register_listeners(app: Flask) -> None:
    """The rooms that follow booking's events and the session's changes; connected once per process."""
    from lapins.audit import recording  # noqa: F401  (session listeners: the audit trail)
    from lapins.calendars import feeds  # noqa: F401  (session listener: a deactivated agent's feeds revoked)
    from lapins.calendars import listeners as calendars  # noqa: F401  (booking's events: CalDAV writes)
    from lapins.integrations import events  # noqa: F401  (session listeners: webhook deliveries)
    from lapins.notifications import listeners as notifications  # noqa: F401
    from lapins.waitlist import listeners as waitlist  # noqa: F401


def register_converters(app: Flask) -> None:
    from lapins.infra.routing import DatabaseId

    app.url_map.converters["int"] = DatabaseId  # before the routes: each `<int:…>` is a row's id


def register_blueprints(app: Flask) -> None:
    from lapins.admin.blueprint import bp as admin_bp
    from lapins.agenda.blueprint import bp as agenda_bp
    from lapins.api import bp as api_bp
    from lapins.audit.views import bp as audit_bp
    from lapins.calendars import bp as calendars_bp
    from lapins.auth.blueprint import bp as auth_bp
    from lapins.family.pages import bp as family_bp
    from lapins.monitoring import pages as monitoring_pages  # noqa: F401  (the health page and banner, on health_bp)
    from lapins.monitoring.health import bp as health_bp
    from lapins.integrations.blueprint import bp as integrations_bp
    from lapins.notifications.webhooks import bp as webhooks_bp
    from lapins.privacy.blueprint import bp as privacy_bp
    from lapins.public import bp as public_bp
    from lapins.stats.blueprint import bp as stats_bp
    from lapins.territory_settings.blueprint import bp as territory_settings_bp
    from lapins.infra.vendor import bp as vendor_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(agenda_bp)
    app.register_blueprint(vendor_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(family_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(stats_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(integrations_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(privacy_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(territory_settings_bp)
    app.register_blueprint(calendars_bp)
    app.register_blueprint(public_bp)


def register_fast_paths(app: Flask) -> None:
    from lapins.agenda import fast_feed
    from lapins.family import fast_picker

    fast_picker.install(app)  # the families' slot picker, before Flask's request machinery
    fast_feed.install(app)  # the calendar's events feed, likewise (outermost: the hottest route)


def register_rate_limits(app: Flask) -> None:
    from lapins.auth import limits

    limits.init_app(app)  # a Limiter of this app's own, wrapped around the views it limits


def register_security_headers(app: Flask) -> None:
    from lapins.infra import security

    security.init_app(app)  # CSP and the like on every answer (the events feed's fast path sends them too)


def register_errorhandlers(app: Flask) -> None:
    from lapins.infra.errors import register

    register(app)


def register_commands(app: Flask) -> None:
    from lapins.api.cli import api_token
    from lapins.onboarding.commands import register
    from lapins.onboarding.import_commands import register as register_imports
    from lapins.onboarding.sector_commands import register as register_sector_import
    from lapins.privacy.commands import retention

    register(app)
    register_imports(app)  # `flask territory import-lieux | import-agents`
    register_sector_import(app)  # `flask territory import-sectors`
    app.cli.add_command(retention)
    app.cli.add_command(api_token)


def register_template_helpers(app: Flask) -> None:
    from lapins.locale.formatting import register

    register(app)
