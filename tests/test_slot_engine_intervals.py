"""The slot engine's interval algebra and its UTC instants (lapins.slots.engine), pinned where `make mutate`'s
slots room left survivors (docs/testing.md): an empty busy interval neither splits a free interval nor hides the
busy time after it, and every instant the engine gives is in UTC whatever the server process's own time zone.
"""
from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from lapins.slots.engine import Opening, Recurrence, free_slots, merge, occurrences, subtract, to_utc

PARIS = ZoneInfo("Europe/Paris")
MONDAY = date(2026, 10, 5)
HALF_HOUR = timedelta(minutes=30)


def at(hour: int, minute: int = 0) -> datetime:
    """Monday's local wall clock in Paris (UTC+2 in October), as a UTC instant."""
    return datetime.combine(MONDAY, time(hour, minute), tzinfo=PARIS).astimezone(UTC)


def monday_morning_slots(busy: list[tuple[datetime, datetime]]) -> list[str]:
    """The 30-minute slots of a Monday 09:00–11:00 plage, as the local times a family reads."""
    plage = Opening(agent_id=1, lieu_id=None, plage_id=1, recurrence=Recurrence(
        first_day=date(2026, 9, 1), last_day=None, start_time=time(9), end_time=time(11), weekdays=1))
    slots = free_slots([plage], {1: busy}, {}, set(), PARIS, HALF_HOUR, at(0), at(23))
    return [slot.starts_at.astimezone(PARIS).strftime("%H:%M") for slot in slots]


def test_empty_intervals_are_dropped_and_do_not_stop_the_merge():
    assert merge([(at(9, 15), at(9, 15))]) == []
    assert merge([(at(10), at(10, 30)), (at(8), at(8)), (at(9), at(9, 30))]) == [(at(9), at(9, 30)),
                                                                                  (at(10), at(10, 30))]
    assert subtract([(at(9), at(11))], [(at(9, 15), at(9, 15))]) == [(at(9), at(11))]
    # Touching intervals are joined: two rdvs back to back are one busy stretch.
    assert merge([(at(9, 30), at(10)), (at(9), at(9, 30))]) == [(at(9), at(10))]


def test_an_empty_busy_interval_changes_no_slot_and_hides_no_busy_time_after_it():
    assert monday_morning_slots([]) == ["09:00", "09:30", "10:00", "10:30"]
    # None is stored today (a zero-length rdv is refused), but merge promises to drop one: 09:00 is not cut at 09:15.
    assert monday_morning_slots([(at(9, 15), at(9, 15))]) == ["09:00", "09:30", "10:00", "10:30"]
    # An empty interval sorted before a real rdv must not make the 09:30 rdv's time look free.
    assert monday_morning_slots([(at(8), at(8)), (at(9, 30), at(10))]) == ["09:00", "10:00", "10:30"]


@pytest.fixture
def server_far_from_utc(monkeypatch):
    """The process's own zone set to UTC+14 (Kiritimati), as a server whose TZ nobody set to UTC would be."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    clock.tzset()
    yield
    monkeypatch.undo()
    clock.tzset()


def test_instants_are_utc_whatever_the_server_processs_time_zone(server_far_from_utc):
    assert datetime(2026, 10, 5, 12).astimezone().utcoffset() == timedelta(hours=14)  # the zone really applies
    assert to_utc(MONDAY, time(9), PARIS).isoformat() == "2026-10-05T07:00:00+00:00"
    plage = Recurrence(first_day=date(2026, 9, 1), last_day=None, start_time=time(9), end_time=time(11), weekdays=1)
    assert [(begin.isoformat(), end.isoformat()) for begin, end in occurrences(plage, PARIS, MONDAY, MONDAY)] == [
        ("2026-10-05T07:00:00+00:00", "2026-10-05T09:00:00+00:00")]
