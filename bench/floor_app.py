"""The agenda benchmark's floor: a WSGI app that answers every request with the same bytes, and does nothing else.

Served by the same gunicorn to the same clients as the agenda, it measures what gunicorn, the clients and the machine
cost by themselves: the agenda's time above it is the application's (bench/agenda_week.py, `agenda.week.floor_*`).
With the agenda's ETag (BENCH_FLOOR_ETAG), it answers 304 Not Modified, without the body, to a request that sends it
back in If-None-Match, as the agenda does.
"""
import os
from pathlib import Path

BODY = Path(os.environ["BENCH_FLOOR_BODY"]).read_bytes()
ETAG = os.environ.get("BENCH_FLOOR_ETAG") or None
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
if ETAG:
    HEADERS.append(("ETag", ETAG))
NOT_MODIFIED = [("ETag", ETAG)] if ETAG else []


def app(environ, start_response):
    if ETAG and environ.get("HTTP_IF_NONE_MATCH") == ETAG:
        start_response("304 Not Modified", NOT_MODIFIED)
        return [b""]
    start_response("200 OK", HEADERS)
    return [BODY]
