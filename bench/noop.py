"""A Celery task that does nothing, for benchmarks only: the worker loads it with `celery -A worker worker -I bench.noop`.

Its rate is the floor of a task on a broker: taking it from Redis, the app context every Lapins task runs in
(lapins.infra.celery_app), the acknowledgement, and nothing else. Production workers never import this module.
"""
from __future__ import annotations

from celery import shared_task

NAME = "bench.noop"


@shared_task(name=NAME, ignore_result=True)
def noop(ids: list[int]) -> None:
    """Takes the ids a real task would (send_batch) and does nothing with them."""
