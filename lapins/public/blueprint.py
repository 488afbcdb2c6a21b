from flask import Blueprint, jsonify, render_template, request
from flask_limiter import RateLimitExceeded

bp = Blueprint("public", __name__)


@bp.errorhandler(RateLimitExceeded)
def too_many_requests(error: RateLimitExceeded):
    """The commune search answers in JSON; the online booking's pages with a French page (counts in no log)."""
    if request.endpoint == "public.search_communes":
        return jsonify(error="Trop de recherches depuis cette connexion. Réessayez dans une minute."), 429, \
            {"Retry-After": "60"}
    return render_template("public/too_many.html"), 429, {"Retry-After": "60"}
