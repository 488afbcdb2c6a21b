"""Each process keeps the feed's signed-in agent until PostgreSQL tells of a change (lapins.change_notices).

The changes "made elsewhere" here are committed on a connection of their own, as a Celery worker, a CLI command or
another web machine would: this process hears of them only through PostgreSQL's notifications.
"""
from __future__ import annotations

import json
import time
from datetime import date

import psycopg
import pytest

from lapins import create_app
from lapins.change_notices import LISTENER_NAME, WATCHED_TABLES, GenerationCache, listener_for
from lapins.infra.extensions import db
from tests import factories
from tests.conftest import AuthActions, FreshContextClient, driver_statements
from tests.test_calendar import PARIS, Clinic, feed, local

pytestmark = pytest.mark.postgres

WEEK = ("2026-03-23", "2026-03-30")


def build_app(postgres_url: str, **settings):
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=postgres_url, **settings)
    app.test_client_class = FreshContextClient
    return app


@pytest.fixture()
def notices_app(postgres_url):
    app = build_app(postgres_url)
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture()
def clinic(notices_app):
    clinic = Clinic(factories)
    clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
    return clinic


def elsewhere(postgres_url: str, *statements: tuple[str, tuple]) -> None:
    """Statements committed together by another process."""
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        for statement, values in statements:
            connection.execute(statement, values)


def wait_for(condition, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"toujours pas au bout de {seconds} s : {what}")
        time.sleep(0.01)


def listening() -> object:
    listener = listener_for(db.engine)
    wait_for(lambda: listener.live, "l'écoute des changements")
    return listener


def week_feed(client, agent_id: int) -> tuple[object, list[tuple]]:
    """The week's feed, and the statements the driver ran to answer it."""
    with driver_statements(db.engine) as statements:
        response = feed(client, agent_id, *WEEK)
    return response, list(statements)


def titles(response) -> list[str]:
    return [event["title"] for event in json.loads(response.get_data()) if event["extendedProps"]["kind"] == "rdv"]


def test_the_signed_in_agent_is_read_once_then_kept_until_a_change_is_heard(notices_app, clinic, postgres_url):
    client = notices_app.test_client()
    AuthActions(client).login(clinic.agent)
    listener = listening()
    first, _ = week_feed(client, clinic.agent.id)
    again, statements = week_feed(client, clinic.agent.id)
    assert again.get_data() == first.get_data() and statements == []  # no round trip to PostgreSQL

    # Another process renames the motif, drawing a new agenda stamp as its ORM would.
    generation = listener.generation
    elsewhere(postgres_url, ("UPDATE motifs SET name = 'Pesée du mardi' WHERE id = %s", (clinic.motif.id,)),
              ("UPDATE territories SET agenda_stamp = 'ailleurs' WHERE id = %s",
               (clinic.organisation.territory_id,)))
    wait_for(lambda: listener.generation != generation, "la notification du changement")
    changed, statements = week_feed(client, clinic.agent.id)
    assert any("Pesée du mardi" in title for title in titles(changed))
    assert len(statements) > 0 and "agents" in statements[0][0]  # the agent, read again with the new stamp
    _, statements = week_feed(client, clinic.agent.id)
    assert statements == []


def test_a_change_committed_by_this_process_shows_at_the_next_request_without_waiting(notices_app, clinic):
    client = notices_app.test_client()
    AuthActions(client).login(clinic.agent)
    listening()
    week_feed(client, clinic.agent.id)
    clinic.motif.name = "Pesée du mardi"  # through the ORM: a new agenda stamp, committed here
    db.session.commit()
    changed, statements = week_feed(client, clinic.agent.id)  # at once: no waiting for the notification
    assert any("Pesée du mardi" in title for title in titles(changed))
    assert "agents" in statements[0][0]


