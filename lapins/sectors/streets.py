"""A family's street from what it typed, through the territory's own BAN geocoder (addok at ADDOK_URL; none by
default, see docs/deploy.md): asked only for a commune that a sector splits by street. A street's BAN id
(`97411_0420`) is the street code sectors hold. No answer in time, or a bad one, is `GeocoderDown`: the page then
offers every lieu serving part of the commune, as without a geocoder. Nothing typed is logged."""
from __future__ import annotations

from dataclasses import dataclass

import requests
from flask import current_app

from lapins.locale.communes import street_key
from lapins.sectors.imports import STREET

TIMEOUT_SECONDS = 2.0  # a family waits for the page: past this, the commune's lieux without the street
MAX_STREETS = 5


@dataclass(frozen=True)
class Street:
    code: str  # as street_key writes it
    name: str
    position: tuple[float, float] | None = None  # (latitude, longitude): the lieux with one come by distance


class GeocoderDown(Exception):
    """The geocoder did not answer, or not as addok does."""


def geocoder_configured() -> bool:
    return bool(current_app.config.get("ADDOK_URL"))


def find_streets(commune_code: str, typed: str) -> list[Street]:
    """The streets of this commune matching what was typed, best first (addok's order), at most MAX_STREETS."""
    url = current_app.config["ADDOK_URL"].rstrip("/") + "/search/"
    try:
        answer = requests.get(url, params={"q": typed[:120], "citycode": commune_code, "type": "street",
                                           "limit": MAX_STREETS}, timeout=TIMEOUT_SECONDS)
        answer.raise_for_status()
        features = [(feature["properties"], feature.get("geometry")) for feature in answer.json()["features"]]
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError) as error:
        raise GeocoderDown(type(error).__name__) from None
    found: dict[str, Street] = {}
    for each, geometry in features:
        code = street_key(str(each.get("id") or "")) if isinstance(each, dict) else ""
        match = STREET.fullmatch(code)
        if match and match.group(1) == commune_code and code not in found:  # another commune's: not this address
            found[code] = Street(code, str(each.get("name") or each.get("label") or code)[:120], _position(geometry))
    return list(found.values())


def _position(geometry) -> tuple[float, float] | None:
    """A GeoJSON point's (latitude, longitude), None unless it is one within bounds."""
    try:
        longitude, latitude = (float(value) for value in geometry["coordinates"])
    except (TypeError, KeyError, ValueError):
        return None
    return (latitude, longitude) if -90 <= latitude <= 90 and -180 <= longitude <= 180 else None
