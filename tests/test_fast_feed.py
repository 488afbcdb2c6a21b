"""The events feed's fast path (lapins.agenda.fast_feed): the same answers as Flask's view, and Flask for the rest."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
import time_machine
from werkzeug.test import EnvironBuilder, run_wsgi_app

from lapins.agenda.fast_feed import FEED_PATH, FastFeed
from lapins.models import AgentRole, Role
from lapins.models.territory_admins import TerritoryAdmin
from tests.conftest import AuthActions
from tests.fast_paths import three_ways
from tests.test_calendar import NOW, PARIS, Clinic, feed, local, of_kind

WEEK = {"start": "2026-03-23T00:00:00", "end": "2026-03-30T00:00:00"}


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def clinic(factories):
    return Clinic(factories)


def request_of(client, agent_id: int, query: dict = WEEK, method: str = "GET", cookie: str | None = None) -> dict:
    """The WSGI environ of a feed request with the client's session cookie (or the one given)."""
    environ = EnvironBuilder(path=f"/agenda/api/agents/{agent_id}/evenements", query_string=query,
                             method=method).get_environ()
    session = client.get_cookie("session")
    value = cookie if cookie is not None else (session.value if session else None)
    if value:
        environ["HTTP_COOKIE"] = f"session={value}"
    return environ


def fast_and_flask(app, environ: dict, agent_id: int):
    """What the fast path answers (None when it hands over), and what Flask's view answers to the same request;
    each in an application context of its own, as in production (the tests' own context would share `g`)."""
    with app.app_context():
        fast = app.wsgi_app.answer(dict(environ), agent_id)
    with app.app_context():
        body, status, headers = run_wsgi_app(app.wsgi_app.wsgi_app, dict(environ))
        return fast, status, headers, b"".join(body)


def test_the_app_serves_the_feed_through_the_fast_path(app):
    assert isinstance(app.wsgi_app, FastFeed)
    adapter = app.url_map.bind("localhost")
    for agent_id in (1, 42, 123456789):
        path = f"/agenda/api/agents/{agent_id}/evenements"
        assert FEED_PATH.fullmatch(path)
        assert adapter.match(path) == ("agenda.agent_events", {"agent_id": agent_id})
    for other in ("/agenda/api/agents/0/evenements", "/agenda/api/agents/12/evenements/", "/agenda/agents/12"):
        assert not FEED_PATH.fullmatch(other)


# --- The same checks as Flask ----------------------------------------------------------------------------------------
# One request per case, sent three ways: to Flask alone (the view behind login_required, Flask-Login's user loader, the
# session interface, the security headers), to the fast path's own decision (FastFeed.answer), and to the whole stack
# as gunicorn calls it. The whole stack must answer exactly what Flask alone answers (status, every header, cookies,
# body), and the fast path may answer only where Flask answers 200 without touching the cookie: anything Flask refuses,
# redirects or signs again, the fast path hands over. Each case also says who is expected to answer, so that it
# exercises what it names.

class Feed:
    """The cases' world: Claire's agenda (an rdv, another in a second organisation), Nadia her secretary, an agent of
    that second organisation, an agent of another département, a territory administrator without any role."""

    def __init__(self, app, client, factories, db, frozen_time):
        self.app, self.client, self.db, self.frozen_time = app, client, db, frozen_time
        self.clinic = clinic = Clinic(factories)
        self.other = factories.OrganisationFactory(territory=clinic.organisation.territory)
        db.session.add(AgentRole(agent=clinic.agent, organisation=self.other, role=Role.AGENT))
        self.elsewhere = factories.AgentFactory(organisation=self.other)
        self.outsider = factories.AgentFactory(organisation=factories.OrganisationFactory())
        self.territory_admin = factories.AgentFactory()
        db.session.add(TerritoryAdmin(territory_id=clinic.organisation.territory_id,
                                      agent_id=self.territory_admin.id))
        clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
        clinic.rdv(local(PARIS, date(2026, 3, 25), 10), organisation=self.other)
        db.session.commit()

    def signed_in(self, agent) -> str:
        """The session cookie of a fresh browser where the agent signed in."""
        browser = self.app.test_client()
        assert AuthActions(browser).login(agent).status_code == 302
        return browser.get_cookie("session").value

    def cookie_with(self, content: dict, signed_at_shift: timedelta = timedelta()) -> str:
        """A session cookie signed by the application, with this content, signed at now + the shift."""
        serializer = self.app.session_interface.get_signing_serializer(self.app)
        with time_machine.travel(NOW + signed_at_shift, tick=False):
            return serializer.dumps(content)

    def environ(self, cookie: str | None, agent_id: int | None = None, query: dict = WEEK, method: str = "GET"):
        environ = EnvironBuilder(path=f"/agenda/api/agents/{agent_id or self.clinic.agent.id}/evenements",
                                 query_string=query, method=method).get_environ()
        if cookie is not None:
            environ["HTTP_COOKIE"] = f"session={cookie}"
        return environ


