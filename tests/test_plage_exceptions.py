"""Exceptions in a recurring plage: one date removed or changed, or every date from one on, from the plage page and
from the agenda; the rdvs left out listed before saving, none moved; bad dates refused in French, nothing stored."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
import re
from html import unescape
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import delete, func, select

from lapins.models import Agent, PlageException, PlageOuverture, RdvStatus, Role, Territory
from lapins.auth import tokens
from lapins.slots import availability, engine, picker
from tests.conftest import csrf_token_from

PARIS = ZoneInfo("Europe/Paris")
MONDAY = date(2026, 1, 5)
WEDNESDAY = MONDAY + timedelta(days=2)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel("2026-01-05 08:00 +01:00", tick=False):
        yield


@pytest.fixture()
def centre(factories):
    """A Paris PMI centre where Claire consults Monday to Friday, 09:00–12:00 (30-minute visits), from 5 January."""
    f = factories
    organisation = f.OrganisationFactory(name="PMI Nord", territory__timezone="Europe/Paris")
    lieu = f.LieuFactory(organisation=organisation, name="Centre PMI Gare")
    motif = f.MotifFactory(organisation=organisation, name="Consultation nourrisson", duration_minutes=30)
    agent = f.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, first_name="Claire",
                           last_name="Martin")

    class Centre:
        territory = organisation.territory
        org = organisation
        lieu2 = f.LieuFactory(organisation=organisation, name="Centre PMI Mairie")
        stranger = f.AgentFactory(organisation=f.OrganisationFactory(name="PMI Sud"),
                                  organisation__role=Role.ADMIN)
        usager = f.UsagerFactory(territory=organisation.territory, first_name="Inès", last_name="Durand")

    Centre.lieu, Centre.motif, Centre.agent = lieu, motif, agent
    Centre.plage = f.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=MONDAY, title="Consultations")
    return Centre


def at(day: date, clock: str, tz: ZoneInfo = PARIS) -> datetime:
    return datetime.combine(day, time.fromisoformat(clock), tzinfo=tz).astimezone(timezone.utc)


def free_days(centre, first_day: date, last_day: date, lieu=None) -> dict[date, list[str]]:
    """The free slots per local day, as « 09:00 » wall clocks (availability, as the agenda's search reads them)."""
    slots = availability.free_slots_between(
        territory=centre.territory, motif=centre.motif, lieu_id=(lieu or centre.lieu).id,
        start=at(first_day, "00:00"), end=at(last_day + timedelta(days=1), "00:00"))
    days: dict[date, list[str]] = {}
    for slot in slots:
        local = slot.starts_at.astimezone(PARIS)
        days.setdefault(local.date(), []).append(local.strftime("%H:%M"))
    return days


def picker_days(db, centre, first_day: date, last_day: date, lieu=None) -> dict[date, list[str]]:
    """What the public picker shows a family (its kept pages, on the agenda stamps read now)."""
    db.session.expire_all()
    territory = db.session.get(type(centre.territory), centre.territory.id)
    scope = picker.Scope(territory=territory, motif=centre.motif, lieu_id=(lieu or centre.lieu).id, agent_ids=None,
                         start=at(first_day, "00:00"), end=at(last_day + timedelta(days=1), "00:00"),
                         agent_stamps=picker.agent_stamps(centre.motif.id, None))
    return {day.day: [choice.starts_at.astimezone(PARIS).strftime("%H:%M") for choice in day.choices]
            for day in picker.days_between(scope, first_day, last_day)}


MORNING = ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]


def text_of(response) -> str:
    return unescape(response.get_data(as_text=True))


def exception_url(plage, day: date | None = None, **query) -> str:
    params = ([f"date={day.isoformat()}"] if day else []) + [f"{key}={value}" for key, value in query.items()]
    return f"/plages/{plage.id}/dates" + (f"?{'&'.join(params)}" if params else "")


