"""Issue 18 in a real browser: the cost sentence's live count, and the « taux de lapins » chart on desktop and on a
phone (390×844)."""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from lapins.models import RdvStatus, Role
from tests import factories
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_agenda_browser import log_in

pytestmark = pytest.mark.browser

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture()
def clinic(live_db):
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="59",
                                                 name="PMI Lille")
    factories.LieuFactory(organisation=organisation, name="PMI", address="", phone=None)
    motif = factories.MotifFactory(organisation=organisation, name="Pesée")
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN,
                                   email="admin.59@pmi.example.fr")
    now = datetime.now(timezone.utc)
    for days_ago, status in ((3, RdvStatus.SEEN), (4, RdvStatus.NOSHOW), (40, RdvStatus.SEEN), (70, RdvStatus.NOSHOW)):
        starts_at = now - timedelta(days=days_ago)
        factories.RdvFactory(motif=motif, starts_at=starts_at, agents=[admin], status=status,
                             created_at=starts_at - timedelta(days=10))
    organisation.territory.noshow_baseline_bp = 1500
    live_db.session.commit()
    ids = dict(territory=organisation.territory.id, organisation=organisation.id, email=admin.email)
    live_db.session.remove()
    return type("Clinic", (), ids)


def test_typing_the_cost_sentence_updates_its_count_on_the_longest_reminder(page: Page, clinic):
    log_in(page, clinic.email)
    page.goto(f"/territoires/{clinic.territory}/parametres")
    count = page.locator("[data-cost-count]")
    before = count.inner_text()
    page.get_by_label("Phrase sur le coût d'un rendez-vous manqué (facultative)").press_sequentially(
        "Une place perdue.", delay=20)
    expect(page.locator("[data-cost-text]")).to_contain_text("Une place perdue.")
    expect(page.locator("[data-cost-kept]")).to_be_visible()
    assert count.inner_text() != before and re.fullmatch(r"\d+ / 160 caractères", count.inner_text())
    page.get_by_label("Phrase sur le coût d'un rendez-vous manqué (facultative)").fill("x" * 59 + ".")
    expect(page.locator("[data-cost-error]")).to_contain_text("ne tiendrait dans aucun rappel")


@pytest.mark.parametrize("size", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}])
def test_the_home_page_draws_the_rate_against_the_rate_before_lapins(page: Page, clinic, size):
    page.set_viewport_size(size)
    log_in(page, clinic.email)
    page.goto(f"/statistiques/organisation/{clinic.organisation}/accueil")
    expect(page.locator("#taux-de-lapins")).to_contain_text("50,0 %")
    expect(page.locator("#avant-lapins")).to_contain_text("15,0 %")
    chart = page.locator("line-chart")
    chart.scroll_into_view_if_needed()
    expect(chart.locator("canvas")).to_be_visible()
    page.wait_for_timeout(1500)  # the chart sizes itself to its column, then animates its lines in
    page.screenshot(path=f"{SCREENSHOTS}/lapins-taux-{size['width']}.png", full_page=True)
    box = chart.locator("canvas").bounding_box()
    assert 0 < box["width"] <= size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= size["width"] + 1  # no sideways scroll


@pytest.fixture()
def tomorrow_rdv(live_db):
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="62",
                                                 territory__sms_sender="+33757000001",
                                                 territory__sms_takes_replies=True, name="PMI Arras")
    lieu = factories.LieuFactory(organisation=organisation, name="PMI Arras Centre")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT,
                                   email="agent.62@pmi.example.fr")
    mother = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Inès", last_name="Martin", phone="+33611111111", sms_consent=True)
    day = datetime.now(PARIS).date() + timedelta(days=1)
    starts_at = datetime.combine(day, time(10), PARIS).astimezone(timezone.utc)
    rdv = factories.RdvFactory(motif=motif, lieu=lieu, starts_at=starts_at, usagers=[mother], agents=[agent])
    ids = dict(lieu=lieu.id, rdv=rdv.id, email=agent.email)
    live_db.session.remove()
    return type("Tomorrow", (), ids)


def test_an_agent_calls_then_frees_an_unconfirmed_slot_from_a_phone(phone_page: Page, tomorrow_rdv, live_db):
    from lapins.models import Rdv

    page = phone_page
    log_in(page, tomorrow_rdv.email)
    page.goto("/a-confirmer")
    page.get_by_role("link", name="PMI Arras Centre").click()
    row = page.locator(f'tr[data-rdv="{tomorrow_rdv.rdv}"]')
    expect(row).to_contain_text("Pas encore confirmé")
    expect(row.locator('a[href="tel:+33611111111"]')).to_be_visible()
    page.screenshot(path=f"{SCREENSHOTS}/lapins-a-confirmer-390.png", full_page=True)
    row.get_by_role("button", name="Libérer").click()  # the box is not ticked: the browser keeps the form
    expect(row).to_be_visible()
    row.get_by_text("J'ai appelé la famille").click()  # DSFR draws the box on the label
    row.get_by_role("button", name="Libérer").click()
    expect(page.locator(".fr-alert--success")).to_contain_text("Créneau libéré")
    expect(page.locator(f'tr[data-rdv="{tomorrow_rdv.rdv}"]')).to_have_count(0)
    live_db.session.expire_all()
    assert live_db.session.get(Rdv, tomorrow_rdv.rdv).status == RdvStatus.REVOKED
