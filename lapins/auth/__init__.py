"""Agents sign in and out: passwords, the administrators' optional second factor, rate limits, preferences."""
from flask import Blueprint

bp = Blueprint("auth", __name__)

from lapins.auth import api_tokens, limits, passwords, preferences, views  # noqa: E402,F401
