"""A family on its phone (390×844) books online: its need, its commune chosen with the keyboard, a time at the lieu
serving it, its details, the SMS code read from the dev inbox, the confirmation; and signs up for an atelier with
places left the same way. axe-core checks every page."""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from lapins.booking import sessions
from lapins.models import Channel, Message, MessageKind, Participation, Rdv
from lapins.models.rdvs import BookingChannel
from tests import factories
from tests.browser.conftest import PHONE, SCREENSHOTS
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser

REUNION = ZoneInfo("Indian/Reunion")


@pytest.fixture()
def clinic(live_db):
    organisation = factories.OrganisationFactory(territory__timezone="Indian/Reunion", territory__number="974",
                                                 territory__quiet_hours_start=time(0),
                                                 territory__quiet_hours_end=time(0))
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Saint-Denis",
                                 address="3 rue de Paris, 97400 Saint-Denis", phone="+262262901010")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson", online_bookable=True,
                                   online_min_hours=2, online_max_days=14)
    agent = factories.AgentFactory(organisation=organisation)
    today = datetime.now(REUNION).date()
    factories.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=today + timedelta(days=1),
                           start_time=time(8), end_time=time(12), weekdays=0b1111111)
    email = agent.email
    live_db.session.remove()
    return email


def choose_commune(page, typed: str, wanted: str) -> None:
    field = page.get_by_role("combobox", name="Votre commune")
    field.press_sequentially(typed, delay=30)
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    index = next(i for i, text in enumerate(options.all_inner_texts()) if text.startswith(wanted))
    for _ in range(index + 1):
        field.press("ArrowDown")
    field.press("Enter")
    expect(field).to_have_value(wanted)


def code_from_the_dev_inbox(browser, live_server, email: str) -> str:
    context = browser.new_context(base_url=live_server, locale="fr-FR", viewport=PHONE, is_mobile=True)
    page = context.new_page()
    page.goto("/connexion")
    page.get_by_label("Adresse électronique").fill(email)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.goto("/dev/messages")
    card = page.locator(".fr-card").filter(has_text="vérification d'un numéro").first
    expect(card).to_contain_text("1 segment")
    code = re.search(r"\b(\d{6})\b", card.locator("pre").inner_text()).group(1)
    context.close()
    return code


def test_a_family_books_online_from_its_phone(phone_page, clinic, live_db, browser, live_server):
    page = phone_page
    page.goto("/974/prendre-rendez-vous")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Prendre rendez-vous en ligne")
    page.get_by_text("Pesée du nourrisson").click()
    choose_commune(page, "st denis", "Saint-Denis (97400)")
    page.get_by_role("button", name="Voir les créneaux").click()

    expect(page.get_by_role("heading", name="Centre PMI Saint-Denis")).to_be_visible()
    first = page.locator(".lapins-creneaux a").first
    box = first.bounding_box()
    assert box["height"] >= 44 and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    page.screenshot(path=f"{SCREENSHOTS}/lapins-online-slots.png", full_page=True)
    first.focus()
    page.keyboard.press("Enter")  # the keyboard alone chooses a time

    expect(page.get_by_role("heading", level=1)).to_have_text("Vos coordonnées")
    page.get_by_label("Nom de famille").fill("Payet")
    page.get_by_label("Votre prénom").fill("Noémie")
    page.get_by_label("Prénom de l'enfant").fill("Éloïse")
    page.get_by_label("Date de naissance").fill("2026-03-02")
    page.get_by_label("Téléphone mobile").fill("0692 12 34 56")
    page.get_by_role("button", name="Recevoir le code par SMS").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Vérification de votre numéro")
    page.get_by_label("Code reçu par SMS").fill(code_from_the_dev_inbox(browser, live_server, clinic))
    page.get_by_role("button", name="Confirmer le rendez-vous").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Votre rendez-vous est confirmé")
    page.screenshot(path=f"{SCREENSHOTS}/lapins-online-booked.png", full_page=True)

    live_db.session.expire_all()
    rdv = live_db.session.scalars(select(Rdv)).one()
    assert rdv.booked_via == BookingChannel.ONLINE and rdv.usagers[0].first_name == "Éloïse"
    confirmation = live_db.session.scalar(select(Message).where(
        Message.rdv_id == rdv.id, Message.kind == MessageKind.CREATED, Message.channel == Channel.SMS))
    assert confirmation is not None and "/r/" in (confirmation.body or "")


