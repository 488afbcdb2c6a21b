"""The motif catalogue in a real browser (issue 23.6): the territory's administrator sees what a change will do to the
adopted motifs before saving it, on an office screen; an organisation's administrator adjusts its motif on a phone,
the fields the territory fixes shown, not typed. axe-core checks each page."""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from lapins.models import Motif, MotifCatalogueEntry, Role
from lapins.models.territory_admins import TerritoryAdmin
from tests import factories
from tests.browser.test_agenda_browser import log_in

pytestmark = pytest.mark.browser


@pytest.fixture()
def catalogue(live_db):
    lille = factories.OrganisationFactory(territory__number="59", territory__name="Nord", name="PMI Lille")
    roubaix = factories.OrganisationFactory(territory=lille.territory, name="PMI Roubaix")
    chief = factories.AgentFactory(organisation=lille, organisation__role=Role.AGENT,
                                   email="chef.catalogue@pmi.example.fr")
    admin = factories.AgentFactory(organisation=roubaix, organisation__role=Role.ADMIN,
                                   email="admin.roubaix@pmi.example.fr")
    entry = MotifCatalogueEntry(territory=lille.territory, name="Consultation nourrisson", duration_minutes=30,
                                adjustable=["duration_minutes"])
    live_db.session.add_all([TerritoryAdmin(agent_id=chief.id, territory_id=lille.territory_id), entry])
    live_db.session.flush()
    adopted = {}
    for organisation in (lille, roubaix):
        adopted[organisation.name] = Motif(organisation_id=organisation.id, catalogue_entry=entry, **entry.values())
        live_db.session.add(adopted[organisation.name])
    adopted["PMI Lille"].duration_minutes = 40
    live_db.session.commit()
    ids = dict(entry_id=entry.id, chief=chief.email, admin=admin.email, roubaix_motif=adopted["PMI Roubaix"].id)
    live_db.session.remove()
    return type("CatalogueIds", (), ids)


def test_the_territory_sees_what_a_change_does_before_saving_it(page: Page, catalogue):
    log_in(page, catalogue.chief)
    page.goto(f"/admin/catalogue/{catalogue.entry_id}/modifier")
    page.get_by_role("spinbutton", name="Durée (minutes)").fill("45")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_role("heading", name="Ce qui changera en enregistrant")).to_be_visible()
    expect(page.get_by_role("row", name="PMI Roubaix")).to_contain_text("Durée (minutes) : 30 → 45")
    expect(page.get_by_role("row", name="PMI Lille")).to_contain_text("Durée (minutes) : 40")
    page.get_by_role("button", name="Confirmer et appliquer aux motifs adoptés").click()
    expect(page.locator(".fr-alert--success")).to_contain_text("1 motif(s) adopté(s) par les organisations mis à jour")


def test_an_organisation_adjusts_its_motif_on_a_phone_the_fixed_fields_shown(phone_page: Page, catalogue):
    log_in(phone_page, catalogue.admin)
    phone_page.goto(f"/admin/motifs/{catalogue.roubaix_motif}/modifier")
    expect(phone_page.get_by_text("Ce motif suit le motif « Consultation nourrisson » du catalogue")).to_be_visible()
    expect(phone_page.get_by_label("Nom du motif")).to_have_count(0)
    phone_page.get_by_label("Durée (minutes)").fill("20")
    phone_page.get_by_role("button", name="Enregistrer").click()
    expect(phone_page.locator(".fr-alert--success")).to_contain_text("Motif « Consultation nourrisson » enregistré")
    expect(phone_page.get_by_role("row", name="Consultation nourrisson")).to_contain_text("20 min")
