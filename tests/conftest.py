"""Fixtures: `app`, `db`, `client`, `auth` (performs a real login) and factories bound to the session.

The database is SQLite in memory unless TEST_DATABASE_URL points at a PostgreSQL server (make test runs both).

Real servers, for the tests that need them (markers `postgres`, `redis`, `browser`):
`postgres_url` (a database of its own holding the app's schema), `empty_postgres_url`, `postgres_server`,
`redis_url` (an emptied Redis database), `redis_server`, `chromium_executable`. They come from make test, or are
started here for the session; where they cannot be had the test is skipped loudly, and under CI=true it fails.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager

import pytest
from flask.testing import FlaskClient
from hypothesis import settings as hypothesis_settings

from sqlalchemy import create_engine, create_mock_engine, event

from lapins import create_app
from lapins.infra.extensions import db as _db
from tests import services

# No test decides by the wall clock: Hypothesis's 200 ms per example (a deadline a loaded machine misses) is off
# for every property test, unless one says otherwise.
hypothesis_settings.register_profile("lapins", deadline=None)
hypothesis_settings.load_profile("lapins")

# Loopback stand-ins of Twilio's API and of an SMTP server, and a real OpenID Connect provider, with their fixtures.
pytest_plugins = ["tests.fakes.twilio", "tests.fakes.brevo", "tests.fakes.smtp", "tests.fakes.oidc"]


@pytest.fixture(scope="session")
def app():
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=os.environ.get("TEST_DATABASE_URL", "sqlite://"),
                     WTF_CSRF_ENABLED=True, SERVER_NAME=None)
    with app.app_context():
        _db.drop_all()
        _db.create_all()
        yield app
        _db.session.remove()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A database of the test's own holding the app's schema, for a server or a worker started by the test: a SQLite
    file, then PostgreSQL. Each is a copy of one built once (`db.create_all()`), not a schema built per test."""
    if request.param == "sqlite":
        path = tmp_path / "lapins.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request, tmp_path):
    """An empty database of the test's own, for the tests that build the schema themselves (migrations)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lapins.sqlite3'}"
    return request.getfixturevalue("empty_postgres_url")


def create_schema(url: str) -> None:
    """What `db.create_all()` does in an app on `url` (one bind: the metadata on its engine), without an app."""
    import lapins.models  # noqa: F401  (every table is declared there)

    engine = create_engine(url)
    try:
        _db.metadata.create_all(engine)
    finally:
        engine.dispose()  # a connection left open to a PostgreSQL template would make copying it fail


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A SQLite file holding the app's schema, copied by `database_url` for each test."""
    path = tmp_path_factory.mktemp("schema") / "lapins.sqlite3"
    create_schema(f"sqlite:///{path}")
    return path


@pytest.fixture()
def db(app):
    yield _db
    _db.session.rollback()
    _db.session.expunge_all()
    with _db.engine.begin() as connection:
        for table in reversed(_db.metadata.sorted_tables):
            connection.execute(table.delete())
    _db.session.remove()


