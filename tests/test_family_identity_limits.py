"""The family's identity check cannot be brute-forced, not even by guesses sent at the same second (issue 21, point 1).

Real concurrent HTTP requests against a real threaded server, on SQLite and PostgreSQL (as tests/test_double_booking.py
does): at most MAX_FAILURES guesses are ever checked per window, and the right one is refused once the check is locked.
On top of that lock, Flask-Limiter counts the check's POSTs per rdv and per client address (lapins.auth.limits).
"""
from __future__ import annotations

import html
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import update
from werkzeug.serving import make_server

from lapins import create_app
from lapins.auth.limits import TOO_MANY_CHECKS
from lapins.infra.extensions import db
from lapins.family import services
from lapins.models import Role
from lapins.models.rdvs import RdvLinkCheck
from lapins.notifications.links import rdv_token
from tests.conftest import csrf_token_from

CLIENTS = 30
LOCKED = "Trop d'essais incorrects"


@pytest.fixture()
def live_family(database_url, monkeypatch):
    """`start(rdvs=1, **settings)`: a real threaded server over its own database with rdvs of the Payet family in a
    week; `checked` lists every guess the server actually compared with the family's name."""
    checked: list[str] = []
    checking = threading.Lock()
    compare = services.identity_matches

    def counted(rdv, typed):
        with checking:
            checked.append(typed)
        return compare(rdv, typed)

    monkeypatch.setattr(services, "identity_matches", counted)
    started = []

    def start(rdvs: int = 1, **settings):
        from tests import factories

        app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=True, **settings)
        with app.app_context():
            organisation = factories.OrganisationFactory()
            lieu = factories.LieuFactory(organisation=organisation)
            motif = factories.MotifFactory(organisation=organisation)
            agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
            week = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
            ids, urls = [], []
            for index in range(rdvs):
                usager = factories.UsagerFactory(territory=organisation.territory, last_name="Payet")
                rdv = factories.RdvFactory(motif=motif, lieu=lieu, agents=[agent], usagers=[usager],
                                           starts_at=week + timedelta(hours=index))
                ids.append(rdv.id)
                urls.append(f"/r/{rdv_token(rdv.id)}")
            db.session.remove()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        started.append((app, server))
        return SimpleNamespace(app=app, base=f"http://127.0.0.1:{server.server_port}", ids=ids, urls=urls,
                               checked=checked)

    yield start
    for app, server in started:
        server.shutdown()
        with app.app_context():
            db.engine.dispose()


def browser(live, url: str) -> tuple[requests.Session, str]:
    """A family's browser on the rdv's page: its session cookie and the form's CSRF token."""
    session = requests.Session()
    return session, csrf_token_from(session.get(f"{live.base}{url}", timeout=30).text)


def guess(live, url: str, letters: str, browser_=None, **headers) -> requests.Response:
    session, csrf = browser_ or browser(live, url)
    return session.post(f"{live.base}{url}/verifier", data={"csrf_token": csrf, "letters": letters},
                        headers=headers, allow_redirects=False, timeout=60)


def simultaneous_guesses(live, url: str, guesses: list[str], **headers) -> list[requests.Response]:
    """Each guess from a browser of its own, all released at once."""
    browsers = [browser(live, url) for _ in guesses]
    start = threading.Barrier(len(guesses))

    def send(index: int) -> requests.Response:
        start.wait()
        return guess(live, url, guesses[index], browsers[index], **headers)

    with ThreadPoolExecutor(len(guesses)) as pool:
        return list(pool.map(send, range(len(guesses))))


def link_check(live, rdv_id: int) -> RdvLinkCheck:
    with live.app.app_context():
        check = db.session.get(RdvLinkCheck, rdv_id)
        db.session.expunge_all()
        db.session.remove()
        return check


