"""Issue 23.3's walk, in Chromium: an agent gives a child its second guardian, books for the child and sends a
reminder: both adults get it in the dev inbox, each with their own link; the father cancels from his, never sees the
mother's number, and the mother is told. Desktop and phone (390×844) for the family's page."""
from __future__ import annotations

import re
from datetime import time, timedelta

import pytest
from playwright.sync_api import expect

from lapins.models import Role
from tests import factories
from tests.browser.test_agenda_browser import at, log_in, working_tuesday

pytestmark = pytest.mark.browser

MOTHER, FATHER = "+33612345678", "+33698765432"


@pytest.fixture()
def clinic(live_db):
    tuesday = working_tuesday()
    # No quiet hours (start = end): the walk may run at night and the SMS must still be in the inbox at once.
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="93",
                                                 territory__quiet_hours_start=time(3),
                                                 territory__quiet_hours_end=time(3), name="PMI Saint-Denis")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Pleyel",
                                 address="2 rue Pleyel, 93200 Saint-Denis")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT,
                                   email="agent.guardians@pmi.example.fr")
    factories.PlageFactory(agent=agent, lieu=lieu, title="Consultations", first_day=tuesday - timedelta(days=8),
                           motifs=[motif])
    mother = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Aïcha", last_name="Benali", phone=MOTHER, sms_consent=True)
    child = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                    first_name="Léa", last_name="Benali", phone=None, sms_consent=False,
                                    responsible=mother)
    ids = dict(agent=agent.id, lieu=lieu.id, motif=motif.id, child=child.id)
    live_db.session.remove()
    return type("Clinic", (), dict(tuesday=tuesday, email=agent.email, **ids))


def inbox_sms(page) -> dict[str, list[str]]:
    """The dev inbox's SMS, by number, newest first."""
    page.goto("/dev/messages")
    found: dict[str, list[str]] = {}
    for card in page.locator(".fr-card").all():
        if card.locator("h2").inner_text().startswith("SMS"):
            to = re.search(r"À (\+\d+)", card.locator(".fr-card__desc").inner_text()).group(1)
            found.setdefault(to, []).append(card.locator("pre").inner_text())
    return found


@pytest.mark.parametrize("size", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}])
def test_both_guardians_get_the_reminder_and_one_cancels_from_their_own_link(page, clinic, browser, live_server,
                                                                            size):
    log_in(page, clinic.email)
    page.goto(f"/usagers/{clinic.child}")
    page.get_by_role("link", name="Ajouter un second responsable").click()
    page.locator("#first_name").fill("Karim")
    page.locator("#last_name").fill("Morel")
    page.get_by_label("Téléphone mobile").fill("06 98 76 54 32")
    page.locator("label[for=sms_consent]").click()  # DSFR draws the box on the label
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator("#responsables")).to_contain_text("Karim Morel")
    expect(page.locator("#responsables")).to_contain_text("Aïcha Benali")

    starts_at = at(clinic.tuesday, 10).strftime("%Y-%m-%dT%H:%M:%SZ")
    page.goto(f"/rdvs/nouveau?usager_id={clinic.child}&agent_id={clinic.agent}&lieu_id={clinic.lieu}"
              f"&starts_at={starts_at}")
    page.locator("#motif_id").select_option(str(clinic.motif))
    expect(page.get_by_label("Qui prévenir ?")).to_contain_text("Ne prévenir que Karim Morel")
    page.get_by_role("button", name="Créer le rendez-vous").click()
    expect(page.locator(".fr-alert")).to_contain_text("Le rendez-vous a été créé")
    page.get_by_role("button", name="Envoyer un rappel maintenant").click()

    sms = inbox_sms(page)
    assert set(sms) == {MOTHER, FATHER}
    assert all(len(texts) == 2 for texts in sms.values())  # the confirmation and the reminder, each
    mother_link = re.search(r"/r/[\w-]+", sms[MOTHER][0]).group(0)
    father_link = re.search(r"/r/[\w-]+", sms[FATHER][0]).group(0)
    assert mother_link != father_link

    # The father, on his phone or computer, with no account.
    family = browser.new_context(base_url=live_server, locale="fr-FR", viewport=size)
    phone = family.new_page()
    phone.goto(father_link)
    phone.get_by_label(re.compile("premières lettres")).fill("Mor")
    phone.get_by_role("button", name=re.compile("Continuer|Vérifier|Valider")).first.click()
    expect(phone.locator("main")).to_contain_text("Lien personnel de : Karim Morel")
    assert "06 12 34 56 78" not in phone.content() and MOTHER not in phone.content()
    phone.get_by_role("button", name="Annuler le rendez-vous").first.click()
    phone.get_by_role("button", name="Oui, annuler le rendez-vous").click()
    expect(phone.locator("main")).to_contain_text("annulé")
    family.close()

    told = inbox_sms(page)
    assert len(told[MOTHER]) == 3 and "annulé" in told[MOTHER][0] and "comme demandé" not in told[MOTHER][0]
    assert len(told[FATHER]) == 3 and "comme demandé" in told[FATHER][0]
