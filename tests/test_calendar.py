"""Agents' calendars: the JSON feed FullCalendar reads, the move endpoint, and the agenda pages."""
from __future__ import annotations

import html

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import re

import pytest
import time_machine
from sqlalchemy import event

from lapins.models import AgentRole, Rdv, RdvStatus, Role, Usager
from tests.conftest import csrf_token_from, driver_statements

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")
NOW = datetime(2026, 3, 23, 7, 0, tzinfo=timezone.utc)  # Monday 23 March 2026, 08:00 in Paris; DST on the 29th


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


def local(tz: ZoneInfo, day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(timezone.utc)


class Clinic:
    """A PMI centre: a puéricultrice consulting Monday to Friday 09:00–12:00, a colleague, a motif, a family."""

    def __init__(self, factories, timezone_name: str = "Europe/Paris", **territory):
        self.factories = factories
        self.tz = ZoneInfo(timezone_name)
        self.organisation = factories.OrganisationFactory(
            territory__timezone=timezone_name, **{f"territory__{key}": value for key, value in territory.items()})
        self.lieu = factories.LieuFactory(organisation=self.organisation, name="Centre PMI Belleville")
        self.motif = factories.MotifFactory(organisation=self.organisation, name="Consultation nourrisson",
                                            color="#18753c", duration_minutes=30)
        self.agent = factories.AgentFactory(organisation=self.organisation, first_name="Claire", last_name="Martin")
        self.colleague = factories.AgentFactory(organisation=self.organisation, organisation__role=Role.SECRETARY,
                                                first_name="Nadia", last_name="Benali")
        self.plage = factories.PlageFactory(agent=self.agent, lieu=self.lieu, title="Consultations",
                                            first_day=date(2026, 1, 5), motifs=[self.motif])
        self.usager = factories.UsagerFactory(territory=self.organisation.territory, organisations=[self.organisation],
                                              first_name="Awa", last_name="Diallo")

    def rdv(self, starts_at: datetime, agent=None, **kwargs) -> Rdv:
        options = dict(motif=self.motif, lieu=self.lieu, starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30),
                       agents=[agent or self.agent], usagers=[self.usager])
        options.update(kwargs)
        return self.factories.RdvFactory(**options)


@pytest.fixture()
def clinic(factories):
    return Clinic(factories)


@pytest.fixture()
def outsider(factories):
    """An agent of another département's PMI."""
    return factories.AgentFactory(organisation=factories.OrganisationFactory(), first_name="Paul", last_name="Autre")


def feed(client, agent_id: int, start: str, end: str):
    return client.get(f"/agenda/api/agents/{agent_id}/evenements", query_string={"start": start, "end": end})


def of_kind(events: list[dict], kind: str) -> list[dict]:
    return [item for item in events if item["extendedProps"]["kind"] == kind]


def move(client, rdv_id: int, payload: dict, token: str | None):
    headers = {"X-CSRFToken": token} if token else {}
    return client.post(f"/agenda/api/rdvs/{rdv_id}/deplacer", json=payload, headers=headers)


def page_token(client, agent_id: int) -> str:
    return csrf_token_from(client.get(f"/agenda/agents/{agent_id}").get_data(as_text=True))


# --- The feed -------------------------------------------------------------------------------------------------

def test_feed_gives_an_rdv_in_paris_wall_clock_time_with_its_family_motif_and_link(client, auth, clinic):
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
    auth.login(clinic.colleague)
    response = feed(client, clinic.agent.id, "2026-03-23T00:00:00", "2026-03-30T00:00:00")
    assert response.status_code == 200
    [shown] = of_kind(response.get_json(), "rdv")
    assert shown["start"] == "2026-03-24T09:30:00" and shown["end"] == "2026-03-24T10:00:00"
    assert shown["title"] == "Awa Diallo — Consultation nourrisson"
    assert shown["url"] == f"/rdvs/{rdv.id}"
    assert shown["backgroundColor"] == "#18753c" and shown["textColor"] == "#ffffff"
    assert shown["startEditable"] is True
    assert shown["extendedProps"]["lieu"] == "Centre PMI Belleville"


