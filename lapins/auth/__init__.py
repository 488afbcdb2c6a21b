"""Agents sign in and out."""
from flask import Blueprint

bp = Blueprint("auth", __name__)

from lapins.auth import passwords, preferences, views  # noqa: E402,F401
