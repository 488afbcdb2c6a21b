"""Login attempts are limited per account tried and per client address, on the password, the second-factor code and
the reset-link forms; the counts live in Redis, shared by every worker; the limited agent gets a French DSFR page."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pyotp
import pytest
import time_machine

from lapins import create_app
from lapins.auth import second_factor
from lapins.auth.limits import TOO_MANY_CODES, TOO_MANY_LOGINS, TOO_MANY_RESETS
from lapins.infra.extensions import db
from lapins.models import Agent, Role
from tests import factories
from tests.conftest import FreshContextClient, csrf_token_from

PASSWORD = "motdepasse-solide-2026"
NOW = datetime(2026, 3, 23, 8, 0, 10, tzinfo=timezone.utc)


@pytest.fixture()
def make_app(tmp_path):
    """Builds apps with limiting on, each over a SQLite file (a second app may share the first one's file)."""
    built = []

    def make(storage_uri: str = "memory://", database: str = "lapins.sqlite3", **settings):
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / database}",
                         WTF_CSRF_ENABLED=True, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=storage_uri, **settings)
        app.test_client_class = FreshContextClient
        with app.app_context():
            db.create_all()
        built.append(app)
        return app

    yield make
    for app in built:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@contextmanager
def data_of(app):
    with app.app_context():
        yield
        db.session.remove()


def make_agent(app, role: Role = Role.AGENT) -> tuple[str, int]:
    with data_of(app):
        agent = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=role)
        return agent.email, agent.id


def log_in(client, email: str, password: str = PASSWORD, **headers):
    token = csrf_token_from(client.get("/connexion").get_data(as_text=True))
    return client.post("/connexion", data={"email": email, "password": password, "csrf_token": token},
                       headers=headers)


def statuses(client, email: str, attempts: int, **headers) -> list[int]:
    return [log_in(client, email, "pas-le-bon-mot-de-passe", **headers).status_code for _ in range(attempts)]


def test_the_sixth_attempt_in_a_minute_on_one_account_gets_the_login_page_with_a_429(make_app):
    app = make_app()
    email, _ = make_agent(app)
    client = app.test_client()
    with time_machine.travel(NOW, tick=False) as traveller:
        assert statuses(client, email, 5) == [422] * 5
        limited = log_in(client, email)  # even the right password, once the limit is reached
        page = limited.get_data(as_text=True)
        assert limited.status_code == 429
        assert TOO_MANY_LOGINS in page and "fr-alert--error" in page and "<h1>Connexion agent</h1>" in page
        assert 0 < int(limited.headers["Retry-After"]) <= 61
        assert client.get("/usagers").status_code == 302
        assert log_in(client, "une-autre@pmi.example.fr").status_code == 422  # another account is not held up
        traveller.shift(timedelta(seconds=61))
        assert log_in(client, email).status_code == 302


def test_counting_tells_no_one_whether_an_account_exists(make_app):
    app = make_app()
    email, _ = make_agent(app)
    client = app.test_client()
    for tried in (email, "personne@pmi.example.fr"):
        responses = [log_in(client, tried, "pas-le-bon-mot-de-passe") for _ in range(6)]
        assert [response.status_code for response in responses] == [422] * 5 + [429]
        assert TOO_MANY_LOGINS in responses[-1].get_data(as_text=True)


def test_twenty_attempts_an_hour_on_one_account_at_most(make_app):
    app = make_app()
    email, _ = make_agent(app)
    client = app.test_client()
    with time_machine.travel(NOW, tick=False) as traveller:
        for _ in range(4):
            assert statuses(client, email, 5) == [422] * 5
            traveller.shift(timedelta(minutes=2))
        assert log_in(client, email).status_code == 429
        traveller.shift(timedelta(minutes=55))
        assert log_in(client, email).status_code == 302


def test_one_address_trying_many_accounts_is_limited(make_app):
    app = make_app(LOGIN_LIMITS_PER_IP="4/minute")
    client = app.test_client()
    assert [log_in(client, f"essai{n}@pmi.example.fr").status_code for n in range(5)] == [422] * 4 + [429]


