"""An agent's day with the agenda in a real browser: see the week, book from a free slot, drag, cancel."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from lapins.slots import engine as slots
from lapins.models import Agent, Lieu, Motif, Rdv, RdvStatus, Role
from tests import factories
from tests.browser.conftest import SCREENSHOTS

pytestmark = pytest.mark.browser

PARIS = ZoneInfo("Europe/Paris")
PASSWORD = factories.PASSWORD


def working_tuesday() -> date:
    """A Tuesday of a coming week that is not a public holiday (the browser runs on the real clock)."""
    day = date.today() + timedelta(days=8 - date.today().weekday())
    while day in slots.public_holidays(None, {day.year}):
        day += timedelta(days=7)
    return day


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS).astimezone(timezone.utc)


@pytest.fixture()
def clinic(live_db):
    """Claire Martin consults at Centre PMI Belleville, weekdays 09:00–12:00; Awa Diallo is booked Tuesday 09:00."""
    tuesday = working_tuesday()
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="75")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson", duration_minutes=30,
                                   color="#000091")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT,
                                   first_name="Claire", last_name="Martin", email="claire.martin@pmi.example.fr")
    factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY,
                           first_name="Nadia", last_name="Benali")
    factories.PlageFactory(agent=agent, lieu=lieu, title="Consultations", first_day=tuesday - timedelta(days=8),
                           motifs=[motif])
    usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Awa", last_name="Diallo")
    baby = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                   first_name="Léo", last_name="Bernard")
    existing = factories.RdvFactory(motif=motif, lieu=lieu, starts_at=at(tuesday, 9), ends_at=at(tuesday, 9, 30),
                                    agents=[agent], usagers=[usager])
    ids = dict(agent=agent.id, lieu=lieu.id, motif=motif.id, baby=baby.id, existing=existing.id)
    live_db.session.remove()
    return type("Clinic", (), dict(tuesday=tuesday, email=agent.email, **ids))


def log_in(page: Page, email: str) -> None:
    page.goto("/connexion")
    page.get_by_label("Adresse électronique").fill(email)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    expect(page.locator("h1")).to_have_text("Mon agenda")


def slot_point(page: Page, day: date, clock: str) -> tuple[float, float]:
    """Screen coordinates of the middle of a time slot's first quarter-hour in a day column."""
    column = page.locator(f"td.fc-timegrid-col[data-date='{day.isoformat()}']").bounding_box()
    lane = page.locator(f"td.fc-timegrid-slot-lane[data-time='{clock}']").bounding_box()
    return column["x"] + column["width"] / 2, lane["y"] + lane["height"] / 4


def drag(page: Page, source, to: tuple[float, float]) -> None:
    box = source.bounding_box()
    start = (box["x"] + box["width"] / 2, box["y"] + 6)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0], start[1] + 10, steps=3)
    page.mouse.move(to[0], to[1] - slot_height(page) / 4 + 6, steps=12)
    page.mouse.up()


def slot_height(page: Page) -> float:
    return page.locator("td.fc-timegrid-slot-lane").first.bounding_box()["height"]


def rdv_row(live_db, rdv_id: int) -> Rdv:
    live_db.session.rollback()  # a fresh read of what the server wrote
    return live_db.session.get(Rdv, rdv_id)


