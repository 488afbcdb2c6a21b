"""Free slots read from the database: what an agent looking for a créneau, or booking one, is offered."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from lapins.slots import availability
from lapins.infra.extensions import db as _db
from lapins.models import RdvStatus

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)  # Monday 2 March 2026, 08:00 in Paris
TODAY = date(2026, 3, 2)
MONDAY = 1


def at(day: date, clock: str, tz: ZoneInfo = PARIS) -> datetime:
    return datetime.combine(day, time.fromisoformat(clock), tzinfo=tz).astimezone(timezone.utc)


def clocks(slots, tz: ZoneInfo = PARIS) -> list[str]:
    return [slot.starts_at.astimezone(tz).strftime("%d/%m %H:%M") for slot in slots]


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def centre(factories):
    """A Paris PMI centre where a puéricultrice consults Monday to Friday, 09:00–12:00, for 30-minute visits."""
    organisation = factories.OrganisationFactory(territory__number="75", territory__timezone="Europe/Paris")
    lieu = factories.LieuFactory(organisation=organisation)
    motif = factories.MotifFactory(organisation=organisation, duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation)
    plage = factories.PlageFactory(agent=agent, lieu=lieu, first_day=TODAY, motifs=[motif])
    return type("Centre", (), dict(territory=organisation.territory, organisation=organisation, lieu=lieu,
                                   motif=motif, agent=agent, plage=plage))


def first(centre, **kwargs):
    options = dict(territory=centre.territory, motif=centre.motif)
    return availability.first_available(**(options | kwargs))


def between(centre, first_day: date, last_day: date, **kwargs):
    options = dict(territory=centre.territory, motif=centre.motif, start=at(first_day, "00:00", centre.territory.tz),
                   end=at(last_day + timedelta(days=1), "00:00", centre.territory.tz))
    return availability.free_slots_between(**(options | kwargs))


# --- first_available ------------------------------------------------------------------------------------------

def test_first_available_offers_the_next_slots_of_the_morning(centre):
    found = first(centre, limit=3)

    assert clocks(found) == ["02/03 09:00", "02/03 09:30", "02/03 10:00"]
    assert {(slot.agent_id, slot.lieu_id, slot.plage_id) for slot in found} == {
        (centre.agent.id, centre.lieu.id, centre.plage.id)}
    assert all(slot.ends_at - slot.starts_at == timedelta(minutes=30) for slot in found)


def test_slots_already_begun_today_are_not_offered(centre):
    with time_machine.travel(at(TODAY, "10:12"), tick=False):
        found = first(centre, limit=2)

    assert clocks(found) == ["02/03 10:15", "02/03 10:45"]


def test_when_today_is_full_the_search_goes_on_to_the_next_days(centre, factories):
    for clock in ("09:00", "10:00", "11:00"):
        factories.RdvFactory(motif=centre.motif, starts_at=at(TODAY, clock),
                             ends_at=at(TODAY, clock) + timedelta(hours=1), agents=[centre.agent])
    factories.RdvFactory(motif=centre.motif, starts_at=at(date(2026, 3, 3), "09:00"), agents=[centre.agent])
    factories.RdvFactory(motif=centre.motif, starts_at=at(date(2026, 3, 10), "09:00"), agents=[centre.agent])

    found = first(centre, limit=12)

    assert clocks(found)[:5] == ["03/03 09:30", "03/03 10:00", "03/03 10:30", "03/03 11:00", "03/03 11:30"]
    assert clocks(found)[5] == "04/03 09:00"

    later = first(centre, start=at(date(2026, 3, 9), "12:00"), limit=7)
    assert clocks(later) == ["10/03 09:30", "10/03 10:00", "10/03 10:30", "10/03 11:00", "10/03 11:30",
                             "11/03 09:00", "11/03 09:30"]


def test_on_friday_evening_the_first_slots_are_on_monday_around_its_rdvs(centre, factories):
    monday = date(2026, 3, 9)
    factories.RdvFactory(motif=centre.motif, starts_at=at(monday, "09:00"), agents=[centre.agent])

    found = first(centre, start=at(date(2026, 3, 6), "18:00"), limit=2)

    assert clocks(found) == ["09/03 09:30", "09/03 10:00"]


def test_the_search_stops_at_the_horizon(centre):
    assert clocks(first(centre, weeks=1, limit=100))[-1] == "06/03 11:30"
    assert len(first(centre, weeks=1, limit=100)) == 5 * 6


def test_a_plage_that_does_not_offer_the_motif_is_ignored(centre, factories):
    other_motif = factories.MotifFactory(organisation=centre.organisation)
    early = factories.AgentFactory(organisation=centre.organisation)
    factories.PlageFactory(agent=early, lieu=centre.lieu, first_day=TODAY, start_time=time(8, 30),
                           motifs=[other_motif])

    assert clocks(first(centre, limit=1)) == ["02/03 09:00"]
    assert clocks(first(centre, motif=other_motif, limit=1)) == ["02/03 08:30"]


def test_the_lieu_filter_keeps_the_slots_of_that_lieu(centre, factories):
    other_lieu = factories.LieuFactory(organisation=centre.organisation)
    colleague = factories.AgentFactory(organisation=centre.organisation)
    factories.PlageFactory(agent=colleague, lieu=other_lieu, first_day=TODAY, start_time=time(8, 30),
                           motifs=[centre.motif])

    assert {slot.lieu_id for slot in first(centre, limit=20)} == {centre.lieu.id, other_lieu.id}
    assert {slot.lieu_id for slot in first(centre, lieu_id=centre.lieu.id, limit=20)} == {centre.lieu.id}
    assert clocks(first(centre, lieu_id=other_lieu.id, limit=1)) == ["02/03 08:30"]


def test_the_agent_filter_keeps_the_slots_of_that_agent(centre, factories):
    colleague = factories.AgentFactory(organisation=centre.organisation)
    factories.PlageFactory(agent=colleague, lieu=centre.lieu, first_day=TODAY, start_time=time(14),
                           end_time=time(17), motifs=[centre.motif])

    found = first(centre, agent_id=colleague.id, limit=2)

    assert clocks(found) == ["02/03 14:00", "02/03 14:30"]
    assert {slot.agent_id for slot in found} == {colleague.id}


def test_slots_of_two_agents_at_the_same_time_come_in_agent_order(centre, factories):
    colleague = factories.AgentFactory(organisation=centre.organisation)
    factories.PlageFactory(agent=colleague, lieu=centre.lieu, first_day=TODAY, motifs=[centre.motif])

    found = first(centre, limit=4)

    assert clocks(found) == ["02/03 09:00", "02/03 09:00", "02/03 09:30", "02/03 09:30"]
    assert [slot.agent_id for slot in found] == sorted([centre.agent.id, colleague.id]) * 2


def test_an_inactive_agent_offers_no_slot(centre):
    centre.agent.active = False
    _db.session.commit()

    assert first(centre) == []


def test_a_plage_of_another_territory_offers_nothing_here(centre, factories):
    elsewhere = factories.TerritoryFactory(number="974", timezone="Indian/Reunion")

    assert availability.first_available(territory=elsewhere, motif=centre.motif) == []


def test_a_live_rdv_takes_its_slot(centre, factories):
    factories.RdvFactory(motif=centre.motif, starts_at=at(TODAY, "09:00"), agents=[centre.agent])

    assert clocks(first(centre, limit=2)) == ["02/03 09:30", "02/03 10:00"]


@pytest.mark.parametrize("status", [RdvStatus.EXCUSED, RdvStatus.REVOKED])
def test_a_cancelled_rdv_frees_its_slot(centre, factories, status):
    rdv = factories.RdvFactory(motif=centre.motif, starts_at=at(TODAY, "09:00"), agents=[centre.agent])
    assert clocks(first(centre, limit=1)) == ["02/03 09:30"]

    rdv.status = status
    _db.session.commit()

    assert clocks(first(centre, limit=1)) == ["02/03 09:00"]


def test_an_rdv_with_two_agents_keeps_both_busy(centre, factories):
    colleague = factories.AgentFactory(organisation=centre.organisation)
    factories.PlageFactory(agent=colleague, lieu=centre.lieu, first_day=TODAY, motifs=[centre.motif])
    factories.RdvFactory(motif=centre.motif, starts_at=at(TODAY, "09:00"), agents=[centre.agent, colleague])

    assert clocks(first(centre, limit=2)) == ["02/03 09:30", "02/03 09:30"]


def test_an_rdv_that_began_the_day_before_still_blocks(centre, factories):
    factories.RdvFactory(motif=centre.motif, starts_at=at(date(2026, 3, 1), "22:00"), ends_at=at(TODAY, "10:00"),
                         agents=[centre.agent])

    assert clocks(first(centre, limit=1)) == ["02/03 10:00"]


def test_an_absence_removes_its_slots(centre, factories):
    factories.AbsenceFactory(agent=centre.agent, first_day=TODAY, start_time=time(8), end_time=time(10, 30))

    assert clocks(first(centre, limit=1)) == ["02/03 10:30"]


def test_a_weekly_absence_removes_the_same_time_every_week(centre, factories):
    factories.AbsenceFactory(agent=centre.agent, first_day=TODAY, last_day=None, weekdays=MONDAY,
                             start_time=time(9), end_time=time(12))

    found = between(centre, TODAY, date(2026, 3, 16))

    assert {slot.starts_at.astimezone(PARIS).date().weekday() for slot in found} == {1, 2, 3, 4}


def test_a_public_holiday_has_no_slot(centre):
    found = between(centre, date(2026, 7, 13), date(2026, 7, 15))

    assert {slot.starts_at.astimezone(PARIS).day for slot in found} == {13, 15}


def test_good_friday_is_closed_in_moselle_but_open_in_paris(centre, factories):
    moselle = factories.OrganisationFactory(territory__number="57", territory__timezone="Europe/Paris")
    motif = factories.MotifFactory(organisation=moselle)
    factories.PlageFactory(lieu=factories.LieuFactory(organisation=moselle), first_day=TODAY, motifs=[motif])
    good_friday = date(2026, 4, 3)

    in_paris = between(centre, good_friday, good_friday)
    in_moselle = availability.free_slots_between(territory=moselle.territory, motif=motif,
                                                 start=at(good_friday, "00:00"), end=at(date(2026, 4, 4), "00:00"))

    assert len(in_paris) == 6 and in_moselle == []


def test_reunion_slots_are_at_local_wall_time(factories):
    organisation = factories.OrganisationFactory(territory__number="974", territory__timezone="Indian/Reunion")
    motif = factories.MotifFactory(organisation=organisation, duration_minutes=45)
    factories.PlageFactory(lieu=factories.LieuFactory(organisation=organisation), first_day=TODAY,
                           start_time=time(8, 30), end_time=time(10), motifs=[motif])

    with time_machine.travel(at(TODAY, "07:00", REUNION), tick=False):
        found = availability.first_available(territory=organisation.territory, motif=motif, limit=3)

    assert clocks(found, REUNION) == ["02/03 08:30", "02/03 09:15", "03/03 08:30"]
    assert found[0].starts_at == datetime(2026, 3, 2, 4, 30, tzinfo=timezone.utc)


def test_free_slots_between_keeps_the_hours_across_the_dst_change(centre):
    found = between(centre, date(2026, 3, 27), date(2026, 3, 30))

    assert clocks(found)[::6] == ["27/03 09:00", "30/03 09:00"]
    assert [slot.starts_at.hour for slot in found[::6]] == [8, 7]


# --- covering_opening ---------------------------------------------------------------------------------------------

def covers(centre, start: str, end: str, day: date = TODAY, **kwargs) -> bool:
    options = dict(agent_ids=[centre.agent.id], motif_id=centre.motif.id, lieu_id=centre.lieu.id,
                   starts_at=at(day, start), ends_at=at(day, end), territory=centre.territory)
    return availability.covering_opening(**(options | kwargs))


def test_an_rdv_inside_the_plage_is_covered(centre):
    assert covers(centre, "09:00", "09:30")
    assert covers(centre, "11:20", "12:00")
    assert covers(centre, "09:00", "09:30", lieu_id=None)


def test_an_rdv_spilling_out_of_the_plage_is_not_covered(centre):
    assert not covers(centre, "11:45", "12:15")
    assert not covers(centre, "08:45", "09:15")
    assert not covers(centre, "14:00", "14:30")
    assert not covers(centre, "09:00", "09:30", day=date(2026, 3, 7))  # Saturday


def test_an_rdv_for_another_motif_or_lieu_is_not_covered(centre, factories):
    other_motif = factories.MotifFactory(organisation=centre.organisation)
    other_lieu = factories.LieuFactory(organisation=centre.organisation)

    assert not covers(centre, "09:00", "09:30", motif_id=other_motif.id)
    assert not covers(centre, "09:00", "09:30", lieu_id=other_lieu.id)


def test_an_rdv_during_an_absence_or_on_a_holiday_is_not_covered(centre, factories):
    factories.AbsenceFactory(agent=centre.agent, first_day=TODAY, start_time=time(10), end_time=time(11))

    assert not covers(centre, "10:30", "11:00")
    assert covers(centre, "11:00", "11:30")
    assert not covers(centre, "09:00", "09:30", day=date(2026, 4, 6))  # Easter Monday


def test_an_rdv_with_two_agents_needs_both_to_be_open(centre, factories):
    colleague = factories.AgentFactory(organisation=centre.organisation)
    factories.PlageFactory(agent=colleague, lieu=centre.lieu, first_day=TODAY, start_time=time(10),
                           motifs=[centre.motif])
    both = [centre.agent.id, colleague.id]

    assert covers(centre, "10:00", "10:30", agent_ids=both)
    assert not covers(centre, "09:00", "09:30", agent_ids=both)
    assert not covers(centre, "09:00", "09:30", agent_ids=[])


def test_an_empty_or_reversed_span_is_not_covered(centre):
    assert not covers(centre, "09:30", "09:30")
    assert not covers(centre, "10:00", "09:30")


# --- Calendars' background -----------------------------------------------------------------------------------

def test_opening_intervals_list_each_plage_occurrence_of_the_week(centre):
    week = availability.opening_intervals(centre.agent.id, PARIS, at(TODAY, "00:00"), at(date(2026, 3, 9), "00:00"))

    assert [(o.starts_at.astimezone(PARIS).strftime("%a %H:%M"), o.ends_at.astimezone(PARIS).strftime("%H:%M"))
            for o in week] == [(day, "12:00") for day in ("Mon 09:00", "Tue 09:00", "Wed 09:00", "Thu 09:00",
                                                          "Fri 09:00")]
    assert {(o.plage_id, o.lieu_id, o.agent_id, o.lieu_name) for o in week} == {
        (centre.plage.id, centre.lieu.id, centre.agent.id, centre.lieu.name)}


def test_absence_and_holiday_intervals_show_what_closes_the_agenda(centre, factories):
    absence = factories.AbsenceFactory(agent=centre.agent, first_day=date(2026, 4, 2), last_day=date(2026, 4, 3),
                                       start_time=time(14), end_time=time(12))
    start, end = at(date(2026, 3, 30), "00:00"), at(date(2026, 4, 13), "00:00")

    [away] = availability.absence_intervals(centre.agent.id, PARIS, start, end)
    [easter_monday] = availability.holiday_intervals(centre.territory, start, end)

    assert (away.starts_at, away.ends_at, away.absence_id, away.title) == (
        at(date(2026, 4, 2), "14:00"), at(date(2026, 4, 3), "12:00"), absence.id, absence.title)
    assert easter_monday.name == "Lundi de Pâques"
    assert (easter_monday.starts_at, easter_monday.ends_at) == (at(date(2026, 4, 6), "00:00"),
                                                                at(date(2026, 4, 7), "00:00"))


def test_an_agendas_background_in_one_query_is_its_plages_and_absences(centre, factories):
    factories.AbsenceFactory(agent=centre.agent, first_day=date(2026, 4, 2), last_day=date(2026, 4, 3),
                             start_time=time(14), end_time=time(12))
    factories.AbsenceFactory(agent=centre.agent, first_day=date(2026, 3, 30), last_day=None, weekdays=0b10,
                             start_time=time(9), end_time=time(10))  # every Tuesday
    start, end = at(date(2026, 3, 30), "00:00"), at(date(2026, 4, 13), "00:00")

    rows = availability.background_rows(centre.agent.id, PARIS, start, end)
    openings, absences = availability.background_intervals(rows, centre.agent.id, PARIS, start, end)

    assert openings == availability.opening_intervals(centre.agent.id, PARIS, start, end) and len(openings) == 10
    assert absences == availability.absence_intervals(centre.agent.id, PARIS, start, end) and len(absences) == 3


# --- Benchmark floor -------------------------------------------------------------------------------------------

def test_a_search_reads_a_week_first_then_windows_four_times_as_long():
    # One round trip costs more than a week of rdvs: most searches must end in the first window (issue 15).
    windows = availability.search_windows(PARIS, NOW, 13)

    assert windows[0][0] == NOW and all(earlier[1] == later[0] for earlier, later in zip(windows, windows[1:]))
    assert [upper for _, upper in windows] == [at(date(2026, 3, 10), "00:00"), at(date(2026, 4, 3), "00:00"),
                                               at(date(2026, 6, 1), "00:00")]  # 8 days, 32 days, 13 weeks
    assert availability.search_windows(PARIS, NOW, 1) == [(NOW, at(date(2026, 3, 9), "00:00"))]


def test_the_floor_query_reads_the_rows_first_available_reads(centre, factories):
    factories.AbsenceFactory(agent=centre.agent, first_day=TODAY, start_time=time(9), end_time=time(9, 30))
    factories.RdvFactory(motif=centre.motif, starts_at=at(TODAY, "10:00"), agents=[centre.agent])
    factories.RdvFactory(motif=centre.motif, starts_at=at(date(2026, 3, 20), "10:00"), agents=[centre.agent])

    found = first(centre, limit=3)
    end = availability.examined_end(found, territory=centre.territory, start=NOW, limit=3)
    rows = availability.fetch_rows_for_floor(territory=centre.territory, motif=centre.motif, start=NOW, end=end)

    assert end == at(date(2026, 3, 10), "00:00")  # the first window (today and the next seven days) held enough
    assert sorted(row.kind for row in rows) == [1, 2, 3]  # the plage, the absence, today's rdv: not the far one
