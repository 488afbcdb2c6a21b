"""The slot engine (créneaux): pure functions over intervals — no Flask, no session, no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time


@dataclass(frozen=True)
class Recurrence:
    first_day: date
    last_day: date | None
    start_time: time
    end_time: time
    weekdays: int
    every_n_weeks: int = 1
