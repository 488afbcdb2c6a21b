"""The settings page of a territory, for its administrators: time zone, SMS sending, Twilio credentials, wording.

- services.py: what is stored (settings checked as `flask territory configure` checks them, credentials encrypted),
  and the sample SMS the wording is previewed and checked on;
- views.py: the page, its three forms and the JSON preview.
"""
from lapins.territory_settings.blueprint import bp  # noqa: F401
from lapins.territory_settings import views  # noqa: F401,I001  (their routes register on bp)