def post_exception(client, plage, on: date, from_agenda: bool = False, **fields):
    """Open the plage's date form for `on` as the agent would, then post the change."""
    url = exception_url(plage, on, **({"depuis": "agenda"} if from_agenda else {}))
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    data = {"day": on.isoformat(), "scope": "seule", "action": "retirer", "start_time": "", "end_time": "",
            "lieu_id": str(plage.lieu_id), "csrf_token": csrf_token_from(text_of(page))} | fields
    return client.post(url, data=data)


def count_exceptions(db) -> int:
    return db.session.scalar(select(func.count()).select_from(PlageException))


def plages(db) -> list[PlageOuverture]:
    db.session.expire_all()
    return list(db.session.scalars(select(PlageOuverture).order_by(PlageOuverture.first_day, PlageOuverture.id)))


# --- The engine ---------------------------------------------------------------------------------------------------

def test_the_engine_skips_a_removed_date_and_holds_a_changed_one_at_its_local_hours():
    recurrence = engine.Recurrence(MONDAY, None, time(9), time(12), 0b11111, 1, exceptions=(
        engine.DayException(WEDNESDAY), engine.DayException(MONDAY + timedelta(days=3), time(14), time(15, 30))))

    spans = engine.occurrences(recurrence, PARIS, MONDAY, MONDAY + timedelta(days=4))

    assert [(begin.astimezone(PARIS).strftime("%a %H:%M"), finish.astimezone(PARIS).strftime("%H:%M"))
            for begin, finish in spans] == [("Mon 09:00", "12:00"), ("Tue 09:00", "12:00"), ("Thu 14:00", "15:30"),
                                            ("Fri 09:00", "12:00")]
    assert not recurrence.occurs_on(WEDNESDAY) and recurrence.recurs_on(WEDNESDAY)


# --- One date -----------------------------------------------------------------------------------------------------

def test_removing_one_date_removes_exactly_that_days_free_slots_in_availability_and_the_picker(client, auth, db,
                                                                                               centre):
    week = (MONDAY, MONDAY + timedelta(days=4))
    before = picker_days(db, centre, *week)  # kept by the picker, on the stamps of now
    assert before == {MONDAY + timedelta(days=n): MORNING for n in range(5)}
    auth.login(centre.agent)

    response = post_exception(client, centre.plage, WEDNESDAY)

    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/agents/{centre.agent.id}/horaires")
    page = text_of(client.get(response.headers["Location"]))
    assert "La plage « Consultations » n'ouvre pas le mercredi 7 janvier 2026." in page
    assert "07/01/2026 : pas d'ouverture" in page
    expected = {day: MORNING for day in before if day != WEDNESDAY}
    assert free_days(centre, *week) == expected
    assert picker_days(db, centre, *week) == expected  # the exception drew new stamps: the kept page is not served
    # The next Wednesday still opens.
    assert free_days(centre, WEDNESDAY + timedelta(days=7), WEDNESDAY + timedelta(days=7)) == {
        WEDNESDAY + timedelta(days=7): MORNING}


def test_changing_one_date_gives_that_date_only_other_hours(client, auth, db, centre):
    auth.login(centre.agent)

    response = post_exception(client, centre.plage, WEDNESDAY, action="modifier", start_time="14:00",
                              end_time="15:30")

    assert response.status_code == 302
    assert "ouvre le mercredi 7 janvier 2026 de 14h00 à 15h30 (Centre PMI Gare)" in text_of(
        client.get(response.headers["Location"]))
    days = free_days(centre, MONDAY, MONDAY + timedelta(days=4))
    assert days[WEDNESDAY] == ["14:00", "14:30", "15:00"]
    assert days[MONDAY + timedelta(days=1)] == days[MONDAY + timedelta(days=3)] == MORNING
    assert picker_days(db, centre, WEDNESDAY, WEDNESDAY) == {WEDNESDAY: ["14:00", "14:30", "15:00"]}
    # Other hours again: only the exception's row changes, and the picker's kept page is not served.
    post_exception(client, centre.plage, WEDNESDAY, action="modifier", start_time="16:00", end_time="17:00")
    assert picker_days(db, centre, WEDNESDAY, WEDNESDAY) == {WEDNESDAY: ["16:00", "16:30"]}
    # The usual hours given back to the date remove the exception.
    post_exception(client, centre.plage, WEDNESDAY, action="modifier", start_time="09:00", end_time="12:00")
    assert count_exceptions(db) == 0
    assert free_days(centre, WEDNESDAY, WEDNESDAY) == {WEDNESDAY: MORNING}


