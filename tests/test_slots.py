"""The slot engine: rules read as examples, then properties checked against a brute-force 5-minute model."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lapins.slots.engine import (
    DayException, Opening, Recurrence, Slot, ceil_to_grid, free_slots, merge, occurrences, public_holidays, subtract,
)

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")
GUADELOUPE = ZoneInfo("America/Guadeloupe")
ZONES = [PARIS, REUNION, GUADELOUPE]
MONDAY, WEDNESDAY, SUNDAY = 1, 4, 64
WEEKDAYS = 0b0011111
HALF_HOUR = timedelta(minutes=30)
CELL = timedelta(minutes=5)
# 2026: summer time starts Sunday 29 March and ends Sunday 25 October.
SPRING_CHANGE, AUTUMN_CHANGE = date(2026, 3, 29), date(2026, 10, 25)


def weekly(first_day: date, start: time, end: time, weekdays: int = WEEKDAYS, every_n_weeks: int = 1,
           last_day: date | None = None) -> Recurrence:
    return Recurrence(first_day, last_day, start, end, weekdays, every_n_weeks)


def one_off(first_day: date, start: time, last_day: date, end: time) -> Recurrence:
    return Recurrence(first_day, last_day, start, end, 0)


def local(day: date, clock: time, tz: ZoneInfo = PARIS) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)


def wall_clocks(slots: list[Slot], tz: ZoneInfo = PARIS) -> list[str]:
    return [slot.starts_at.astimezone(tz).strftime("%a %d/%m %H:%M") for slot in slots]


def slots_for(openings: list[Opening], first: date, last: date, tz: ZoneInfo = PARIS, busy=None, absences=None,
              holidays=frozenset(), duration: timedelta = HALF_HOUR, limit: int | None = None) -> list[Slot]:
    return free_slots(openings, busy or {}, absences or {}, holidays, tz, duration,
                      local(first, time(0), tz), local(last + timedelta(days=1), time(0), tz), limit)


def morning(first_day: date, weekdays: int = WEEKDAYS, agent_id: int = 1, plage_id: int = 1, **kwargs) -> Opening:
    return Opening(agent_id, 10, plage_id, weekly(first_day, time(9), time(12), weekdays, **kwargs))


# --- Rules, as examples ----------------------------------------------------------------------------------------

def test_a_monday_0900_plage_stays_at_0900_local_the_monday_after_the_october_change():
    plage = Opening(1, 10, 1, weekly(date(2026, 10, 19), time(9), time(10), MONDAY))

    found = slots_for([plage], date(2026, 10, 19), date(2026, 10, 26))

    assert wall_clocks(found) == ["Mon 19/10 09:00", "Mon 19/10 09:30", "Mon 26/10 09:00", "Mon 26/10 09:30"]
    assert [slot.starts_at.hour for slot in found] == [7, 7, 8, 8]  # UTC moved, the wall clock did not


def test_a_monday_0900_plage_stays_at_0900_local_the_monday_after_the_march_change():
    plage = Opening(1, 10, 1, weekly(date(2026, 3, 23), time(9), time(9, 30), MONDAY))

    found = slots_for([plage], date(2026, 3, 23), date(2026, 3, 30))

    assert wall_clocks(found) == ["Mon 23/03 09:00", "Mon 30/03 09:00"]


def test_reunion_has_no_summer_time_and_guadeloupe_neither():
    for tz, utc_hour in ((REUNION, 5), (GUADELOUPE, 13)):
        plage = Opening(1, 10, 1, weekly(date(2026, 1, 5), time(9), time(9, 30), MONDAY))

        found = slots_for([plage], date(2026, 3, 23), date(2026, 11, 2), tz=tz)

        assert {slot.starts_at.astimezone(tz).time() for slot in found} == {time(9)}
        assert {slot.starts_at.hour for slot in found} == {utc_hour}


def test_a_plage_starting_in_the_skipped_spring_hour_opens_when_the_clock_resumes():
    recurrence = weekly(SPRING_CHANGE, time(2, 30), time(4), SUNDAY)

    [(begin, end)] = occurrences(recurrence, PARIS, SPRING_CHANGE, SPRING_CHANGE)

    assert begin.astimezone(PARIS).time() == time(3, 30)
    assert end.astimezone(PARIS).time() == time(4)


def test_an_ambiguous_autumn_time_is_its_first_instance():
    recurrence = weekly(AUTUMN_CHANGE, time(2, 30), time(4), SUNDAY)

    [(begin, end)] = occurrences(recurrence, PARIS, AUTUMN_CHANGE, AUTUMN_CHANGE)

    assert begin == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 summer time
    assert end - begin == timedelta(hours=2, minutes=30)


def test_every_two_weeks_counts_weeks_from_the_monday_of_the_first_day():
    recurrence = weekly(date(2026, 1, 7), time(9), time(12), MONDAY | WEDNESDAY, every_n_weeks=2)

    days = list(recurrence.days(date(2026, 1, 1), date(2026, 2, 4)))

    assert days == [date(2026, 1, 7), date(2026, 1, 19), date(2026, 1, 21), date(2026, 2, 2), date(2026, 2, 4)]


def test_a_plage_ends_on_its_last_day():
    recurrence = weekly(date(2026, 1, 5), time(9), time(12), MONDAY, last_day=date(2026, 1, 12))

    assert list(recurrence.days(date(2026, 1, 1), date(2026, 3, 1))) == [date(2026, 1, 5), date(2026, 1, 12)]


def test_a_one_off_absence_covers_every_day_of_its_span():
    absence = one_off(date(2026, 6, 1), time(14), date(2026, 6, 3), time(10, 30))

    found = slots_for([morning(date(2026, 6, 1))], date(2026, 6, 1), date(2026, 6, 4), absences={1: [absence]})

    assert wall_clocks(found)[:2] == ["Mon 01/06 09:00", "Mon 01/06 09:30"]
    assert not any(slot.starts_at.astimezone(PARIS).day == 2 for slot in found)
    assert wall_clocks(found)[6:8] == ["Wed 03/06 10:30", "Wed 03/06 11:00"]
    assert wall_clocks(found)[-1] == "Thu 04/06 11:30"


def test_an_absence_of_another_agent_changes_nothing():
    absence = one_off(date(2026, 6, 1), time(0), date(2026, 6, 1), time(23, 59))

    found = slots_for([morning(date(2026, 6, 1))], date(2026, 6, 1), date(2026, 6, 1), absences={2: [absence]})

    assert len(found) == 6


def test_a_live_rdv_removes_its_time_and_the_grid_restarts_after_it():
    rdv = (local(date(2026, 6, 1), time(9, 15)), local(date(2026, 6, 1), time(10)))

    found = slots_for([morning(date(2026, 6, 1))], date(2026, 6, 1), date(2026, 6, 1), busy={1: [rdv]})

    assert wall_clocks(found) == ["Mon 01/06 10:00", "Mon 01/06 10:30", "Mon 01/06 11:00", "Mon 01/06 11:30"]


def test_nothing_is_offered_before_the_window_start_rounded_up_to_five_minutes():
    opening = morning(date(2026, 6, 1))
    now = local(date(2026, 6, 1), time(10, 7, 42))

    found = free_slots([opening], {}, {}, set(), PARIS, HALF_HOUR, now, local(date(2026, 6, 2), time(0)))

    assert wall_clocks(found) == ["Mon 01/06 10:10", "Mon 01/06 10:40", "Mon 01/06 11:10"]


def test_a_slot_must_fit_entirely_before_the_end_of_the_plage():
    found = slots_for([morning(date(2026, 6, 1))], date(2026, 6, 1), date(2026, 6, 1), duration=timedelta(minutes=50))

    assert wall_clocks(found) == ["Mon 01/06 09:00", "Mon 01/06 09:50", "Mon 01/06 10:40"]


def test_14_july_is_closed_everywhere():
    holidays = public_holidays(None, [2026])

    found = slots_for([morning(date(2026, 7, 13))], date(2026, 7, 13), date(2026, 7, 15), holidays=holidays)

    assert {slot.starts_at.astimezone(PARIS).day for slot in found} == {13, 15}


def test_alsace_moselle_closes_on_good_friday_and_26_december_but_paris_does_not():
    for subdivision in ("57", "6AE"):
        assert {date(2026, 4, 3), date(2026, 12, 26)} <= public_holidays(subdivision, [2026])
    assert not {date(2026, 4, 3), date(2026, 12, 26)} & public_holidays(None, [2026])

    paris = slots_for([morning(date(2026, 3, 30))], date(2026, 4, 3), date(2026, 4, 3),
                      holidays=public_holidays(None, [2026]))
    moselle = slots_for([morning(date(2026, 3, 30))], date(2026, 4, 3), date(2026, 4, 3),
                        holidays=public_holidays("57", [2026]))

    assert len(paris) == 6 and moselle == []


def test_reunion_celebrates_the_abolition_of_slavery_on_20_december():
    assert date(2026, 12, 20) in public_holidays("974", [2026])
    assert date(2026, 12, 20) not in public_holidays(None, [2026])


def test_slots_sort_by_start_then_agent():
    found = slots_for([morning(date(2026, 6, 1), agent_id=2, plage_id=1), morning(date(2026, 6, 1), agent_id=1,
                                                                                    plage_id=2)],
                      date(2026, 6, 1), date(2026, 6, 1))

    assert [(slot.starts_at.astimezone(PARIS).strftime("%H:%M"), slot.agent_id) for slot in found[:3]] == [
        ("09:00", 1), ("09:00", 2), ("09:30", 1)]
    assert found == sorted(found)


def test_a_limit_stops_at_the_first_days_instead_of_walking_the_whole_window():
    asked = []

    class RecordedHolidays(frozenset):
        def __contains__(self, day):
            asked.append(day)
            return False

    found = free_slots([morning(date(2026, 6, 1))], {}, {}, RecordedHolidays(), PARIS, HALF_HOUR,
                       local(date(2026, 6, 1), time(0)), local(date(2126, 6, 1), time(0)), limit=10)

    assert len(found) == 10
    assert max(asked) == date(2026, 6, 2)


def test_a_naive_window_is_refused_rather_than_read_as_server_time():
    with pytest.raises(ValueError):
        free_slots([], {}, {}, set(), PARIS, HALF_HOUR, datetime(2026, 6, 1), datetime(2026, 6, 2))


# --- Interval algebra --------------------------------------------------------------------------------------------

BASE = datetime(2026, 1, 1, tzinfo=UTC)
minute_intervals = st.lists(st.tuples(st.integers(0, 200), st.integers(1, 60)).map(
    lambda pair: (BASE + timedelta(minutes=pair[0]), BASE + timedelta(minutes=pair[0] + pair[1]))), max_size=8)


def covered_minutes(intervals) -> set[int]:
    return {minute for begin, end in intervals
            for minute in range(int((begin - BASE) / timedelta(minutes=1)), int((end - BASE) / timedelta(minutes=1)))}


@settings(deadline=None)  # what is tested is the result, not how long an example takes on a shared machine
@given(minute_intervals)
def test_merge_covers_the_same_minutes_with_disjoint_sorted_intervals(intervals):
    merged = merge(intervals)

    assert covered_minutes(merged) == covered_minutes(intervals)
    assert all(earlier[1] < later[0] for earlier, later in zip(merged, merged[1:]))


@settings(deadline=None)
@given(minute_intervals, minute_intervals)
def test_subtract_keeps_exactly_the_minutes_not_busy(intervals, busy):
    remaining = subtract(intervals, busy)

    assert covered_minutes(remaining) == covered_minutes(intervals) - covered_minutes(busy)
    assert all(begin < end for begin, end in remaining)
    assert remaining == sorted(remaining)


# --- Properties against a brute-force model ---------------------------------------------------------------------

def occurs_on(recurrence: Recurrence, day: date) -> bool:
    """The recurrence rule restated independently: ISO weeks counted from the first day's week."""
    if day < recurrence.first_day or (recurrence.last_day and day > recurrence.last_day):
        return False
    weeks_apart = (day.toordinal() - day.weekday() - recurrence.first_day.toordinal()
                   + recurrence.first_day.weekday()) // 7
    return bool(recurrence.weekdays & (1 << day.weekday())) and weeks_apart % recurrence.every_n_weeks == 0


