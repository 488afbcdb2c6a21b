"""The Celery worker's consumer (`worker_consumer`, named in lapins.infra.celery_app): a module of its own, imported by
the worker only, so that the web and the CLI do not load Celery's worker machinery at start-up."""
from __future__ import annotations

from functools import partial

from celery.worker.consumer import Consumer

# A worker's reconnection to the broker: tried again after 1 s, then 2, 3… at most every 5 s (whole seconds: Celery's
# log line says « Trying again now » for less than one).
RECONNECT_INTERVALS = {"interval_start": 1, "interval_step": 1, "interval_max": 5}


class QuickReconnect(Consumer):
    """Back on a restarted broker soon after it is. Celery calls kombu's ensure_connection without intervals, so
    kombu's own applied (2 s, then 4, 6… up to 30): a 2 s Redis restart kept the due reminders waiting 2 to 3 s
    longer (bench/faults.py, redis_restart; docs/benchmarks.md)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # kombu's Redis channel raises AttributeError, not a connection error, when used after its connection was
        # closed: a task that ends while the worker reconnects is acked on its dead channel. Celery took that for a
        # bug and stopped the worker (seen after a Redis restart). Counted as the broker lost: the ack is logged and
        # skipped (the message comes back, the outbox's claims stop a second send) and the consumer reconnects.
        self.connection_errors = (*self.connection_errors, AttributeError)

    def ensure_connected(self, conn):
        conn.ensure_connection = partial(conn.ensure_connection, **RECONNECT_INTERVALS)
        return super().ensure_connected(conn)
