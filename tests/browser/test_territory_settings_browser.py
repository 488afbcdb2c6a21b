"""The territory settings page in a real browser: typing a sentence for the SMS updates the preview and its count;
choosing Brevo as the SMS operator with the département's key (checked against the loopback Brevo)."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from lapins.models import Role, Territory
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


@pytest.mark.parametrize("viewport", [{"width": 1366, "height": 900}, {"width": 390, "height": 844}],
                         ids=["bureau", "telephone"])
def test_an_admin_chooses_brevo_with_the_departements_key_and_a_refused_key_is_told_on_the_form(
        page: Page, territory, live_app, live_db, brevo_fake, viewport):
    page.set_viewport_size(viewport)
    saved = live_app.config.get("BREVO_BASE_URL")
    live_app.config["BREVO_BASE_URL"] = brevo_fake.url
    try:
        live_db.session.get(Territory, territory.id).sms_sender = "PMI92"
        live_db.session.commit()
        log_in(page, territory.email)
        page.goto(f"/territoires/{territory.id}/parametres")
        form = page.locator("#form-operateur")
        form.get_by_label("Opérateur SMS").select_option("brevo")
        form.get_by_label("Clé API Brevo").fill("xkeysib-" + "1" * 64 + "-" + "A" * 16)  # unknown to Brevo
        form.get_by_role("button", name="Enregistrer l'opérateur").click()
        expect(page.locator("#form-operateur")).to_contain_text("Brevo refuse cette clé API")
        expect(page.get_by_label("Clé API Brevo")).to_have_value("")  # a secret is never rendered back

        page.get_by_label("Opérateur SMS").select_option("brevo")
        page.get_by_label("Clé API Brevo").fill(brevo_fake.api_key)
        page.get_by_role("button", name="Enregistrer l'opérateur").click()
        expect(page.get_by_text("Opérateur SMS enregistré.")).to_be_visible()
        expect(page.locator("#etat-brevo-api-key")).to_contain_text(f"se termine par …{brevo_fake.api_key[-4:]}")
        expect(page.get_by_label("Opérateur SMS")).to_have_value("brevo")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
    finally:
        live_app.config["BREVO_BASE_URL"] = saved
