"""Browser fixtures: the app served for real on 127.0.0.1 over a temporary SQLite file, and Chromium via Playwright.

The server runs in a thread of the test process, so the tests write their data with the factories (inside
`live_db`) and read back what the browser did from the same database file.
"""
from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from lapins import create_app
from lapins.infra.extensions import db
from tests import services

SCREENSHOTS = "/tmp"


@pytest.fixture(scope="session")
def live_app(tmp_path_factory):
    # A file, not :memory:: the server's threads and the test must see the same database.
    path = tmp_path_factory.mktemp("browser") / "lapins.sqlite3"
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{path}", WTF_CSRF_ENABLED=True)
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def live_server(live_app):
    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture()
def live_db(live_app):
    """The live database, empty at the start of each test; factories write to it inside this fixture."""
    with live_app.app_context():
        yield db
        db.session.remove()
        with db.engine.begin() as connection:
            for table in reversed(db.metadata.sorted_tables):
                connection.execute(table.delete())


@pytest.fixture(scope="session")
def browser(chromium_executable):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable, args=services.CHROMIUM_ARGS,
                                             headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, live_server):
    # Another time zone than the territory's on purpose: the agenda must show the territory's clock anyway.
    context = browser.new_context(base_url=live_server, locale="fr-FR", timezone_id="America/New_York",
                                  viewport={"width": 1366, "height": 1800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors = watch_errors(page)
    yield page
    context.close()
    assert not errors, f"JavaScript errors or refusals of the Content-Security-Policy: {errors}"


PHONE = {"width": 390, "height": 844}


def watch_errors(page) -> list[str]:
    """The page's JavaScript errors, and what the browser refused under Lapins' Content-Security-Policy
    (lapins.infra.security): a script, style, font or image the policy blocks shows in the console."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text else None)
    return errors


@pytest.fixture()
def phone_page(browser, live_server):
    """A family's phone: small touch screen, French; JavaScript errors fail the test."""
    context = browser.new_context(base_url=live_server, locale="fr-FR", viewport=PHONE, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors = watch_errors(page)
    yield page
    context.close()
    assert not errors, f"JavaScript errors or refusals of the Content-Security-Policy: {errors}"