def test_feed_shows_the_plages_with_their_lieu_as_background(client, auth, clinic):
    auth.login(clinic.agent)
    events = feed(client, clinic.agent.id, "2026-03-23T00:00:00", "2026-03-30T00:00:00").get_json()
    plages = of_kind(events, "plage")
    assert [item["start"] for item in plages] == [f"2026-03-{day}T09:00:00" for day in range(23, 28)]
    assert all(item["end"].endswith("T12:00:00") and item["display"] == "background" for item in plages)
    assert plages[0]["title"] == "Consultations — Centre PMI Belleville"
    assert plages[0]["extendedProps"]["lieuId"] == clinic.lieu.id


def test_a_local_nine_oclock_stays_at_nine_across_the_dst_change(client, auth, clinic):
    before, after = clinic.rdv(local(PARIS, date(2026, 3, 27), 9)), clinic.rdv(local(PARIS, date(2026, 3, 30), 9))
    assert (before.starts_at.hour, after.starts_at.hour) == (8, 7)  # UTC: the offset changed in between
    auth.login(clinic.agent)
    events = feed(client, clinic.agent.id, "2026-03-23T00:00:00", "2026-04-06T00:00:00").get_json()
    assert [item["start"] for item in of_kind(events, "rdv")] == ["2026-03-27T09:00:00", "2026-03-30T09:00:00"]
    assert {item["start"][11:] for item in of_kind(events, "plage")} == {"09:00:00"}
    assert len(of_kind(events, "plage")) == 10


def test_feed_for_la_reunion_uses_its_own_clock_and_holidays(client, auth, factories):
    reunion = Clinic(factories, "Indian/Reunion", number="974")
    reunion.rdv(datetime(2026, 12, 21, 5, 0, tzinfo=timezone.utc))  # 09:00 in Saint-Denis (UTC+4)
    auth.login(reunion.agent)
    events = feed(client, reunion.agent.id, "2026-12-14T00:00:00", "2026-12-28T00:00:00").get_json()
    assert [item["start"] for item in of_kind(events, "rdv")] == ["2026-12-21T09:00:00"]
    assert {item["start"][11:] for item in of_kind(events, "plage")} == {"09:00:00"}
    holidays = {item["start"]: item["title"] for item in of_kind(events, "ferie")}
    assert holidays == {"2026-12-20T00:00:00": "Férié : Abolition de l'esclavage", "2026-12-25T00:00:00": "Férié : Noël"}


def test_feed_accepts_real_instants_with_an_offset(client, auth, clinic):
    clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
    auth.login(clinic.agent)
    events = feed(client, clinic.agent.id, "2026-03-24T00:00:00+01:00", "2026-03-24T23:00:00Z").get_json()
    assert [item["start"] for item in of_kind(events, "rdv")] == ["2026-03-24T09:30:00"]


def test_absences_are_grey_background_events(client, auth, clinic, factories):
    factories.AbsenceFactory(agent=clinic.agent, title="Formation", first_day=date(2026, 3, 25),
                             start_time=time(14, 0), end_time=time(17, 0))
    auth.login(clinic.agent)
    events = feed(client, clinic.agent.id, "2026-03-23T00:00:00", "2026-03-30T00:00:00").get_json()
    [absence] = of_kind(events, "absence")
    assert (absence["start"], absence["end"]) == ("2026-03-25T14:00:00", "2026-03-25T17:00:00")
    assert absence["title"] == "Absence : Formation" and absence["display"] == "background"