class FreshContextClient(FlaskClient):
    """Each request gets an application context of its own, as in production.

    The tests hold one context for their data; a request reusing it would share `g` (Flask-Login's cached user,
    Flask-WTF's CSRF token) with the previous request and hide real bugs.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture()
def client(app, db):
    app.test_client_class = FreshContextClient
    return app.test_client()


class AuthActions:
    """Logs in through the real login form, CSRF token included, as a person would."""

    def __init__(self, client):
        self.client = client

    def login(self, agent, password: str = "motdepasse-solide-2026"):
        page = self.client.get("/connexion")
        token = csrf_token_from(page.get_data(as_text=True))
        return self.client.post("/connexion", data={"email": agent.email, "password": password, "csrf_token": token})

    def logout(self):
        page = self.client.get("/usagers")
        return self.client.post("/deconnexion", data={"csrf_token": csrf_token_from(page.get_data(as_text=True))})


@contextmanager
def driver_statements(engine):
    """Every statement the database driver runs meanwhile, with whether it ran in autocommit mode: those SQLAlchemy
    sends, and on PostgreSQL those lapins.infra.database.DriverQuery sends to the driver itself (seen by a cursor class
    of psycopg's, set on the connections checked out meanwhile, of both engines)."""
    recorded: list[tuple[str, bool | None]] = []
    if engine.dialect.name != "postgresql":
        def listener(connection, _cursor, statement, *_):
            recorded.append((statement, None))

        event.listen(engine, "before_cursor_execute", listener)
        try:
            yield recorded
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return
    import psycopg

    class RecordingCursor(psycopg.Cursor):
        def execute(self, query, params=None, **kwargs):
            recorded.append((query if isinstance(query, str) else repr(query), self.connection.autocommit))
            return super().execute(query, params, **kwargs)

    def checked_out(dbapi_connection, _record, _proxy):
        dbapi_connection.cursor_factory = RecordingCursor

    def checked_in(dbapi_connection, _record):
        if dbapi_connection is not None:
            dbapi_connection.cursor_factory = psycopg.Cursor

    from lapins.infra.database import read_only_engine

    engines = (engine, read_only_engine())
    for each in engines:
        event.listen(each, "checkout", checked_out)
        event.listen(each, "checkin", checked_in)
    try:
        yield recorded
    finally:
        for each in engines:
            event.remove(each, "checkout", checked_out)
            event.remove(each, "checkin", checked_in)


def csrf_token_from(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.fixture()
def auth(client):
    return AuthActions(client)


@pytest.fixture()
def factories(db):
    from tests import factories

    return factories


# --- Real servers -------------------------------------------------------------------------------------------

_unavailable: dict[str, str] = {}


def _start_or_give_up(name: str, start):
    """Starts a server; without it the test is skipped, loudly, and under CI=true it fails."""
    try:
        return start()
    except services.ServiceUnavailable as error:
        reason = str(error)
    _unavailable[name] = reason.splitlines()[0]
    if services.strict():
        pytest.fail(f"{name} not available: {reason} (CI=true: a missing server is a failure)", pytrace=False)
    pytest.skip(f"{name} not available: {reason}")


@pytest.fixture(scope="session")
def postgres_server():
    """The PostgreSQL server: `.create(prefix) -> name`, `.url(name)`, `.drop(name)`, `.admin_url`."""
    given = os.environ.get(services.POSTGRES_ENV)
    if given:
        yield services.PostgresDatabases(given)
        return
    server = _start_or_give_up("PostgreSQL", lambda: services.PostgresServer().start())
    try:
        yield services.PostgresDatabases(server.admin_url)
    finally:
        server.stop()


def schema_fingerprint(dialect_url: str) -> str:
    """A digest of the DDL `db.create_all()` sends on that dialect: it names the template, so that a server kept
    between runs (make test's, mutmut's) never hands out a copy of a schema the models have since changed."""
    import lapins.models  # noqa: F401

    statements: list[str] = []
    engine = create_mock_engine(dialect_url,
                                lambda sql, *_, **__: statements.append(str(sql.compile(dialect=engine.dialect))))
    _db.metadata.create_all(engine, checkfirst=False)
    # Sorted: a table's indexes are a set, sent in an order that changes from one process to the next.
    return hashlib.sha256("\n".join(sorted(statements)).encode()).hexdigest()[:12]


@pytest.fixture(scope="session")
def postgres_template(postgres_server):
    """Name of the server's database holding the app's schema, built once per server, for `postgres_url` to copy."""
    return postgres_server.template(f"lapins_schema_{schema_fingerprint('postgresql+psycopg://')}", create_schema)


@pytest.fixture()
def postgres_url(postgres_server, postgres_template):
    """SQLAlchemy URL of a database for this test alone, holding the app's schema (a copy of the template: about half
    of what CREATE DATABASE then `create_all` cost), dropped afterwards."""
    name = postgres_server.create(template=postgres_template)
    yield postgres_server.url(name)
    postgres_server.drop(name)


@pytest.fixture()
def empty_postgres_url(postgres_server):
    """SQLAlchemy URL of an empty database for this test alone, for the tests that build the schema themselves
    (migrations, `flask db upgrade`), dropped afterwards."""
    name = postgres_server.create()
    yield postgres_server.url(name)
    postgres_server.drop(name)


@pytest.fixture(scope="session")
def redis_server():
    """The Redis server: `.url(db=0)` for each of its numbered databases."""
    given = os.environ.get(services.REDIS_ENV)
    if given:
        yield services.ExternalRedis(given)
        return
    server = _start_or_give_up("Redis", lambda: services.RedisServer().start())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def own_redis():
    """A Redis server of this test's own, which it may stop and start again (no persistence)."""
    server = _start_or_give_up("Redis", lambda: services.RedisServer().start())
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server):
    """URL of Redis database 0, emptied before the test."""
    import redis

    url = redis_server.url(0)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture(scope="session")
def chromium_executable():
    """Path of Debian's Chromium, for Playwright's `executable_path` (launch args: services.CHROMIUM_ARGS)."""
    return _start_or_give_up("Chromium", services.chromium_executable)


_FIXTURE_FOR_MARKER = {"postgres": "postgres_server", "redis": "redis_server", "browser": "chromium_executable"}


@pytest.fixture(autouse=True)
def _servers_for_markers(request):
    """A test marked postgres/redis/browser gets its server, or is skipped (failed under CI) without it."""
    for marker, fixture in _FIXTURE_FOR_MARKER.items():
        if request.node.get_closest_marker(marker):
            request.getfixturevalue(fixture)


def pytest_collection_modifyitems(config, items):
    # make test runs the tests marked `database` a second time with TEST_DATABASE_URL on PostgreSQL.
    for item in items:
        if "app" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)


def pytest_report_header(config):
    database = os.environ.get("TEST_DATABASE_URL") or "sqlite:// (in memory)"
    return [f"lapins test database: {database}" + ("   [CI=true: missing servers fail]" if services.strict() else "")]


def pytest_terminal_summary(terminalreporter):
    if not _unavailable:
        return
    terminalreporter.section("SERVERS NOT AVAILABLE: THEIR TESTS DID NOT RUN", sep="!", red=True, bold=True)
    for name, reason in _unavailable.items():
        terminalreporter.write_line(f"{name}: {reason}", red=True, bold=True)
    terminalreporter.write_line("make test installs them when run as root (apt-get); see docs/development.md.")
