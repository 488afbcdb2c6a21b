"""Pooled PostgreSQL connections: checked after a while unused instead of before every use (lapins.infra.database)."""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from lapins import create_app
from lapins.infra import database
from lapins.infra.extensions import db

pytestmark = pytest.mark.postgres


@pytest.fixture()
def postgres_app(empty_postgres_url):
    # Empty: these tests read no table but one, which builds the schema itself (a copy of the template costs more).
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=empty_postgres_url)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def backend_pid() -> int:
    """The PostgreSQL process serving the session's connection, handed back to the pool afterwards."""
    pid = db.session.scalar(text("SELECT pg_backend_pid()"))
    db.session.remove()
    return pid


def terminate(postgres_url: str, pid: int) -> None:
    """What a server restart or an idle-session timeout does to a pooled connection."""
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def counting_pings(monkeypatch) -> list:
    pings = []
    real_ping = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping", lambda connection: pings.append(1) or real_ping(connection))
    return pings


def test_a_connection_killed_while_it_sat_idle_is_replaced_before_a_request_uses_it(
        postgres_app, empty_postgres_url, monkeypatch):
    first = backend_pid()
    terminate(empty_postgres_url, first)
    monkeypatch.setattr(database, "IDLE_BEFORE_PING_SECONDS", 0)  # as if it had sat unused for a while
    second = backend_pid()  # no OperationalError: the dead connection was found out and replaced
    assert second != first


def test_a_connection_used_a_moment_ago_is_handed_out_without_a_ping(postgres_app, monkeypatch):
    pings = counting_pings(monkeypatch)
    pids = {backend_pid() for _ in range(5)}
    assert len(pids) == 1 and pings == []  # one pooled connection, reused five times, never pinged
    monkeypatch.setattr(database, "IDLE_BEFORE_PING_SECONDS", 0)
    backend_pid()
    assert pings == [1]


def test_the_read_only_engines_connections_stay_in_autocommit_and_a_dead_one_is_replaced(
        postgres_app, empty_postgres_url, monkeypatch):
    """DriverQuery's engine: its statements run without BEGIN and COMMIT, and a connection killed while idle is
    replaced before use, as for the main pool."""
    from lapins.models.light_agent import light_agent

    engine = database.read_only_engine()
    db.create_all()

    def read_only_pid() -> int:
        connection = engine.raw_connection()
        try:
            assert connection.dbapi_connection.autocommit is True
            cursor = connection.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]
        finally:
            connection.close()

    assert light_agent(1) is None  # through the read-only engine: no such agent, and no error
    first = read_only_pid()
    assert read_only_pid() == first
    terminate(empty_postgres_url, first)
    monkeypatch.setattr(database, "IDLE_BEFORE_PING_SECONDS", 0)
    assert read_only_pid() != first
    assert light_agent(1) is None
    engine.dispose()


def test_driver_records_read_what_sqlalchemy_reads(postgres_app):
    """DriverQuery.records, the events feed's reads: the values through their columns' types (an Enum member, an
    aware UTC datetime, whatever zone it was given in), a literal the statement binds itself, rows read by name;
    and the same rows as SQLAlchemy's when the session is inside a transaction."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from sqlalchemy import Integer, bindparam, cast, literal, select

    from lapins.models import Rdv, RdvStatus
    from lapins.models.types import UTCDateTime

    query = database.DriverQuery(select(
        cast(bindparam("at", type_=UTCDateTime), UTCDateTime).label("at"),
        cast(literal("noshow"), Rdv.__table__.c.status.type).label("status"),
        (literal(2) + bindparam("n", type_=Integer)).label("total"),
    ))
    paris = datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Paris"))  # the night clocks go forward
    [record] = query.records(at=paris, n=40)
    assert record.at == paris and record.at.tzinfo == timezone.utc and record.at.utcoffset() == timedelta(0)
    assert record.status is RdvStatus.NOSHOW
    assert record.total == 42
    db.session.execute(text("SELECT 1"))  # a transaction of the session: SQLAlchemy's own rows, the same values
    assert [tuple(row) for row in query.records(at=paris, n=40)] == [tuple(record)]
    db.session.rollback()


def test_driver_queries_are_planned_once_per_connection(postgres_app):
    """The read-only engine's connections keep one generic plan per prepared statement (database.plan_once),
    and stay in autocommit."""
    connection = database.read_only_engine().raw_connection()
    try:
        assert connection.dbapi_connection.autocommit is True
        cursor = connection.cursor()
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "force_generic_plan"
    finally:
        connection.close()
    assert db.session.scalar(text("SHOW plan_cache_mode")) == "auto"  # the main pool's are left as they were