def test_a_cancelled_rdv_is_shown_struck_and_cannot_be_dragged(client, auth, clinic):
    clinic.rdv(local(PARIS, date(2026, 3, 24), 10), status=RdvStatus.EXCUSED)
    auth.login(clinic.agent)
    [shown] = of_kind(feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").get_json(), "rdv")
    assert "lapins-rdv--annule" in shown["classNames"] and shown["startEditable"] is False
    assert shown["title"].endswith("(Annulé par l'usager)")


def test_an_rdv_of_another_organisation_shows_as_busy_without_the_familys_name(client, auth, clinic, factories, db):
    other = factories.OrganisationFactory(territory=clinic.organisation.territory)
    clinic.agent.roles.append(AgentRole(organisation=other, role=Role.AGENT))
    db.session.commit()
    other_motif = factories.MotifFactory(organisation=other, name="Suivi confidentiel")
    secret = factories.UsagerFactory(territory=other.territory, organisations=[other], last_name="Confidentiel")
    clinic.rdv(local(PARIS, date(2026, 3, 24), 14), motif=other_motif, lieu=None, usagers=[secret])
    auth.login(clinic.colleague)
    response = feed(client, clinic.agent.id, "2026-03-23", "2026-03-30")
    [shown] = of_kind(response.get_json(), "rdv")
    assert shown["title"] == "Occupé (autre organisation)" and "url" not in shown and shown["startEditable"] is False
    assert "Confidentiel" not in response.get_data(as_text=True)


def test_the_feed_reads_a_fixed_number_of_queries_whatever_the_number_of_rdvs(client, auth, clinic, db):
    def queries_for_feed() -> int:
        agent_id = clinic.agent.id  # read before listening: the test's own session reloads it after a commit
        with driver_statements(db.engine) as statements:
            assert feed(client, agent_id, "2026-03-23", "2026-03-30").status_code == 200
        return len(statements)

    auth.login(clinic.agent)
    clinic.rdv(local(PARIS, date(2026, 3, 23), 9))
    few = queries_for_feed()
    for day in range(23, 28):
        for hour in (10, 11):
            usager = clinic.factories.UsagerFactory(territory=clinic.organisation.territory)
            clinic.rdv(local(PARIS, date(2026, 3, day), hour), usagers=[usager])
    # The signed-in agent (with roles and territory), their rdvs with the usagers, their plages and absences.
    assert queries_for_feed() == few <= 3


def test_the_feed_ends_its_read_only_transaction_with_a_commit(client, auth, clinic, db):
    """psycopg forgets its prepared statements at each ROLLBACK: the feed's queries would be planned every time. On
    PostgreSQL the feed reads in autocommit (read_only_engine: no transaction to end at all); on SQLite its
    transaction ends with COMMIT."""
    ends = []
    listeners = {kind: (lambda *args, kind=kind: ends.append(kind)) for kind in ("commit", "rollback")}
    auth.login(clinic.agent)
    agent_id = clinic.agent.id
    for kind, listener in listeners.items():
        event.listen(db.engine, kind, listener)
    try:
        assert feed(client, agent_id, "2026-03-23", "2026-03-30").status_code == 200
    finally:
        for kind, listener in listeners.items():
            event.remove(db.engine, kind, listener)
    assert ends == ([] if db.engine.dialect.name == "postgresql" else ["commit"])


def rename_usager(clinic, rdv, db):
    clinic.usager.first_name = "Aminata"


def rename_motif(clinic, rdv, db):
    clinic.motif.name = "Pesée"


def recolour_motif(clinic, rdv, db):
    clinic.motif.color = "#ffe552"


def rename_lieu(clinic, rdv, db):
    clinic.lieu.name = "Centre PMI Ménilmontant"


def move_rdv(clinic, rdv, db):
    rdv.starts_at, rdv.ends_at = rdv.starts_at + timedelta(hours=1), rdv.ends_at + timedelta(hours=1)


def cancel_rdv(clinic, rdv, db):
    rdv.status = RdvStatus.REVOKED


def add_usager_to_rdv(clinic, rdv, db):
    sibling = clinic.factories.UsagerFactory(territory=clinic.organisation.territory, first_name="Moussa")
    rdv.usagers.append(sibling)


def book_another_rdv(clinic, rdv, db):
    clinic.rdv(local(PARIS, date(2026, 3, 26), 11))


def delete_rdv(clinic, rdv, db):
    db.session.delete(rdv)


def retitle_plage(clinic, rdv, db):
    clinic.plage.title = "Pesées"


def end_plage(clinic, rdv, db):
    clinic.plage.last_day = date(2026, 3, 24)


def add_absence(clinic, rdv, db):
    clinic.factories.AbsenceFactory(agent=clinic.agent, title="Formation", first_day=date(2026, 3, 25),
                                    start_time=time(14, 0), end_time=time(17, 0))


def delete_plage(clinic, rdv, db):
    db.session.delete(clinic.plage)


def rename_usagers_in_bulk(clinic, rdv, db):
    from sqlalchemy import update

    db.session.execute(update(Usager).where(Usager.id == clinic.usager.id).values(first_name="Aminata"))


def move_territory_to_reunion(clinic, rdv, db):
    clinic.organisation.territory.timezone = "Indian/Reunion"


@pytest.mark.parametrize("change", [
    rename_usager, rename_motif, recolour_motif, rename_lieu, move_rdv, cancel_rdv, add_usager_to_rdv,
    book_another_rdv, delete_rdv, retitle_plage, end_plage, add_absence, delete_plage, rename_usagers_in_bulk,
    move_territory_to_reunion,
])
def test_every_change_shows_at_once_though_the_feed_keeps_its_json(client, auth, clinic, db, change):
    from lapins.agenda.calendar import feed_json

    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
    auth.login(clinic.colleague)
    week = lambda: feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").get_data()  # noqa: E731
    before = week()
    assert week() == before and feed_json.cache_info().hits  # the second time comes from the cache

    change(clinic, rdv, db)
    db.session.commit()
    after = week()
    feed_json.cache_clear()
    assert after != before and after == week()  # what a fresh rendering gives


def test_a_feed_served_from_the_cache_costs_one_query_the_signed_in_agent(client, auth, clinic, db):
    """Between two changes to the territory's agendas, the signed-in agent (who carries the territory's agenda
    stamp) is all the feed reads: one statement, in autocommit on PostgreSQL, at every request."""
    clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
    auth.login(clinic.agent)
    first = feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").get_data()
    for _ in range(2):
        with driver_statements(db.engine) as statements:
            again = feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").get_data()
        assert again == first
        assert len(statements) == 1 and "agents" in statements[0][0]
        assert statements[0][1] is (True if db.engine.dialect.name == "postgresql" else None)


def test_a_bulk_update_renews_the_stamps_of_what_it_changes_only(clinic, factories, db):
    """update(Rdv) renews its agents' stamps (not a colleague's, not the territory's); update(Usager), shown in every
    agenda of its territory, renews the territory's; another territory keeps its own."""
    from sqlalchemy import update

    clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
    elsewhere = factories.OrganisationFactory()
    db.session.commit()

    def stamps():
        db.session.expire_all()
        return (clinic.organisation.territory.agenda_stamp, clinic.agent.agenda_stamp, clinic.colleague.agenda_stamp,
                elsewhere.territory.agenda_stamp)

    before = stamps()
    db.session.execute(update(Rdv).where(Rdv.organisation_id == clinic.organisation.id).values(notes="vu"))
    db.session.commit()
    after = stamps()
    assert after[1] != before[1] and (after[0], after[2], after[3]) == (before[0], before[2], before[3])
    db.session.execute(update(Usager).where(Usager.id == clinic.usager.id).values(first_name="Aminata"))
    db.session.commit()
    last = stamps()
    assert last[0] != after[0] and last[3] == after[3]


def test_a_booking_keeps_the_other_agents_cached_weeks(client, auth, clinic, factories, db):
    """Nadia's agenda is served from its cache (one statement: the signed-in agent) after Claire's booking, which
    takes neither the territory's row nor Nadia's; Claire's shows the new rdv at once."""
    factories.PlageFactory(agent=clinic.colleague, lieu=clinic.lieu, first_day=date(2026, 1, 5), motifs=[clinic.motif])
    clinic.rdv(local(PARIS, date(2026, 3, 24), 10), agent=clinic.colleague)
    db.session.commit()
    auth.login(clinic.colleague)
    nadia, claire = clinic.colleague.id, clinic.agent.id
    colleague_week = feed(client, nadia, "2026-03-23", "2026-03-30").get_data()
    territory_stamp = clinic.organisation.territory.agenda_stamp
    clinic.rdv(local(PARIS, date(2026, 3, 25), 9, 30))  # Claire's
    db.session.commit()
    db.session.refresh(clinic.organisation.territory)
    assert clinic.organisation.territory.agenda_stamp == territory_stamp
    with driver_statements(db.engine) as statements:
        assert feed(client, nadia, "2026-03-23", "2026-03-30").get_data() == colleague_week
    assert len(statements) == 1 and "agents" in statements[0][0]
    week = feed(client, claire, "2026-03-23", "2026-03-30").get_json()
    assert "2026-03-25T09:30:00" in [event["start"] for event in week if event.get("extendedProps", {}).get(
        "kind") == "rdv"]


def test_a_change_in_one_territory_keeps_the_other_territories_stamps(clinic, factories, db):
    elsewhere = factories.OrganisationFactory()
    db.session.commit()
    here_before, elsewhere_before = clinic.organisation.territory.agenda_stamp, elsewhere.territory.agenda_stamp
    clinic.motif.name = "Pesée"
    db.session.commit()
    db.session.expire_all()
    assert clinic.organisation.territory.agenda_stamp != here_before
    assert elsewhere.territory.agenda_stamp == elsewhere_before


def test_joining_an_organisation_shows_its_rdvs_families_at_once(client, auth, clinic, factories, db):
    other = factories.OrganisationFactory(territory=clinic.organisation.territory)
    clinic.agent.roles.append(AgentRole(organisation=other, role=Role.AGENT))
    db.session.commit()
    clinic.rdv(local(PARIS, date(2026, 3, 24), 14), motif=factories.MotifFactory(organisation=other), lieu=None)
    auth.login(clinic.colleague)
    [hidden] = of_kind(feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").get_json(), "rdv")
    assert hidden["title"] == "Occupé (autre organisation)"

    clinic.colleague.roles.append(AgentRole(organisation=other, role=Role.SECRETARY))
    db.session.commit()
    [shown] = of_kind(feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").get_json(), "rdv")
    assert shown["title"].startswith("Awa Diallo")


@pytest.mark.parametrize("query, message", [
    ({"end": "2026-03-30"}, "« start » est obligatoire"),
    ({"start": "lundi", "end": "2026-03-30"}, "n'est pas une date valide"),
    ({"start": "2026-03-30", "end": "2026-03-23"}, "La fin de la période doit être après son début"),
    ({"start": "2026-01-01", "end": "2026-06-01"}, "trop longue"),
    ({"start": "2026-03-29T02:30:00", "end": "2026-03-30"}, "changement d'heure"),
    ({"start": "0001-01-01", "end": "0001-01-02"}, "n'est pas une date valide"),
])
def test_bad_feed_parameters_get_a_french_400(client, auth, clinic, query, message):
    auth.login(clinic.agent)
    response = client.get(f"/agenda/api/agents/{clinic.agent.id}/evenements", query_string=query)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


# --- Permissions -----------------------------------------------------------------------------------------------

def test_an_agent_of_another_organisation_gets_404_everywhere(client, auth, clinic, outsider):
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9))
    auth.login(outsider)
    token = page_token(client, outsider.id)
    assert client.get(f"/agenda/agents/{clinic.agent.id}").status_code == 404
    assert feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").status_code == 404
    assert client.get(f"/agenda/lieux/{clinic.lieu.id}").status_code == 404
    assert client.get(f"/agenda/agents/{clinic.agent.id}/nouveau-rdv?debut=2026-03-24T10:00").status_code == 404
    refused = move(client, rdv.id, {"starts_at": "2026-03-24T11:00:00"}, token)
    assert refused.status_code == 404 and "error" in refused.get_json()
    lieux = client.get("/agenda/lieux").get_data(as_text=True)
    assert "Centre PMI Belleville" not in lieux


def test_the_agent_selector_only_offers_colleagues(client, auth, clinic, outsider):
    auth.login(clinic.agent)
    page = client.get(f"/agenda/agents/{clinic.agent.id}").get_data(as_text=True)
    assert "Benali Nadia" in page and "Autre Paul" not in page


@pytest.mark.parametrize("url", ["/agenda/agents/{agent}", "/agenda/api/agents/{agent}/evenements?start=2026-03-23&end=2026-03-30",
                                 "/agenda/lieux", "/agenda/lieux/{lieu}"])
def test_signed_out_visitors_are_sent_to_the_login_page(client, clinic, url):
    response = client.get(url.format(agent=clinic.agent.id, lieu=clinic.lieu.id))
    assert response.status_code == 302 and response.location.startswith("/connexion")


# --- Moving an rdv -----------------------------------------------------------------------------------------------

def test_dragging_an_rdv_moves_it_to_the_local_time_dropped_on(client, auth, clinic, db):
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 30), 9))
    auth.login(clinic.agent)
    response = move(client, rdv.id, {"starts_at": "2026-03-31T10:15:00", "force": False}, page_token(client, clinic.agent.id))
    assert response.status_code == 200
    assert response.get_json()["event"]["start"] == "2026-03-31T10:15:00"
    assert response.get_json()["message"] == "Rendez-vous déplacé au mardi 31 mars 2026 à 10h15."
    db.session.expire_all()
    moved = db.session.get(Rdv, rdv.id)
    assert moved.starts_at == datetime(2026, 3, 31, 8, 15, tzinfo=timezone.utc)  # summer time: UTC+2
    assert moved.ends_at - moved.starts_at == timedelta(minutes=30)