def signed_in_as(who: str):
    """Signed in as Claire ("agent"), Nadia ("colleague") or one of Feed's agents."""
    return lambda feed: feed.environ(feed.signed_in(getattr(feed, who) if hasattr(feed, who) else
                                                    getattr(feed.clinic, who)))


def then(change, who: str = "agent"):
    """Signed in as `who` (Claire unless said), then the change is committed before the request."""
    def case(feed):
        environ = signed_in_as(who)(feed)
        change(feed)
        return environ
    return case


def deactivated(feed):
    feed.clinic.agent.active = False
    feed.db.session.commit()


def sessions_ended(feed):
    feed.clinic.agent.end_sessions()
    feed.db.session.commit()


def role_removed(feed):
    feed.db.session.delete(feed.clinic.colleague.roles[0])
    feed.db.session.commit()


def aged(seconds: int):
    def age(feed):
        feed.frozen_time.shift(timedelta(seconds=seconds))
    return age


def forged(feed):
    signed = feed.signed_in(feed.clinic.agent)
    return feed.environ(signed[:-3] + ("AAA" if not signed.endswith("AAA") else "BBB"))


def session_of(content: dict, shift: timedelta = timedelta()):
    def case(feed):
        agent = feed.clinic.agent
        values = {key: value.format(id=agent.id, generation=agent.session_generation) if isinstance(value, str)
                  else value for key, value in content.items()}
        return feed.environ(feed.cookie_with(values, shift))
    return case


LIFETIME_S = 4 * 3600  # config.Config.PERMANENT_SESSION_LIFETIME, checked below
SIGNED_IN = {"_user_id": "{id}:{generation}", "_fresh": True, "_permanent": True}

# case: (request, who answers: "fast", or Flask's status)
CASES = {
    "own agenda": (signed_in_as("agent"), "fast"),
    "a colleague's agenda": (signed_in_as("colleague"), "fast"),
    "an agent of the second organisation only (the first one's rdvs busy)":
        (signed_in_as("elsewhere"), "fast"),
    "no session cookie": (lambda feed: feed.environ(None), "302 FOUND"),
    "a forged cookie": (forged, "302 FOUND"),
    "a session a minute old: Flask signs it again": (then(aged(61)), "200 OK"),
    "a session just under its lifetime, re-signed by Flask": (then(aged(LIFETIME_S - 1)), "200 OK"),
    "an expired session": (then(aged(LIFETIME_S + 1)), "302 FOUND"),
    "a session signed in the future": (session_of(SIGNED_IN, timedelta(seconds=30)), "302 FOUND"),
    "a cookie made by hand, as the login makes it": (session_of(SIGNED_IN), "fast"),
    "a session asking for a remember-me cookie": (session_of({**SIGNED_IN, "_remember": "set"}), "200 OK"),
    "a session that is not permanent": (session_of({**SIGNED_IN, "_permanent": False}), "fast"),
    "a deactivated agent": (then(deactivated), "302 FOUND"),
    "sessions ended (a new session generation)": (then(sessions_ended), "302 FOUND"),
    "a plain id, from before session generations": (session_of({**SIGNED_IN, "_user_id": "{id}"}), "302 FOUND"),
    "an older session generation": (session_of({**SIGNED_IN, "_user_id": "{id}:999"}), "302 FOUND"),
    "an id that is no number": (session_of({**SIGNED_IN, "_user_id": "x:0"}), "302 FOUND"),
    "an unknown agent": (session_of({**SIGNED_IN, "_user_id": "987654:0"}), "302 FOUND"),
    "a secretary whose role was taken away": (then(role_removed, "colleague"), "404 NOT FOUND"),
    "an agent of another département": (signed_in_as("outsider"), "404 NOT FOUND"),
    "a territory administrator without a role": (signed_in_as("territory_admin"), "403 FORBIDDEN"),
    "an unknown agenda": (lambda feed: feed.environ(feed.signed_in(feed.clinic.agent), agent_id=987654),
                          "404 NOT FOUND"),
    "a period ending before it starts": (lambda feed: feed.environ(feed.signed_in(feed.clinic.agent), query={
        "start": "2026-03-30T00:00:00", "end": "2026-03-23T00:00:00"}), "400 BAD REQUEST"),
    "no period": (lambda feed: feed.environ(feed.signed_in(feed.clinic.agent), query={}), "400 BAD REQUEST"),
    "HEAD": (lambda feed: feed.environ(feed.signed_in(feed.clinic.agent), method="HEAD"), "200 OK"),
    "POST": (lambda feed: feed.environ(feed.signed_in(feed.clinic.agent), method="POST"), "405 METHOD NOT ALLOWED"),
}


