"""Fixtures: `app`, `db`, `client`, `auth` (performs a real login) and factories bound to the session.

The database is SQLite in memory unless TEST_DATABASE_URL points at a PostgreSQL server (make test runs both).
"""
from __future__ import annotations

import os

import pytest

from lapins import create_app
from lapins.extensions import db as _db


@pytest.fixture(scope="session")
def app():
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=os.environ.get("TEST_DATABASE_URL", "sqlite://"),
                     WTF_CSRF_ENABLED=True, SERVER_NAME=None)
    with app.app_context():
        _db.drop_all()
        _db.create_all()
        yield app
        _db.session.remove()


@pytest.fixture()
def db(app):
    yield _db
    _db.session.rollback()
    _db.session.expunge_all()
    with _db.engine.begin() as connection:
        for table in reversed(_db.metadata.sorted_tables):
            connection.execute(table.delete())
    _db.session.remove()


@pytest.fixture()
def client(app, db):
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
        page = self.client.get("/")
        return self.client.post("/deconnexion", data={"csrf_token": csrf_token_from(page.get_data(as_text=True))})


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
