"""The agenda benchmark's floor: a WSGI app that answers every request with the same bytes, and does nothing else.

Served by the same gunicorn to the same clients as the agenda, it measures what gunicorn, the clients and the machine
cost by themselves: the agenda's time above it is the application's (bench/agenda_week.py, `agenda.week.floor_*`).
"""
import os
from pathlib import Path

BODY = Path(os.environ["BENCH_FLOOR_BODY"]).read_bytes()
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
