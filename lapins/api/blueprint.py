"""The API's blueprint; its routes are made from the table of operations (lapins.api.schemas, routing.py)."""
from flask import Blueprint

from lapins.infra.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # no session, no cookie: a request carries its agent's token, which a third-party page cannot send
