"""Integrations with a département's other systems: outgoing webhooks on rdv and usager changes.

- events.py: a flush listener writes one delivery row per change and webhook, in the transaction of the change;
- delivery.py: the worker signs (HMAC-SHA256) and sends them, retries with backoff, and keeps the log;
- views.py: organisation administrators add and remove webhooks and read the delivery log.
"""
from lapins.integrations.blueprint import bp  # noqa: F401
from lapins.integrations import events, views  # noqa: F401,I001  (their routes register on bp)
