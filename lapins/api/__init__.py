"""REST API v1 for other systems: a bearer token per agent, the same permissions as that agent in the agenda."""
from flask import Blueprint

from lapins.infra.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # no session, no cookie: a request carries its agent's token, which a third-party page cannot send

from lapins.api import docs, rdvs, referentials, routing, schedule, usagers  # noqa: E402,F401,I001

routing.register_operations(bp)