def test_dropping_on_a_busy_slot_is_refused_with_the_override_offered(client, auth, clinic, db):
    clinic.rdv(local(PARIS, date(2026, 3, 24), 10))
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9))
    auth.login(clinic.agent)
    token = page_token(client, clinic.agent.id)
    refused = move(client, rdv.id, {"starts_at": "2026-03-24T10:00:00"}, token)
    assert refused.status_code == 409
    assert refused.get_json() == {"error": "Claire Martin a déjà un rendez-vous de 10h00 à 10h30 sur ce créneau.",
                                  "can_force": True}
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).starts_at == local(PARIS, date(2026, 3, 24), 9)
    forced = move(client, rdv.id, {"starts_at": "2026-03-24T10:00:00", "force": True}, token)
    assert forced.status_code == 200
    db.session.expire_all()
    moved = db.session.get(Rdv, rdv.id)
    assert moved.starts_at == local(PARIS, date(2026, 3, 24), 10) and moved.forced_by_id == clinic.agent.id


def test_dropping_outside_opening_hours_is_refused_until_forced(client, auth, clinic):
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9))
    auth.login(clinic.agent)
    refused = move(client, rdv.id, {"starts_at": "2026-03-24T15:00:00"}, page_token(client, clinic.agent.id))
    assert refused.status_code == 409 and "en dehors des plages d'ouverture" in refused.get_json()["error"]
    assert refused.get_json()["can_force"] is True


