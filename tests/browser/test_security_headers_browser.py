"""Lapins' pages under their Content-Security-Policy (lapins.infra.security), in Chromium: what they need still runs, an
inline script does not. The `page` fixture fails a test on any refusal of the policy shown in the console."""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from lapins.infra.security import CONTENT_SECURITY_POLICY
from tests.browser.test_agenda_browser import clinic, log_in  # noqa: F401  (the fixture, and signing in)

pytestmark = pytest.mark.browser


def test_the_agenda_and_the_absence_form_run_their_scripts_under_the_policy(page: Page, clinic):  # noqa: F811
    answer = page.goto("/connexion")
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert answer.headers["referrer-policy"] == "same-origin" and answer.headers["x-frame-options"] == "DENY"
    log_in(page, clinic.email)
    expect(page.locator(".fc-event").first).to_be_visible()  # FullCalendar ran, and its feed was fetched
    page.goto(f"/agents/{clinic.agent}/absences/nouvelle")
    weekdays = page.get_by_text("Jours de la semaine")
    expect(weekdays).to_be_hidden()  # absence_form.js: a one-off absence has no days
    page.get_by_text("Récurrente", exact=True).click()
    expect(weekdays).to_be_visible()


def test_an_inline_script_is_refused(browser, live_server, clinic):  # noqa: F811
    context = browser.new_context(base_url=live_server)
    page = context.new_page()
    refusals = []
    page.on("console", lambda message: refusals.append(message.text) if "Content Security Policy" in message.text
            else None)
    page.goto("/connexion")
    page.evaluate("""() => {
        const script = document.createElement('script');
        script.textContent = 'window.injected = true';
        document.body.appendChild(script);
    }""")
    assert page.evaluate("() => window.injected") is None
    assert refusals and "script-src" in refusals[0]
    context.close()
