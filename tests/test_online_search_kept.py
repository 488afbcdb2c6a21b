"""The online search's kept pages (lapins.public.kept_search): a search asked again is answered from what the process
kept, with one query, and every change to what it shows — a booking, a cancellation, an absence, a plage, a sector, a
motif, a lieu, or the clock passing a motif's minimum delay — shows at the very next search."""
from __future__ import annotations

import html
from datetime import date, datetime, time, timedelta, timezone

import pytest
import time_machine
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from lapins.booking import book_rdv, cancel_rdv
from lapins.models import Absence, PlageOuverture, RdvStatus, Sector, SectorZone
from lapins.public import kept_search
from lapins.sectors import editing, imports
from lapins.sectors.communes import communes
from lapins.slots import picker
from tests.conftest import driver_statements
from tests.test_online_booking import NOW, START, make_clinic, page_text, search, slot_links

FIRST = "Centre PMI Saint-Denis, lundi 19 octobre 2026 à 10h00"  # NOW + 2 h, the motif's minimum delay
TUESDAY_9 = "Centre PMI Saint-Denis, mardi 20 octobre 2026 à 09h00"


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def nothing_kept():
    kept_search.forget_all()
    yield
    kept_search.forget_all()


@pytest.fixture()
def clinic(factories):
    return make_clinic(factories)


def shown(client, clinic, **args) -> list[str]:
    return [label for label, _ in slot_links(page_text(search(client, clinic.motif.id, **args)))]


def test_the_same_search_again_reads_only_the_stamps(client, db, clinic):
    first = search(client, clinic.motif.id).get_data(as_text=True)
    with driver_statements(db.engine) as statements:
        again = search(client, clinic.motif.id).get_data(as_text=True)
    assert again == first and FIRST in page_text(search(client, clinic.motif.id))
    assert len([sql for sql, _ in statements if sql.lstrip().upper().startswith("SELECT")]) == 1, statements


def test_a_booking_hides_its_time(client, db, clinic, factories):
    assert FIRST in shown(client, clinic)
    usager = factories.UsagerFactory(territory=clinic.territory)
    book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[usager],
             starts_at=datetime(2026, 10, 19, 6, 0, tzinfo=timezone.utc), lieu=clinic.lieu)
    assert FIRST not in shown(client, clinic)


def test_a_cancellation_shows_its_time_again(client, db, clinic, factories):
    usager = factories.UsagerFactory(territory=clinic.territory)
    rdv = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[usager],
                   starts_at=datetime(2026, 10, 19, 6, 0, tzinfo=timezone.utc), lieu=clinic.lieu)
    assert FIRST not in shown(client, clinic)
    cancel_rdv(actor=clinic.agent, rdv=rdv, status=RdvStatus.EXCUSED, reason=None)
    assert FIRST in shown(client, clinic)


def test_an_absence_hides_the_times_it_covers(client, db, clinic):
    assert TUESDAY_9 in shown(client, clinic)
    db.session.add(Absence(agent=clinic.agent, title="Formation", first_day=date(2026, 10, 20),
                           last_day=date(2026, 10, 20), start_time=time(8), end_time=time(12), weekdays=0))
    db.session.commit()
    labels = shown(client, clinic)
    assert TUESDAY_9 not in labels and FIRST in labels


def test_a_shorter_plage_hides_the_times_it_no_longer_covers(client, db, clinic):
    assert "Centre PMI Saint-Denis, lundi 19 octobre 2026 à 11h00" in shown(client, clinic)
    plage = db.session.scalars(select(PlageOuverture).where(PlageOuverture.agent_id == clinic.agent.id)).one()
    plage.end_time = time(11)
    db.session.commit()
    labels = shown(client, clinic)
    assert "Centre PMI Saint-Denis, lundi 19 octobre 2026 à 11h00" not in labels and FIRST in labels