def test_dropping_on_a_colleagues_column_hands_the_rdv_to_them(client, auth, clinic, factories, db):
    factories.PlageFactory(agent=clinic.colleague, lieu=clinic.lieu, first_day=date(2026, 1, 5), motifs=[clinic.motif])
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9))
    auth.login(clinic.agent)
    payload = {"starts_at": "2026-03-24T11:00:00", "agent_id": clinic.colleague.id, "from_agent_id": clinic.agent.id}
    response = move(client, rdv.id, payload, page_token(client, clinic.agent.id))
    assert response.status_code == 200
    db.session.expire_all()
    assert [agent.id for agent in db.session.get(Rdv, rdv.id).agents] == [clinic.colleague.id]


def test_a_move_without_the_csrf_token_is_refused_and_changes_nothing(client, auth, clinic, db):
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9))
    auth.login(clinic.agent)
    response = move(client, rdv.id, {"starts_at": "2026-03-24T11:00:00"}, None)
    assert response.status_code == 400 and "jeton de sécurité" in response.get_json()["error"]
    db.session.expire_all()
    assert db.session.get(Rdv, rdv.id).starts_at == local(PARIS, date(2026, 3, 24), 9)


@pytest.mark.parametrize("payload, message", [
    ({}, "« starts_at » est obligatoire"),
    ({"starts_at": "demain"}, "n'est pas une date valide"),
    ({"starts_at": "2026-03-24T11:00:00", "agent_id": "deux"}, "nombres entiers"),
])
def test_a_malformed_move_gets_a_french_400(client, auth, clinic, payload, message):
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9))
    auth.login(clinic.agent)
    response = move(client, rdv.id, payload, page_token(client, clinic.agent.id))
    assert response.status_code == 400 and message in response.get_json()["error"]


