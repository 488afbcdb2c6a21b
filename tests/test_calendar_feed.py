"""The agent's secret ICS feed: what a calendar app reads (parsed with icalendar and recurring-ical-events), and who
can stop it working."""
from __future__ import annotations

import html
import re
from datetime import date, datetime, time, timedelta, timezone

import icalendar
import pytest
import recurring_ical_events
import time_machine
from sqlalchemy import select

from lapins import booking
from lapins.infra.extensions import db
from lapins.models import RdvStatus, Role
from lapins.models.calendars import CalendarFeed
from tests.conftest import csrf_token_from

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)  # Monday 09:00 in Paris


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def office(factories):
    organisation = factories.OrganisationFactory(name="PMI Belleville")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    family = factories.UsagerFactory(territory=organisation.territory, first_name="Inès", last_name="Durand")

    def rdv(starts_at: datetime, **kwargs):
        return booking.book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[family], lieu=lieu,
                                starts_at=starts_at, force=True, **kwargs)

    return type("Office", (), dict(organisation=organisation, lieu=lieu, motif=motif, agent=agent, admin=admin,
                                   family=family, rdv=staticmethod(rdv)))


def post(client, page: str, action: str, data: dict | None = None):
    token = csrf_token_from(client.get(page).get_data(as_text=True))
    return client.post(action, data={"csrf_token": token, **(data or {})})


def issue_link(client, auth, agent) -> str:
    auth.login(agent)
    answer = post(client, "/preferences/agendas", "/preferences/agendas/lien")
    assert answer.status_code == 200
    url = re.search(r'<code id="feed-url">([^<]+)</code>', answer.get_data(as_text=True)).group(1)
    return url[url.index("/calendrier/"):]


def events_of(body: bytes, start=NOW - timedelta(days=40), end=NOW + timedelta(days=200)):
    return recurring_ical_events.of(icalendar.Calendar.from_ical(body)).between(start, end)


def test_the_feed_lists_rdvs_and_absences_in_utc_with_the_territory_zone_and_no_family_data(client, auth, office,
                                                                                             factories):
    booked = office.rdv(datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc))
    factories.AbsenceFactory(agent=office.agent, title="Formation", first_day=date(2026, 3, 6),
                             last_day=date(2026, 3, 6), start_time=time(9), end_time=time(17))
    path = issue_link(client, auth, office.agent)
    auth.logout()

    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/calendar")
    body = answer.data
    calendar = icalendar.Calendar.from_ical(body)
    assert [str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")] == ["Europe/Paris"]
    found = {str(event["UID"]): event for event in events_of(body)}
    rdv_event = found[f"rdv-{booked.id}@{'localhost'}"] if f"rdv-{booked.id}@localhost" in found else next(
        event for uid, event in found.items() if uid.startswith(f"rdv-{booked.id}@"))
    assert rdv_event["DTSTART"].dt == datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc)
    assert b"DTSTART:20260304T090000Z" in body  # written in UTC
    assert str(rdv_event["SUMMARY"]) == "RDV PMI — Centre PMI Belleville"
    assert str(rdv_event["STATUS"]) == "CONFIRMED"
    assert b"Durand" not in body and b"In\xc3\xa8s" not in body and b"+336" not in body
    absence = next(event for uid, event in found.items() if uid.startswith("absence-"))
    assert absence["DTSTART"].dt == datetime(2026, 3, 6, 8, 0, tzinfo=timezone.utc)  # 09:00 in Paris
    assert str(absence["SUMMARY"]) == "Absence : Formation"


def test_the_window_runs_from_30_days_back_to_six_months_ahead(client, auth, office):
    kept_old = office.rdv(NOW - timedelta(days=29))
    too_old = office.rdv(NOW - timedelta(days=31))
    kept_far = office.rdv(NOW + timedelta(days=180))
    too_far = office.rdv(NOW + timedelta(days=190))
    path = issue_link(client, auth, office.agent)
    uids = {str(event["UID"]).split("@")[0] for event in events_of(client.get(path).data,
                                                                    NOW - timedelta(days=60), NOW + timedelta(days=400))}
    assert {f"rdv-{kept_old.id}", f"rdv-{kept_far.id}"} <= uids
    assert not {f"rdv-{too_old.id}", f"rdv-{too_far.id}"} & uids