def sector_serving_saint_denis(client, db, clinic) -> Sector:
    """The motif sectorised, a sector « Nord » of Saint-Denis served by the clinic's lieu, its search shown once."""
    clinic.motif.sectorised = True
    sector = Sector(territory=clinic.territory, name="Nord", lieux=[clinic.lieu])
    sector.zones.append(SectorZone(territory_id=clinic.territory.id, commune_code="97411"))
    db.session.add(sector)
    db.session.commit()
    assert FIRST in shown(client, clinic)
    return sector


def test_a_sector_change_changes_the_lieux_serving_the_address(client, db, clinic):
    sector = sector_serving_saint_denis(client, db, clinic)
    editing.remove_zone(sector, sector.zones[0].id)
    assert "Aucun lieu ne propose ce rendez-vous en ligne" in page_text(search(client, clinic.motif.id))
    editing.add_zone(sector, communes().get("97411"), None)
    assert FIRST in shown(client, clinic)


def test_a_sector_losing_its_lieu_no_longer_offers_it(client, db, clinic):
    sector = sector_serving_saint_denis(client, db, clinic)
    editing.set_members(sector, [], [], {clinic.organisation.id})
    assert "Aucun lieu ne propose ce rendez-vous en ligne" in page_text(search(client, clinic.motif.id))


def test_a_sector_import_moving_the_commune_away_shows_at_once(client, db, clinic):
    sector_serving_saint_denis(client, db, clinic)
    imports.apply(clinic.territory, b"Nord,97418\n", communes())  # Sainte-Marie instead of Saint-Denis
    assert "Aucun lieu ne propose ce rendez-vous en ligne" in page_text(search(client, clinic.motif.id))
    assert FIRST in shown(client, clinic, commune="97418")


def test_a_motif_switched_off_online_is_refused(client, db, clinic):
    assert FIRST in shown(client, clinic)
    clinic.motif.online_bookable = False
    db.session.commit()
    page = page_text(search(client, clinic.motif.id))
    assert slot_links(page) == [] and "La prise de rendez-vous en ligne n'est pas ouverte" in page


def test_a_longer_minimum_delay_hides_the_nearer_times(client, db, clinic):
    assert FIRST in shown(client, clinic)
    clinic.motif.online_min_hours = 24
    db.session.commit()
    labels = shown(client, clinic)
    assert FIRST not in labels and "Centre PMI Saint-Denis, mardi 20 octobre 2026 à 08h00" in labels


def test_a_lieu_switched_off_online_is_no_longer_offered(client, db, clinic):
    assert FIRST in shown(client, clinic)
    clinic.lieu.online_booking = False
    db.session.commit()
    assert "Aucun lieu ne propose ce rendez-vous en ligne" in page_text(search(client, clinic.motif.id))


def test_a_time_is_hidden_as_soon_as_the_minimum_delay_passes_it(client, db, clinic, frozen_time):
    frozen_time.move_to(NOW - timedelta(minutes=20))
    assert FIRST in shown(client, clinic)
    frozen_time.move_to(NOW)  # 10h00 is exactly 2 h away: still shown, from what was kept
    with driver_statements(db.engine) as statements:
        assert FIRST in shown(client, clinic)
    # The stamps, then (inline in the tests) the next version computed for the moment 10h00 goes.
    assert "agenda_stamp" in statements[0][0] and "UNION ALL" in statements[0][0], statements
    frozen_time.move_to(NOW + timedelta(seconds=30))
    labels = shown(client, clinic)
    assert FIRST not in labels and "Centre PMI Saint-Denis, lundi 19 octobre 2026 à 10h30" in labels


def test_a_signed_in_agent_gets_the_page_for_themselves(client, db, clinic, auth):
    anonymous = page_text(search(client, clinic.motif.id))
    auth.login(clinic.agent)
    mine = page_text(search(client, clinic.motif.id))
    assert "Se déconnecter" not in anonymous and "Se déconnecter" in mine



