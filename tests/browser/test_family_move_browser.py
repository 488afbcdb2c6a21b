"""A family on its phone opens the link of its SMS, moves its rdv to another day, and the confirmation SMS leaves;
with JavaScript and without it."""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from lapins.booking import book_rdv
from lapins.infra.extensions import db
from lapins.models import Channel, Message, MessageKind, Rdv
from lapins.models.rdvs import RdvMove
from tests import factories
from tests.browser.conftest import PHONE, SCREENSHOTS, watch_errors
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser

REUNION = ZoneInfo("Indian/Reunion")


@pytest.fixture()
def family_rdv(live_db):
    """The Payet family's rdv in 5 days, booked by an agent: its confirmation SMS holds the family's link."""
    organisation = factories.OrganisationFactory(territory__timezone="Indian/Reunion", territory__number="974",
                                                 territory__quiet_hours_start=time(0),
                                                 territory__quiet_hours_end=time(0))
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Saint-Denis", phone="+262262901010")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson")
    agent = factories.AgentFactory(organisation=organisation)
    today = datetime.now(REUNION).date()
    # From the day after tomorrow: whatever the hour, its 8:00 is past the 24 hours' notice, and the first time offered.
    factories.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=today + timedelta(days=2),
                           start_time=time(8), end_time=time(12), weekdays=0b1111111)
    parent = factories.UsagerFactory(territory=organisation.territory, first_name="Noémie", last_name="Payet",
                                     phone="+262692123456")
    rdv = book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[parent], lieu=lieu,
                   starts_at=datetime.combine(today + timedelta(days=5), time(10), REUNION))
    live_db.session.expire_all()  # sent by the worker (eager here) in a session of its own
    sms = live_db.session.scalar(select(Message).where(Message.kind == MessageKind.CREATED,
                                                       Message.channel == Channel.SMS))
    path = re.search(r"/r/\S+$", sms.body).group(0)  # the link as the family reads it in its SMS
    ids = dict(rdv=rdv.id, agent_email=agent.email, first_day=today + timedelta(days=2))
    live_db.session.remove()
    return ids, path


def move_from_the_sms_link(page, path: str) -> None:
    page.goto(path)
    expect(page.get_by_role("heading", level=1)).to_have_text("Votre rendez-vous")
    page.get_by_label("Les 3 premières lettres du nom de famille").fill("pay")
    page.get_by_role("button", name="Continuer").click()
    page.get_by_role("link", name="Changer de date").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Changer de date")
    expect(page.get_by_role("heading", level=2)).to_have_count(3)  # the first 3 days with a free time
    first = page.locator(".lapins-creneaux a").first
    box = first.bounding_box()
    assert box["height"] >= 44 and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    expect(page.get_by_role("link", name="Voir plus de dates")).to_be_visible()
    page.screenshot(path=f"{SCREENSHOTS}/lapins-family-move-picker.png", full_page=True)
    first.click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Confirmer le nouveau créneau")
    page.get_by_role("button", name="Confirmer ce créneau").click()
    expect(page.get_by_role("heading", name="Votre rendez-vous est déplacé")).to_be_visible()
    page.screenshot(path=f"{SCREENSHOTS}/lapins-family-moved.png", full_page=True)


def assert_moved_and_told(ids, page) -> None:
    rdv = db.session.get(Rdv, ids["rdv"])
    [move] = db.session.scalars(select(RdvMove)).all()
    assert move.rdv_id == rdv.id and rdv.starts_at == move.to_starts_at
    assert rdv.starts_at.astimezone(REUNION) == datetime.combine(ids["first_day"], time(8), REUNION)
    expect(page.locator("p.fr-text--lead")).to_contain_text("à 08h00")


def see_the_sms_in_the_dev_inbox(browser, live_server, email: str) -> None:
    context = browser.new_context(base_url=live_server, locale="fr-FR", viewport=PHONE, is_mobile=True)
    page = context.new_page()
    page.goto("/connexion")
    page.get_by_label("Adresse électronique").fill(email)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.goto("/dev/messages")
    card = page.locator(".fr-card").filter(has_text="déplacé au").first
    expect(card).to_contain_text("1 segment")
    expect(card).to_contain_text("à 8h")
    context.close()


def test_a_family_moves_its_rdv_from_its_phone(phone_page, family_rdv, live_db, browser, live_server):
    ids, path = family_rdv
    move_from_the_sms_link(phone_page, path)
    assert_moved_and_told(ids, phone_page)
    see_the_sms_in_the_dev_inbox(browser, live_server, ids["agent_email"])


def test_a_family_moves_its_rdv_without_javascript(browser, live_server, family_rdv, live_db):
    ids, path = family_rdv
    context = browser.new_context(base_url=live_server, locale="fr-FR", viewport=PHONE, is_mobile=True,
                                  has_touch=True, java_script_enabled=False)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors = watch_errors(page)
    move_from_the_sms_link(page, path)
    assert_moved_and_told(ids, page)
    context.close()
    assert not errors
    see_the_sms_in_the_dev_inbox(browser, live_server, ids["agent_email"])
