"""A new département onboards with one command; agents choose their password from an invitation or a reset link."""
from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.models import Agent, Organisation, Role, Territory
from tests.conftest import csrf_token_from

STRONG = "cerf-volant vert sous la pluie"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def create(app, *args):
    return app.test_cli_runner().invoke(args=["territory", "create", *args])


NORD = ["--number", "59", "--name", "Nord", "--timezone", "Europe/Paris", "--admin-email", "Claire.Martin@lenord.fr"]


def link_path(text: str, kind: str = "invitation") -> str:
    return re.search(rf"https?://[^/\s]+(/{kind}/[\w.-]+)", text).group(1)


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def choose(client, path: str, password: str, confirm: str | None = None):
    token = csrf_token_from(client.get(path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, "password": password,
                                   "confirm": password if confirm is None else confirm})


def test_territory_create_makes_the_departement_its_service_and_an_invited_admin(app, db, client, auth,
                                                                                 smtp_app, smtp_server):
    result = create(app, *NORD)
    assert result.exit_code == 0, result.output
    assert "Département 59 — Nord créé (Europe/Paris), service « PMI Nord »" in result.output
    territory = db.session.scalar(select(Territory).where(Territory.number == "59"))
    admin = db.session.scalar(select(Agent).where(Agent.email == "claire.martin@lenord.fr"))
    assert territory.timezone == "Europe/Paris" and admin.password_hash is None
    assert admin.role_in(territory.organisations[0].id) == Role.ADMIN
    assert (admin.first_name, admin.last_name) == ("Claire", "Martin")

    (email,) = smtp_server.messages
    assert email["To"] == "claire.martin@lenord.fr" and "choisissez votre mot de passe" in email["Subject"]
    path = link_path(email.get_body(("plain",)).get_content())
    assert path == link_path(result.output)

    assert choose(client, path, STRONG).status_code == 302
    assert auth.login(admin, STRONG).status_code == 302
    assert client.get("/usagers").status_code == 200


@pytest.mark.parametrize("args, message", [
    (["--number", "100"], "n'est pas un numéro de département"),
    (["--timezone", "Europe/Lille"], "n'est pas un fuseau horaire IANA"),
    (["--admin-email", "claire.martin"], "n'est pas une adresse électronique valide"),
    (["--name", "   "], "Le nom du département est obligatoire"),
])
def test_territory_create_refuses_bad_input_in_french_and_stores_nothing(app, db, args, message):
    arguments = list(NORD)
    for key, value in zip(args[::2], args[1::2]):
        arguments[arguments.index(key) + 1] = value
    result = create(app, *arguments)
    assert result.exit_code != 0 and message in result.output
    assert db.session.scalar(select(func.count(Territory.id))) == 0
    assert db.session.scalar(select(func.count(Agent.id))) == 0


def test_a_departement_or_an_admin_email_cannot_be_created_twice(app, db, factories):
    assert create(app, *NORD).exit_code == 0
    again = create(app, *NORD)
    assert again.exit_code != 0 and "Le département 59 existe déjà" in again.output
    other = ["--number", "974", "--name", "La Réunion", "--timezone", "Indian/Reunion",
             "--admin-email", "claire.martin@lenord.fr"]
    taken = create(app, *other)
    assert taken.exit_code != 0 and "Un agent a déjà l'adresse" in taken.output
    assert db.session.scalar(select(func.count(Organisation.id))) == 1


@pytest.mark.parametrize("password, message", [
    ("court", "au moins 12 caractères"),
    ("azertyuiop123", "trop facile à deviner"),
    ("motdepasse2026", "trop facile à deviner"),
    ("claire.martin59", "trop facile à deviner"),
    ("aaaaaaaaaaaaaaaa", "trop facile à deviner"),
])
def test_weak_passwords_are_refused_and_the_link_still_works(app, db, client, password, message):
    path = link_path(create(app, *NORD).output)
    admin = db.session.scalar(select(Agent))
    refused = choose(client, path, password)
    assert refused.status_code == 422 and message in text(refused)
    db.session.refresh(admin)
    assert admin.password_hash is None
    assert choose(client, path, STRONG, confirm=STRONG + "!").status_code == 422
    assert choose(client, path, STRONG).status_code == 302


