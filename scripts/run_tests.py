#!/usr/bin/env python3
"""`make test`: the whole suite with real servers, on PostgreSQL then on SQLite.

Starts one PostgreSQL and one Redis server for the run (tests/services.py), then runs pytest twice:
1. the tests marked `database` (every test using the app) with TEST_DATABASE_URL on PostgreSQL;
2. the whole suite on SQLite, last, so that the run ends on pytest's summary of every test.
Arguments are handed to both pytest runs (`make test PYTEST_ARGS="-k agenda -x"`).
Exit status: 0 only if both runs passed; pytest's 5 (no test ran) is a failure.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402

POSTGRES_PASS_MARKERS = "database and not browser and not redis and not postgres"
NO_TESTS_COLLECTED = 5


def banner(message: str) -> None:
    line = "=" * 100
    print(f"\n{line}\n{message}\n{line}", flush=True)


def warning(message: str) -> None:
    line = "!" * 100
    print(f"\n{line}\n{message}\n{line}", file=sys.stderr, flush=True)


def pytest(args: list[str], env: dict[str, str]) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env)


def start(server_class, name: str, servers: list):
    try:
        server = server_class()
        servers.append(server)
        return server.start()
    except services.ServiceUnavailable as error:
        what = "FAILURE (CI=true)" if services.strict() else "their tests are SKIPPED"
        warning(f"{name} NOT AVAILABLE: {error}\n{what}")
        return None


def run(pytest_args: list[str]) -> int:
    servers: list = []
    env = {key: value for key, value in os.environ.items() if key != "TEST_DATABASE_URL"}
    try:
        postgres = start(services.PostgresServer, "PostgreSQL", servers)
        redis = start(services.RedisServer, "Redis", servers)
        if redis is not None:
            env[services.REDIS_ENV] = redis.url()
        failed = []
        if postgres is not None:
            env[services.POSTGRES_ENV] = postgres.admin_url
            databases = services.PostgresDatabases(postgres.admin_url)
            banner("make test 1/2: the database tests on PostgreSQL")
            status = pytest(["-m", POSTGRES_PASS_MARKERS, *pytest_args],
                            {**env, "TEST_DATABASE_URL": databases.url(databases.create(prefix="lapins_suite"))})
            if status != 0:
                failed.append(f"PostgreSQL pass (pytest exit {status}"
                              f"{': no test ran' if status == NO_TESTS_COLLECTED else ''})")
        elif services.strict():
            failed.append("PostgreSQL pass (no PostgreSQL server)")
        if failed:
            warning(f"FAILED so far: {', '.join(failed)}. make test will fail; the full suite still runs.")
        banner("make test 2/2: the whole suite on SQLite" + ("" if postgres else " (PostgreSQL pass NOT RUN)"))
        status = pytest(pytest_args, env)
        if status == NO_TESTS_COLLECTED:
            print("make test: pytest ran no test: that is a failure.", file=sys.stderr)
        return 1 if failed or status != 0 else 0
    finally:
        for server in reversed(servers):
            server.stop()


def main() -> int:
    # A TERM from CI's time limit must still stop the servers (the finally above).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
