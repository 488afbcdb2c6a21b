"""Each web process hears from PostgreSQL when the signed-in agents' rows change, and keeps them meanwhile.

The calendar's events feed needs, of the signed-in agent, their roles, organisations and territories with the
territory's agenda stamp (lapins.light_agent). Reading them on every request was the feed's one round trip to
PostgreSQL, and under load its main cost. Instead, every statement that changes one of those tables (WATCHED_TABLES:
an agent deactivated, a role removed, an rdv moved, which draws a new agenda stamp in `territories`) sends a
notification on the CHANNEL, from a trigger, when its transaction commits. Each process listens on a connection of
its own, in a thread (ChangeListener), and every notification it hears draws a new generation: what was cached under
an older one (GenerationCache) is read again at its next use.

So a change shows at the next request:
- at once in the process that committed it (a commit on its engine draws a new generation before and after);
- in the other processes and on the other web machines once PostgreSQL's notification has reached them, about a
  millisecond after the commit, before the browser's next request in practice.

When the listener is not listening (not yet connected, its connection lost, or silent for longer than STALE_AFTER_S),
nothing is cached: every request reads the rows again, as without it. Its reconnection draws a new generation, since
notifications may have been missed meanwhile. SQLite (one process in development) and LISTEN_FOR_CHANGES=false (a
connection pooler in transaction mode, which cannot LISTEN) keep that per-request reading.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import DDL, event, make_url
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

CHANNEL = "lapins_agents"
# The tables lapins.light_agent reads: a LightAgent is cached until one of them changes.
WATCHED_TABLES = ("agents", "agent_roles", "organisations", "territories", "territory_admins")
NOTIFY_FUNCTION = "lapins_notify_agents"
HEARTBEAT_S = 5.0  # the listener checks its connection after this long without notification
STALE_AFTER_S = 3 * HEARTBEAT_S  # a listener not heard from for this long is not trusted
RECONNECT_MAX_S = 30.0
LISTENER_NAME = "lapins-change-listener"  # its connection's application_name, in pg_stat_activity
CACHE_MAX_ENTRIES = 4096  # then emptied: ids come from URLs, and made-up ones must not grow a process


# --- The notifications, sent by PostgreSQL itself ------------------------------------------------------------------

def notify_statements() -> list[str]:
    """The function and the triggers that notify CHANNEL at every change of WATCHED_TABLES (migration 5e6f70819203
    creates them, and so does create_all for the tests). Once per statement: a transaction's notifications, all
    alike, reach the listeners as one, at commit."""
    statements = [f"""CREATE OR REPLACE FUNCTION {NOTIFY_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END
$$"""]
    for table in WATCHED_TABLES:
        statements += [f"DROP TRIGGER IF EXISTS {NOTIFY_FUNCTION} ON {table}",
                       f"CREATE TRIGGER {NOTIFY_FUNCTION} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {NOTIFY_FUNCTION}()"]
    return statements


def create_triggers_with_tables(metadata) -> None:
    """create_all makes the triggers too, on PostgreSQL (the tests build their schema so)."""
    for statement in notify_statements():
        event.listen(metadata, "after_create", DDL(statement).execute_if(dialect="postgresql"))


# --- The listener, one per process and database --------------------------------------------------------------------

class ChangeListener:
    """A thread LISTENing on CHANNEL on a connection of its own; `generation` changes at every notification."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect  # a new psycopg connection, in autocommit
        self._counter = itertools.count(1)
        self.generation = next(self._counter)
        self._listening = False
        self._heard_at = 0.0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lapins-change-listener", daemon=True)
        self._caches: dict[str, GenerationCache] = {}

    def start(self) -> ChangeListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        """The thread ends at the end of its current wait (HEARTBEAT_S at most), closing its connection."""
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def live(self) -> bool:
        """Whether every change committed until a moment ago has drawn a new generation here."""
        return self._listening and time.monotonic() - self._heard_at < STALE_AFTER_S

    def changed(self) -> None:
        """Something may have changed: what was cached is read again."""
        # From any thread: next() gives each caller a number of its own, and caches empty at any change of number.
        self.generation = next(self._counter)

    def cache(self, name: str) -> GenerationCache:
        if name not in self._caches:
            self._caches.setdefault(name, GenerationCache(self))
        return self._caches[name]

    def _run(self) -> None:
        delay = 1.0
        while not self._stopped.is_set():
            try:
                self._listen()
                delay = 1.0
            except Exception as error:  # noqa: BLE001 — any failure: stop trusting the cache, then try again
                if self._stopped.is_set():
                    break
                log.warning("écoute des changements d'agents interrompue (%s) : nouvel essai dans %.0f s ; "
                            "en attendant, chaque requête relit l'agent", type(error).__name__, delay)
            finally:
                self._listening = False
                self.changed()
            self._stopped.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _listen(self) -> None:
        with self._connect() as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            # Listening from now on: what was read before may have missed a notification.
            self.changed()
            self._heard_at, self._listening = time.monotonic(), True
            while not self._stopped.is_set():
                for _ in connection.notifies(timeout=HEARTBEAT_S):
                    self.changed()
                    self._heard_at = time.monotonic()
                connection.execute("SELECT 1")  # the connection still answers: nothing was missed
                self._heard_at = time.monotonic()


class GenerationCache:
    """Values kept while the listener's generation stays the same; nothing kept while it is not live."""

    def __init__(self, listener: ChangeListener) -> None:
        self.listener = listener
        self._generation = listener.generation
        self._values: dict[Hashable, Any] = {}

    def get(self, key: Hashable, read: Callable[[], Any]) -> Any:
        if not self.listener.live:
            return read()
        generation = self.listener.generation
        if self._generation != generation:
            self._values = {}
            self._generation = generation
        # Filed under the generation taken before the read: what a change heard during it made stale is dropped
        # with that generation, at the next get.
        values = self._values
        if key in values:
            return values[key]
        value = values[key] = read()
        if len(values) > CACHE_MAX_ENTRIES:
            values.clear()
        return value


# One listener per process (a forked worker starts its own) and database.
_listeners: dict[tuple[int, str], ChangeListener] = {}
_lock = threading.Lock()


def _key(engine: Engine) -> tuple[int, str]:
    return os.getpid(), engine.url.render_as_string(hide_password=False)


def listener_for(engine: Engine) -> ChangeListener:
    """This process's listener on the engine's PostgreSQL database, started at first use."""
    key = _key(engine)
    listener = _listeners.get(key)
    if listener is None:
        with _lock:
            listener = _listeners.get(key)
            if listener is None:
                args, kwargs = engine.dialect.create_connect_args(engine.url)

                # A connection that stops answering is given up within seconds, not TCP's quarter of an hour.
                kwargs = {"application_name": LISTENER_NAME, "connect_timeout": 10, "keepalives": 1,
                          "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                          "tcp_user_timeout": 20_000, **kwargs, "autocommit": True}

                def connect():
                    import psycopg

                    return psycopg.connect(*args, **kwargs)

                listener = _listeners[key] = ChangeListener(connect).start()
    return listener


def note_local_commits(engine: Engine) -> None:
    """A commit that wrote, on this engine, draws a new generation for the listener of its database in this
    process, before and after it reaches the database: this process sees its own changes at once, without waiting
    to hear of them. (A statement other than a SELECT counts as a write.)"""

    def changed() -> None:
        listener = _listeners.get(_key(engine))
        if listener is not None:
            listener.changed()

    @event.listens_for(engine, "before_cursor_execute")
    def _noted(connection, _cursor, statement, *_args) -> None:
        if not statement.lstrip()[:6].upper().startswith("SELECT"):
            connection.info["lapins_wrote"] = True

    @event.listens_for(engine, "commit")
    def _before_commit(connection) -> None:
        if connection.info.pop("lapins_wrote", False):
            connection.info["lapins_committed"] = True
            changed()

    @event.listens_for(engine, "rollback")
    def _rolled_back(connection) -> None:
        connection.info.pop("lapins_wrote", None)

    @event.listens_for(engine, "checkin")
    def _after_commit(_dbapi_connection, record) -> None:
        record.info.pop("lapins_wrote", None)
        if record.info.pop("lapins_committed", False):
            changed()


def stop_listeners(database_url: str) -> None:
    """Stop this process's listeners on that database (before it is dropped); another starts at the next use."""
    database = make_url(database_url).database
    with _lock:
        for key in [key for key in _listeners if key[0] == os.getpid() and make_url(key[1]).database == database]:
            _listeners.pop(key).stop()