def test_simultaneous_wrong_guesses_check_five_at_most_then_the_right_one_is_refused(live_family):
    live = live_family()
    url = live.urls[0]
    family = browser(live, url)  # the family's page open before the attack (a locked page has no form)

    responses = simultaneous_guesses(live, url, ["Dur"] * (CLIENTS - 1))

    assert live.checked == ["Dur"] * services.MAX_FAILURES  # once: 11 or 12 of them were checked
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [422] * (services.MAX_FAILURES - 1) + [429] * (CLIENTS - services.MAX_FAILURES), statuses
    assert all(LOCKED in response.text for response in responses if response.status_code == 429)
    check = link_check(live, live.ids[0])
    assert check.failures == services.MAX_FAILURES and check.locked_until is not None

    # The right letters, sent after them (once they passed on SQLite), are refused without being checked.
    right = guess(live, url, "Pay", family)
    assert right.status_code == 429 and LOCKED in right.text and "Annuler le rendez-vous" not in right.text
    assert live.checked == ["Dur"] * services.MAX_FAILURES

    # The next window (the lock over, as a quarter of an hour later) again checks five guesses, no more.
    with live.app.app_context():
        past = datetime.now(timezone.utc) - services.LOCK_DURATION - timedelta(seconds=1)
        db.session.execute(update(RdvLinkCheck).values(last_failure_at=past, locked_until=past))
        db.session.commit()
        db.session.remove()
    responses = simultaneous_guesses(live, url, ["Dur"] * (CLIENTS - 1))
    assert len(live.checked) == 2 * services.MAX_FAILURES
    assert sorted(response.status_code for response in responses) == statuses
    assert guess(live, url, "Pay", family).status_code == 429 and len(live.checked) == 2 * services.MAX_FAILURES


def test_simultaneous_guesses_with_the_limits_on_are_cut_short_by_the_rdvs_count(live_family):
    """As in production: Flask-Limiter lets at most FAMILY_CHECK_LIMITS_PER_RDV through, the lock does the rest."""
    live = live_family(RATELIMIT_ENABLED=True, FAMILY_CHECK_LIMITS_PER_RDV="10/15minutes",
                       FAMILY_CHECK_LIMITS_PER_IP="100/minute")

    responses = simultaneous_guesses(live, live.urls[0], ["Dur"] * CLIENTS)

    assert len(live.checked) == services.MAX_FAILURES
    limited = [response for response in responses if TOO_MANY_CHECKS in html.unescape(response.text)]
    assert len(limited) == CLIENTS - 10 and all(response.status_code == 429 for response in limited)
    assert all(0 < int(response.headers["Retry-After"]) <= 15 * 60 for response in limited)


def test_one_address_guessing_on_many_rdvs_is_limited(live_family):
    live = live_family(rdvs=3, RATELIMIT_ENABLED=True, FAMILY_CHECK_LIMITS_PER_IP="4/minute", TRUSTED_PROXIES=1)
    office = {"X-Forwarded-For": "203.0.113.7"}
    first, second, third = live.urls

    assert [guess(live, url, "Dur", **office).status_code for url in (first, second, third, first)] == [422] * 4
    limited = guess(live, second, "Pay", **office)  # even the right letters, once the address reached its limit
    assert limited.status_code == 429 and TOO_MANY_CHECKS in html.unescape(limited.text) and "fr-alert--error" in limited.text
    assert 0 < int(limited.headers["Retry-After"]) <= 61
    assert len(live.checked) == 4
    assert guess(live, second, "Pay", **{"X-Forwarded-For": "198.51.100.20"}).status_code == 302  # another address


def test_one_rdv_guessed_from_many_addresses_is_limited(live_family):
    live = live_family(rdvs=2, RATELIMIT_ENABLED=True, FAMILY_CHECK_LIMITS_PER_RDV="3/minute", TRUSTED_PROXIES=1)
    first, second = live.urls

    addresses = [{"X-Forwarded-For": f"198.51.100.{n}"} for n in range(1, 5)]
    assert [guess(live, first, "Dur", **address).status_code for address in addresses[:3]] == [422] * 3
    limited = guess(live, first, "Pay", **addresses[3])
    assert limited.status_code == 429 and TOO_MANY_CHECKS in html.unescape(limited.text)
    assert guess(live, second, "Pay", **addresses[3]).status_code == 302  # another rdv is not held up
    assert len(live.checked) == 4