def test_behind_a_proxy_each_client_address_counts_on_its_own(make_app):
    app = make_app(LOGIN_LIMITS_PER_IP="2/minute", TRUSTED_PROXIES=1)
    client = app.test_client()
    office = {"X-Forwarded-For": "203.0.113.7"}
    other = {"X-Forwarded-For": "198.51.100.20"}
    assert [log_in(client, f"essai{n}@pmi.example.fr", **office).status_code for n in range(3)] == [422, 422, 429]
    assert log_in(client, "essai9@pmi.example.fr", **other).status_code == 422
    # A client cannot escape by sending its own header: the address nginx appends is the one counted.
    spoofed = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
    assert log_in(client, "essai10@pmi.example.fr", **spoofed).status_code == 429


def test_each_app_keeps_its_own_counts_in_memory(make_app):
    first, second = make_app(), make_app(database="second.sqlite3")
    assert statuses(first.test_client(), "agent@pmi.example.fr", 6)[-1] == 429
    assert statuses(second.test_client(), "agent@pmi.example.fr", 1) == [422]


@pytest.mark.redis
def test_two_workers_on_one_redis_share_the_counts(make_app, redis_url):
    import redis

    first = make_app(redis_url)
    second = make_app(redis_url)  # another process of the same installation: same Redis, same database
    email, _ = make_agent(first)
    assert statuses(first.test_client(), email, 3) == [422] * 3
    assert statuses(second.test_client(), email, 2) == [422] * 2
    limited = log_in(second.test_client(), email)
    assert limited.status_code == 429 and TOO_MANY_LOGINS in limited.get_data(as_text=True)
    assert log_in(first.test_client(), email).status_code == 429
    keys = [key.decode() for key in redis.Redis.from_url(redis_url).keys("*")]
    assert keys and all(key.startswith("LIMITS:LIMITER/lapins/") for key in keys)
    assert not any(email in key or "127.0.0.1" in key for key in keys)  # only HMACs of the e-mail and address


def test_when_redis_cannot_be_reached_logins_go_on_and_are_counted_in_memory(make_app):
    app = make_app("redis://127.0.0.1:1/0")  # nothing listens there
    email, _ = make_agent(app)
    client = app.test_client()
    assert log_in(client, email).status_code == 302
    client = app.test_client()
    assert statuses(client, email, 5)[-1] == 429


def test_reset_link_requests_are_limited_per_address_tried(make_app):
    app = make_app()
    email, _ = make_agent(app)
    client = app.test_client()

    def ask(tried: str):
        token = csrf_token_from(client.get("/mot-de-passe-oublie").get_data(as_text=True))
        return client.post("/mot-de-passe-oublie", data={"email": tried, "csrf_token": token})

    assert [ask(email).status_code for _ in range(3)] == [302] * 3
    limited = ask(email)
    assert limited.status_code == 429 and TOO_MANY_RESETS in limited.get_data(as_text=True)
    assert "<h1>Mot de passe oublié</h1>" in limited.get_data(as_text=True)
    assert [ask("personne@pmi.example.fr").status_code for _ in range(4)] == [302] * 3 + [429]


def enrol(app, agent_id: int) -> str:
    """Enrols the agent (two minutes before NOW, so that NOW's code is still unused): their TOTP secret."""
    before = NOW - timedelta(minutes=2)
    with time_machine.travel(before, tick=False), data_of(app):
        agent = db.session.get(Agent, agent_id)
        second_factor.start_enrolment(agent)
        secret = second_factor.pending_secret(agent)
        assert second_factor.confirm_enrolment(agent, pyotp.TOTP(secret).at(before), now=before)
    return secret