def test_an_agent_switched_off_no_longer_offers_times(client, db, clinic, factories):
    from lapins.admin import services
    from lapins.models import Role

    admin = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.ADMIN)
    assert FIRST in shown(client, clinic)
    services.set_active(clinic.agent, False, admin)
    assert "Aucun lieu ne propose ce rendez-vous en ligne" in page_text(search(client, clinic.motif.id))


def test_a_booking_with_an_agent_the_page_does_not_show_keeps_it(client, db, clinic, factories):
    # Another agent offers the motif at a lieu of another sector: not shown for Saint-Denis.
    clinic.motif.sectorised = True
    sector = Sector(territory=clinic.territory, name="Nord", lieux=[clinic.lieu])
    sector.zones.append(SectorZone(territory_id=clinic.territory.id, commune_code="97411"))
    db.session.add(sector)
    other = factories.AgentFactory(organisation=clinic.organisation)
    usager = factories.UsagerFactory(territory=clinic.territory)
    elsewhere = factories.LieuFactory(organisation=clinic.organisation, name="Antenne de Sainte-Marie")
    factories.PlageFactory(agent=other, lieu=elsewhere, first_day=date(2026, 1, 1), motifs=[clinic.motif],
                           start_time=time(8), end_time=time(12), weekdays=0b1111111)
    assert "Antenne de Sainte-Marie" not in page_text(search(client, clinic.motif.id))
    book_rdv(actor=other, motif=clinic.motif, agents=[other], usagers=[usager], lieu=elsewhere,
             starts_at=datetime(2026, 10, 19, 6, 0, tzinfo=timezone.utc))
    motif_id = clinic.motif.id  # read before: the commit expired it
    with driver_statements(db.engine) as statements:
        assert FIRST in page_text(search(client, motif_id))
    assert len(statements) == 1, [sql[:60] for sql, _ in statements]


# --- Refreshed ahead of the clock, the least recently served dropped first --------------------------------------

def kept_until_of(clinic) -> datetime:
    """The end of the one page kept for the clinic's search."""
    (kept,) = kept_search._kept.values()
    return kept.until


def served_by_stamps_only(db, client, clinic) -> list[str]:
    """The times shown, checking that the page came from what the process kept (one statement: the stamps)."""
    motif_id = clinic.motif.id
    with driver_statements(db.engine) as statements:
        labels = [label for label, _ in slot_links(page_text(search(client, motif_id)))]
    assert len(statements) == 1, [sql[:60] for sql, _ in statements]
    return labels


def served_near_its_end(db, client, clinic) -> list[str]:
    """The times shown by the kept page (its stamps read first), its next version computed meanwhile (inline in
    the tests: its statements follow)."""
    motif_id = clinic.motif.id
    with driver_statements(db.engine) as statements:
        labels = [label for label, _ in slot_links(page_text(search(client, motif_id)))]
    assert "UNION ALL" in statements[0][0] and len(statements) > 1, [sql[:60] for sql, _ in statements]
    return labels


def fresh(client, clinic) -> list[str]:
    """What a search computed at this very moment shows (nothing kept)."""
    kept_search.forget_all()
    return shown(client, clinic)


def test_a_time_crossing_the_minimum_delay_leaves_the_next_version_at_exactly_its_bound(client, db, clinic,
                                                                                          frozen_time):
    frozen_time.move_to(NOW - timedelta(minutes=20))
    assert FIRST in shown(client, clinic)
    until = kept_until_of(clinic)
    assert until == NOW + timedelta(microseconds=1)  # 10h00 shown while now + 2 h is at most 10h00
    frozen_time.move_to(until - timedelta(seconds=3))  # served near its end: its next version computed now
    assert FIRST in served_near_its_end(db, client, clinic)
    frozen_time.move_to(until)  # from its bound on, the next version, with no search
    labels = served_by_stamps_only(db, client, clinic)
    assert FIRST not in labels and "Centre PMI Saint-Denis, lundi 19 octobre 2026 à 10h30" in labels
    assert labels == fresh(client, clinic)