def test_an_agent_books_moves_and_cancels_an_rdv_from_the_agenda(page: Page, clinic, live_db):
    log_in(page, clinic.email)
    page.goto(f"/agenda/agents/{clinic.agent}?date={clinic.tuesday.isoformat()}")

    existing = page.locator("a.fc-event", has_text="Awa Diallo — Consultation nourrisson")
    expect(existing).to_be_visible()
    expect(existing).to_contain_text("09:00")
    plage = page.locator(f"td[data-date='{clinic.tuesday.isoformat()}'] .fc-bg-event.lapins-plage")
    expect(plage).to_contain_text("Consultations — Centre PMI Belleville")
    expect(page.locator(".lapins-liste").get_by_role("link", name="Awa Diallo")).to_be_visible()
    page.screenshot(path=f"{SCREENSHOTS}/lapins-agenda-semaine.png", full_page=True)

    # A click on a free time opens the booking form at that time, agent and lieu filled in.
    page.mouse.click(*slot_point(page, clinic.tuesday, "10:00:00"))
    expect(page.locator("h1")).to_have_text("Nouveau rendez-vous")
    expect(page.get_by_label("Heure de début")).to_have_value("10:00")
    expect(page.get_by_label("Date")).to_have_value(clinic.tuesday.isoformat())
    page.get_by_label("Rechercher un usager").fill("Bernard")
    page.get_by_role("button", name="Rechercher").click()
    page.get_by_role("link", name="Ajouter au rendez-vous").click()
    page.locator("#motif_id").select_option(str(clinic.motif))
    expect(page.locator("#lieu_id")).to_have_value(str(clinic.lieu))
    page.get_by_role("button", name="Créer le rendez-vous").click()
    expect(page.get_by_text("Le rendez-vous a été créé.")).to_be_visible()
    booked_id = int(page.url.rsplit("/", 1)[1])
    assert rdv_row(live_db, booked_id).starts_at == at(clinic.tuesday, 10)

    # Drag it one hour later: the server stores the right instant.
    page.goto(f"/agenda/agents/{clinic.agent}?date={clinic.tuesday.isoformat()}")
    booked = page.locator("a.fc-event", has_text="Léo Bernard")
    expect(booked).to_contain_text("10:00")
    drag(page, booked, slot_point(page, clinic.tuesday, "11:00:00"))
    expect(page.locator("#agenda-annonce")).to_contain_text("Rendez-vous déplacé au")
    expect(page.locator("#agenda-annonce")).to_contain_text("à 11h00")
    # Redrawn, the calendar keeps the focus on the rdv just moved rather than at the top of the page.
    expect(page.locator(":focus")).to_have_attribute("data-event-id", f"rdv-{booked_id}")
    assert rdv_row(live_db, booked_id).starts_at == at(clinic.tuesday, 11)
    expect(page.locator("a.fc-event", has_text="Léo Bernard")).to_contain_text("11:00")
    expect(page.locator("#liste-rdv tr", has_text="Léo Bernard")).to_contain_text("11h00 – 11h30")

    # Dropped onto Awa's rdv: refused in a DSFR modal that offers the override; the rdv stays where it was.
    drag(page, page.locator("a.fc-event", has_text="Léo Bernard"), slot_point(page, clinic.tuesday, "09:00:00"))
    dialog = page.locator("#deplacement-modal")
    expect(dialog).to_have_class(re.compile("fr-modal--opened"))
    expect(dialog).to_contain_text("Claire Martin a déjà un rendez-vous de 09h00 à 09h30")
    expect(dialog.get_by_role("button", name="Forcer le déplacement")).to_be_visible()
    page.screenshot(path=f"{SCREENSHOTS}/lapins-agenda-conflit.png")
    dialog.get_by_role("button", name="Laisser à sa place").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("a.fc-event", has_text="Léo Bernard")).to_contain_text("11:00")
    assert rdv_row(live_db, booked_id).starts_at == at(clinic.tuesday, 11)

    # Cancel it from its page: the agenda shows it struck through.
    page.locator("a.fc-event", has_text="Léo Bernard").click()
    expect(page.locator("h1")).to_have_text("Consultation nourrisson")
    # Nobody chosen as the one who cancelled: the browser asks for it and nothing is cancelled.
    page.get_by_role("button", name="Annuler le rendez-vous").click()
    expect(page.locator("h1")).to_have_text("Consultation nourrisson")
    assert page.get_by_label("Annulé par l'usager").evaluate("radio => !radio.validity.valid")
    assert rdv_row(live_db, booked_id).status == RdvStatus.UNKNOWN
    page.locator("label[for=annule-usager]").click()
    page.get_by_role("button", name="Annuler le rendez-vous").click()
    expect(page.locator(".fr-alert--success")).to_contain_text("Le rendez-vous a été annulé")
    assert rdv_row(live_db, booked_id).status == RdvStatus.EXCUSED
    page.goto(f"/agenda/agents/{clinic.agent}?date={clinic.tuesday.isoformat()}")
    cancelled = page.locator("a.fc-event.lapins-rdv--annule", has_text="Léo Bernard")
    expect(cancelled).to_contain_text("Annulé par l'usager")
    page.screenshot(path=f"{SCREENSHOTS}/lapins-agenda-annule.png", full_page=True)


