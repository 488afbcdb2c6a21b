"""The events feed's fast path (lapins.agenda.fast_feed): the same answers as Flask's view, and Flask for the rest."""
from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
import time_machine
from werkzeug.test import EnvironBuilder, run_wsgi_app

from lapins.agenda.fast_feed import FEED_PATH, FastFeed
from lapins.models import AgentRole, Role
from tests.conftest import AuthActions
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


@pytest.mark.parametrize("viewer", ["agent", "colleague", "elsewhere"])
def test_the_fast_path_answers_what_the_view_answers(app, client, auth, clinic, factories, db, viewer):
    """Their own agenda, a colleague's, and that of an agent also working in another organisation, whose rdvs
    there show as busy: the same bytes and the same headers, cached or not."""
    other = factories.OrganisationFactory(territory=clinic.organisation.territory)
    db.session.add(AgentRole(agent=clinic.agent, organisation=other, role=Role.AGENT))
    elsewhere = factories.AgentFactory(organisation=other)
    clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
    clinic.rdv(local(PARIS, date(2026, 3, 25), 10), organisation=other)
    db.session.commit()
    signed_in = {"agent": clinic.agent, "colleague": clinic.colleague, "elsewhere": elsewhere}[viewer]
    auth.login(signed_in)
    environ = request_of(client, clinic.agent.id)
    for _ in range(2):  # computed, then cached
        fast, status, headers, body = fast_and_flask(app, environ, clinic.agent.id)
        assert status == "200 OK" and fast == body
        assert "Set-Cookie" not in headers and headers["Content-Type"] == "application/json"
    with app.app_context():
        fast_body, fast_status, fast_headers = run_wsgi_app(app.wsgi_app, dict(environ))  # through FastFeed
        assert b"".join(fast_body) == body and fast_status == status
    assert sorted(fast_headers.items()) == sorted(headers.items())  # security headers included (lapins.infra.security)
    assert headers["Content-Security-Policy"] and headers["Vary"] == "Cookie"
    answer = feed(client, clinic.agent.id, **WEEK)
    assert answer.get_data() == body
    titles = [event["title"] for event in of_kind(answer.get_json(), "rdv")]
    assert len(titles) == 2 and ("Occupé (autre organisation)" in titles) == (viewer != "agent")


def test_a_change_shows_at_the_next_request(client, auth, clinic, db):
    auth.login(clinic.agent)
    rdv = clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
    assert of_kind(feed(client, clinic.agent.id, **WEEK).get_json(), "rdv")[0]["start"] == "2026-03-24T09:30:00"
    rdv.starts_at, rdv.ends_at = rdv.starts_at + timedelta(hours=1), rdv.ends_at + timedelta(hours=1)
    db.session.commit()
    assert of_kind(feed(client, clinic.agent.id, **WEEK).get_json(), "rdv")[0]["start"] == "2026-03-24T10:30:00"


def test_without_a_valid_session_flask_answers(app, client, auth, clinic):
    auth.login(clinic.agent)
    signed = client.get_cookie("session").value
    forged = signed[:-3] + ("AAA" if not signed.endswith("AAA") else "BBB")
    for cookie in ("", forged):
        environ = request_of(client, clinic.agent.id, cookie=cookie)
        if not cookie:
            environ.pop("HTTP_COOKIE", None)
        fast, status, _, _ = fast_and_flask(app, environ, clinic.agent.id)
        assert fast is None and not status.startswith("200")


def test_an_expired_session_goes_to_flask_which_asks_to_sign_in_again(app, client, auth, clinic, frozen_time):
    auth.login(clinic.agent)
    environ = request_of(client, clinic.agent.id)
    frozen_time.shift(app.permanent_session_lifetime + timedelta(seconds=1))
    fast, status, _, _ = fast_and_flask(app, environ, clinic.agent.id)
    assert fast is None and not status.startswith("200")


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


def test_refusals_and_bad_parameters_get_the_views_french_messages(app, client, auth, clinic, factories, db):
    outsider = factories.AgentFactory(organisation=factories.OrganisationFactory())
    db.session.commit()
    auth.login(clinic.agent)
    cases = [
        (outsider.id, WEEK, "404 NOT FOUND", "introuvable"),
        (clinic.agent.id, {"start": "2026-03-30T00:00:00", "end": "2026-03-23T00:00:00"}, "400 BAD REQUEST",
         "La fin de la période doit être après son début."),
        (clinic.agent.id, {"start": "demain"}, "400 BAD REQUEST", ""),
    ]
    for agent_id, query, expected_status, message in cases:
        fast, status, headers, body = fast_and_flask(app, request_of(client, agent_id, query), agent_id)
        assert fast is None and status == expected_status
        assert headers["Content-Type"] == "application/json" and message in json.loads(body)["error"]


def test_a_deactivated_agent_or_a_role_taken_away_goes_to_flask(app, client, auth, clinic, db):
    auth.login(clinic.colleague)
    environ = request_of(client, clinic.agent.id)
    assert fast_and_flask(app, environ, clinic.agent.id)[0] is not None
    db.session.delete(clinic.colleague.roles[0])
    db.session.commit()
    fast, status, _, _ = fast_and_flask(app, environ, clinic.agent.id)
    assert fast is None and status == "404 NOT FOUND"
    other_browser = app.test_client()
    AuthActions(other_browser).login(clinic.agent)
    environ = request_of(other_browser, clinic.agent.id)
    assert fast_and_flask(app, environ, clinic.agent.id)[0] is not None
    clinic.agent.active = False
    db.session.commit()
    fast, status, _, _ = fast_and_flask(app, environ, clinic.agent.id)
    assert fast is None and not status.startswith("200")


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
        db.create_all()
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
