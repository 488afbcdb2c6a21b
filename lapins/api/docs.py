"""The API's document (/api/v1/openapi.json) and its readable page (/api/v1/docs): public, they hold no data."""
from __future__ import annotations

from flask import jsonify, render_template

from lapins.api import openapi
from lapins.api.blueprint import bp
from lapins.api.schemas import ERROR_DESCRIPTIONS, OPERATIONS


@bp.route("/openapi.json")
def openapi_document():
    return jsonify(openapi.document())


@bp.route("/docs")
def docs():
    return render_template("api/docs.html", operations=OPERATIONS, prefix=openapi.PREFIX,
                           curl=openapi.curl_example, errors=ERROR_DESCRIPTIONS)
