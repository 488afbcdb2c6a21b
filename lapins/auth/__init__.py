"""Agents sign in and out: passwords, the administrators' optional second factor, rate limits, preferences."""
from lapins.auth.blueprint import bp  # noqa: F401
from lapins.auth import api_tokens, limits, oidc_views, passwords, preferences, views  # noqa: F401,I001  (their routes register on bp)
