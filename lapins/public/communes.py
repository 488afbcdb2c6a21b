"""`GET /communes?q=…&departement=92`: the communes matching what was typed (postcode or name, accents and « St »
forgiven), as JSON for an address field's suggestions. Public and rate-limited per client address
(COMMUNE_SEARCH_LIMITS_PER_IP, lapins.auth.limits); it reveals nothing but the national dataset."""
from __future__ import annotations

from flask import jsonify, request

from lapins.onboarding.territory import NUMBER as DEPARTEMENT
from lapins.public.blueprint import bp
from lapins.sectors.communes import communes

MAX_RESULTS = 10


@bp.route("/communes")
def search_communes():
    query = request.args.get("q", "")[:80]
    departement = request.args.get("departement", "").strip().upper()
    if departement and not DEPARTEMENT.fullmatch(departement):
        return jsonify(error="Département inconnu (exemples : 01, 2A, 59, 974)."), 400
    found = communes().search(query, departements={departement} if departement else None, limit=MAX_RESULTS)
    return jsonify(communes=[commune.as_json() for commune in found])

