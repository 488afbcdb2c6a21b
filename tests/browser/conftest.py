"""Browser fixtures: the app served for real on 127.0.0.1 over a temporary SQLite file, and Chromium via Playwright.

The server runs in a thread of the test process, so the tests write their data with the factories (inside
`live_db`) and read back what the browser did from the same database file.

Every page the `page` and `phone_page` fixtures load is checked by axe-core (npm, node_modules/axe-core) once
loaded: a serious or critical violation of the accessibility rules (RGAA's automatable part: WCAG 2.1 A and AA)
fails the test that visited it (issue 19.5).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

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
    violations = check_accessibility(context)
    page = context.new_page()
    errors = watch_errors(page)
    yield page
    finish_accessibility(page, violations)
    context.close()
    assert not errors, f"JavaScript errors or refusals of the Content-Security-Policy: {errors}"
    assert_accessible(violations)


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
    violations = check_accessibility(context)
    page = context.new_page()
    errors = watch_errors(page)
    yield page
    finish_accessibility(page, violations)
    context.close()
    assert not errors, f"JavaScript errors or refusals of the Content-Security-Policy: {errors}"
    assert_accessible(violations)


# --- Accessibility: axe-core on every page loaded ---------------------------------------------------------------

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING_IMPACTS = ("serious", "critical")
# Run in each page once it has loaded; the results go back through a binding, so a page left before axe is done
# is simply not reported (the last page is checked again at the end of the test). axe refuses a run while another
# is in flight in the same page (« Axe is already running », thrown at once: an uncaught page error, or the last
# page left unchecked), so every run, the load's and the end of the test's, goes through one queue per page that
# also waits for a run started outside it: the end's check waits its turn, then runs on the page as it is.
_RUN_AXE = """
(() => {
  if (document.contentType !== 'text/html') return;
  const tags = %s, impacts = %s;
  let last = Promise.resolve();
  const idle = () => new Promise(done => { const wait = () => axe._running ? setTimeout(wait, 20) : done(); wait(); });
  window.__lapinsAxeCheck = () => (last = last.catch(() => {}).then(idle).then(() => axe.run(document,
      {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']}))
    .then(results => ({url: location.pathname, violations: results.violations
      .filter(v => impacts.includes(v.impact))
      .map(v => ({id: v.id, impact: v.impact, help: v.help,
                  nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))})));
  window.addEventListener('load', () => setTimeout(() => window.__lapinsAxeCheck()
    .then(report => window.__lapinsAxe(JSON.stringify(report))).catch(() => {}), 0), {once: true});
})();
""" % (json.dumps(AXE_TAGS), json.dumps(list(BLOCKING_IMPACTS)))


def check_accessibility(context) -> dict[str, list[dict]]:
    """Have axe-core check every page this browser context loads; returns the serious or critical violations by
    page path, filled as the pages report."""
    if not AXE.exists():
        raise RuntimeError(f"{AXE} is missing: npm ci installs axe-core (package.json, devDependencies)")
    violations: dict[str, list[dict]] = {}
    context.expose_binding("__lapinsAxe", lambda source, report: _record(violations, json.loads(report)))
    context.add_init_script(path=str(AXE))
    context.add_init_script(script=_RUN_AXE)
    return violations


def _record(violations: dict[str, list[dict]], report: dict) -> None:
    violations.setdefault(report["url"], [])
    for violation in report["violations"]:
        if violation not in violations[report["url"]]:
            violations[report["url"]].append(violation)


def finish_accessibility(page, violations: dict[str, list[dict]]) -> None:
    """The page the test ended on, checked to the end (the test may have left it before axe reported)."""
    try:
        if page.is_closed() or not page.evaluate("() => typeof window.__lapinsAxeCheck === 'function'"):
            return
        report = page.evaluate("() => window.__lapinsAxeCheck()")  # queued after a run still in flight
    except Exception:  # the page is mid-navigation or gone: what it reported before is kept
        return
    _record(violations, report)


def assert_accessible(violations: dict[str, list[dict]]) -> None:
    found = {url: found for url, found in violations.items() if found}
    assert not found, "axe-core: serious or critical accessibility violations\n" + json.dumps(
        found, ensure_ascii=False, indent=1)
