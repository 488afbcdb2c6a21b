"""Issue 23.2's walk, in Chromium: an agent books a discreet motif on the booking form, reads the SMS in the dev
inbox, follows its link to the family's page and downloads its calendar file: the motif is named nowhere."""
from __future__ import annotations

import re
from datetime import time, timedelta

import icalendar
import pytest
from playwright.sync_api import expect

from lapins.models import Role
from tests import factories
from tests.browser.test_agenda_browser import at, log_in, working_tuesday

pytestmark = pytest.mark.browser

SECRET = "Consultation de contraception"


@pytest.fixture()
def clinic(live_db):
    tuesday = working_tuesday()
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="75",
                                                 name="PMI Belleville", territory__quiet_hours_start=time(0),
                                                 territory__quiet_hours_end=time(0))  # SMS leave at any hour
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville",
                                 address="12 rue de Belleville, 75020 Paris")
    motif = factories.MotifFactory(organisation=organisation, name=SECRET, duration_minutes=30, discreet=True)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, first_name="Claire",
                                   last_name="Martin", email="claire.discret@pmi.example.fr")
    factories.PlageFactory(agent=agent, lieu=lieu, title="Consultations", first_day=tuesday - timedelta(days=8),
                           motifs=[motif])
    young = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                    first_name="Inès", last_name="Morel", phone="+33612345678", sms_consent=True)
    ids = dict(agent=agent.id, lieu=lieu.id, motif=motif.id, young=young.id)
    live_db.session.remove()
    return type("Clinic", (), dict(tuesday=tuesday, email=agent.email, **ids))


def test_a_discreet_motif_is_named_nowhere_the_family_may_read(page, clinic):
    log_in(page, clinic.email)
    starts_at = at(clinic.tuesday, 10).strftime("%Y-%m-%dT%H:%M:%SZ")
    page.goto(f"/rdvs/nouveau?usager_id={clinic.young}&agent_id={clinic.agent}&lieu_id={clinic.lieu}"
              f"&starts_at={starts_at}")
    page.locator("#motif_id").select_option(str(clinic.motif))
    preview = page.locator("#apercu-sms")
    expect(preview).to_contain_text("Motif discret")
    expect(preview.locator("[data-sms-text]")).not_to_contain_text("contraception")
    page.get_by_role("button", name="Créer le rendez-vous").click()
    expect(page.locator(".fr-alert--success, .fr-alert")).to_contain_text("Le rendez-vous a été créé")
    expect(page.get_by_text(SECRET).first).to_be_visible()  # the agent still reads it on the rdv page

    page.goto("/dev/messages")
    card = page.locator(".fr-card").first
    expect(card).to_contain_text("SMS")
    sms = card.locator("pre").inner_text()
    assert "contraception" not in sms.lower() and "à 10h" in sms and "Belleville" in sms, sms
    assert "contraception" not in page.content().lower()

    family_path = re.search(r"/r/[\w-]+", sms).group(0)
    page.goto(family_path)
    expect(page.locator("main")).to_contain_text("Rendez-vous PMI")
    assert "contraception" not in page.content().lower()
    with page.expect_download() as download:
        page.get_by_role("link", name="Ajouter à mon agenda").click()
    calendar = open(download.value.path(), "rb").read()
    (event,) = icalendar.Calendar.from_ical(calendar).walk("VEVENT")
    assert str(event["SUMMARY"]).startswith("Rendez-vous PMI")
    assert b"contraception" not in calendar.lower().replace(b"\r\n ", b"")