def spans(recurrence: Recurrence, tz: ZoneInfo, first: date, last: date) -> list[tuple[datetime, datetime]]:
    if recurrence.weekdays == 0:
        return [(local(recurrence.first_day, recurrence.start_time, tz),
                 local(recurrence.last_day or recurrence.first_day, recurrence.end_time, tz))]
    found = []
    changed = {exception.day: exception for exception in recurrence.exceptions}
    for offset in range((last - first).days + 2):
        day = first - timedelta(days=1) + timedelta(days=offset)
        if occurs_on(recurrence, day):
            start_time, end_time = recurrence.start_time, recurrence.end_time
            if day in changed:  # a plage's date removed, or opened at other local hours that day
                if changed[day].start_time is None:
                    continue
                start_time, end_time = changed[day].start_time, changed[day].end_time
            end_day = day + timedelta(days=1) if end_time <= start_time else day
            found.append((local(day, start_time, tz), local(end_day, end_time, tz)))
    return found


def expected_slots(case) -> list[tuple]:
    """Walk each opening in 5-minute cells; cut each run of free cells from its start."""
    tz, start, end = case["tz"], ceil_to_grid(case["window_start"]), case["window_end"]
    first, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    found = []
    for opening in case["openings"]:
        closed = case["busy"].get(opening.agent_id, []) + [
            span for absence in case["absences"].get(opening.agent_id, []) for span in spans(absence, tz, first, last)]
        for begin, finish in spans(opening.recurrence, tz, first, last):
            run_start, cell = None, begin
            while cell <= finish:
                free = (cell + CELL <= finish and start <= cell and cell + CELL <= end
                        and cell.astimezone(tz).date() not in case["holidays"]
                        and not any(b < cell + CELL and cell < e for b, e in closed))
                if free and run_start is None:
                    run_start = cell
                if not free and run_start is not None:
                    slot = run_start
                    while slot + case["duration"] <= cell:
                        found.append((slot, slot + case["duration"], opening.agent_id, opening.lieu_id,
                                      opening.plage_id))
                        slot += case["duration"]
                    run_start = None
                cell += CELL
    return sorted(found, key=lambda s: (s[0], s[2], s[4]))