def test_a_link_serves_once(app, db, client):
    path = link_path(create(app, *NORD).output)
    assert choose(client, path, STRONG).status_code == 302
    again = client.get(path)
    assert again.status_code == 410 and "déjà servi" in text(again)


def test_a_forged_or_expired_link_opens_nothing(app, db, client, frozen_time):
    path = link_path(create(app, *NORD).output)
    forged = client.get(path[:-3] + ("abc" if not path.endswith("abc") else "xyz"))
    assert forged.status_code == 410 and "n'est pas valide" in text(forged)
    assert client.get(path.replace("/invitation/", "/mot-de-passe/")).status_code == 410  # one purpose per link
    frozen_time.shift(timedelta(days=8))
    expired = client.get(path)
    assert expired.status_code == 410 and "a expiré" in text(expired)


def test_forgot_password_answers_the_same_for_anyone_and_mails_only_real_agents(app, db, client, auth, factories,
                                                                               smtp_app, smtp_server, frozen_time):
    agent = factories.AgentFactory(organisation=factories.OrganisationFactory(), email="nadia.benali@pmi.fr")

    def ask(email: str) -> str:
        token = csrf_token_from(client.get("/mot-de-passe-oublie").get_data(as_text=True))
        response = client.post("/mot-de-passe-oublie", data={"csrf_token": token, "email": email})
        assert response.status_code == 302
        return client.get(response.location).get_data(as_text=True)

    unknown, known = ask("personne@pmi.fr"), ask("Nadia.Benali@pmi.fr")
    assert "Si un compte actif correspond" in unknown and unknown == known  # nothing tells who has an account
    (email,) = smtp_server.messages  # none for the unknown address
    assert email["To"] == "nadia.benali@pmi.fr"
    path = link_path(email.get_body(("plain",)).get_content(), "mot-de-passe")
    frozen_time.shift(timedelta(minutes=61))
    assert client.get(path).status_code == 410
    frozen_time.shift(timedelta(minutes=-30))
    assert choose(client, path, STRONG).status_code == 302
    assert auth.login(agent, STRONG).status_code == 302


RESET_TASK = "lapins.auth.account_email"


def test_a_reset_does_the_same_work_for_an_address_with_or_without_an_account(app, db, client, factories,
                                                                              monkeypatch):
    """The timing attack, at its root: the request runs the same statements and queues the same task whether the
    address has an account, has none, or has a deactivated one; the task for no one then finds no one."""
    from lapins.auth.accounts import send_account_email_task
    from tests.conftest import driver_statements

    agent = factories.AgentFactory(organisation=factories.OrganisationFactory(), email="nadia.benali@pmi.fr")
    factories.AgentFactory(email="parti@pmi.fr", active=False)
    queued = []
    task = app.extensions["celery"].tasks[RESET_TASK]
    monkeypatch.setattr(task, "delay", lambda *args: queued.append((task.name, args)))  # queued, not run
    token = csrf_token_from(client.get("/mot-de-passe-oublie").get_data(as_text=True))

    def ask(email: str):
        with driver_statements(db.engine) as statements:
            response = client.post("/mot-de-passe-oublie", data={"csrf_token": token, "email": email})
        return response.status_code, response.location, [statement for statement, _ in statements]

    known, unknown, inactive = ask("Nadia.Benali@pmi.fr"), ask("personne@pmi.fr"), ask("parti@pmi.fr")
    assert known == unknown == inactive and known[0] == 302
    assert queued == [(RESET_TASK, (agent.id, "reset")), (RESET_TASK, (None, "reset")), (RESET_TASK, (None, "reset"))]
    assert send_account_email_task.apply(args=(None, "reset")).result is False  # the worker finds no one


