"""Open-loop load for make bench: requests sent at the moments of a Poisson stream of `rate` a second, each on a
connection opened when it is due, whatever the earlier ones are doing: independent families, not a herd.

Not wrk's `delay`: wrk opens its next connection before the pause, and a gunicorn sync worker that accepts it waits,
blocked, for a request that comes seconds later (behind a proxy, as deployed, no worker sees an idle connection); a
fixed pause hid that only by keeping every connection in step, 50 requests at once every few seconds. Latency runs
from the moment a request was due to its last byte, so a client late to send counts against the server. At these
rates Python is not the bottleneck: its CPU share is reported as wrk's is.
"""
from __future__ import annotations

import http.client
import os
import random
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def run(port: int, requests: list, connections: int, seconds: float, rate: float) -> dict:
    """One timed window: `rate` requests a second on average for `seconds`, at most `connections` in flight; the
    figures in the keys bench.wrk.run gives."""
    rng = random.Random()
    moments, moment = [], rng.expovariate(rate)
    while moment < seconds:
        moments.append(moment)
        moment += rng.expovariate(rate)
    first = rng.randrange(len(requests))  # each window from another place in the list: a miss stays a miss
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def send(request, due: float) -> None:
        nonlocal errors
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", request.path, headers=dict(request.headers))
            response = connection.getresponse()
            response.read()
            connection.close()
            failed = response.status >= 400
        except OSError:
            failed = True
        elapsed = time.perf_counter() - due
        with lock:
            latencies.append(elapsed)
            errors += failed

    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=connections) as pool:
        for index, moment in enumerate(moments):
            due = began + moment
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            pool.submit(send, requests[(first + index) % len(requests)], due)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ordered = sorted(latencies)

    def percentile(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 2) if ordered else 0.0

    return {
        "p50_ms": percentile(0.50), "p95_ms": percentile(0.95), "p99_ms": percentile(0.99),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else 0.0, "requests": len(ordered),
        "throughput_rps": round(len(ordered) / seconds, 1), "errors": errors,
        "client_cpu_share": round(cpu / (wall * (os.cpu_count() or 1)), 3), "seconds": round(seconds, 1),
    }