@pytest.fixture()
def atelier(live_db):
    """An atelier massage bébé open online, in three days, with two of its three places left."""
    organisation = factories.OrganisationFactory(territory__timezone="Indian/Reunion", territory__number="974",
                                                 territory__quiet_hours_start=time(0),
                                                 territory__quiet_hours_end=time(0))
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Saint-Denis",
                                 address="3 rue de Paris, 97400 Saint-Denis", phone="+262262901010")
    motif = factories.MotifFactory(organisation=organisation, name="Atelier massage bébé", duration_minutes=90,
                                   collective=True, online_bookable=True, online_min_hours=2, online_max_days=14)
    agent = factories.AgentFactory(organisation=organisation)
    starts = datetime.combine(datetime.now(REUNION).date() + timedelta(days=3), time(9), REUNION)
    [session] = sessions.create_sessions(actor=agent, motif=motif, agents=[agent], lieu=lieu, starts=[starts],
                                         duration=timedelta(minutes=90), capacity=3, title="Massage bébé")
    parent = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation])
    sessions.add_participant(actor=agent, session=session, usagers=[parent])
    email, session_id = agent.email, session.id
    live_db.session.remove()
    return email, session_id


def test_a_family_signs_up_online_for_an_atelier_from_its_phone(phone_page, atelier, live_db, browser,
                                                               live_server):
    email, session_id = atelier
    page = phone_page
    page.goto("/974/prendre-rendez-vous")
    page.get_by_text("Atelier massage bébé").click()
    choose_commune(page, "st denis", "Saint-Denis (97400)")
    page.get_by_role("button", name="Voir les créneaux").click()

    listed = page.locator(f"[data-session='{session_id}']")
    expect(listed).to_contain_text("Massage bébé")
    expect(listed).to_contain_text("2 places restantes")
    page.screenshot(path=f"{SCREENSHOTS}/lapins-online-sessions.png", full_page=True)
    listed.get_by_role("link", name=re.compile("^M'inscrire")).click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Vos coordonnées")
    page.get_by_label("Nom de famille").fill("Hoarau")
    page.get_by_label("Votre prénom").fill("Léa")
    page.get_by_label("Prénom de l'enfant").fill("Nolan")
    page.get_by_label("Date de naissance").fill("2026-05-10")
    page.get_by_label("Téléphone mobile").fill("0692 65 43 21")
    page.get_by_role("button", name="Recevoir le code par SMS").click()

    page.get_by_label("Code reçu par SMS").fill(code_from_the_dev_inbox(browser, live_server, email))
    page.get_by_role("button", name="Confirmer mon inscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Votre inscription est confirmée")

    live_db.session.expire_all()
    mine = live_db.session.scalars(select(Participation).where(Participation.rdv_id == session_id)
                                   .order_by(Participation.id.desc())).first()
    assert mine.via == BookingChannel.ONLINE and [p.first_name for p in mine.usagers] == ["Nolan"]
    assert live_db.session.get(Rdv, session_id).places_taken == 2


def test_a_family_sees_more_dates_with_the_keyboard_on_its_phone(phone_page, clinic):
    page = phone_page
    page.goto("/974/prendre-rendez-vous")
    page.get_by_text("Pesée du nourrisson").click()
    choose_commune(page, "97400", "Saint-Denis (97400)")
    page.get_by_role("button", name="Voir les créneaux").click()
    more = page.get_by_role("link", name="Voir plus de dates à Centre PMI Saint-Denis")
    expect(more).to_be_visible()
    box = more.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    more.focus()
    page.keyboard.press("Enter")  # a plain link: the keyboard alone pages on

    expect(page.get_by_role("heading", level=2)).to_contain_text("Semaine du")
    first_week = page.get_by_role("heading", level=2).inner_text()
    page.screenshot(path=f"{SCREENSHOTS}/lapins-online-more-dates.png", full_page=True)
    page.get_by_role("link", name=re.compile("^Voir plus de dates")).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=2)).not_to_have_text(first_week)
    times = page.locator(".lapins-creneaux a")
    expect(times.first).to_be_visible()
    assert times.first.bounding_box()["x"] + times.first.bounding_box()["width"] <= PHONE["width"]
    times.first.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Vos coordonnées")
