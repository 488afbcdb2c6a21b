"""The settings page of a territory, for its administrators: time zone, SMS sending, Twilio credentials, wording.

- services.py: what is stored (settings checked as `flask territory configure` checks them, credentials encrypted),
  and the sample SMS the wording is previewed and checked on;
- views.py: the page, its three forms and the JSON preview.
"""
from flask import Blueprint
from flask_login import login_required

bp = Blueprint("territory_settings", __name__)


@bp.before_request
@login_required
def require_login() -> None:
    """For signed-in agents; lapins.policies decides who administers which territory."""