def test_the_api_shows_a_plages_removed_and_changed_dates_and_keeps_them_when_the_plage_is_edited(
        client, auth, db, centre):
    auth.login(centre.agent)
    post_exception(client, centre.plage, MONDAY + timedelta(days=1))
    post_exception(client, centre.plage, WEDNESDAY, action="modifier", start_time="14:00", end_time="15:30")
    _, token = tokens.create(centre.agent, "Logiciel du centre")
    headers = {"Authorization": f"Bearer {token}"}

    [shown] = client.get("/api/v1/plages", headers=headers).get_json()["items"]
    assert shown["exceptions"] == [
        {"date": "2026-01-06", "removed": True, "start_time": None, "end_time": None},
        {"date": "2026-01-07", "removed": False, "start_time": "14:00", "end_time": "15:30"}]
    edited = client.patch(f"/api/v1/plages/{centre.plage.id}", json={"title": "Pesées"}, headers=headers)
    assert edited.status_code == 200 and edited.get_json()["exceptions"] == shown["exceptions"]
    assert free_days(centre, WEDNESDAY, WEDNESDAY) == {WEDNESDAY: ["14:00", "14:30", "15:00"]}


def test_one_date_at_another_lieu_opens_there_that_day_only(client, auth, db, centre):
    auth.login(centre.agent)

    response = post_exception(client, centre.plage, WEDNESDAY, action="modifier", start_time="09:00",
                              end_time="10:00", lieu_id=str(centre.lieu2.id))

    assert response.status_code == 302
    week = (MONDAY, MONDAY + timedelta(days=4))
    assert WEDNESDAY not in free_days(centre, *week)
    assert free_days(centre, *week, lieu=centre.lieu2) == {WEDNESDAY: ["09:00", "09:30"]}
    assert picker_days(db, centre, *week, lieu=centre.lieu2) == {WEDNESDAY: ["09:00", "09:30"]}


# --- This date and the following ones -----------------------------------------------------------------------------

def test_from_this_date_on_keeps_earlier_dates_and_a_new_plage_carries_the_change(client, auth, db, centre):
    auth.login(centre.agent)
    later_removed = WEDNESDAY + timedelta(days=14)
    post_exception(client, centre.plage, later_removed)  # a date already removed stays removed

    response = post_exception(client, centre.plage, WEDNESDAY, scope="suivantes", action="modifier",
                              start_time="13:30", end_time="15:00")

    assert response.status_code == 302
    old, new = plages(db)
    assert (old.first_day, old.last_day, old.start_time) == (MONDAY, WEDNESDAY - timedelta(days=1), time(9))
    assert (new.first_day, new.last_day, new.start_time, new.end_time) == (WEDNESDAY, None, time(13, 30), time(15))
    assert ([m.name for m in new.motifs], new.lieu_id, new.weekdays) == (["Consultation nourrisson"], centre.lieu.id,
                                                                        0b11111)
    days = free_days(centre, MONDAY, later_removed)
    assert days[MONDAY] == days[MONDAY + timedelta(days=1)] == MORNING
    assert days[WEDNESDAY] == days[WEDNESDAY + timedelta(days=7)] == ["13:30", "14:00", "14:30"]
    assert later_removed not in days


def test_removing_this_date_and_the_following_ones_ends_the_plage_the_day_before(client, auth, db, centre):
    auth.login(centre.agent)

    response = post_exception(client, centre.plage, WEDNESDAY, scope="suivantes")

    assert response.status_code == 302
    [plage] = plages(db)
    assert plage.last_day == WEDNESDAY - timedelta(days=1)
    assert set(free_days(centre, MONDAY, MONDAY + timedelta(days=30))) == {MONDAY, MONDAY + timedelta(days=1)}