def test_a_role_removed_or_an_account_deactivated_elsewhere_is_refused_at_the_next_request(notices_app, clinic,
                                                                                          postgres_url):
    secretary = notices_app.test_client()
    AuthActions(secretary).login(clinic.colleague)
    agent = notices_app.test_client()
    AuthActions(agent).login(clinic.agent)
    listener = listening()
    for client in (secretary, agent):
        assert week_feed(client, clinic.agent.id)[0].status_code == 200
        assert week_feed(client, clinic.agent.id)[1] == []  # kept

    generation = listener.generation
    elsewhere(postgres_url, ("DELETE FROM agent_roles WHERE agent_id = %s", (clinic.colleague.id,)))
    wait_for(lambda: listener.generation != generation, "la notification du rôle retiré")
    assert week_feed(secretary, clinic.agent.id)[0].status_code == 404  # no longer of the organisation

    generation = listener.generation
    elsewhere(postgres_url, ("UPDATE agents SET active = false WHERE id = %s", (clinic.agent.id,)))
    wait_for(lambda: listener.generation != generation, "la notification du compte désactivé")
    response, _ = week_feed(agent, clinic.agent.id)
    assert response.status_code != 200 and b"Claire" not in response.get_data()


def test_without_the_listener_every_request_reads_the_agent_and_a_change_made_meanwhile_shows(
        notices_app, clinic, postgres_url):
    client = notices_app.test_client()
    AuthActions(client).login(clinic.agent)
    listener = listening()
    week_feed(client, clinic.agent.id)
    assert week_feed(client, clinic.agent.id)[1] == []

    # The listener's connection is cut (a PostgreSQL restart, a firewall): nothing is kept meanwhile.
    admin_url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                               "AND datname = current_database()", (LISTENER_NAME,)).fetchall()
    assert killed == [(True,)]
    wait_for(lambda: not listener.live, "la fin de l'écoute")
    elsewhere(postgres_url, ("UPDATE motifs SET name = 'Pesée du mardi' WHERE id = %s", (clinic.motif.id,)),
              ("UPDATE territories SET agenda_stamp = 'coupure' WHERE id = %s",
               (clinic.organisation.territory_id,)))
    if not listener.live:  # it may already be back, having heard of nothing: it then forgot what it kept
        changed, statements = week_feed(client, clinic.agent.id)
        assert any("Pesée du mardi" in title for title in titles(changed))
        assert "agents" in statements[0][0]

    wait_for(lambda: listener.live, "la reprise de l'écoute")  # it reconnects by itself
    changed, statements = week_feed(client, clinic.agent.id)
    assert any("Pesée du mardi" in title for title in titles(changed))
    assert "agents" in statements[0][0]  # what was kept before the reconnection is not trusted
    assert week_feed(client, clinic.agent.id)[1] == []


def test_a_value_read_while_a_change_is_heard_is_not_kept(notices_app):
    listener = listening()
    cache = GenerationCache(listener)
    reads = []

    def read_during_a_change():
        reads.append(1)
        if len(reads) == 1:
            listener.changed()  # a notification heard while the rows were being read: they may be the old ones
        return len(reads)

    assert cache.get("agent", read_during_a_change) == 1
    assert cache.get("agent", read_during_a_change) == 2  # read again
    assert cache.get("agent", read_during_a_change) == 2  # kept this time
    listener.changed()
    assert cache.get("agent", read_during_a_change) == 3


def test_every_request_reads_the_agent_when_listening_is_switched_off(postgres_url, clinic_off):
    app, clinic = clinic_off
    client = app.test_client()
    AuthActions(client).login(clinic.agent)
    week_feed(client, clinic.agent.id)  # computed, then cached
    for _ in range(3):
        response, statements = week_feed(client, clinic.agent.id)
        assert response.status_code == 200 and len(statements) == 1 and "agents" in statements[0][0]


@pytest.fixture()
def clinic_off(postgres_url):
    """LISTEN_FOR_CHANGES=false, as behind a connection pooler in transaction mode."""
    app = build_app(postgres_url, LISTEN_FOR_CHANGES=False)
    with app.app_context():
        db.create_all()
        clinic = Clinic(factories)
        clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
        yield app, clinic
        db.session.remove()
        db.engine.dispose()


def test_the_tables_an_agent_is_read_from_notify_at_each_change(notices_app):
    from tests.test_migrations import notifying_tables

    assert notifying_tables() == set(WATCHED_TABLES)  # as the migrations make them (tests/test_migrations.py)
