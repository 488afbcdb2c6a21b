"""REST API v1 for other systems: a bearer token per agent, the same permissions as that agent in the agenda."""
from lapins.api.blueprint import bp
from lapins.api import docs, rdvs, referentials, routing, schedule, sessions, usagers  # noqa: F401,I001  (their routes register on bp)

routing.register_operations(bp)