def test_a_move_keeps_the_uid_and_raises_the_sequence_and_a_cancellation_is_status_cancelled(client, auth, office):
    rdv = office.rdv(datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc))
    path = issue_link(client, auth, office.agent)
    first = {str(e["UID"]): e for e in events_of(client.get(path).data) if str(e["UID"]).startswith("rdv-")}
    booking.move_rdv(actor=office.agent, rdv=rdv, starts_at=datetime(2026, 3, 5, 10, 0, tzinfo=timezone.utc),
                     force=True)
    second = {str(e["UID"]): e for e in events_of(client.get(path).data) if str(e["UID"]).startswith("rdv-")}
    assert first.keys() == second.keys()
    uid = next(iter(second))
    assert int(second[uid]["SEQUENCE"]) > int(first[uid]["SEQUENCE"])
    assert second[uid]["DTSTART"].dt == datetime(2026, 3, 5, 10, 0, tzinfo=timezone.utc)
    booking.cancel_rdv(actor=office.agent, rdv=rdv, status=RdvStatus.REVOKED, reason=None)
    third = {str(e["UID"]): e for e in events_of(client.get(path).data) if str(e["UID"]).startswith("rdv-")}
    assert str(third[uid]["STATUS"]) == "CANCELLED"


def test_the_family_name_appears_only_when_the_agent_opts_in(client, auth, office):
    office.rdv(datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc))
    path = issue_link(client, auth, office.agent)
    assert b"Durand" not in client.get(path).data
    answer = post(client, "/preferences/agendas", "/preferences/agendas/lien/options", {"with_family_names": "y"})
    assert answer.status_code == 302
    summaries = [str(e["SUMMARY"]) for e in events_of(client.get(path).data)]
    assert any("Inès Durand" in summary for summary in summaries)


def test_etag_gives_304_until_something_changes(client, auth, office):
    rdv = office.rdv(datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc))
    path = issue_link(client, auth, office.agent)
    first = client.get(path)
    etag = first.headers["ETag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.data
    booking.move_rdv(actor=office.agent, rdv=rdv, starts_at=datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc),
                     force=True)
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_rotating_stops_the_old_address_and_revoking_stops_the_new_one(client, auth, office):
    old = issue_link(client, auth, office.agent)
    new_answer = post(client, "/preferences/agendas", "/preferences/agendas/lien")
    new = re.search(r'/calendrier/[^<]+\.ics', new_answer.get_data(as_text=True)).group(0)
    assert new != old
    assert client.get(old).status_code == 404
    assert client.get(new).status_code == 200
    post(client, "/preferences/agendas", "/preferences/agendas/lien/revoquer")
    assert client.get(new).status_code == 404
    # Only the hash is stored.
    assert all(new.split("/")[-1][:-4] not in feed.token_hash for feed in db.session.scalars(select(CalendarFeed)))


def test_an_administrator_revokes_an_agents_address(client, auth, office):
    path = issue_link(client, auth, office.agent)
    auth.logout()
    auth.login(office.admin)
    answer = post(client, f"/admin/organisations/{office.organisation.id}/agents",
                  f"/admin/organisations/{office.organisation.id}/agents/{office.agent.id}/agenda/revoquer")
    assert answer.status_code == 302
    assert client.get(path).status_code == 404


def test_an_agent_of_another_organisation_cannot_revoke(client, auth, office, factories):
    path = issue_link(client, auth, office.agent)
    auth.logout()
    stranger = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.ADMIN)
    auth.login(stranger)
    answer = post(client, "/preferences/agendas",
                  f"/admin/organisations/{office.organisation.id}/agents/{office.agent.id}/agenda/revoquer")
    assert answer.status_code == 404
    assert client.get(path).status_code == 200


def test_deactivating_the_agent_revokes_the_address_for_good(client, auth, office):
    path = issue_link(client, auth, office.agent)
    agent = db.session.get(type(office.agent), office.agent.id)
    agent.active = False
    db.session.commit()
    assert client.get(path).status_code == 404
    agent.active = True
    db.session.commit()
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("token", ["x", "cal_" + "a" * 43, "cal_" + "a" * 400, "cal_%00abc", "../../etc/passwd",
                                   "cal_" + "é" * 43])
