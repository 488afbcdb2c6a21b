"""A writer running in a thread of its own for as long as a `with` block lasts: the bookings a scenario measures
the reads against (bench/agenda_scenarios.py `Writes`, bench/public_search.py `OnlineBookings`)."""
from __future__ import annotations

import threading


class Background:
    """Subclasses define `run`, which loops until `self.stop` is set."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.stop.clear()
        # A new thread each time: a thread runs once, and a scenario's windows each start one.
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def run(self) -> None:
        raise NotImplementedError
