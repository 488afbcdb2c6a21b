"""This app's commune dataset (lapins.locale.communes), read from its npm directory `VENDOR_DIR` once per process."""
from __future__ import annotations

from flask import current_app

from lapins.locale.communes import Gazetteer, gazetteer


def communes() -> Gazetteer:
    return gazetteer(str(current_app.config["VENDOR_DIR"]))