def test_events_are_reachable_with_the_keyboard(page: Page, clinic):
    log_in(page, clinic.email)
    page.goto(f"/agenda/agents/{clinic.agent}?date={clinic.tuesday.isoformat()}&vue=jour")
    event = page.locator("a.fc-event", has_text="Awa Diallo")
    expect(event).to_be_visible()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('fc-event')"):
            break
    assert page.evaluate("document.activeElement.getAttribute('href')") == f"/rdvs/{clinic.existing}"
    page.screenshot(path=f"{SCREENSHOTS}/lapins-agenda-jour-focus.png")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Consultation nourrisson")


def test_the_lieu_shows_its_agents_side_by_side(page: Page, clinic, live_db):
    lieu = live_db.session.get(Lieu, clinic.lieu)
    colleague = factories.AgentFactory(organisation=lieu.organisation, first_name="Inès", last_name="Morel")
    factories.PlageFactory(agent=colleague, lieu=lieu, title="Pesées", first_day=clinic.tuesday, weekdays=0b0000010,
                           start_time=time(14, 0), end_time=time(17, 0), motifs=[live_db.session.get(Motif, clinic.motif)])
    live_db.session.remove()
    log_in(page, clinic.email)
    page.goto("/agenda/lieux")
    page.get_by_role("link", name="Centre PMI Belleville").click()
    page.get_by_label("Aller au").fill(clinic.tuesday.isoformat())
    page.get_by_role("button", name="Afficher").click()
    columns = page.locator(".lapins-colonne")
    expect(columns).to_have_count(2)
    expect(columns.nth(0)).to_contain_text("Claire Martin")
    expect(columns.nth(0).locator("a.fc-event.lapins-rdv")).to_contain_text("Awa Diallo")
    expect(columns.nth(1)).to_contain_text("Inès Morel")
    expect(columns.nth(1).locator(".fc-bg-event.lapins-plage")).to_contain_text("Pesées")
    page.screenshot(path=f"{SCREENSHOTS}/lapins-agenda-lieu.png", full_page=True)

    # Awa's rdv handed over to Inès by dropping it in her column at 14:00.
    target = columns.nth(1).locator("td.fc-timegrid-slot-lane[data-time='14:00:00']").bounding_box()
    column = columns.nth(1).locator("td.fc-timegrid-col[data-date]").bounding_box()
    drag(page, columns.nth(0).locator("a.fc-event.lapins-rdv"),
         (column["x"] + column["width"] / 2, target["y"] + target["height"] / 4))
    expect(page.locator("#agenda-annonce")).to_contain_text("à 14h00")
    moved = rdv_row(live_db, clinic.existing)
    assert [agent.full_name for agent in moved.agents] == ["Inès Morel"]
    assert moved.starts_at == at(clinic.tuesday, 14)
    expect(columns.nth(1).locator("a.fc-event.lapins-rdv")).to_contain_text("Awa Diallo")


def test_the_lieu_day_table_badges_say_the_status_and_a_short_rdv_shows_its_time_and_family(page: Page, clinic,
                                                                                             live_db):
    """A 15-minute rdv is one line high in the week: hovering or tabbing to it shows its time and family whole."""
    motif = live_db.session.get(Motif, clinic.motif)
    family = factories.UsagerFactory(territory=motif.organisation.territory, organisations=[motif.organisation],
                                     first_name="Marie-Héloïse", last_name="Fontaine-Delacroix")
    factories.RdvFactory(motif=motif, lieu=live_db.session.get(Lieu, clinic.lieu), starts_at=at(clinic.tuesday, 10),
                         ends_at=at(clinic.tuesday, 10, 15), agents=[live_db.session.get(Agent, clinic.agent)],
                         usagers=[family])
    live_db.session.remove()
    log_in(page, clinic.email)
    page.goto(f"/agenda/lieux/{clinic.lieu}?date={clinic.tuesday.isoformat()}")
    badges = page.locator("#liste-rdv .fr-badge")
    expect(badges).to_have_count(2)
    expect(badges.first).to_have_text("À venir")

    page.goto(f"/agenda/agents/{clinic.agent}?date={clinic.tuesday.isoformat()}")
    event = page.locator("a.fc-event.fc-timegrid-event-short", has_text="10:00")
    expect(event).to_have_attribute("title", re.compile(r"10:00.*Marie-Héloïse Fontaine-Delacroix"))
    title = event.locator(".lapins-rdv__titre")
    before = event.bounding_box()["height"]
    overflows = "el => el.getBoundingClientRect().bottom > el.closest('.fc-event').getBoundingClientRect().bottom + 1"
    assert title.evaluate(overflows)
    event.hover()
    grown = event.bounding_box()["height"]
    assert grown > before
    assert not title.evaluate(overflows)
    page.mouse.move(0, 0)
    assert event.bounding_box()["height"] == before
    event.focus()
    assert event.bounding_box()["height"] > before
    page.screenshot(path=f"{SCREENSHOTS}/lapins-agenda-rdv-court.png")


