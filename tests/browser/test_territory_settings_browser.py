"""The territory settings page in a real browser: typing a sentence for the SMS updates the preview and its count."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from lapins.models import Role
from tests import factories
from tests.browser.test_agenda_browser import log_in

pytestmark = pytest.mark.browser


@pytest.fixture()
def territory(live_db):
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="92",
                                                 name="PMI 92")
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN,
                                   email="admin.92@pmi.example.fr")
    ids = dict(id=organisation.territory.id, email=admin.email)
    live_db.session.remove()
    return type("Territory", (), ids)


def test_typing_a_sentence_updates_the_preview_and_its_segment_count(page: Page, territory):
    log_in(page, territory.email)
    page.goto(f"/territoires/{territory.id}/parametres")
    samples = page.locator("[data-preview-sample]")
    expect(samples).to_have_count(3)
    counts_before = samples.locator("[data-preview-count]").all_inner_texts()

    page.get_by_label("Rappel", exact=True).press_sequentially("Carnet de santé SVP", delay=20)
    first = samples.first.locator("[data-preview-text]")
    expect(first).to_contain_text("Carnet de santé SVP.")
    expect(page.locator("[data-preview-room]")).to_have_text(re.compile(r"\d+ caractères"))
    counts_after = samples.locator("[data-preview-count]").all_inner_texts()
    assert counts_after != counts_before and all(re.fullmatch(r"\d+ / 160 caractères", c) for c in counts_after)
    expect(samples.first.locator("[data-preview-segments]")).to_have_text("1 SMS")
    expect(samples.first.locator("[data-preview-encoding]")).to_have_text("GSM-7")

    page.get_by_label("Confirmation", exact=True).fill("Vœux 🙂")
    expect(page.locator("[data-preview-error]")).to_contain_text("n'existent pas dans l'alphabet des SMS")
    expect(page.locator("#apercu-sms")).to_contain_text("Confirmation")

    page.get_by_label("Fuseau horaire").select_option("Indian/Reunion")
    expect(page.locator("#alerte-fuseau")).to_be_visible()


def test_an_admin_finds_the_settings_in_the_admin_menu_and_the_menu_keeps_one_line(page: Page, territory):
    """At 1366 px (an office screen) every item of the admin's menu sits on one row; the settings are one click away."""
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, territory.email)
    items = page.locator("#navigation > ul > li")
    tops = {round(box["y"]) for box in (item.bounding_box() for item in items.all())}
    assert len(tops) == 1, f"the menu wraps on {len(tops)} lines"
    page.get_by_role("button", name="Administration").click()
    page.get_by_role("link", name="Paramètres du territoire").click()
    expect(page).to_have_url(re.compile(rf"/territoires/{territory.id}/parametres$"))
    expect(page.get_by_role("button", name="Administration")).to_have_attribute("aria-current", "true")