def test_a_cancelled_rdv_cannot_be_moved(client, auth, clinic):
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9), status=RdvStatus.REVOKED)
    auth.login(clinic.agent)
    response = move(client, rdv.id, {"starts_at": "2026-03-24T11:00:00"}, page_token(client, clinic.agent.id))
    assert response.status_code == 409 and response.get_json()["can_force"] is False


# --- Pages ---------------------------------------------------------------------------------------------------

def test_the_week_page_lists_the_rdvs_for_keyboard_and_screen_reader_users(client, auth, clinic):
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 26), 11))
    clinic.rdv(local(PARIS, date(2026, 4, 2), 11))  # next week: not listed
    auth.login(clinic.agent)
    response = client.get(f"/agenda/agents/{clinic.agent.id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Mon agenda" in page and "Semaine du lundi 23 mars au dimanche 29 mars 2026" in page
    assert re.findall(r'href="/rdvs/(\d+)"', page) == [str(rdv.id)]
    assert "jeudi 26 mars 2026" in page and "11h00 – 11h30" in page
    assert '<meta name="csrf-token"' in page


def test_the_day_view_and_navigation_links(client, auth, clinic):
    auth.login(clinic.colleague)
    page = client.get(f"/agenda/agents/{clinic.agent.id}?date=2026-03-31&vue=jour").get_data(as_text=True)
    assert "Agenda de Claire Martin" in page and "Mardi 31 mars 2026" in page
    assert "date=2026-03-30&amp;vue=jour" in page and "date=2026-04-01&amp;vue=jour" in page
    assert 'data-view="jour"' in page


def test_sunday_is_left_out_of_the_week_unless_the_agent_works_then(client, auth, clinic, factories):
    auth.login(clinic.agent)
    assert 'data-hidden-days="[0]"' in client.get(f"/agenda/agents/{clinic.agent.id}").get_data(as_text=True)
    sunday_day = client.get(f"/agenda/agents/{clinic.agent.id}?date=2026-03-29&vue=jour").get_data(as_text=True)
    assert 'data-hidden-days="[]"' in sunday_day
    factories.PlageFactory(agent=clinic.agent, lieu=clinic.lieu, first_day=date(2026, 1, 4), weekdays=0b1000000)
    assert 'data-hidden-days="[]"' in client.get(f"/agenda/agents/{clinic.agent.id}").get_data(as_text=True)


def test_an_unknown_view_gets_a_french_400_page(client, auth, clinic):
    auth.login(clinic.agent)
    response = client.get(f"/agenda/agents/{clinic.agent.id}?vue=mois")
    assert response.status_code == 400 and "« semaine » ou « jour »" in html.unescape(response.get_data(as_text=True))


@pytest.mark.parametrize("path", ["/agenda/agents/{agent}", "/agenda/lieux/{lieu}",
                                  "/agenda/agents/{agent}/jour/imprimer"])
@pytest.mark.parametrize("day, message", [
    ("31/03/2026", "« 31/03/2026 » n'est pas une date valide (attendu : AAAA-MM-JJ, par exemple 2026-03-"),
    ("9999-12-31", "Le 9999-12-31 est hors de l'agenda : choisissez une date entre 1900 et 2199."),
])
def test_a_date_the_agenda_cannot_show_gives_todays_page_saying_what_is_expected(client, auth, clinic, path, day,
                                                                                 message):
    auth.login(clinic.agent)
    url = path.format(agent=clinic.agent.id, lieu=clinic.lieu.id)
    response = client.get(url, query_string={"date": day, "vue": "jour"} if "imprimer" not in url else {"date": day})
    assert response.status_code == 302 and "date=" not in response.location
    page = html.unescape(client.get(response.location).get_data(as_text=True))
    assert message in page


def test_the_agent_selector_works_without_javascript(client, auth, clinic):
    auth.login(clinic.agent)
    response = client.get("/agenda/agents", query_string={"agent_id": clinic.colleague.id, "date": "2026-03-31"})
    assert response.status_code == 302
    assert response.location == f"/agenda/agents/{clinic.colleague.id}?date=2026-03-31"


def test_a_time_picked_in_the_calendar_opens_the_booking_form_at_that_instant(client, auth, clinic):
    auth.login(clinic.agent)
    response = client.get(f"/agenda/agents/{clinic.agent.id}/nouveau-rdv",
                          query_string={"debut": "2026-03-31T10:00:00", "lieu_id": clinic.lieu.id})
    assert response.status_code == 302
    assert response.location == (f"/rdvs/nouveau?agent_id={clinic.agent.id}&starts_at=2026-03-31T08:00:00Z"
                                 f"&lieu_id={clinic.lieu.id}")


def test_lieux_page_links_to_each_lieus_day(client, auth, clinic):
    auth.login(clinic.agent)
    page = client.get("/agenda/lieux").get_data(as_text=True)
    assert "Centre PMI Belleville" in page and f'href="/agenda/lieux/{clinic.lieu.id}"' in page


def test_a_lieus_day_shows_a_column_per_agent_working_there(client, auth, clinic, factories):
    other_lieu = factories.LieuFactory(organisation=clinic.organisation)
    factories.PlageFactory(agent=clinic.colleague, lieu=other_lieu, first_day=date(2026, 1, 5), motifs=[clinic.motif])
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
    auth.login(clinic.colleague)
    page = client.get(f"/agenda/lieux/{clinic.lieu.id}?date=2026-03-24").get_data(as_text=True)
    assert "Mardi 24 mars 2026" in page
    assert page.count('class="lapins-colonne"') == 1 and "Claire Martin" in page
    assert f'data-events-url="/agenda/api/agents/{clinic.agent.id}/evenements"' in page
    assert f'href="/rdvs/{rdv.id}"' in page and "09h30 – 10h00" in page


def test_a_lieu_on_a_sunday_says_nobody_works_there(client, auth, clinic):
    auth.login(clinic.agent)
    page = client.get(f"/agenda/lieux/{clinic.lieu.id}?date=2026-03-29").get_data(as_text=True)
    assert "Aucun agent n'a de plage d'ouverture ni de rendez-vous dans ce lieu ce jour-là." in page
    assert 'class="lapins-colonne"' not in page


# --- The feed's signed-in agent, read without the ORM (lapins.models.light_agent) ----------------------------------

def test_the_feed_follows_a_change_of_roles_at_the_next_request(client, auth, clinic, db):
    """The light signed-in agent is read afresh at every request: a role taken away closes the colleague's agenda
    at once, and one given opens it, as on the pages."""
    auth.login(clinic.colleague)
    assert feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").status_code == 200
    role = db.session.query(AgentRole).filter_by(agent_id=clinic.colleague.id).one()
    organisation_id = role.organisation_id
    db.session.delete(role)
    db.session.commit()
    response = feed(client, clinic.agent.id, "2026-03-23", "2026-03-30")
    assert response.status_code == 404 and "introuvable" in response.get_json()["error"]
    db.session.add(AgentRole(agent_id=clinic.colleague.id, organisation_id=organisation_id, role=Role.AGENT))
    db.session.commit()
    assert feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").status_code == 200


def test_a_deactivated_agent_loses_the_feed_at_the_next_request(client, auth, clinic, db):
    auth.login(clinic.agent)
    assert feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").status_code == 200
    clinic.agent.active = False
    db.session.commit()
    response = feed(client, clinic.agent.id, "2026-03-23", "2026-03-30")
    assert response.status_code == 302 and "/connexion" in response.headers["Location"]


def test_the_feed_shows_an_agent_of_several_territories_in_the_clock_of_the_one_shared(client, auth, clinic, factories,
                                                                                     db):
    """An agent working in Paris and in La Réunion, seen by a Réunion colleague: the Réunion clock and stamp."""
    reunion = factories.OrganisationFactory(territory__timezone="Indian/Reunion")
    db.session.add(AgentRole(agent_id=clinic.agent.id, organisation_id=reunion.id, role=Role.AGENT))
    colleague = factories.AgentFactory(organisation=reunion)
    lieu = factories.LieuFactory(organisation=reunion)
    db.session.commit()
    clinic.rdv(datetime(2026, 3, 24, 5, 0, tzinfo=timezone.utc), lieu=lieu)  # 09:00 in La Réunion, 06:00 in Paris
    auth.login(colleague)
    [shown] = of_kind(feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").get_json(), "rdv")
    assert shown["start"] == "2026-03-24T09:00:00"


def test_the_feed_reads_outside_a_transaction_and_hands_its_connection_back_transactional(client, auth, clinic, db):
    """On PostgreSQL the feed's statements run in autocommit, without BEGIN and COMMIT around them; the connection
    goes back to the pool in transactions, so that the next request's writes are atomic again."""
    auth.login(clinic.agent)
    with driver_statements(db.engine) as statements:
        assert feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").status_code == 200  # computed
        assert feed(client, clinic.agent.id, "2026-03-23", "2026-03-30").status_code == 200  # cached
    if db.engine.dialect.name != "postgresql":  # SQLite starts a transaction only before a write anyway
        return
    assert statements and all(autocommit for _, autocommit in statements)
    with db.engine.connect() as connection:
        assert connection.connection.driver_connection.autocommit is False
    usager_count = db.session.query(Usager).count()
    with pytest.raises(RuntimeError):
        with db.engine.begin() as connection:
            connection.execute(Usager.__table__.insert().values(
                territory_id=clinic.organisation.territory_id, first_name="Léa", last_name="Essai"))
            raise RuntimeError("the request fails after its first write")
    assert db.session.query(Usager).count() == usager_count