def test_bad_tokens_are_a_plain_404(client, office, token):
    answer = client.get(f"/calendrier/{token}.ics")
    assert answer.status_code == 404


def test_the_feed_is_rate_limited_per_address(tmp_path):
    """An app of its own with limiting on, over a SQLite file (as tests/test_login_limits.py does)."""
    from lapins import create_app
    from lapins.calendars import feeds
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'feed.sqlite3'}",
                     RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://", CALENDAR_FEED_LIMITS_PER_IP="3/minute")
    with app.app_context():
        db.create_all()
        try:
            agent = factories.AgentFactory(organisation=factories.OrganisationFactory())
            token = feeds.issue(agent)
            client = app.test_client()
            statuses = [client.get(f"/calendrier/{token}.ics").status_code for _ in range(5)]
            wrong = client.get("/calendrier/cal_nothing.ics").status_code
        finally:
            db.session.remove()
    assert statuses == [200, 200, 200, 429, 429]
    assert wrong == 429  # counted per address, whatever the token: guessing tokens is slowed down too


def test_renaming_the_lieu_shows_in_the_feed_despite_the_events_kept_per_process(client, auth, office):
    office.rdv(datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc))
    path = issue_link(client, auth, office.agent)
    assert [str(e["SUMMARY"]) for e in events_of(client.get(path).data)] == ["RDV PMI — Centre PMI Belleville"]
    lieu = db.session.get(type(office.lieu), office.lieu.id)
    lieu.name = "Maison des familles"
    db.session.commit()
    assert [str(e["SUMMARY"]) for e in events_of(client.get(path).data)] == ["RDV PMI — Maison des familles"]


def test_a_renamed_or_discreet_motif_and_a_changed_absence_show_in_the_feed_despite_the_kept_events(
        client, auth, office, factories):
    office.rdv(datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc))
    absence = factories.AbsenceFactory(agent=office.agent, title="Formation", first_day=date(2026, 3, 6),
                                       last_day=date(2026, 3, 6), start_time=time(9, 0), end_time=time(12, 0))
    path = issue_link(client, auth, office.agent)

    def shown():
        return sorted((str(e["SUMMARY"]), str(e.get("DESCRIPTION", ""))) for e in events_of(client.get(path).data))

    assert shown() == [("Absence : Formation", ""), ("RDV PMI — Centre PMI Belleville", "Motif : Consultation nourrisson")]
    motif = db.session.get(type(office.motif), office.motif.id)
    motif.name = "Bilan de santé"
    absence = db.session.get(type(absence), absence.id)
    absence.title = "Réunion"
    db.session.commit()
    assert shown() == [("Absence : Réunion", ""), ("RDV PMI — Centre PMI Belleville", "Motif : Bilan de santé")]
    motif = db.session.get(type(office.motif), office.motif.id)
    motif.discreet = True
    db.session.commit()
    assert shown() == [("Absence : Réunion", ""), ("RDV PMI — Centre PMI Belleville", "")]


def test_the_preferences_lead_to_the_calendars_page_which_shows_the_link_once(client, auth, office):
    auth.login(office.agent)
    preferences = client.get("/preferences").get_data(as_text=True)
    assert 'href="/preferences/agendas"' in preferences
    page = client.get("/preferences/agendas").get_data(as_text=True)
    assert "Créer mon lien d'agenda" in html.unescape(page)
    created = post(client, "/preferences/agendas", "/preferences/agendas/lien").get_data(as_text=True)
    token = re.search(r"/calendrier/(cal_[A-Za-z0-9_-]+)\.ics", created).group(1)
    again = client.get("/preferences/agendas").get_data(as_text=True)
    assert "Actif" in again and token not in again  # shown once: only its hash is kept


def test_posting_without_the_csrf_token_changes_nothing(client, auth, office):
    auth.login(office.agent)
    answer = client.post("/preferences/agendas/lien")
    assert answer.status_code in (400, 302)
    assert db.session.scalar(select(CalendarFeed).where(CalendarFeed.agent_id == office.agent.id)) is None
