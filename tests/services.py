"""Throwaway PostgreSQL and Redis servers on 127.0.0.1, for the tests and the benchmarks.

Used three ways:
- by `make test` (scripts/run_tests.py), which starts them once for both pytest passes;
- by the fixtures in tests/conftest.py, which start their own when pytest runs alone;
- as a command, `python -m tests.services --postgres-db VAR --redis VAR -- CMD...`, which runs CMD with the
  servers' URLs in the environment (`make bench`).

Each server lives in a temporary directory, listens on a free port of 127.0.0.1, keeps nothing on disk that
matters (no fsync, no persistence) and is removed on stop. PostgreSQL refuses to run as root, so as root the
cluster belongs to the `postgres` system user that Debian's package creates.
"""
from __future__ import annotations

import argparse
import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

CHROMIUM_PATH = "/usr/bin/chromium"
# Flags for Debian's Chromium here: root needs --no-sandbox, and the closed network makes background
# connections fail loudly, so they are switched off.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]

# Set by scripts/run_tests.py so that pytest uses the servers it started instead of starting its own.
POSTGRES_ENV = "LAPINS_TEST_POSTGRES_URL"
REDIS_ENV = "LAPINS_TEST_REDIS_URL"

START_TIMEOUT_SECONDS = 30


class ServiceUnavailable(RuntimeError):
    """The server cannot be had on this machine; the message says what to install."""