@pytest.mark.parametrize("case", CASES)
def test_the_fast_path_applies_exactly_the_checks_of_flask(app, client, factories, db, frozen_time, case):
    assert app.permanent_session_lifetime == timedelta(seconds=LIFETIME_S)
    make_request, expected = CASES[case]
    feed = Feed(app, client, factories, db, frozen_time)
    environ = make_request(feed)
    fast_app = app.wsgi_app
    agent_id = int(environ["PATH_INFO"].split("/")[4])
    for _ in range(2):  # computed, then cached
        ways = three_ways(app, fast_app, environ, lambda environ: fast_app.answer(environ, agent_id))
        flask, fast, fast_answered = ways.flask, ways.fast, ways.fast_answered
        assert ways.through == flask  # status, every header (security headers, Vary, cookies), body
        assert fast_answered == (flask[0] == "200 OK" and "Set-Cookie" not in dict(flask[1])
                                 and environ["REQUEST_METHOD"] == "GET")
        if environ["REQUEST_METHOD"] == "GET":  # FastFeed.answer is asked for GETs only
            assert (fast is not None) == fast_answered
        if fast_answered:
            assert fast == flask[2]
            assert dict(flask[1])["Cache-Control"] == "no-store"  # an agent's agenda, not for a shared PC's cache
        assert ("fast" if fast_answered else flask[0]) == expected
    if expected == "200 OK" and environ["REQUEST_METHOD"] == "GET":
        assert "session=" in dict(flask[1])["Set-Cookie"]  # why Flask, and not the fast path, answered


def test_a_change_shows_at_the_next_request(client, auth, clinic, db):
    auth.login(clinic.agent)
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
    assert of_kind(feed(client, clinic.agent.id, **WEEK).get_json(), "rdv")[0]["start"] == "2026-03-24T09:30:00"
    rdv.starts_at, rdv.ends_at = rdv.starts_at + timedelta(hours=1), rdv.ends_at + timedelta(hours=1)
    db.session.commit()
    assert of_kind(feed(client, clinic.agent.id, **WEEK).get_json(), "rdv")[0]["start"] == "2026-03-24T10:30:00"


def test_a_session_due_to_be_signed_again_goes_to_flask_once(app, client, auth, clinic, frozen_time):
    """The cookie slides forward once a minute: that answer is Flask's, with the new cookie; the next is fast."""
    auth.login(clinic.agent)
    first_cookie = client.get_cookie("session").value
    frozen_time.shift(timedelta(seconds=61))
    fast, status, headers, body = fast_and_flask(app, request_of(client, clinic.agent.id), clinic.agent.id)
    assert fast is None and status == "200 OK" and "session=" in headers["Set-Cookie"]
    answer = feed(client, clinic.agent.id, **WEEK)
    assert answer.status_code == 200 and answer.get_data() == body
    assert client.get_cookie("session").value != first_cookie
    assert fast_and_flask(app, request_of(client, clinic.agent.id), clinic.agent.id)[0] == body


def test_other_methods_go_to_flask(app, client, auth, clinic):
    auth.login(clinic.agent)
    for method in ("POST", "HEAD"):
        response = client.open(f"/agenda/api/agents/{clinic.agent.id}/evenements", method=method, query_string=WEEK)
        assert response.status_code == (405 if method == "POST" else 200)
        if method == "HEAD":
            assert response.get_data() == b""


def test_the_fast_path_needs_flask_logins_session_protection_off(app):
    app.login_manager.session_protection = "basic"
    try:
        with pytest.raises(RuntimeError):
            FastFeed(app, app.wsgi_app.wsgi_app)
    finally:
        app.login_manager.session_protection = None


def test_a_number_beyond_the_databases_integers_is_no_agent_and_no_rdv(client, auth, clinic):
    """On PostgreSQL, the query would fail on such a number: the route does not match it (lapins.infra.routing)."""
    auth.login(clinic.agent)
    for huge in (2**31, 99_999_999_999):
        response = feed(client, huge, **WEEK)
        assert response.status_code == 404 and "introuvable" in response.get_json()["error"]
        assert client.get(f"/rdvs/{huge}").status_code == 404
    assert feed(client, clinic.agent.id, **WEEK).status_code == 200


