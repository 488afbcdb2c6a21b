"""Engine settings and transaction habits that depend on the database in use."""
from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine

from lapins.extensions import db


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
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


def end_read_only_transaction() -> None:
    """End a request that only read with COMMIT, where the end of the request would roll its transaction back.

    The database sees no difference, but psycopg forgets the statements it has prepared on a connection at every
    ROLLBACK, so PostgreSQL would parse and plan a hot path's queries again on every request. Call it once the
    request has read everything it needs: the objects it loaded are expired afterwards.
    """
    db.session.commit()