def test_a_new_family_with_its_child_is_created_from_the_booking_form_and_the_slot_is_kept(page: Page, clinic,
                                                                                          live_db):
    log_in(page, clinic.email)
    page.goto(f"/agenda/agents/{clinic.agent}?date={clinic.tuesday.isoformat()}")
    page.mouse.click(*slot_point(page, clinic.tuesday, "10:00:00"))
    expect(page.get_by_label("Heure de début")).to_have_value("10:00")
    page.get_by_role("link", name="Créer un nouvel usager").click()
    page.locator("#first_name").fill("Inès")
    page.locator("#last_name").fill("Haddad")
    page.get_by_label("Prénom de l'enfant").fill("Sami")
    page.get_by_label("Date de naissance de l'enfant").fill("2025-06-01")
    page.get_by_role("button", name="Enregistrer et revenir au rendez-vous").click()

    expect(page.locator("h1")).to_have_text("Nouveau rendez-vous")
    expect(page.get_by_role("status")).to_contain_text("le rendez-vous est pour Sami")
    expect(page.get_by_label("Heure de début")).to_have_value("10:00")
    expect(page.get_by_label("Date")).to_have_value(clinic.tuesday.isoformat())
    expect(page.get_by_label(re.compile("^Sami Haddad"))).to_be_checked()
    expect(page.get_by_text("enfant de Inès Haddad")).to_be_visible()
    page.locator("#motif_id").select_option(str(clinic.motif))
    page.get_by_role("button", name="Créer le rendez-vous").click()
    expect(page.get_by_text("Le rendez-vous a été créé.")).to_be_visible()
    booked = rdv_row(live_db, int(page.url.rsplit("/", 1)[1]))
    assert booked.starts_at == at(clinic.tuesday, 10)
    assert [usager.full_name for usager in booked.usagers] == ["Sami Haddad"]


def test_free_hours_are_reached_with_the_keyboard_and_the_focus_comes_back(page: Page, clinic):
    """A booking with the keyboard alone: the shortcut reaches the free hours in order, Enter books, and the focus
    returns where it was when the agent comes back (and after the week/day switch reloads the page)."""
    log_in(page, clinic.email)
    page.goto(f"/agenda/agents/{clinic.agent}?date={clinic.tuesday.isoformat()}&vue=jour")
    button = page.get_by_role("button", name="Aller au créneau libre suivant")
    expect(page.locator("a.lapins-libre").first).to_be_attached()
    button.focus()
    tabs = 0
    while not page.evaluate("document.activeElement.classList.contains('lapins-libre')") and tabs < 40:
        page.keyboard.press("Tab")
        tabs += 1
    # From the shortcut's button: the calendar's own links first (Awa's rdv at 09:00), then 09:30, in time order.
    assert tabs <= 6, f"{tabs} Tabs from the shortcut to the first free hour"
    assert page.evaluate("document.activeElement.dataset.eventId").endswith("T09:30:00")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.eventId").endswith("T10:00:00")
    page.keyboard.press("Alt+Shift+L")
    assert page.evaluate("document.activeElement.dataset.eventId").endswith("T10:30:00")
    expect(page.locator(":focus")).to_have_attribute("aria-label", re.compile(r"^Heure libre le mardi .* à 10:30"))

    page.keyboard.press("Enter")
    expect(page.get_by_label("Heure de début")).to_have_value("10:30")
    page.go_back()
    expect(page.locator(":focus")).to_have_attribute("data-event-id", re.compile(r"T10:30:00$"))

    page.locator("label[for=vue-semaine]").click()
    expect(page).to_have_url(re.compile("vue=semaine"))
    expect(page.locator(":focus")).to_have_id("vue-semaine")
