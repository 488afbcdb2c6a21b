"""The commune field in a real browser: suggestions as one types (accents and « St » forgiven), chosen with the
keyboard alone, on an office screen and on a phone; axe-core checks the combobox on each page."""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from lapins.models import Role, Sector
from tests import factories
from tests.browser.test_agenda_browser import log_in

pytestmark = pytest.mark.browser


@pytest.fixture()
def sector(live_db):
    organisation = factories.OrganisationFactory(territory__number="92", territory__name="Hauts-de-Seine",
                                                 name="PMI 92")
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN,
                                   email="admin.secteurs@pmi.example.fr")
    row = Sector(territory=organisation.territory, name="Nord")
    live_db.session.add(row)
    live_db.session.commit()
    ids = dict(id=row.id, territory_id=organisation.territory.id, email=admin.email)
    live_db.session.remove()
    return type("SectorIds", (), ids)


def _choose_with_the_keyboard(page: Page, typed: str, wanted: str) -> None:
    field = page.get_by_role("combobox", name="Commune")
    field.press_sequentially(typed, delay=30)
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    expect(field).to_have_attribute("aria-expanded", "true")
    index = next(i for i, text in enumerate(options.all_inner_texts()) if text.startswith(wanted))
    for _ in range(index + 1):
        field.press("ArrowDown")
    expect(options.nth(index)).to_have_attribute("aria-selected", "true")
    field.press("Enter")
    expect(field).to_have_value(wanted)
    expect(field).to_have_attribute("aria-expanded", "false")


def test_an_admin_adds_a_commune_chosen_with_the_keyboard(page: Page, sector, live_db):
    log_in(page, sector.email)
    page.goto(f"/admin/secteurs/{sector.id}")
    _choose_with_the_keyboard(page, "st clo", "Saint-Cloud (92210)")
    page.get_by_role("button", name="Ajouter au secteur").click()
    expect(page.locator(".fr-alert--success")).to_contain_text("Saint-Cloud fait désormais partie du secteur « Nord »")
    expect(page.get_by_role("row", name="Saint-Cloud")).to_be_visible()


def test_on_a_phone_the_address_is_tried_by_postcode(phone_page: Page, sector):
    log_in(phone_page, sector.email)
    phone_page.goto(f"/admin/territoires/{sector.territory_id}/en-ligne")
    _choose_with_the_keyboard(phone_page, "9213", "Issy-les-Moulineaux (92130)")
    phone_page.get_by_role("button", name="Chercher").click()
    expect(phone_page.get_by_role("status").filter(has_text="Issy-les-Moulineaux (92040)")).to_contain_text(
        "aucun secteur")
