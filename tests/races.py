"""Real races, made certain: a live threaded server, and a barrier the racing requests meet inside it.

A barrier in the test's client threads only starts the requests together; whether their transactions then overlap
is left to the scheduler, and a broken guard can pass such a test most of the time. `HeldStatements` holds each
racing request at its first write (say, the cancellation's, which stamps the agenda then runs its conditional
UPDATE), after everything that request read before it, until all of them are there: they then run that statement at the same
moment, each having seen the row as it was before any of them wrote. What the database does next (a row lock on
PostgreSQL, the write lock on SQLite) is what the test is about.

`HeldStatements(..., first=name)` then lets the request of that name run its statement first and the others only
once it has, for the races whose two outcomes (who wins) must each be seen.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

from flask import has_request_context, request
from sqlalchemy import event
from werkzeug.serving import make_server

PARTY_HEADER = "X-Race-Party"
_party = threading.local()


@contextmanager
def acting_as(name: str):
    """Names the work this thread does meanwhile (a beat's run, a task) as a racing party, as PARTY_HEADER names a
    request."""
    _party.name = name
    try:
        yield
    finally:
        _party.name = None


def party() -> str | None:
    """The racing party the current statement belongs to, if any: only those are ever held."""
    if has_request_context():
        return request.headers.get(PARTY_HEADER)
    return getattr(_party, "name", None)


@contextmanager
def live_server(app):
    """The app on 127.0.0.1, threaded (one thread per request, as the race needs); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll interval: shutdown() returns in milliseconds, not the default half second (per test, per mutant).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


class HeldStatements:
    """Holds the first statement starting with one of `prefixes` of each of `parties` request threads until all
    are there. Hold each at its transaction's first write: a request held after it has written would keep the
    others from their own first write (the row or write lock it holds), and they would never meet.

    `crossed` counts the threads that met at the barrier: a test asserts it equals `parties`, so that it fails,
    rather than passes quietly, when the requests never raced. Only the racing parties are held: each request names
    itself in the header `PARTY_HEADER`, other work with `acting_as`; with `first=<name>` that request's statement runs first and the others' only after it has
    returned (its transaction still open: they then wait on its lock, or see its commit).
    """

    def __init__(self, engine, prefixes: tuple[str, ...], parties: int, *, first: str | None = None,
                 timeout: float = 20) -> None:
        self.engine, self.prefixes, self.parties, self.first = engine, tuple(p.upper() for p in prefixes), parties, first
        self.barrier = threading.Barrier(parties, timeout=timeout)
        self.timeout = timeout
        self.first_ran = threading.Event()
        self.crossed = 0
        self._lock = threading.Lock()
        self._held = 0
        self._local = threading.local()

    def __enter__(self) -> HeldStatements:
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)

    def _mine(self, statement: str) -> bool:
        return statement.lstrip().upper().startswith(self.prefixes)

    def _before(self, _connection, _cursor, statement, *_args) -> None:
        if not self._mine(statement) or getattr(self._local, "held", False) or party() is None:
            return
        with self._lock:
            if self._held >= self.parties:
                return
            self._held += 1
        self._local.held = True
        self._local.name = party()
        self.barrier.wait()
        with self._lock:
            self.crossed += 1
        if self.first is not None and self._local.name != self.first:
            if not self.first_ran.wait(self.timeout):
                raise RuntimeError("the first statement never ran")

    def _after(self, _connection, _cursor, statement, *_args) -> None:
        if self._mine(statement) and self.first is not None and getattr(self._local, "name", None) == self.first:
            self.first_ran.set()


class Gate:
    """Stops one party at its first statement starting with one of `prefixes` until the test opens the gate.

    For the races where the other side is the test itself: `reached` is set once the party is stopped there (it
    has read what it read so far); the test changes the database meanwhile, then `open()`s.
    """

    def __init__(self, engine, prefixes: tuple[str, ...], name: str, *, timeout: float = 20) -> None:
        self.engine, self.prefixes, self.name, self.timeout = engine, tuple(p.upper() for p in prefixes), name, timeout
        self.reached, self._opened = threading.Event(), threading.Event()
        self._passed = False

    def __enter__(self) -> Gate:
        event.listen(self.engine, "before_cursor_execute", self._before)
        return self

    def __exit__(self, *exc) -> None:
        self._opened.set()
        event.remove(self.engine, "before_cursor_execute", self._before)

    def open(self) -> None:
        self._opened.set()

    def wait_reached(self) -> None:
        if not self.reached.wait(self.timeout):
            raise AssertionError(f"{self.name} never reached the gate")

    def _before(self, _connection, _cursor, statement, *_args) -> None:
        if self._passed or party() != self.name or not statement.lstrip().upper().startswith(self.prefixes):
            return
        self._passed = True
        self.reached.set()
        if not self._opened.wait(self.timeout):
            raise RuntimeError("the gate was never opened")