# --- Rdvs left out: listed, confirmed, never moved ---------------------------------------------------------------

def test_rdvs_outside_the_new_openings_are_listed_before_saving_and_stay_where_they_are(client, auth, db, centre,
                                                                                         factories):
    kept_inside = factories.RdvFactory(motif=centre.motif, lieu=centre.lieu, agents=[centre.agent],
                                       starts_at=at(WEDNESDAY, "14:00"), usagers=[centre.usager])
    left_out = factories.RdvFactory(motif=centre.motif, lieu=centre.lieu, agents=[centre.agent],
                                    starts_at=at(WEDNESDAY, "10:00"), usagers=[centre.usager])
    auth.login(centre.agent)

    page = post_exception(client, centre.plage, WEDNESDAY, action="modifier", start_time="13:00", end_time="16:00")

    assert page.status_code == 200
    text = text_of(page)
    assert "Des rendez-vous tomberaient hors des nouvelles ouvertures" in text
    assert "mercredi 7 janvier 2026 à 10h00" in text and "Inès Durand" in text
    assert f"/rdvs/{left_out.id}" in text and "mercredi 7 janvier 2026 à 14h00" not in text
    assert count_exceptions(db) == 0  # nothing stored before the agent confirms

    response = confirm_from(client, page, centre.plage, WEDNESDAY)

    assert response.status_code == 302
    assert count_exceptions(db) == 1
    flashed = text_of(client.get(response.headers["Location"]))
    assert "Un rendez-vous reste à son horaire, hors des nouvelles ouvertures" in flashed
    db.session.expire_all()
    for rdv, clock in ((left_out, "10:00"), (kept_inside, "14:00")):
        rdv = db.session.get(type(rdv), rdv.id)
        assert rdv.starts_at == at(WEDNESDAY, clock) and rdv.status == RdvStatus.UNKNOWN


def test_an_rdv_booked_while_the_agent_reads_the_list_is_shown_again(client, auth, db, centre, factories):
    factories.RdvFactory(motif=centre.motif, lieu=centre.lieu, agents=[centre.agent], starts_at=at(WEDNESDAY, "09:00"))
    auth.login(centre.agent)
    page = post_exception(client, centre.plage, WEDNESDAY)
    assert page.status_code == 200
    factories.RdvFactory(motif=centre.motif, lieu=centre.lieu, agents=[centre.agent], starts_at=at(WEDNESDAY, "11:00"))

    again = confirm_from(client, page, centre.plage, WEDNESDAY)

    assert again.status_code == 200
    assert "mercredi 7 janvier 2026 à 11h00" in text_of(again)
    assert count_exceptions(db) == 0
    assert "Ces 2 rendez-vous ne seront ni déplacés ni annulés" in text_of(again)
    done = confirm_from(client, again, centre.plage, WEDNESDAY)
    assert done.status_code == 302
    assert count_exceptions(db) == 1
    assert "2 rendez-vous restent à leur horaire" in text_of(client.get(done.headers["Location"]))


