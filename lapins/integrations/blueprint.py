"""Integrations with a département's other systems: outgoing webhooks on rdv and usager changes.

- events.py: a flush listener writes one delivery row per change and webhook, in the transaction of the change;
- delivery.py: the worker signs (HMAC-SHA256) and sends them, retries with backoff, and keeps the log;
- views.py: organisation administrators add and remove webhooks and read the delivery log.
"""
from flask import Blueprint
from flask_login import login_required

bp = Blueprint("integrations", __name__, url_prefix="/integrations")


@bp.before_request
@login_required
def require_login() -> None:
    """For signed-in agents; lapins.policies decides who administers which organisation."""