def test_a_new_day_appears_in_the_next_version_when_the_window_end_moves(client, db, clinic, frozen_time):
    # Times up to one day ahead: Monday's, then Tuesday's morning as now + 1 day passes them.
    clinic.motif.online_max_days = 1
    db.session.commit()
    frozen_time.move_to(NOW - timedelta(minutes=1, seconds=30))
    labels = shown(client, clinic)
    assert labels and not any("mardi" in label for label in labels)
    tuesdays, changes = 0, 0
    for _ in range(8):  # 8 moves of the window's end, 5 minutes each
        until = kept_until_of(clinic)
        assert until - datetime.now(timezone.utc) <= timedelta(minutes=5)  # the window's end, on its grid
        frozen_time.move_to(until - timedelta(seconds=2))
        before = served_near_its_end(db, client, clinic)
        frozen_time.move_to(until)
        labels = served_by_stamps_only(db, client, clinic)
        changes += labels != before
        frozen_time.move_to(until + timedelta(seconds=1))  # and after it, the same as a search then
        assert served_by_stamps_only(db, client, clinic) == labels == fresh(client, clinic), until
        tuesdays = max(tuesdays, sum("mardi" in label for label in labels))
    assert tuesdays >= 1 and changes >= 1  # the window's end brought Tuesday's first times, at its very moment


def test_a_booking_after_the_next_version_was_computed_is_not_hidden_by_it(client, db, clinic, factories,
                                                                          frozen_time):
    frozen_time.move_to(NOW - timedelta(minutes=20))
    shown(client, clinic)
    until = kept_until_of(clinic)
    frozen_time.move_to(until - timedelta(seconds=3))
    served_near_its_end(db, client, clinic)  # next version computed
    usager = factories.UsagerFactory(territory=clinic.territory)
    book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[usager],
             starts_at=datetime(2026, 10, 19, 6, 30, tzinfo=timezone.utc), lieu=clinic.lieu)
    frozen_time.move_to(until)
    labels = shown(client, clinic)
    assert "Centre PMI Saint-Denis, lundi 19 octobre 2026 à 10h30" not in labels
    assert labels == fresh(client, clinic)


def test_pages_ending_at_one_instant_have_their_next_versions_computed_at_moments_spread_over_the_last_minute():
    # The window's end moving on its 5-minute grid ends many pages at once: their next versions computed in one
    # burst stalled both workers. Each page is due from its own moment, a quarter to all of AHEAD before its end.
    until = NOW + timedelta(minutes=5)
    keys = [kept_search.key_of("974", MultiDict({"motif": "1", "commune_code": f"974{n:02}"})) for n in range(50)]
    for key in keys:
        kept_search.keep(key, 1, "stamp", [], until, "<page>", since=NOW)

    def lead(key) -> int:
        """How many seconds before its end the page is first due."""
        return next(seconds for seconds in range(301) if kept_search.refresh_due(
            key, until - timedelta(seconds=seconds)) is None) - 1

    leads = [lead(key) for key in keys]
    assert all(kept_search.refresh_due(key, until - timedelta(seconds=second)) == until
               for key, seconds in zip(keys, leads) for second in range(seconds + 1))
    quarter, whole = kept_search.AHEAD.seconds // 4, kept_search.AHEAD.seconds
    assert quarter <= min(leads) and max(leads) <= whole and max(leads) - min(leads) >= whole // 2, leads
    assert max(leads.count(seconds) for seconds in leads) <= 5, sorted(leads)  # never one burst
    assert [lead(key) for key in keys] == leads  # the same moment each time it is asked (and in every process)


