"""The printable day, in Chromium: on paper (print media) the menus, header, footer and buttons are gone and every
rdv's row is there; on screen the « Imprimer » button is shown; desktop and phone."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from lapins.models import LocationType, Role
from tests import factories
from tests.browser.conftest import PHONE
from tests.browser.test_agenda_browser import at, log_in, working_tuesday

pytestmark = pytest.mark.browser


@pytest.fixture()
def day(live_db):
    """Claire Martin's Tuesday: a consultation at the centre, then a home visit; a lieu with both."""
    tuesday = working_tuesday()
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="75")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville",
                                 address="12 rue de Belleville, 75020 Paris")
    consultation = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson")
    visit = factories.MotifFactory(organisation=organisation, name="Visite post-natale",
                                   location_type=LocationType.HOME)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, first_name="Claire",
                                   last_name="Martin", email="claire.day@pmi.example.fr")
    mother = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Awa", last_name="Diallo", phone="+33612345678")
    baby = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                   first_name="Léo", last_name="Diallo", responsible=mother, phone=None)
    other = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                    first_name="Inès", last_name="Durand", phone="+33698765432",
                                    address_street="3 rue des Lilas", address_postcode="75020",
                                    address_commune="Paris", address_access="Bât. B, code 1234B")
    factories.RdvFactory(motif=consultation, lieu=lieu, starts_at=at(tuesday, 9), ends_at=at(tuesday, 9, 30),
                         agents=[agent], usagers=[baby], notes="Apporter le carnet de santé")
    factories.RdvFactory(motif=visit, starts_at=at(tuesday, 11), ends_at=at(tuesday, 12), agents=[agent],
                         usagers=[other], notes="Sonner deux fois")
    ids = dict(agent=agent.id, lieu=lieu.id)
    live_db.session.remove()
    return type("Day", (), dict(tuesday=tuesday, email=agent.email, **ids))


def check_printed(page, rows_expected: int) -> None:
    expect(page.get_by_role("button", name="Imprimer")).to_be_visible()
    page.emulate_media(media="print")
    for hidden in ("header.fr-header", "footer.fr-footer", "#navigation", "[data-print]"):
        assert not page.locator(hidden).first.is_visible(), f"{hidden} is printed"
    rows = page.locator(".day-sheet__row")
    expect(rows).to_have_count(rows_expected)
    for index in range(rows_expected):
        expect(rows.nth(index)).to_be_visible()
    first = rows.nth(0)
    expect(first).to_contain_text("09h00")  # the territory's clock (the browser is in New York)
    expect(first).to_contain_text("Awa Diallo")
    expect(first).to_contain_text("Léo Diallo")
    expect(first).to_contain_text("06 12 34 56 78")
    expect(first).to_contain_text("Consultation nourrisson")
    expect(first).to_contain_text("Apporter le carnet de santé")
    if rows_expected > 1:
        expect(rows.nth(1)).to_contain_text("Visite à domicile")
        # The family's address, from its file (issue 23.4), on paper too.
        expect(rows.nth(1).locator(".day-sheet__address")).to_be_visible()
        expect(rows.nth(1)).to_contain_text("3 rue des Lilas")
        expect(rows.nth(1)).to_contain_text("75020 Paris")
        expect(rows.nth(1)).to_contain_text("Accès : Bât. B, code 1234B")
        expect(rows.nth(1)).to_contain_text("Sonner deux fois")


@pytest.mark.parametrize("viewport", [{"width": 1366, "height": 900}, PHONE], ids=["desktop", "phone"])
def test_the_agents_day_prints_without_menus(page, day, viewport):
    page.set_viewport_size(viewport)
    log_in(page, day.email)
    page.goto(f"/agenda/agents/{day.agent}?vue=jour&date={day.tuesday.isoformat()}")
    page.get_by_role("link", name="Imprimer la journée").click()
    check_printed(page, 2)


def test_the_lieus_day_prints_without_menus(page, day):
    log_in(page, day.email)
    page.goto(f"/agenda/lieux/{day.lieu}?date={day.tuesday.isoformat()}")
    page.get_by_role("link", name="Imprimer la journée").click()
    check_printed(page, 1)  # the home visit is at no lieu
