"""The slot engine's occurrences pinned at their bounds (lapins.slots.engine): the local days asked for, in a zone
east and one west of UTC, a span ending at midnight, a 24-hour plage, an hour the clock skips, a one-off span.

Written against the surviving mutants of `make mutate`'s slots room (docs/testing.md): each test compares exact
intervals, so an occurrence a day early or late, kept empty, or cut at UTC's midnight instead of the zone's fails.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from lapins.slots.engine import Opening, Recurrence, ceil_to_grid, free_slots, holiday_names, local_dates, occurrences

REUNION = ZoneInfo("Indian/Reunion")  # UTC+4, no summer time
GUADELOUPE = ZoneInfo("America/Guadeloupe")  # UTC−4
PARIS = ZoneInfo("Europe/Paris")
MONDAY, TUESDAY, WEDNESDAY, SUNDAY = date(2026, 10, 5), date(2026, 10, 6), date(2026, 10, 7), date(2026, 10, 4)


def weekly(start: time, end: time, weekdays: int, first_day: date = date(2026, 9, 1),
           last_day: date | None = None) -> Recurrence:
    return Recurrence(first_day=first_day, last_day=last_day, start_time=start, end_time=end, weekdays=weekdays)


def one_off(first_day: date, start: time, last_day: date | None, end: time) -> Recurrence:
    return Recurrence(first_day=first_day, last_day=last_day, start_time=start, end_time=end, weekdays=0)


def local(day: date, hour: int, tz: ZoneInfo, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)


def test_the_days_asked_for_are_the_zones_days_not_utcs():
    early = weekly(time(1), time(3), weekdays=1)  # Mondays 01:00–03:00 in La Réunion: Sunday evening in UTC
    assert occurrences(early, REUNION, MONDAY, MONDAY) == [(local(MONDAY, 1, REUNION), local(MONDAY, 3, REUNION))]
    late = weekly(time(20), time(22), weekdays=1)  # Mondays 20:00–22:00 in Guadeloupe: Tuesday in UTC
    assert occurrences(late, GUADELOUPE, MONDAY, MONDAY) == [(local(MONDAY, 20, GUADELOUPE),
                                                              local(MONDAY, 22, GUADELOUPE))]
    assert occurrences(late, GUADELOUPE, TUESDAY, TUESDAY) == []


def test_an_overnight_plage_counts_on_the_day_it_runs_into_and_not_when_it_ends_at_midnight():
    night = weekly(time(22), time(6), weekdays=1 << 6)  # Sundays 22:00 to Monday 06:00
    assert occurrences(night, PARIS, MONDAY, MONDAY) == [(local(SUNDAY, 22, PARIS), local(MONDAY, 6, PARIS))]
    assert occurrences(night, PARIS, TUESDAY, TUESDAY) == []
    evening = weekly(time(20), time(0), weekdays=1 << 6)  # Sundays 20:00 until midnight: nothing of Monday
    assert occurrences(evening, PARIS, MONDAY, MONDAY) == []
    assert occurrences(evening, PARIS, SUNDAY, SUNDAY) == [(local(SUNDAY, 20, PARIS), local(MONDAY, 0, PARIS))]


def test_a_plage_whose_end_equals_its_start_lasts_twenty_four_hours():
    whole = weekly(time(8), time(8), weekdays=1)
    assert occurrences(whole, PARIS, MONDAY, MONDAY) == [(local(MONDAY, 8, PARIS), local(TUESDAY, 8, PARIS))]
    assert occurrences(whole, PARIS, TUESDAY, TUESDAY) == [(local(MONDAY, 8, PARIS), local(TUESDAY, 8, PARIS))]


def test_an_occurrence_the_clock_skips_is_dropped_not_kept_empty():
    spring = date(2026, 3, 29)  # Paris goes from 02:00 to 03:00
    skipped = weekly(time(2), time(3), weekdays=1 << 6, first_day=date(2026, 3, 1))
    assert occurrences(skipped, PARIS, spring, spring) == []


def test_a_weekly_plage_ends_on_its_last_day():
    ending = weekly(time(9), time(12), weekdays=1 | 1 << 2, last_day=MONDAY)  # Mondays and Wednesdays
    assert occurrences(ending, PARIS, MONDAY, WEDNESDAY) == [(local(MONDAY, 9, PARIS), local(MONDAY, 12, PARIS))]
    assert list(ending.days(SUNDAY, WEDNESDAY)) == [MONDAY]


def test_a_one_off_span_touches_exactly_the_days_it_covers():
    first, last = date(2026, 10, 3), date(2026, 10, 5)
    span = one_off(first, time(2), last, time(2))  # 3 October 02:00 to 5 October 02:00, La Réunion
    whole = [(local(first, 2, REUNION), local(last, 2, REUNION))]
    assert occurrences(span, REUNION, date(2026, 10, 2), date(2026, 10, 2)) == []  # 2 October: not yet
    assert occurrences(span, REUNION, first, first) == whole
    assert occurrences(span, REUNION, last, last) == whole
    assert occurrences(span, REUNION, date(2026, 10, 6), date(2026, 10, 9)) == []
    to_midnight = one_off(first, time(9), last, time(0))  # ends as 5 October begins: nothing of that day
    assert occurrences(to_midnight, REUNION, last, last) == []
    from_midnight = one_off(last, time(0), None, time(9))  # begins as 5 October begins: nothing of the 4th
    assert occurrences(from_midnight, REUNION, date(2026, 10, 4), date(2026, 10, 4)) == []
    empty = one_off(first, time(9), first, time(9))
    assert occurrences(empty, REUNION, first, first) == []

    assert list(span.days(date(2026, 9, 1), date(2026, 10, 31))) == [first, date(2026, 10, 4), last]
    assert list(span.days(date(2026, 10, 4), date(2026, 10, 4))) == [date(2026, 10, 4)]
    assert list(one_off(first, time(9), None, time(17)).days(date(2026, 9, 1), date(2026, 10, 31))) == [first]


def test_a_plage_touches_the_days_it_runs_during():
    span = one_off(date(2026, 10, 3), time(9), date(2026, 10, 5), time(17))
    assert [span.touches(date(2026, 10, day)) for day in range(2, 7)] == [False, True, True, True, False]
    night = weekly(time(22), time(6), weekdays=1)  # Mondays 22:00 to Tuesdays 06:00
    assert [night.touches(day) for day in (SUNDAY, MONDAY, TUESDAY, WEDNESDAY)] == [False, True, True, False]
    day_time = weekly(time(9), time(12), weekdays=1)
    assert [day_time.touches(day) for day in (SUNDAY, MONDAY, TUESDAY)] == [False, True, False]


def test_local_holidays_are_named_for_their_subdivision():
    moselle = holiday_names("57", [2026])
    assert moselle[date(2026, 4, 3)] == "Vendredi saint" and date(2026, 12, 26) in moselle
    assert date(2026, 4, 3) not in holiday_names(None, [2026])


def test_a_moment_on_the_five_minute_grid_is_kept_and_any_other_rounded_up():
    on_grid = datetime(2026, 10, 5, 8, 35, tzinfo=UTC)
    assert ceil_to_grid(on_grid) == on_grid
    assert ceil_to_grid(on_grid + timedelta(microseconds=1)) == datetime(2026, 10, 5, 8, 40, tzinfo=UTC)
    assert ceil_to_grid(on_grid - timedelta(minutes=4, seconds=59)) == on_grid


def test_free_slots_walk_the_zones_days_east_and_west_of_utc():
    west = Opening(agent_id=1, lieu_id=None, plage_id=1, recurrence=weekly(time(20), time(21), weekdays=1))
    evening = free_slots([west], {}, {}, set(), GUADELOUPE, timedelta(minutes=30),
                         local(MONDAY, 20, GUADELOUPE), local(TUESDAY, 0, GUADELOUPE))  # Tuesday in UTC
    assert [(slot.starts_at, slot.ends_at) for slot in evening] == [
        (local(MONDAY, 20, GUADELOUPE), local(MONDAY, 20, GUADELOUPE, 30)),
        (local(MONDAY, 20, GUADELOUPE, 30), local(MONDAY, 21, GUADELOUPE))]
    east = Opening(agent_id=1, lieu_id=None, plage_id=2, recurrence=weekly(time(1), time(2), weekdays=1))
    night = free_slots([east], {}, {}, set(), REUNION, timedelta(hours=1),
                       local(MONDAY, 0, REUNION), local(MONDAY, 3, REUNION))
    assert [(slot.starts_at, slot.ends_at) for slot in night] == [(local(MONDAY, 1, REUNION),
                                                                    local(MONDAY, 2, REUNION))]


def test_free_slots_refuse_naive_moments_and_durations_that_are_not_positive():
    aware = local(MONDAY, 8, PARIS)
    for start, end in ((aware.replace(tzinfo=None), aware), (aware, aware.replace(tzinfo=None))):
        with pytest.raises(ValueError):
            free_slots([], {}, {}, set(), PARIS, timedelta(minutes=30), start, end)
    for duration in (timedelta(0), timedelta(minutes=-5)):
        with pytest.raises(ValueError):
            free_slots([], {}, {}, set(), PARIS, duration, aware, aware + timedelta(hours=1))


def test_local_dates_are_those_the_half_open_interval_touches():
    nine, midnight = local(MONDAY, 9, PARIS), local(TUESDAY, 0, PARIS)
    assert list(local_dates(PARIS, nine, nine)) == []
    assert list(local_dates(PARIS, nine, midnight)) == [MONDAY]
    assert list(local_dates(PARIS, nine, midnight + timedelta(microseconds=1))) == [MONDAY, TUESDAY]