def test_the_least_recently_served_search_is_dropped_first(client, db, clinic, monkeypatch):
    monkeypatch.setattr(kept_search, "KEPT_SEARCHES", 2)
    shown(client, clinic)  # Saint-Denis
    shown(client, clinic, commune="97418")  # Sainte-Marie
    served_by_stamps_only(db, client, clinic)  # Saint-Denis served again: the most recently served
    shown(client, clinic, commune="97415")  # a third: Sainte-Marie dropped, not Saint-Denis
    served_by_stamps_only(db, client, clinic)
    motif_id = clinic.motif.id
    with driver_statements(db.engine) as statements:
        search(client, motif_id, commune="97418")
    assert len(statements) > 1


def test_the_next_version_computed_by_the_refresh_thread(app, client, db, clinic, frozen_time, monkeypatch):
    if db.engine.url.get_backend_name() == "sqlite" and db.engine.url.database in (None, "", ":memory:"):
        pytest.skip("one connection for every thread: the refresh thread is tried on PostgreSQL (run_tests.py)")
    monkeypatch.setitem(app.config, "ONLINE_SEARCH_REFRESH", "thread")
    frozen_time.move_to(NOW - timedelta(minutes=20))
    shown(client, clinic)
    until = kept_until_of(clinic)
    frozen_time.move_to(until - timedelta(seconds=3))
    assert FIRST in served_by_stamps_only(db, client, clinic)
    kept_search.wait_refreshed()
    frozen_time.move_to(until)
    labels = served_by_stamps_only(db, client, clinic)
    assert FIRST not in labels and labels == fresh(client, clinic)


def test_the_next_version_computed_once_the_response_is_sent(app, client, db, clinic, frozen_time, monkeypatch):
    monkeypatch.setitem(app.config, "ONLINE_SEARCH_REFRESH", "after")
    frozen_time.move_to(NOW - timedelta(minutes=20))
    shown(client, clinic)
    until = kept_until_of(clinic)
    frozen_time.move_to(until - timedelta(seconds=3))
    motif_id = clinic.motif.id
    with driver_statements(db.engine) as statements:
        response = search(client, motif_id)
        assert FIRST in page_text(response)
    assert len(statements) == 1, [sql[:60] for sql, _ in statements]  # answered before any search
    response.close()  # as the server does once the page is sent: then the next version is computed
    frozen_time.move_to(until)
    labels = served_by_stamps_only(db, client, clinic)
    assert FIRST not in labels and labels == fresh(client, clinic)


# --- Rebuilt from its kept configuration after a booking -----------------------------------------------------------

SAINTE_MARIE_9 = "Antenne de Sainte-Marie, lundi 19 octobre 2026 à 10h00"


def with_second_lieu(factories, clinic):
    """Another agent seeing babies at a second lieu, also offered to Saint-Denis (the motif is open to all)."""
    other = factories.AgentFactory(organisation=clinic.organisation)
    antenne = factories.LieuFactory(organisation=clinic.organisation, name="Antenne de Sainte-Marie",
                                    address="1 rue du Stade, 97438 Sainte-Marie")
    factories.PlageFactory(agent=other, lieu=antenne, first_day=date(2026, 1, 1), motifs=[clinic.motif],
                           start_time=time(8), end_time=time(12), weekdays=0b1111111)
    return other, antenne


def book_first(clinic, factories):
    usager = factories.UsagerFactory(territory=clinic.territory)
    book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[usager],
             starts_at=datetime(2026, 10, 19, 6, 0, tzinfo=timezone.utc), lieu=clinic.lieu)


def reads_configuration(sql: str) -> bool:
    """Whether a statement reads what the territory's configuration decides (motifs and lieux open online)."""
    return "online_book" in sql


def reads_days(sql: str) -> bool:
    """Whether a statement reads a lieu's plages, absences and rdvs (lapins.slots.availability)."""
    return "offering" in sql


