"""The accessibility check of every browser test (axe-core, tests/browser/conftest.py) does find what it must."""
from __future__ import annotations

import pytest

from tests.browser.conftest import check_accessibility, finish_accessibility, watch_errors

pytestmark = pytest.mark.browser

BROKEN = ("<!doctype html><html lang='fr'><head><title>Essai</title></head><body><main>"
          "<img src='/static/nothing.png'><button></button></main></body></html>")


def test_a_page_with_an_image_without_alt_and_an_empty_button_is_reported(browser, live_server):
    context = browser.new_context(base_url=live_server)
    violations = check_accessibility(context)
    context.route("**/essai-accessibilite", lambda route: route.fulfill(status=200, body=BROKEN,
                                                                     content_type="text/html"))
    page = context.new_page()
    page.goto("/essai-accessibilite")
    page.wait_for_function("() => document.readyState === 'complete'")
    finish_accessibility(page, violations)
    context.close()
    found = {violation["id"] for violation in violations["/essai-accessibilite"]}
    assert {"image-alt", "button-name"} <= found


def test_checks_started_while_a_run_is_in_flight_wait_their_turn_and_report(browser, live_server):
    """axe refuses a run while another is in flight (« Axe is already running », thrown at once): the load's run and
    the end of the test's check used to collide, failing the test with a page error or leaving the last page
    unchecked. Every check now waits for the run in flight, whoever started it."""
    context = browser.new_context(base_url=live_server)
    violations = check_accessibility(context)
    context.route("**/essai-accessibilite", lambda route: route.fulfill(status=200, body=BROKEN,
                                                                     content_type="text/html"))
    page = context.new_page()
    errors = watch_errors(page)
    page.goto("/essai-accessibilite")
    # The load's own check first, so that the run started below by hand is the only one in flight (two runs of
    # axe at once are what the queue exists to prevent: the test must not cause one itself).
    for _ in range(200):
        if "/essai-accessibilite" in violations:
            break
        page.wait_for_timeout(50)
    assert "/essai-accessibilite" in violations
    reports = page.evaluate("""() => {
        axe.run(document);  // in flight when the checks below start
        return Promise.all([window.__lapinsAxeCheck(), window.__lapinsAxeCheck()]);
    }""")
    ended: dict[str, list[dict]] = {}
    finish_accessibility(page, ended)
    context.close()
    for report in (*reports, {"url": "/essai-accessibilite", "violations": ended["/essai-accessibilite"]}):
        assert report["url"] == "/essai-accessibilite"
        assert {"image-alt", "button-name"} <= {violation["id"] for violation in report["violations"]}
    assert not errors