@pytest.mark.redis
def test_a_reset_takes_as_long_for_an_address_with_or_without_an_account(app, db, factories, redis_url, monkeypatch):
    """The attack as measured: about 5.5 ms for a known address against 1.9 ms for an unknown one, because only a
    real account's task was queued. Here the task goes to a real broker (Redis), as in production.

    What is asserted: the same messages reach the broker (exactly one per request), and the medians of many tries,
    known and unknown interleaved so that the machine's load falls on both alike, are within noise: a lenient
    bound, as the machine may be busy; the test above asserts the same work exactly."""
    import statistics
    import time

    import redis

    from lapins.infra.celery_app import celery_init_app
    from lapins.tasks import beat_schedule

    factories.AgentFactory(organisation=factories.OrganisationFactory(), email="nadia.benali@pmi.fr")
    eager = app.extensions["celery"]
    monkeypatch.setitem(app.config, "CELERY_BROKER_URL", redis_url)
    monkeypatch.setitem(app.config, "CELERY_TASK_ALWAYS_EAGER", False)
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", False)  # a script's requests, each without a cookie
    broker = redis.Redis.from_url(redis_url)
    celery = celery_init_app(app, beat_schedule(app.config))
    client = app.test_client(use_cookies=False)
    try:
        def ask(email: str) -> int:
            started = time.perf_counter_ns()
            response = client.post("/mot-de-passe-oublie", data={"email": email})
            elapsed = time.perf_counter_ns() - started
            assert response.status_code == 302
            return elapsed

        before = broker.llen("celery")
        ask("Nadia.Benali@pmi.fr")
        assert broker.llen("celery") == before + 1
        ask("personne@pmi.fr")
        assert broker.llen("celery") == before + 2
        tasks = [json.loads(message)["headers"]["task"] for message in broker.lrange("celery", 0, -1)]
        assert tasks == [RESET_TASK, RESET_TASK]

        for _ in range(20):  # warm-up: caches, the broker's connection pool, the database's plans
            ask("Nadia.Benali@pmi.fr"), ask("personne@pmi.fr")
        times: dict[str, list[int]] = {"known": [], "unknown": []}
        for round_ in range(150):
            order = ["known", "unknown"] if round_ % 2 else ["unknown", "known"]
            for kind in order:
                times[kind].append(ask("Nadia.Benali@pmi.fr" if kind == "known" else "personne@pmi.fr"))
        assert broker.llen("celery") == before + 2 + 40 + 300
    finally:
        app.extensions["celery"] = eager
        eager.set_default()
        celery.close()
        broker.close()
    known, unknown = statistics.median(times["known"]), statistics.median(times["unknown"])
    print(f"median known {known / 1e6:.2f} ms, unknown {unknown / 1e6:.2f} ms")
    assert max(known, unknown) / min(known, unknown) < 1.3, (known, unknown)  # it was about 2.9


def test_the_login_page_offers_the_forgotten_password_link(client, db):
    assert "/mot-de-passe-oublie" in client.get("/connexion").get_data(as_text=True)


def configure(app, *args):
    return app.test_cli_runner().invoke(args=["territory", "configure", *args])


def test_territory_configure_sets_the_sms_settings(app, db):
    create(app, *NORD)
    result = configure(app, "59", "--reminder-offsets", "24, 72", "--sms-sender", "07 57 00 00 01", "--replies",
                       "--quiet-hours", "19h30-8h")
    assert result.exit_code == 0, result.output
    assert ("rappels 72,24 h avant, expéditeur +33757000001, réponses acceptées, pas de SMS de 19:30 à 08:00"
            in result.output)
    territory = db.session.scalar(select(Territory))
    db.session.refresh(territory)
    assert territory.reminder_offsets == "72,24" and territory.sms_takes_replies


@pytest.mark.parametrize("args, message", [
    (["--reminder-offsets", "demain"], "nombres d'heures"),
    (["--sms-sender", "PMI-du-Nord-59"], "1 à 11 lettres"),
    (["--sms-sender", "01 41 37 10 00"], "n'est pas un numéro de mobile"),
    (["--sms-sender", "PMI59", "--replies"], "alphanumérique ne peut pas recevoir de réponses"),
    (["--messaging-service-sid", "MG123"], "MG suivi de 32"),
    (["--quiet-hours", "le soir"], "« 20h-8h »"),
    (["--quiet-hours", "25h-8h"], "« 20h-8h »"),
])
def test_territory_configure_refuses_bad_settings_and_changes_nothing(app, db, args, message):
    create(app, *NORD)
    result = configure(app, "59", *args)
    assert result.exit_code != 0 and message in result.output
    db.session.expire_all()
    territory = db.session.scalar(select(Territory))
    assert (territory.reminder_offsets, territory.sms_sender, territory.sms_takes_replies) == ("72,24", None, False)


def test_territory_configure_names_an_unknown_departement(app, db):
    result = configure(app, "59", "--reminder-offsets", "48")
    assert result.exit_code != 0 and "Aucun département 59" in result.output
