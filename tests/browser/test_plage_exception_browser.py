"""Except one date of a weekly plage from the agenda, in a real browser: that day's free hours disappear, the rdv
already booked that day is listed before saving and stays; on a desktop and on a phone."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_agenda_browser import clinic, log_in  # noqa: F401 — its fixture and sign-in

pytestmark = pytest.mark.browser


def free_hours(page: Page, day) -> object:
    return page.locator(f"a.lapins-libre[data-event-id*='-{day.isoformat()}T']")


def except_the_tuesday(page: Page, clinic, view: str) -> None:  # noqa: F811
    log_in(page, clinic.email)
    page.goto(f"/agenda/agents/{clinic.agent}?date={clinic.tuesday.isoformat()}&vue={view}")
    # Awa's rdv holds 09:00: the five half-hours from 09:30 are free.
    expect(free_hours(page, clinic.tuesday)).to_have_count(5)

    page.locator("#plages-periode").get_by_role(
        "link", name=re.compile("^Retirer ou changer cette date : Consultations, mardi")).click()
    expect(page.locator("h1")).to_have_text("Retirer ou changer une date")
    expect(page.locator("#day")).to_have_value(clinic.tuesday.isoformat())
    expect(page.get_by_label("Cette date seulement")).to_be_checked()
    expect(page.get_by_label("Pas d'ouverture (retirer)")).to_be_checked()
    page.get_by_role("button", name="Enregistrer").click()

    expect(page.locator("h1")).to_have_text("Des rendez-vous tomberaient hors des nouvelles ouvertures")
    expect(page.locator("#rdvs-hors-ouverture li")).to_have_count(1)
    expect(page.locator("#rdvs-hors-ouverture")).to_contain_text("Awa Diallo")
    page.get_by_role("button", name="Confirmer le changement").click()

    expect(page.locator(".fr-alert--success")).to_contain_text("n'ouvre pas le mardi")
    expect(page.locator(".fr-alert--success")).to_contain_text("Un rendez-vous reste à son horaire")
    expect(page.locator(".fc-event").first).to_be_attached()
    expect(free_hours(page, clinic.tuesday)).to_have_count(0)
    # Awa's rdv is still there, at its time.
    expect(page.locator("#liste-rdv")).to_contain_text("Awa Diallo")


def test_an_agent_removes_one_date_from_the_agenda_and_its_free_hours_disappear(page: Page, clinic):  # noqa: F811
    except_the_tuesday(page, clinic, "semaine")
    # The other days of the week keep theirs.
    expect(page.locator("a.lapins-libre").first).to_be_attached()
    assert page.locator("a.lapins-libre").count() >= 6


def test_on_a_phone_too(phone_page: Page, clinic):  # noqa: F811
    except_the_tuesday(phone_page, clinic, "jour")
