"""`/healthz` tells a load balancer or a monitor whether this web node can work, and whether the background runs."""
from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from lapins import create_app
from lapins.infra.extensions import db as _db
from lapins.models import Heartbeat, utcnow


@pytest.fixture()
def app_on(tmp_path):
    """An app on its own SQLite file and the given broker, with tasks going through that broker."""
    apps = []

    def make(broker_url: str, database_url: str | None = None):
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url or f"sqlite:///{tmp_path / 'h.sqlite3'}",
                         CELERY_BROKER_URL=broker_url, CELERY_TASK_ALWAYS_EAGER=False)
        if database_url is None:
            with app.app_context():
                _db.create_all()
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            _db.engine.dispose()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


@pytest.mark.redis
def test_all_is_well_with_the_database_redis_and_a_fresh_heartbeat(app_on, redis_url):
    app = app_on(redis_url)
    with app.app_context():
        _db.session.add(Heartbeat(name="worker", beat_at=utcnow() - timedelta(seconds=30)))
        _db.session.commit()
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] == "ok"
    assert body["checks"]["worker_and_beat"] == "ok"


def test_a_broker_out_of_reach_is_a_503(app_on):
    app = app_on(f"redis://127.0.0.1:{closed_port()}/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["broker"] == "injoignable"


def test_a_database_out_of_reach_is_a_503(app_on):
    app = app_on("memory://", database_url="postgresql+psycopg://lapins@127.0.0.1:%d/lapins" % closed_port())
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == "injoignable"


def test_a_silent_background_is_reported_without_failing_the_web_node(app_on):
    app = app_on("memory://")
    client = app.test_client()
    assert client.get("/healthz").get_json()["checks"]["worker_and_beat"] == "aucun signe de vie"
    with app.app_context():
        _db.session.add(Heartbeat(name="worker", beat_at=utcnow() - timedelta(minutes=10)))
        _db.session.commit()
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json()["checks"]["worker_and_beat"] == "en retard"
