"""An agent runs a collective session in a real browser, on an office screen and on a phone: creates it, adds a
family (a parent and her baby), then ticks who came; moves a session to another hour, its family told."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from lapins.booking import sessions
from lapins.models import Agent, Lieu, Message, MessageKind, Motif, Participation, ParticipationStatus, Rdv, Role, Usager
from tests import factories
from tests.browser.test_agenda_browser import log_in

pytestmark = pytest.mark.browser
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture()
def pmi(live_db):
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="93",
                                                 name="PMI Pantin")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Pantin")
    motif = factories.MotifFactory(organisation=organisation, name="Atelier massage bébé", duration_minutes=60,
                                   collective=True)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT,
                                   first_name="Claire", last_name="Martin", email="claire.martin@pmi93.example.fr")
    parent = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Awa", last_name="Diallo")
    factories.UsagerFactory(territory=organisation.territory, organisations=[organisation], first_name="Fatou",
                            last_name="Diallo", responsible=parent, phone=None, sms_consent=False)
    ids = dict(agent=agent.id, email=agent.email, motif=motif.id, lieu=lieu.id)
    live_db.session.remove()
    return type("Pmi", (), ids)


@pytest.mark.parametrize("screen", ["page", "phone_page"])
def test_an_agent_creates_a_session_adds_a_family_and_marks_who_came(request, screen, pmi, live_db):
    page = request.getfixturevalue(screen)
    log_in(page, pmi.email)
    # Begun half an hour ago (today, in Paris), so that attendance can be marked at the end of the walk.
    start = datetime.now(PARIS) - timedelta(minutes=30)
    page.goto("/seances/nouvelle")
    page.locator("#motif_id").select_option(str(pmi.motif))
    page.get_by_label("Titre (facultatif)").fill("Massage bébé")
    page.locator("#lieu_id").select_option(str(pmi.lieu))
    page.locator("#agent_ids").select_option(str(pmi.agent))
    page.get_by_label("Date de la (première) séance").fill(start.date().isoformat())
    page.get_by_label("Heure de début").fill(start.strftime("%H:%M"))
    page.get_by_label("Durée (minutes)").fill("60")
    page.get_by_label("Nombre de places").fill("8")
    page.get_by_role("button", name="Créer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Massage bébé")
    expect(page.locator("#places")).to_have_text("0/8 places prises")

    page.get_by_label("Rechercher un usager").fill("Diallo")
    page.get_by_role("button", name="Rechercher").click()
    family = page.get_by_role("group", name="Famille Diallo")
    expect(family.get_by_label("Awa Diallo")).to_be_checked()
    expect(family.get_by_label("Fatou Diallo")).to_be_checked()
    page.get_by_role("button", name="Inscrire", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(
        "Inscription enregistrée : Awa Diallo, Fatou Diallo")
    expect(page.locator("#places")).to_have_text("1/8 places prises")

    # DSFR draws the box on the label, which takes the click.
    page.locator("label", has_text="Présent").filter(has=page.get_by_text("Awa Diallo, Fatou Diallo")).click()
    expect(page.get_by_label("Présent : Awa Diallo, Fatou Diallo")).to_be_checked()
    page.get_by_role("button", name="Enregistrer les présences").click()
    expect(page.locator("body")).to_contain_text("Présences enregistrées : 1 place(s) présente(s).")
    live_db.session.rollback()
    participation = live_db.session.query(Participation).one()
    assert participation.status == ParticipationStatus.PRESENT
    assert live_db.session.query(Rdv).one().places_taken == 1


@pytest.mark.parametrize("screen", ["page", "phone_page"])
def test_an_agent_moves_a_session_to_another_hour_and_its_family_is_told(request, screen, pmi, live_db):
    page = request.getfixturevalue(screen)
    agent = live_db.session.get(Agent, pmi.agent)
    starts = datetime.combine(datetime.now(PARIS).date() + timedelta(days=8), datetime.min.time().replace(hour=10),
                              PARIS)
    [session] = sessions.create_sessions(actor=agent, motif=live_db.session.get(Motif, pmi.motif), agents=[agent],
                                         lieu=live_db.session.get(Lieu, pmi.lieu), starts=[starts],
                                         duration=timedelta(minutes=60), capacity=8, title="Massage bébé")
    parent = live_db.session.query(Usager).filter_by(first_name="Awa").one()
    sessions.add_participant(actor=agent, session=session, usagers=[parent])
    session_id = session.id
    live_db.session.remove()
    log_in(page, pmi.email)
    page.goto(f"/seances/{session_id}")
    page.get_by_role("link", name="Déplacer ou modifier la séance").click()
    expect(page.get_by_label("Heure de début")).to_have_value("10:00")
    page.get_by_label("Heure de début").fill("14:30")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_role("status")).to_contain_text("1 famille(s) prévenue(s)")
    expect(page.locator("body")).to_contain_text("14h30")
    live_db.session.rollback()
    assert live_db.session.get(Rdv, session_id).starts_at == starts.replace(hour=14, minute=30)
    assert live_db.session.query(Message).filter_by(kind=MessageKind.CHANGED).count() == 1