def test_after_a_booking_the_page_is_rebuilt_from_its_configuration_as_a_fresh_search(client, db, clinic, factories):
    with_second_lieu(factories, clinic)
    before = shown(client, clinic)
    assert FIRST in before and SAINTE_MARIE_9 in before
    book_first(clinic, factories)
    motif_id = clinic.motif.id
    with driver_statements(db.engine) as statements:
        rebuilt = search(client, motif_id).get_data(as_text=True)
    sqls = [sql for sql, _ in statements]
    assert not any(reads_configuration(sql) for sql in sqls), [sql[:80] for sql in sqls]
    labels = [label for label, _ in slot_links(html.unescape(rebuilt))]
    assert FIRST not in labels and labels == [label for label in before if label != FIRST]
    kept_search.forget_all()
    assert search(client, motif_id).get_data(as_text=True) == rebuilt  # a search at this moment, byte for byte
    with driver_statements(db.engine) as statements:  # and the rebuilt page is kept in turn
        assert search(client, motif_id).get_data(as_text=True) == rebuilt
    assert len(statements) == 1


def test_after_a_booking_only_the_days_of_its_agents_lieu_are_read_again(client, db, clinic, factories):
    other, antenne = with_second_lieu(factories, clinic)
    shown(client, clinic)
    book_first(clinic, factories)
    motif_id = clinic.motif.id
    with driver_statements(db.engine) as statements:
        labels = [label for label, _ in slot_links(page_text(search(client, motif_id)))]
    rebuilt = [sql for sql, _ in statements if reads_days(sql)]
    picker._kept.clear()  # both lieux read, for the count (the two lieux have the same plages)
    kept_search.forget_all()
    with driver_statements(db.engine) as statements:
        assert [label for label, _ in slot_links(page_text(search(client, motif_id)))] == labels
    cold = [sql for sql, _ in statements if reads_days(sql)]
    # Saint-Denis's days only: the antenne's agent did not change, its page is the picker's.
    assert rebuilt and 2 * len(rebuilt) == len(cold), (len(rebuilt), len(cold))
    assert SAINTE_MARIE_9 in labels and FIRST not in labels


def test_a_booking_and_a_sector_change_drop_the_kept_configuration(client, db, clinic, factories):
    sector = sector_serving_saint_denis(client, db, clinic)
    book_first(clinic, factories)  # an agent's stamp
    editing.set_members(sector, [], [], {clinic.organisation.id})  # the territory's
    motif_id = clinic.motif.id
    with driver_statements(db.engine) as statements:
        page = page_text(search(client, motif_id))
    assert "Aucun lieu ne propose ce rendez-vous en ligne" in page
    assert any(reads_configuration(sql) for sql, _ in statements)


def test_a_booking_then_the_motif_closed_online_drops_the_kept_configuration(client, db, clinic, factories):
    assert FIRST in shown(client, clinic)
    book_first(clinic, factories)
    clinic.motif.online_bookable = False
    db.session.commit()
    page = page_text(search(client, clinic.motif.id))
    assert slot_links(page) == [] and "La prise de rendez-vous en ligne n'est pas ouverte" in page


def test_a_configuration_is_not_used_the_next_day(client, db, clinic, factories, frozen_time):
    # The antenne's plage ends today: tomorrow it no longer serves, whatever the configuration kept says.
    other, antenne = with_second_lieu(factories, clinic)
    plage = db.session.scalars(select(PlageOuverture).where(PlageOuverture.agent_id == clinic.agent.id)).one()
    plage.last_day = date(2026, 10, 19)
    db.session.commit()
    frozen_time.move_to(datetime(2026, 10, 19, 19, 0, tzinfo=timezone.utc))  # 23:00 in La Réunion
    assert "Centre PMI Saint-Denis" in page_text(search(client, clinic.motif.id))
    frozen_time.move_to(datetime(2026, 10, 19, 20, 1, tzinfo=timezone.utc))  # 00:01 on Tuesday
    page = page_text(search(client, clinic.motif.id))
    assert "Centre PMI Saint-Denis" not in page and "Antenne de Sainte-Marie" in page
