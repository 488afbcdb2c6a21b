"""A real Celery worker and beat, started as `make run` starts them, keep the heartbeat up to date.

The heartbeat is due every minute, so each broker's worker and beat are started together at the beginning of
the module and both tests wait for the same minute.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from lapins.tasks import PERIODIC_JOBS
from tests import services

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT = next(job for job in PERIODIC_JOBS if job.task == "lapins.tasks.record_heartbeat")
# Beat sends the first heartbeat one interval after it starts; the margin covers start-up on a busy machine.
HEARTBEAT_TIMEOUT_SECONDS = HEARTBEAT.every_seconds + 60


class CeleryStack:
    """`celery -A worker worker` and `celery -A worker beat` on one broker, with their own SQLite database."""

    def __init__(self, directory: Path, broker_url: str) -> None:
        self.directory = directory
        self.database = directory / "lapins.sqlite3"
        self.env = {
            **{key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "LAPINS_"))},
            "LAPINS_ENV": "development",
            "DATABASE_URL": f"sqlite:///{self.database}",
            "CELERY_BROKER_URL": broker_url,
        }
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> CeleryStack:
        create_tables = ("from lapins import create_app; from lapins.infra.extensions import db; "
                         "app = create_app(); app.app_context().push(); db.create_all()")
        schema = subprocess.run([sys.executable, "-c", create_tables], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, check=False)
        assert schema.returncode == 0, schema.stderr
        celery = [sys.executable, "-m", "celery", "-A", "worker"]
        self._spawn("worker", [*celery, "worker", "--loglevel=INFO", "--concurrency=2"])
        self._spawn("beat", [*celery, "beat", "--loglevel=INFO", "--schedule", str(self.directory / "beat-schedule")])
        return self

    def _spawn(self, name: str, command: list[str]) -> None:
        with (self.directory / f"{name}.log").open("w") as log:
            self.processes[name] = subprocess.Popen(
                services.dying_with_this_process(command), cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        for process in self.processes.values():
            services.stop_process(process)

    def heartbeat_names(self) -> list[str]:
        with closing(sqlite3.connect(self.database, timeout=30)) as connection:
            return [name for (name,) in connection.execute("SELECT name FROM heartbeats WHERE beat_at IS NOT NULL")]

    def wait_for_heartbeat(self, timeout: float = HEARTBEAT_TIMEOUT_SECONDS) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = self.heartbeat_names()
            if names:
                return names
            self.assert_running()
            time.sleep(0.5)
        pytest.fail(f"no heartbeat after {timeout:.0f} s\n{self.logs()}", pytrace=False)

    def assert_running(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                pytest.fail(f"celery {name} exited with code {process.returncode}\n{self.logs()}", pytrace=False)

    def logs(self) -> str:
        return "\n".join(f"--- {name}.log ---\n{(self.directory / f'{name}.log').read_text(errors='replace')[-3000:]}"
                         for name in self.processes)


@pytest.fixture(scope="module")
def stacks(request, tmp_path_factory):
    """Start every stack at once so that the tests share the wait for the first heartbeat."""
    brokers = {"sqlite": f"sqla+sqlite:///{tmp_path_factory.mktemp('broker')}/celery-broker.sqlite3"}
    try:
        brokers["redis"] = request.getfixturevalue("redis_server").url(1)
    except (pytest.skip.Exception, pytest.fail.Exception):
        pass  # the redis test reports it through its own marker
    started: dict[str, CeleryStack] = {}
    try:
        for name, broker_url in brokers.items():
            started[name] = CeleryStack(tmp_path_factory.mktemp(f"celery-{name}"), broker_url).start()
        yield started
    finally:
        for stack in started.values():
            stack.stop()


def test_worker_and_beat_on_the_sqlite_broker_record_the_heartbeat(stacks):
    assert stacks["sqlite"].wait_for_heartbeat() == ["worker"]


@pytest.mark.redis
def test_worker_and_beat_on_redis_record_the_heartbeat(stacks):
    assert stacks["redis"].wait_for_heartbeat() == ["worker"]
