"""Settings come from the environment: what a person sets is what the service uses, and mistakes stop it.

config.py reads the environment when it is imported, so each case starts Lapins in a process of its own, with
exactly the variables a person would have set.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from config import DEFAULT_SECRET_KEY, get_config

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("LAPINS_ENV", "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
            "CELERY_TASK_ALWAYS_EAGER")

# Creates the tables and queues one heartbeat job, as the web app does when it hands work to the worker.
USE_DATABASE_AND_BROKER = """
from lapins import create_app
from lapins.infra.extensions import db
from lapins.tasks import record_heartbeat
app = create_app()
with app.app_context():
    db.create_all()
record_heartbeat.delay("config-test")
"""


def lapins_env(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS}
    env["FLASK_SKIP_DOTENV"] = "1"  # a developer's .env must not change what the test sets
    env.update(settings)
    return env


def flask(*args: str, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "lapins", *args], cwd=ROOT,
                          env=lapins_env(**settings), capture_output=True, text=True, timeout=60, check=False)


def python(code: str, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=lapins_env(**settings),
                          capture_output=True, text=True, timeout=60, check=False)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_production_refuses_to_start_without_a_secret_key():
    started = flask("routes", LAPINS_ENV="production")

    assert started.returncode != 0
    assert "SECRET_KEY doit être défini" in last_line(started.stderr)


def test_production_refuses_the_default_secret_key_even_when_set_explicitly():
    started = flask("routes", LAPINS_ENV="production", SECRET_KEY=DEFAULT_SECRET_KEY)

    assert started.returncode != 0
    assert "SECRET_KEY doit être défini" in last_line(started.stderr)


def test_production_starts_with_its_own_secret_key(tmp_path):
    started = flask("routes", LAPINS_ENV="production", SECRET_KEY="une-vraie-clé-de-production-longue",
                    DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}")

    assert started.returncode == 0, started.stderr
    assert "/connexion" in started.stdout


def test_unknown_lapins_env_stops_with_a_message_naming_the_choices():
    started = flask("routes", LAPINS_ENV="prod")

    assert started.returncode != 0
    assert last_line(started.stderr) == (
        "RuntimeError: LAPINS_ENV inconnu : 'prod' (attendu : development, testing, production)")


def test_unknown_lapins_env_is_refused_in_code_too():
    with pytest.raises(RuntimeError, match="LAPINS_ENV inconnu : 'staging'"):
        get_config("staging")


def test_database_url_and_celery_broker_url_choose_where_data_and_jobs_go(tmp_path):
    data, broker = tmp_path / "data.sqlite3", tmp_path / "broker.sqlite3"

    done = python(USE_DATABASE_AND_BROKER, DATABASE_URL=f"sqlite:///{data}",
                  CELERY_BROKER_URL=f"sqla+sqlite:///{broker}")

    assert done.returncode == 0, done.stderr
    with closing(sqlite3.connect(data)) as connection:
        assert ("heartbeats",) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    with closing(sqlite3.connect(broker)) as connection:
        assert connection.execute("SELECT count(*) FROM kombu_message").fetchone() == (1,)


def test_without_settings_data_and_jobs_stay_in_the_instance_folder():
    done = python("from lapins import create_app; app = create_app(); "
                  "print(app.config['SQLALCHEMY_DATABASE_URI']); print(app.extensions['celery'].conf.broker_url)")

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [f"sqlite:///{ROOT / 'instance' / 'lapins.sqlite3'}",
                                   f"sqla+sqlite:///{ROOT / 'instance' / 'celery-broker.sqlite3'}"]


@pytest.mark.postgres
def test_database_url_switches_to_postgresql(empty_postgres_url):
    import sqlalchemy as sa

    done = python(USE_DATABASE_AND_BROKER, DATABASE_URL=empty_postgres_url, CELERY_BROKER_URL="memory://")

    assert done.returncode == 0, done.stderr
    engine = sa.create_engine(empty_postgres_url)
    try:
        assert "heartbeats" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_postgres_url_as_hosting_platforms_write_it_works(empty_postgres_url):
    plain = empty_postgres_url.replace("postgresql+psycopg://", "postgres://")

    done = python(USE_DATABASE_AND_BROKER, DATABASE_URL=plain, CELERY_BROKER_URL="memory://")

    assert done.returncode == 0, done.stderr


@pytest.mark.redis
def test_celery_broker_url_switches_to_redis(redis_url, tmp_path):
    import redis

    done = python(USE_DATABASE_AND_BROKER, DATABASE_URL=f"sqlite:///{tmp_path / 'data.sqlite3'}",
                  CELERY_BROKER_URL=redis_url)

    assert done.returncode == 0, done.stderr
    client = redis.Redis.from_url(redis_url)
    try:
        # The heartbeat is one of the beat's jobs: it goes to their own queue, never behind the sends.
        assert (client.llen("lapins.beat"), client.llen("celery")) == (1, 0)
    finally:
        client.close()


def test_every_setting_read_from_the_environment_is_described_in_env_example():
    """docs/deploy.md sends the département's IT team to .env.example for what each variable does."""
    import re

    root = Path(__file__).resolve().parent.parent
    read = set(re.findall(r'env_(?:str|int|bool)\("([A-Z0-9_]+)"|os\.environ\.get\("([A-Z0-9_]+)"',
                          (root / "config.py").read_text()))
    names = {name for pair in read for name in pair if name} - {"TEST_DATABASE_URL"}
    described = (root / ".env.example").read_text()
    assert len(names) > 30
    assert sorted(name for name in names if not re.search(rf"^#? ?{name}=", described, re.MULTILINE)) == []