@st.composite
def clock(draw, earliest: int = 0, latest: int = 23 * 60 + 55) -> time:
    minutes = draw(st.integers(earliest // 5, latest // 5)) * 5
    return time(minutes // 60, minutes % 60)


@st.composite
def recurrences(draw, near: date, for_absence: bool) -> Recurrence:
    """Plages: weekly within the day, or a one-off within one day. Absences: also multi-day and overnight."""
    first_day = near + timedelta(days=draw(st.integers(-10, 6)))
    if draw(st.booleans()) and draw(st.booleans()):
        if for_absence:
            return one_off(first_day, draw(clock()), first_day + timedelta(days=draw(st.integers(0, 2))), draw(clock()))
        start = draw(clock(5 * 60, 19 * 60))
        return one_off(first_day, start, first_day, draw(clock(start.hour * 60 + start.minute + 5)))
    start = draw(clock(5 * 60, 19 * 60))
    end = draw(clock()) if for_absence else draw(clock(start.hour * 60 + start.minute + 5))
    last_day = draw(st.none() | st.integers(0, 20).map(lambda n: first_day + timedelta(days=n)))
    recurrence = weekly(first_day, start, end, draw(st.integers(1, 127)), draw(st.integers(1, 3)), last_day)
    if for_absence:
        return recurrence
    # A plage's exceptions, on the days the windows look at: some removed, others at other hours (a day that is not
    # an occurrence stays closed).
    days = draw(st.lists(st.integers(-3, 8), max_size=4, unique=True))
    exceptions = []
    for offset in days:
        if draw(st.booleans()):
            exceptions.append(DayException(near + timedelta(days=offset)))
        else:
            other_start = draw(clock(5 * 60, 19 * 60))
            other_end = draw(clock(other_start.hour * 60 + other_start.minute + 5))
            exceptions.append(DayException(near + timedelta(days=offset), other_start, other_end))
    return Recurrence(first_day, last_day, start, end, recurrence.weekdays, recurrence.every_n_weeks,
                      tuple(exceptions))


@st.composite
def cases(draw, zones=tuple(ZONES)):
    tz = draw(st.sampled_from(zones))
    near = draw(st.sampled_from([SPRING_CHANGE, AUTUMN_CHANGE, date(2026, 7, 13)])
                | st.dates(date(2026, 1, 1), date(2026, 12, 31)))
    near_midnight = local(near - timedelta(days=3), time(0), tz)
    agents = [1, 2, 3]
    openings = [
        Opening(draw(st.sampled_from(agents)), draw(st.sampled_from([None, 10, 11])), plage_id,
                draw(recurrences(near, for_absence=False)))
        for plage_id in range(1, draw(st.integers(1, 4)) + 1)
    ]
    busy = {agent: sorted(
        (near_midnight + CELL * begin, near_midnight + CELL * (begin + length))
        for begin, length in draw(st.lists(st.tuples(st.integers(0, 288 * 10), st.integers(1, 100)), max_size=6)))
        for agent in agents}
    absences = {agent: draw(st.lists(recurrences(near, for_absence=True), max_size=2)) for agent in agents}
    holidays = set(draw(st.lists(st.integers(-3, 8).map(lambda n: near + timedelta(days=n)), max_size=2)))
    window_start = near_midnight + timedelta(seconds=draw(st.integers(0, 3 * 86400)))
    window_end = ceil_to_grid(window_start) + CELL * draw(st.integers(0, 288 * 8))
    duration = CELL * draw(st.integers(1, 24))
    return dict(openings=openings, busy=busy, absences=absences, holidays=holidays, tz=tz, duration=duration,
                window_start=window_start, window_end=window_end)


def run(case, limit: int | None = None) -> list[Slot]:
    return free_slots(case["openings"], case["busy"], case["absences"], case["holidays"], case["tz"],
                      case["duration"], case["window_start"], case["window_end"], limit)


def as_tuples(slots: list[Slot]) -> list[tuple]:
    return [(s.starts_at, s.ends_at, s.agent_id, s.lieu_id, s.plage_id) for s in slots]


PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(cases())
def test_free_slots_are_exactly_what_a_five_minute_walk_finds(case):
    assert as_tuples(run(case)) == expected_slots(case)


@PROPERTY_SETTINGS
@given(cases())
def test_no_slot_overlaps_busy_time_or_an_absence_and_each_lies_in_an_opening(case):
    tz = case["tz"]
    first, last = case["window_start"].astimezone(tz).date(), case["window_end"].astimezone(tz).date()
    for slot in run(case):
        window = (slot.starts_at, slot.ends_at)
        assert slot.ends_at - slot.starts_at == case["duration"]
        assert case["window_start"] <= slot.starts_at and slot.ends_at <= case["window_end"]
        assert slot.starts_at.astimezone(tz).date() not in case["holidays"]
        absent = [span for absence in case["absences"][slot.agent_id] for span in spans(absence, tz, first, last)]
        for begin, end in case["busy"][slot.agent_id] + absent:
            assert not (begin < window[1] and window[0] < end)
        [opening] = [o for o in case["openings"] if o.plage_id == slot.plage_id]
        assert any(begin <= window[0] and window[1] <= end for begin, end in spans(opening.recurrence, tz, first, last))
        assert (slot.agent_id, slot.lieu_id) == (opening.agent_id, opening.lieu_id)


@PROPERTY_SETTINGS
@given(cases(), st.integers(0, 30))
def test_a_limit_gives_the_beginning_of_the_full_list(case, limit):
    full = run(case)

    assert run(case, limit) == full[:limit]
    assert full == sorted(full)


@PROPERTY_SETTINGS
@given(st.sampled_from(ZONES), st.sampled_from([SPRING_CHANGE, AUTUMN_CHANGE]), clock(6 * 60, 20 * 60),
       st.integers(1, 36), st.integers(1, 12), st.integers(1, 127), st.integers(1, 2))
def test_dst_changes_neither_lose_nor_shift_a_slot(tz, change, start, length, minutes, weekdays, every_n_weeks):
    """Each occurrence around a DST change offers the same local times as on a plain day."""
    start_minutes = start.hour * 60 + start.minute
    end_minutes = min(start_minutes + length * 15, 23 * 60 + 55)
    recurrence = weekly(change - timedelta(days=14), start, time(end_minutes // 60, end_minutes % 60), weekdays,
                        every_n_weeks)
    duration = timedelta(minutes=5 * minutes)
    wanted_clocks = [time(m // 60, m % 60) for m in range(start_minutes, end_minutes - 5 * minutes + 1, 5 * minutes)]

    found = slots_for([Opening(1, None, 1, recurrence)], change - timedelta(days=7), change + timedelta(days=7),
                      tz=tz, duration=duration)

    days = [day for day in recurrence.days(change - timedelta(days=7), change + timedelta(days=7))]
    expected = [(day, clock_time) for day in days for clock_time in wanted_clocks]
    assert [(s.starts_at.astimezone(tz).date(), s.starts_at.astimezone(tz).time()) for s in found] == expected
    assert all(s.ends_at - s.starts_at == duration for s in found)


@settings(max_examples=100, deadline=None)
@given(st.dates(date(2025, 1, 1), date(2027, 12, 31)), st.integers(1, 127), st.integers(1, 4),
       st.none() | st.integers(0, 200), st.integers(-30, 30), st.integers(0, 120))
def test_recurrence_days_follow_the_weekdays_and_the_week_period(first_day, weekdays, every_n_weeks, length,
                                                                  offset, span):
    recurrence = weekly(first_day, time(9), time(12), weekdays, every_n_weeks,
                        None if length is None else first_day + timedelta(days=length))
    start = first_day + timedelta(days=offset)
    end = start + timedelta(days=span)

    days = list(recurrence.days(start, end))

    every_day = [start + timedelta(days=n) for n in range(span + 1)]
    assert days == [day for day in every_day if occurs_on(recurrence, day)]