def strict() -> bool:
    """Under CI a missing server is a failure, never a skip."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, what: str, timeout: float = START_TIMEOUT_SECONDS, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise ServiceUnavailable(f"{what} did not start within {timeout:.0f} s\n{tail}")


def dying_with_this_process(command: list[str], signal_name: str = "TERM") -> list[str]:
    """The command, made to receive SIG`signal_name` when this process dies, even by SIGKILL, so that a killed
    test run leaves no server behind (util-linux's setpriv; without it, only the normal teardown stops it)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, f"--pdeathsig={signal_name}", "--", *command] if setpriv else command


def chromium_executable() -> str:
    if not os.access(CHROMIUM_PATH, os.X_OK):
        raise ServiceUnavailable(f"Chromium not found at {CHROMIUM_PATH} (Debian package: chromium)")
    return CHROMIUM_PATH


def stop_process(process: subprocess.Popen | None, signal_number: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Stops a server we started (its own session: the signal goes to its whole process group)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal_number)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass  # it ended on its own meanwhile
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def remove_abandoned_directories(prefix: str, pid_file: str, min_age_seconds: float = 600) -> None:
    """Data left by a run that was killed before it could clean up (its server died with it)."""
    now = time.time()
    for directory in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            if now - directory.stat().st_mtime < min_age_seconds or _alive(directory / pid_file):
                continue
        except OSError:
            continue
        shutil.rmtree(directory, ignore_errors=True)


def _alive(pid_file: Path) -> bool:
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
        return True
    except ProcessLookupError:
        return False
    except (OSError, ValueError, IndexError):
        return True  # cannot tell: leave it


# --- PostgreSQL ---------------------------------------------------------------------------------------------

def postgres_bin_dir() -> Path:
    on_path = shutil.which("initdb")
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    for initdb in ([os.path.realpath(on_path)] if on_path else []) + candidates[::-1]:
        if (Path(initdb).parent / "postgres").exists():
            return Path(initdb).parent
    raise ServiceUnavailable("PostgreSQL server not found: no initdb (Debian package: postgresql)")


def sqlalchemy_postgres_url(host: str, port: int, user: str, database: str) -> str:
    return f"postgresql+psycopg://{user}@{host}:{port}/{database}"


class PostgresServer:
    """A PostgreSQL cluster created for one run; `url(name)` points at one of its databases."""

    user = "postgres"

    def __init__(self, preload: tuple[str, ...] = ()) -> None:
        self.bin_dir = postgres_bin_dir()
        self.preload = preload  # shared_preload_libraries, e.g. pg_stat_statements for make bench
        self.port = free_port()
        self.host = "127.0.0.1"
        self.directory: Path | None = None
        self.process: subprocess.Popen | None = None
        self._run_as = self._system_user() if os.geteuid() == 0 else None

    @staticmethod
    def _system_user() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceUnavailable("running as root and no 'postgres' system user to run PostgreSQL") from None

    def start(self) -> PostgresServer:
        remove_abandoned_directories("lapins-postgres-", "data/postmaster.pid")
        self.directory = Path(tempfile.mkdtemp(prefix="lapins-postgres-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self._run_as is not None:
            os.chown(self.directory, self._run_as.pw_uid, self._run_as.pw_gid)
        data = self.directory / "data"
        done = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"], capture_output=True, text=True, check=False, **self._as_owner())
        if done.returncode != 0:
            raise ServiceUnavailable(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        self._run()

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server as an administrator's restart does (fast shutdown: every client is disconnected), stay
        down `down_seconds`, start it again on the same data and port (benchmarks of faults)."""
        stop_process(self.process, signal.SIGINT)
        time.sleep(down_seconds)
        self._run()

    def _run(self) -> None:
        data = self.directory / "data"
        log = self.directory / "server.log"
        # The postmaster runs in the foreground, as our child: SIGQUIT (immediate shutdown) when we die.
        with log.open("a") as output:
            self.process = subprocess.Popen(
                dying_with_this_process(
                    [str(self.bin_dir / "postgres"), "-D", str(data), "-p", str(self.port),
                     "-c", f"listen_addresses={self.host}", "-c", f"unix_socket_directories={self.directory}",
                     *(("-c", f"shared_preload_libraries={','.join(self.preload)}") if self.preload else ()),
                     "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                    "QUIT"),
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                **self._as_owner(),
            )
        databases = PostgresDatabases(self.admin_url)
        wait_for(lambda: self.process.poll() is None and databases.is_up(), "PostgreSQL", log=log)

    def _as_owner(self) -> dict:
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        if self._run_as is None:
            return {"cwd": self.directory, "env": env}
        return {"cwd": self.directory, "env": env, "user": self._run_as.pw_uid, "group": self._run_as.pw_gid,
                "extra_groups": []}

    def stop(self) -> None:
        stop_process(self.process, signal.SIGQUIT)
        self.process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    @property
    def admin_url(self) -> str:
        return sqlalchemy_postgres_url(self.host, self.port, self.user, "postgres")


class PostgresDatabases:
    """Creates and drops databases on a running server, known only by its URL (ours or make test's)."""

    def __init__(self, admin_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.admin_url = make_url(admin_url)

    def _connect(self):
        import psycopg

        url = self.admin_url
        return psycopg.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                               dbname=url.database, autocommit=True, connect_timeout=10)

    def url(self, name: str) -> str:
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def create(self, prefix: str = "lapins_test", template: str | None = None) -> str:
        """A new database, empty or a copy of `template` (see `template`)."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self._connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def template(self, name: str, build) -> str:
        """The database `name`, made once on this server by `build(url)` and kept for every later run, to be copied by
        `create(template=name)`: copying it costs less than building a schema again (docs/testing.md, « Figures »).

        Runs sharing the server (make test's two passes, mutmut's children, two at a time) build it under an
        advisory lock, under another name renamed once complete, so none sees it half-built. No connection to it may
        stay open, or PostgreSQL refuses to copy it: `build` disposes of its engine, and connections to it are
        refused once it is built. `name` should say what it holds (a fingerprint of the schema), as it outlives the
        code that built it.
        """
        with self._connect() as connection:  # the lock is released when this connection closes
            connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
            if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                building = f"{name}_building"
                connection.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')  # left by a killed run
                connection.execute(f'CREATE DATABASE "{building}"')
                build(self.url(building))
                connection.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
                connection.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        return name

    def drop(self, name: str) -> None:
        with self._connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def is_up(self) -> bool:
        import psycopg

        try:
            with self._connect():
                return True
        except psycopg.Error:
            return False


# --- Redis --------------------------------------------------------------------------------------------------

class RedisServer:
    """A Redis server with no persistence; `url(db)` points at one of its numbered databases."""

    def __init__(self) -> None:
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            raise ServiceUnavailable("Redis server not found: no redis-server (Debian package: redis-server)")
        self.port = free_port()
        self.directory: Path | None = None
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        remove_abandoned_directories("lapins-redis-", "redis.pid")
        self.directory = Path(tempfile.mkdtemp(prefix="lapins-redis-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        log = self.directory / "redis.log"
        self.process = subprocess.Popen(
            dying_with_this_process(
                [self.executable, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory),
                 "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
                 "--logfile", str(log), "--pidfile", str(self.directory / "redis.pid")]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for(lambda: self.process.poll() is None and redis_ping(self.url()), "Redis", log=log)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


def redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class ExternalRedis:
    """A Redis server started by someone else (make test), known only by its URL."""

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.base = f"{parts.scheme}://{parts.netloc}"

    def url(self, db: int = 0) -> str:
        return f"{self.base}/{db}"


# --- Command line: run a command with servers started around it ---------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.services",
        description="Start throwaway PostgreSQL/Redis servers on 127.0.0.1, run a command, stop them.",
    )
    parser.add_argument("--postgres-db", metavar="VAR", action="append", default=[],
                        help="create a fresh database and put its SQLAlchemy URL in environment variable VAR")
    parser.add_argument("--postgres-statement-counts", action="store_true",
                        help="load pg_stat_statements, so that make bench counts the SQL statements per request")
    parser.add_argument("--redis", metavar="VAR", action="append", default=[],
                        help="put the Redis server's URL in environment variable VAR")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")

    servers: list = []
    atexit.register(lambda: [server.stop() for server in reversed(servers)])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = dict(os.environ)
    try:
        if args.postgres_db:
            postgres = PostgresServer(("pg_stat_statements",) if args.postgres_statement_counts else ())
            servers.append(postgres)
            postgres.start()
            databases = PostgresDatabases(postgres.admin_url)
            for variable in args.postgres_db:
                env[variable] = databases.url(databases.create(prefix="lapins"))
        if args.redis:
            redis_server = RedisServer()
            servers.append(redis_server)
            redis_server.start()
            for index, variable in enumerate(args.redis):
                env[variable] = redis_server.url(db=index)
    except ServiceUnavailable as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
