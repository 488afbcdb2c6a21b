"""Families moving onto the same free times at the same second: each time is taken once, on SQLite and PostgreSQL.

Real concurrent HTTP requests against a real threaded server (as tests/test_double_booking.py does), each family in a
browser of its own that passed the identity check; and the move's pages' rate limits.
"""
from __future__ import annotations

import html
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta, timezone
from types import SimpleNamespace

import pytest
import requests
from celery._state import _set_task_join_will_block
from sqlalchemy import select
from werkzeug.serving import make_server

from lapins import create_app
from lapins.auth.limits import TOO_MANY_MOVES
from lapins.infra.extensions import db
from lapins.models import Message, MessageKind, MessageStatus, Rdv, RdvAgent, Role
from lapins.models.rdvs import RdvMove
from lapins.notifications.links import rdv_token
from tests.conftest import csrf_token_from

FAMILIES = 12
FREE_TIMES = 3
TAKEN = "Ce créneau vient d'être pris"


@pytest.fixture()
def live_families(database_url):
    """`start(**settings)`: a server whose agent has FREE_TIMES free times in 3 days, and FAMILIES rdvs filling her
    day in 10 days; each family's last name is Famille<n>."""
    started = []

    def start(**settings):
        from tests import factories

        app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=True, **settings)
        with app.app_context():
            # No quiet hours: the confirmations must leave at once whatever the hour the suite runs.
            organisation = factories.OrganisationFactory(territory__quiet_hours_start=time(0),
                                                         territory__quiet_hours_end=time(0))
            lieu = factories.LieuFactory(organisation=organisation)
            motif = factories.MotifFactory(organisation=organisation, duration_minutes=30)
            agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
            tz = organisation.territory.tz
            soon = datetime.now(tz).date() + timedelta(days=3)
            later = soon + timedelta(days=7)
            for day, hours in ((soon, FREE_TIMES / 2), (later, FAMILIES / 2)):
                factories.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=day, last_day=day,
                                       start_time=time(9), end_time=(datetime.combine(day, time(9))
                                                                     + timedelta(hours=hours)).time(),
                                       weekdays=0b1111111)
            urls = []
            for index in range(FAMILIES):
                usager = factories.UsagerFactory(territory=organisation.territory, last_name=f"Famille{index}")
                rdv = factories.RdvFactory(motif=motif, lieu=lieu, agents=[agent], usagers=[usager],
                                           starts_at=datetime.combine(later, time(9), tz).astimezone(timezone.utc)
                                           + timedelta(minutes=30 * index))
                urls.append(f"/r/{rdv_token(rdv.id)}")
            ids = SimpleNamespace(agent=agent.id)
            db.session.remove()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append((app, server))
        return SimpleNamespace(app=app, base=f"http://127.0.0.1:{server.server_port}", urls=urls, ids=ids)

    yield start
    # Celery runs eager tasks under a process-wide "no join" flag that concurrent requests' tasks can leave set.
    _set_task_join_will_block(False)
    for app, server in started:
        server.shutdown()
        with app.app_context():
            db.engine.dispose()


def checked_browser(live, index: int) -> requests.Session:
    browser = requests.Session()
    url = f"{live.base}{live.urls[index]}"
    token = csrf_token_from(browser.get(url, timeout=30).text)
    passed = browser.post(f"{url}/verifier", data={"csrf_token": token, "letters": f"famille{index}"},
                          allow_redirects=False, timeout=30)
    assert passed.status_code == 302
    return browser


def confirmation_form(live, browser: requests.Session, index: int, choice: int) -> dict[str, str]:
    """The form of the `choice`-th time offered, as the family's confirmation page gives it."""
    picker = browser.get(f"{live.base}{live.urls[index]}/changer", timeout=30).text
    hrefs = [html.unescape(href) for href in re.findall(r'href="([^"]+/changer/confirmer[^"]+)"', picker)]
    assert len(hrefs) == FREE_TIMES
    page = browser.get(f"{live.base}{hrefs[choice]}", timeout=30).text
    return {name: html.unescape(value) for name, value in
            re.findall(r'<input[^>]*name="(csrf_token|debut|agent|revision)"[^>]*value="([^"]*)"', page)}


def test_families_racing_for_the_same_times_move_once_per_time_and_lose_no_rdv(live_families):
    live = live_families()
    browsers = [checked_browser(live, index) for index in range(FAMILIES)]
    forms = [confirmation_form(live, browser, index, index % FREE_TIMES) for index, browser in enumerate(browsers)]
    start = threading.Barrier(FAMILIES)

    def move(index: int) -> requests.Response:
        start.wait()
        return browsers[index].post(f"{live.base}{live.urls[index]}/changer", data=forms[index],
                                    allow_redirects=False, timeout=60)

    with ThreadPoolExecutor(FAMILIES) as pool:
        answers = list(pool.map(move, range(FAMILIES)))

    assert sorted(answer.status_code for answer in answers) == [302] * FREE_TIMES + [409] * (FAMILIES - FREE_TIMES)
    assert all(TAKEN in html.unescape(answer.text) for answer in answers if answer.status_code == 409)
    with live.app.app_context():
        rdvs = db.session.scalars(select(Rdv)).all()
        assert len(rdvs) == FAMILIES and all(rdv.is_live for rdv in rdvs)
        moves = db.session.scalars(select(RdvMove)).all()
        assert len(moves) == FREE_TIMES
        # Each confirmation left at once, in the request that moved the rdv (the worker runs eagerly here).
        told = db.session.scalars(select(Message).where(Message.kind == MessageKind.CHANGED)).all()
        assert sorted(m.rdv_id for m in told) == sorted(move.rdv_id for move in moves)
        assert {m.status for m in told} == {MessageStatus.SENT}
        times = sorted((link.starts_at, link.ends_at) for link in db.session.scalars(
            select(RdvAgent).where(RdvAgent.agent_id == live.ids.agent, RdvAgent.live.is_(True))))
        assert all(end <= following for (_, end), (following, _) in zip(times, times[1:]))  # never two at once


def test_the_move_pages_are_limited_per_rdv(live_families):
    live = live_families(RATELIMIT_ENABLED=True, FAMILY_MOVE_LIMITS_PER_RDV="3/minute")
    browser = checked_browser(live, 0)
    url = f"{live.base}{live.urls[0]}/changer"
    assert [browser.get(url, timeout=30).status_code for _ in range(3)] == [200] * 3
    limited = browser.get(url, timeout=30)
    assert limited.status_code == 429 and TOO_MANY_MOVES in html.unescape(limited.text)
    assert int(limited.headers["Retry-After"]) > 0
    assert checked_browser(live, 1).get(f"{live.base}{live.urls[1]}/changer", timeout=30).status_code == 200