def confirm_from(client, confirm_page, plage, day: date):
    """Press « Confirmer le changement »: the page's hidden fields posted back as they are."""
    html = confirm_page.get_data(as_text=True)
    fields = {name: unescape(value) for name, value in
              re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', html)}
    fields["csrf_token"] = csrf_token_from(html)
    return client.post(exception_url(plage, day), data=fields)


# --- Bad input: French message, nothing stored --------------------------------------------------------------------

@pytest.mark.parametrize(("day", "fields", "message"), [
    (MONDAY + timedelta(days=5), {}, "Le samedi 10 janvier 2026 n'est pas une date de cette plage"),
    (MONDAY - timedelta(days=7), {}, "est en dehors de la période de cette plage (du lundi 5 janvier 2026 sans date de fin)"),
    (WEDNESDAY, {"action": "modifier", "start_time": "12:00", "end_time": "10:00"},
     "L'heure de fin doit être après l'heure de début."),
    (WEDNESDAY, {"action": "modifier", "start_time": "", "end_time": "11:00"}, "Indiquez l'heure de début."),
    (WEDNESDAY, {"action": "modifier", "start_time": "09:00", "end_time": "11:00", "lieu_id": "999999"},
     "Choisissez un lieu dans la liste."),
    (MONDAY, {"scope": "suivantes"}, "C'est la première date de cette plage"),
    (WEDNESDAY, {"scope": "toutes"}, "Choisissez les dates concernées."),
    (WEDNESDAY, {"day": "31/02/2026"}, "Saisissez une date valide"),
])
def test_bad_input_is_refused_in_french_and_nothing_is_stored(client, auth, db, centre, day, fields, message):
    auth.login(centre.agent)

    response = post_exception(client, centre.plage, day, **fields)

    assert response.status_code == 422
    assert message in text_of(response)
    assert count_exceptions(db) == 0
    [plage] = plages(db)
    assert (plage.first_day, plage.last_day, plage.start_time, plage.end_time) == (MONDAY, None, time(9), time(12))


def test_a_date_outside_a_plage_with_an_end_says_its_period(client, auth, db, centre, factories):
    plage = factories.PlageFactory(agent=centre.agent, lieu=centre.lieu, motifs=[centre.motif], first_day=MONDAY,
                                   last_day=MONDAY + timedelta(days=13), start_time=time(14), end_time=time(16))
    auth.login(centre.agent)

    response = post_exception(client, plage, MONDAY + timedelta(days=14))

    assert response.status_code == 422
    assert "en dehors de la période de cette plage (du lundi 5 janvier 2026 au dimanche 18 janvier 2026)" in \
        text_of(response)


def test_new_hours_overlapping_another_plage_are_refused(client, auth, db, centre, factories):
    factories.PlageFactory(agent=centre.agent, lieu=centre.lieu, motifs=[centre.motif], first_day=MONDAY,
                           start_time=time(14), end_time=time(16), weekdays=1 << 2, title="Après-midi")
    auth.login(centre.agent)

    response = post_exception(client, centre.plage, WEDNESDAY, action="modifier", start_time="11:00",
                              end_time="15:00")

    assert response.status_code == 422
    assert "Cette plage chevauche la plage d'ouverture « Après-midi »" in text_of(response)
    assert count_exceptions(db) == 0


def test_an_agent_of_another_organisation_cannot_open_the_form(client, auth, db, centre):
    auth.login(centre.stranger)

    assert client.get(exception_url(centre.plage, WEDNESDAY)).status_code == 404


# --- The agenda ---------------------------------------------------------------------------------------------------

def test_the_agenda_links_each_occurrence_and_its_grid_loses_the_removed_one(client, auth, db, centre):
    auth.login(centre.agent)
    agenda = text_of(client.get(f"/agenda/agents/{centre.agent.id}?date={MONDAY.isoformat()}&vue=semaine"))
    link = exception_url(centre.plage, WEDNESDAY, depuis="agenda")
    assert f'href="{link}"' in agenda
    assert "Mercredi 7 janvier 2026, 09h00 – 12h00 : Consultations (Centre PMI Gare)" in agenda

    response = post_exception(client, centre.plage, WEDNESDAY, from_agenda=True)

    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/agenda/agents/{centre.agent.id}?date={WEDNESDAY.isoformat()}")
    events = client.get(f"/agenda/api/agents/{centre.agent.id}/evenements"
                        f"?start={MONDAY.isoformat()}T00:00:00&end={(MONDAY + timedelta(days=7)).isoformat()}T00:00:00")
    plage_days = sorted(event["start"][:10] for event in events.get_json() if event["extendedProps"]["kind"] == "plage")
    assert plage_days == ["2026-01-05", "2026-01-06", "2026-01-08", "2026-01-09"]


def test_the_week_grid_draws_a_changed_date_at_its_own_hours_and_says_so(client, auth, db, centre):
    thursday = WEDNESDAY + timedelta(days=1)
    auth.login(centre.agent)
    post_exception(client, centre.plage, thursday, action="modifier", start_time="13:00", end_time="14:30")

    events = client.get(f"/agenda/api/agents/{centre.agent.id}/evenements"
                        f"?start={MONDAY.isoformat()}T00:00:00&end={(MONDAY + timedelta(days=7)).isoformat()}T00:00:00")

    plage_events = {event["start"][:10]: event for event in events.get_json()
                    if event["extendedProps"]["kind"] == "plage"}
    assert (plage_events["2026-01-08"]["start"], plage_events["2026-01-08"]["end"]) == ("2026-01-08T13:00:00",
                                                                                        "2026-01-08T14:30:00")
    assert plage_events["2026-01-08"]["title"] == "Consultations (horaires de ce jour) — Centre PMI Gare"
    assert plage_events["2026-01-07"]["title"] == "Consultations — Centre PMI Gare"


# --- A DST week ---------------------------------------------------------------------------------------------------

def test_exceptions_keep_local_hours_across_the_spring_change(client, auth, db, centre):
    friday, monday_after = date(2026, 3, 27), date(2026, 3, 30)  # clocks go forward on Sunday 29 March
    auth.login(centre.agent)

    post_exception(client, centre.plage, friday)
    post_exception(client, centre.plage, monday_after, action="modifier", start_time="14:00", end_time="15:00")

    days = free_days(centre, date(2026, 3, 26), date(2026, 3, 31))
    assert days == {date(2026, 3, 26): MORNING, monday_after: ["14:00", "14:30"], date(2026, 3, 31): MORNING}
    slots = availability.free_slots_between(territory=centre.territory, motif=centre.motif, lieu_id=centre.lieu.id,
                                            start=at(date(2026, 3, 26), "00:00"), end=at(date(2026, 4, 1), "00:00"))
    utc_starts = {slot.starts_at.astimezone(timezone.utc).strftime("%d %H:%M") for slot in slots}
    assert {"26 08:00", "30 12:00", "31 07:00"} <= utc_starts  # UTC+1 before, UTC+2 after


def test_a_bulk_delete_of_exceptions_draws_new_stamps_for_the_plages_agent(db, centre, factories):
    db.session.add(PlageException(plage_id=centre.plage.id, day=WEDNESDAY))
    db.session.commit()
    agent_stamp, territory_stamp = centre.agent.agenda_stamp, centre.territory.agenda_stamp
    other = factories.AgentFactory(organisation=centre.org)
    other_stamp = other.agenda_stamp

    db.session.execute(delete(PlageException).where(PlageException.day == WEDNESDAY))
    db.session.commit()

    db.session.expire_all()
    assert db.session.get(Agent, centre.agent.id).agenda_stamp != agent_stamp
    assert db.session.get(Territory, centre.territory.id).agenda_stamp != territory_stamp
    assert db.session.get(Agent, other.id).agenda_stamp == other_stamp


def test_a_plage_whose_date_went_to_another_lieu_is_still_edited_as_a_whole(client, auth, db, centre):
    auth.login(centre.agent)
    post_exception(client, centre.plage, WEDNESDAY, action="modifier", start_time="09:00", end_time="12:00",
                   lieu_id=str(centre.lieu2.id))
    url = f"/plages/{centre.plage.id}/modifier"
    token = csrf_token_from(text_of(client.get(url)))

    response = client.post(url, data={
        "title": "Consultations du matin", "lieu_id": centre.lieu.id, "motif_ids": [centre.motif.id],
        "weekdays": ["0", "1", "2", "3", "4"], "every_n_weeks": "1", "first_day": MONDAY.isoformat(), "last_day": "",
        "start_time": "09:00", "end_time": "12:00", "csrf_token": token})

    assert response.status_code == 302, text_of(response)
    assert [plage.title for plage in plages(db)] == ["Consultations du matin", "Consultations"]
    assert free_days(centre, WEDNESDAY, WEDNESDAY, lieu=centre.lieu2) == {WEDNESDAY: MORNING}
