"""Engine settings and transaction habits that depend on the database in use."""
from __future__ import annotations

import time
from collections import namedtuple
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flask import current_app
from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Connection, Engine

from lapins.infra.extensions import db

# A pooled connection unused for longer than this is checked before it is handed out (see ping_idle_connections).
IDLE_BEFORE_PING_SECONDS = 10


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        ping_idle_connections(engine)
        return

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        # Wait for the write lock instead of failing at once: web, worker and beat share the file.
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()


def ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection before use when it has been idle for a while, instead of before every use.

    SQLAlchemy's `pool_pre_ping` costs a round trip to PostgreSQL on every request. What it guards against, a
    connection closed behind the pool's back (a restarted server, a firewall or `idle_session_timeout` dropping idle
    connections), strikes connections that sat unused, not those a busy worker used a moment ago. A dead connection
    is replaced by a fresh one (the pool retries on DisconnectionError). Should a server restart fall within the last
    seconds of a connection's use, its next request fails once, and SQLAlchemy then drops the whole pool.
    """
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < IDLE_BEFORE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 — whatever failed, this connection is not to be used
            raise exc.DisconnectionError("connexion inutilisable après une période d'inactivité") from error


def read_only_connection() -> Connection:
    """The session's connection for a request that only reads, in autocommit mode on PostgreSQL when it is the first.

    Each statement then runs without BEGIN and COMMIT around it: two round trips fewer for a request that reads one
    row. Under PostgreSQL's READ COMMITTED, every statement of a transaction sees the data committed when it starts,
    so statements run in autocommit see what they would have seen inside one. A request on this connection must not
    write. SQLite begins a transaction only before a write: nothing to spare there.
    """
    session = db.session()
    if session.in_transaction() or db.engine.dialect.name != "postgresql":
        return session.connection()
    return session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


@contextmanager
def reading_connection() -> Iterator[Connection]:
    """A connection for a few statements that only read, with SQLAlchemy's rows: on PostgreSQL outside a transaction
    of the session, one of read_only_engine's (autocommit: no BEGIN, no COMMIT, no switch of the pooled connection's
    isolation level and back); else the session's, whose transaction then sees its own writes."""
    if db.engine.dialect.name != "postgresql" or session_in_transaction():
        yield db.session.connection()
        return
    with read_only_engine().connect() as connection:
        yield connection


def plan_once(engine: Engine) -> None:
    """Let PostgreSQL plan each of DriverQuery's prepared statements once per connection, not at every run.

    psycopg prepares a statement from its fifth run on a connection; PostgreSQL still plans it anew for each set of
    values until it judges a generic plan cheap enough, which it may never do. For the events feed's rdvs (six
    tables joined) planning took 0.5 ms and running 0.07: most of a week's cost on the database. These statements
    are lookups by id or by an agent's index range, whose best plan does not depend on the values.
    """
    @event.listens_for(engine, "connect")
    def _generic_plans(dbapi_connection, _record) -> None:
        dbapi_connection.execute("SET plan_cache_mode = force_generic_plan")
        if not dbapi_connection.autocommit:  # the engine switches it to autocommit after this event
            dbapi_connection.commit()


def end_read_only_transaction() -> None:
    """End a request that only read with COMMIT, where the end of the request would roll its transaction back.

    The database sees no difference, but psycopg forgets the statements it has prepared on a connection at every
    ROLLBACK, so PostgreSQL would parse and plan a hot path's queries again on every request. Call it once the
    request has read everything it needs: the objects it loaded are expired afterwards. A request that read only
    through DriverQuery has no transaction to end.
    """
    if session_in_transaction():
        db.session.commit()


def session_in_transaction() -> bool:
    """Whether this context's session has begun a transaction (without creating the session to find out)."""
    return db.session.registry.has() and db.session().in_transaction()


