"""Serves the front-end libraries installed from npm at set-up (never committed)."""
from flask import Blueprint, abort, current_app, send_from_directory

bp = Blueprint("vendor", __name__, url_prefix="/vendor")

PACKAGES = {
    "dsfr": "@gouvfr/dsfr/dist",
    "dsfr-chart": "@gouvfr/dsfr-chart/dist",
    "fullcalendar": "fullcalendar",
    "fullcalendar-locales": "@fullcalendar/core/locales",
}


@bp.route("/<package>/<path:filename>")
def asset(package: str, filename: str):
    if package not in PACKAGES:
        abort(404)
    directory = current_app.config["VENDOR_DIR"] / PACKAGES[package]
    return send_from_directory(directory, filename, max_age=86400)