def test_an_unexpected_error_goes_to_flask_which_answers_json_and_logs_it(client, auth, clinic, monkeypatch, caplog):
    """agenda.js shows the message of a JSON error; the fast path logs that it handed the request over."""
    from lapins.agenda import calendar

    auth.login(clinic.agent)

    def broken(*args, **kwargs):
        raise RuntimeError("panne")

    monkeypatch.setattr(calendar, "agent_feed", broken)
    response = feed(client, clinic.agent.id, **WEEK)
    assert response.status_code == 500
    assert response.get_json() == {
        "error": "Désolé, le service rencontre un problème. L'équipe technique a été prévenue."}
    assert "requête confiée à Flask" in caplog.text and "unhandled error" in caplog.text


# --- Changes committed by another process (PostgreSQL) ---------------------------------------------------------------
# A Celery worker, a CLI command or another web machine commits on a connection of its own: the feed, which reads its
# signed-in agent at every request (lapins.models.light_agent), sees the change from the very next request.

@pytest.fixture()
def postgres_clinic(postgres_url):
    from lapins import create_app
    from lapins.infra.extensions import db
    from tests import factories
    from tests.conftest import FreshContextClient

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=postgres_url)
    app.test_client_class = FreshContextClient
    with app.app_context():
        clinic = Clinic(factories)
        clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
        yield app, clinic
        db.session.remove()
        db.engine.dispose()


def elsewhere(postgres_url: str, *statements: tuple[str, tuple]) -> None:
    """Statements committed together by another process."""
    import psycopg

    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        for statement, values in statements:
            connection.execute(statement, values)


def rdv_titles(response) -> list[str]:
    return [event["title"] for event in of_kind(response.get_json(), "rdv")]


@pytest.mark.postgres
def test_a_change_committed_elsewhere_shows_at_the_next_request(postgres_clinic, postgres_url):
    app, clinic = postgres_clinic
    client = app.test_client()
    AuthActions(client).login(clinic.agent)
    assert "Pesée du mardi" not in " ".join(rdv_titles(feed(client, clinic.agent.id, **WEEK)))
    feed(client, clinic.agent.id, **WEEK)  # kept by the process under the territory's agenda stamp
    # Another process renames the motif, drawing a new agenda stamp as its ORM would.
    elsewhere(postgres_url, ("UPDATE motifs SET name = 'Pesée du mardi' WHERE id = %s", (clinic.motif.id,)),
              ("UPDATE territories SET agenda_stamp = 'ailleurs' WHERE id = %s", (clinic.organisation.territory_id,)))
    assert any("Pesée du mardi" in title for title in rdv_titles(feed(client, clinic.agent.id, **WEEK)))


@pytest.mark.postgres
def test_a_role_removed_or_an_account_deactivated_elsewhere_is_refused_from_the_next_request(postgres_clinic,
                                                                                            postgres_url):
    """Security issue 21.6: the feed kept answering 200 for a few milliseconds after such a commit (25 requests of
    30), and up to 15 s when the process's change listener stalled. Each commit here is followed at once by a
    request, thirty times over: not one may be answered with the agenda."""
    app, clinic = postgres_clinic
    secretary, agent = app.test_client(), app.test_client()
    AuthActions(secretary).login(clinic.colleague)
    AuthActions(agent).login(clinic.agent)
    role = ("INSERT INTO agent_roles (agent_id, organisation_id, role) VALUES (%s, %s, 'secretary')",
            (clinic.colleague.id, clinic.organisation.id))
    no_role = ("DELETE FROM agent_roles WHERE agent_id = %s", (clinic.colleague.id,))
    for _ in range(30):
        assert feed(secretary, clinic.agent.id, **WEEK).status_code == 200
        elsewhere(postgres_url, no_role)
        refused = feed(secretary, clinic.agent.id, **WEEK)
        assert refused.status_code == 404 and "Awa" not in refused.get_data(as_text=True)
        elsewhere(postgres_url, role)

        assert feed(agent, clinic.agent.id, **WEEK).status_code == 200
        elsewhere(postgres_url, ("UPDATE agents SET active = false WHERE id = %s", (clinic.agent.id,)))
        refused = feed(agent, clinic.agent.id, **WEEK)
        assert refused.status_code == 302 and "/connexion" in refused.location
        elsewhere(postgres_url, ("UPDATE agents SET active = true WHERE id = %s", (clinic.agent.id,)))