def read_only_engine() -> Engine:
    """A second engine on the application's PostgreSQL database, whose connections stay in autocommit: DriverQuery's.

    Switching a pooled connection to autocommit and back costs more than the query of the feed's signed-in agent
    itself takes in Python; these connections never leave autocommit, and only ever run DriverQuery's SELECTs. Each
    process opens them as it needs them (one for a single-threaded web worker), beside the main pool's.
    """
    engines = current_app.extensions.setdefault("lapins_read_only_engine", {})
    if "engine" not in engines:
        engine = create_engine(db.engine.url, isolation_level="AUTOCOMMIT",
                               **current_app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}))
        configure_engine(engine)
        plan_once(engine)
        engines["engine"] = engine
    return engines["engine"]


class DriverQuery:
    """A Core SELECT compiled once, run by the driver itself on a PostgreSQL connection in autocommit mode.

    For the statements of the hottest path (the signed-in agent of the calendar's events feed): SQLAlchemy's
    Connection and result machinery cost about half a millisecond a statement here, three times the round trip to
    PostgreSQL. The statement is still written in SQLAlchemy and compiled once. It only reads, in autocommit (no
    BEGIN nor COMMIT), which under READ COMMITTED sees what a transaction would (see read_only_connection), on the
    connections of read_only_engine.

    Rows are tuples in the order of the SELECT's columns, with the driver's types on PostgreSQL (an Enum comes back
    as its string): the caller converts. Inside a transaction of the session (it would see that transaction's own
    writes), and on SQLite (no round trip to spare, and the in-memory database of the tests has a single
    connection), the statement runs on the session's connection, through SQLAlchemy.
    """

    def __init__(self, statement) -> None:
        self.statement = statement
        self._sql: str | None = None  # compiled for PostgreSQL at first use: psycopg's named parameters, %(name)s
        self._typed: _TypedStatement | None = None  # for records(), also compiled at first use

    def rows(self, **values) -> list[tuple]:
        if db.engine.dialect.name != "postgresql" or session_in_transaction():
            return [tuple(row) for row in db.session.connection().execute(self.statement, values)]
        engine = read_only_engine()
        if self._sql is None:
            self._sql = self.statement.compile(dialect=engine.dialect).string
        return _fetch(engine, self._sql, values)

    def records(self, **values) -> Sequence[Any]:
        """The rows as SQLAlchemy's would read: each value through its column's type (an Enum member, an aware UTC
        datetime), readable by name (`row.starts_at`), the parameters through their own types. For a hot path that
        reads many rows: it costs a fraction of SQLAlchemy's per-statement work."""
        if db.engine.dialect.name != "postgresql" or session_in_transaction():
            return db.session.connection().execute(self.statement, values).all()
        engine = read_only_engine()
        if self._typed is None:
            self._typed = _TypedStatement(self.statement, engine.dialect)
        typed = self._typed
        rows = _fetch(engine, typed.sql, typed.parameters(values))
        record, processors = typed.record, typed.processors
        if not processors:
            return [record._make(row) for row in rows]
        records = []
        for row in rows:
            values_ = list(row)
            for index, process in processors:
                values_[index] = process(values_[index])
            records.append(record._make(values_))
        return records


class _TypedStatement:
    """A statement compiled for PostgreSQL once, with what SQLAlchemy would do to its parameters and values."""

    def __init__(self, statement, dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        # The values the statement binds itself (a literal in a condition), beside those the caller gives.
        self.defaults = {name: parameter.value for name, parameter in compiled.binds.items() if not parameter.required}
        self.binds = {name: process for name, parameter in compiled.binds.items()
                      if (process := parameter.type.bind_processor(dialect)) is not None}
        columns = list(statement.selected_columns)
        self.record = namedtuple("Record", [column.key for column in columns], rename=True)
        self.processors = [(index, process) for index, column in enumerate(columns)
                           if (process := column.type.result_processor(dialect, None)) is not None]

    def parameters(self, values: dict) -> dict:
        parameters = self.defaults | values
        for name, process in self.binds.items():
            if parameters.get(name) is not None:
                parameters[name] = process(parameters[name])
        return parameters


def _fetch(engine: Engine, sql: str, parameters: dict) -> list[tuple]:
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(sql, parameters)
        rows = cursor.fetchall()
        cursor.close()
    finally:
        connection.close()
    return rows