def test_second_factor_codes_are_limited(make_app):
    app = make_app()
    email, agent_id = make_agent(app, Role.ADMIN)
    secret = enrol(app, agent_id)
    client = app.test_client()
    with time_machine.travel(NOW, tick=False):
        assert log_in(client, email).status_code == 302
        right = pyotp.TOTP(secret).at(NOW)
        wrong = "000000" if right != "000000" else "111111"
        for _ in range(5):
            token = csrf_token_from(client.get("/connexion/code").get_data(as_text=True))
            assert client.post("/connexion/code", data={"code": wrong, "csrf_token": token}).status_code == 422
        token = csrf_token_from(client.get("/connexion/code").get_data(as_text=True))
        limited = client.post("/connexion/code", data={"code": right, "csrf_token": token})
        assert limited.status_code == 429 and TOO_MANY_LOGINS in limited.get_data(as_text=True)
        assert client.get("/usagers").status_code == 302


def test_codes_tried_to_disable_the_second_factor_are_limited(make_app):
    app = make_app()
    email, agent_id = make_agent(app, Role.ADMIN)
    secret = enrol(app, agent_id)
    client = app.test_client()
    with time_machine.travel(NOW, tick=False):
        log_in(client, email)
        token = csrf_token_from(client.get("/connexion/code").get_data(as_text=True))
        assert client.post("/connexion/code", data={"code": pyotp.TOTP(secret).at(NOW), "csrf_token": token}
                           ).status_code == 302
        token = csrf_token_from(client.get("/preferences").get_data(as_text=True))
        attempts = [client.post("/preferences/double-authentification/desactiver",
                                data={"disable-code": "abcd-efgh-jkmn", "disable-csrf_token": token})
                    for _ in range(6)]
    assert [response.status_code for response in attempts] == [422] * 5 + [429]
    assert TOO_MANY_CODES in attempts[-1].get_data(as_text=True)
    assert "fr-btn" in attempts[-1].get_data(as_text=True)  # a DSFR page, not a bare error


def test_the_test_suite_app_does_not_limit_unless_asked(client, db):
    assert statuses(client, "agent@pmi.example.fr", 8) == [422] * 8


# --- The REST API ---------------------------------------------------------------------------------------------------

def test_the_api_answers_429_in_french_beyond_a_tokens_limit_and_other_tokens_go_on(make_app):
    from lapins.auth import tokens
    from lapins.api.openapi import PREFIX, document

    app = make_app(API_LIMITS_PER_TOKEN="3/minute", API_LIMITS_PER_IP="100/minute")
    with data_of(app):
        organisation = factories.OrganisationFactory()
        first, second = (factories.AgentFactory(organisation=organisation) for _ in range(2))
        headers = [{"Authorization": f"Bearer {tokens.create(agent, 'Logiciel')[1]}"} for agent in (first, second)]
    client = app.test_client()
    with time_machine.travel(NOW, tick=False):
        assert [client.get(f"{PREFIX}/motifs", headers=headers[0]).status_code for _ in range(3)] == [200] * 3
        limited = client.get(f"{PREFIX}/lieux", headers=headers[0])  # every route counts against the same limit
        assert limited.status_code == 429 and limited.json["error"] == "too_many_requests"
        assert "Trop de requêtes" in limited.json["message"] and 1 <= int(limited.headers["Retry-After"]) <= 61
        assert client.get(f"{PREFIX}/motifs", headers=headers[1]).status_code == 200  # another token: its own count
    with time_machine.travel(NOW + timedelta(minutes=1, seconds=1), tick=False):
        assert client.get(f"{PREFIX}/motifs", headers=headers[0]).status_code == 200
    with app.app_context():
        assert all("429" in operation["responses"] for path in document()["paths"].values()
                   for operation in path.values())


def test_made_up_tokens_are_counted_per_client_address(make_app):
    from lapins.api.openapi import PREFIX

    app = make_app(API_LIMITS_PER_TOKEN="100/minute", API_LIMITS_PER_IP="5/minute")
    client = app.test_client()
    with time_machine.travel(NOW, tick=False):
        answers = [client.get(f"{PREFIX}/motifs", headers={"Authorization": f"Bearer lap_invente{n}"}).status_code
                   for n in range(6)]
    assert answers == [401] * 5 + [429]
