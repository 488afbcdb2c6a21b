"""An agent runs the day in a real browser: marks what happened, undoes a mistake, books with the warnings."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from lapins.models import Rdv, RdvStatus, Role
from lapins.models.audit import AuditAction, AuditEvent
from tests import factories
from tests.browser.test_agenda_browser import log_in

pytestmark = pytest.mark.browser


@pytest.fixture()
def day(live_db):
    """Claire Martin saw Awa Diallo two hours ago; the rdv is still « à renseigner »."""
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="93",
                                                 name="PMI Seine-Saint-Denis")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Pantin")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT,
                                   first_name="Claire", last_name="Martin", email="claire.martin@pmi93.example.fr")
    usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     first_name="Awa", last_name="Diallo")
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    rdv = factories.RdvFactory(motif=motif, lieu=lieu, starts_at=start, ends_at=start + timedelta(minutes=30),
                               agents=[agent], usagers=[usager])
    ids = dict(rdv=rdv.id, agent=agent.id, email=agent.email, motif=motif.id, lieu=lieu.id, usager=usager.id)
    live_db.session.remove()
    return type("Day", (), ids)


def test_a_seen_marked_by_mistake_is_undone_the_same_day_and_the_undo_is_in_the_history(page: Page, day, live_db):
    log_in(page, day.email)
    page.goto("/rdvs/a-renseigner")
    to_fill = page.locator("table").first
    expect(to_fill).to_contain_text("Awa Diallo")
    expect(to_fill).to_contain_text("Claire Martin")  # the agent column
    to_fill.get_by_role("button", name="Absent").click()
    expect(page.get_by_role("status")).to_contain_text("Vous pouvez revenir sur ce choix aujourd'hui")
    done = page.locator("section", has=page.get_by_role("heading", name="Renseignés aujourd'hui"))
    expect(done).to_contain_text("Awa Diallo")
    expect(done.locator(".fr-badge")).to_have_text("Absent non excusé")

    done.get_by_role("button", name="Annuler « Absent non excusé »").click()
    expect(page.get_by_role("heading", name="Renseignés aujourd'hui")).to_have_count(0)
    expect(page.locator("table").first).to_contain_text("Awa Diallo")
    live_db.session.rollback()
    assert live_db.session.get(Rdv, day.rdv).status == RdvStatus.UNKNOWN
    changes = live_db.session.scalars(select(AuditEvent).where(AuditEvent.object_id == day.rdv,
                                                               AuditEvent.action == AuditAction.STATUS_CHANGED)
                                      .order_by(AuditEvent.id)).all()
    assert [event.agent_id for event in changes] == [day.agent, day.agent]
    assert [change["new"] for event in changes for change in event.changes if change["field"] == "status"] == \
        ["noshow", "unknown"]


def test_booking_in_the_past_is_confirmed_first_and_the_sms_preview_follows_the_form(page: Page, day, live_db):
    log_in(page, day.email)
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()
    page.goto(f"/rdvs/nouveau?usager_id={day.usager}&agent_id={day.agent}")
    preview = page.locator("#apercu-sms")
    expect(preview).to_contain_text("Choisissez le motif, la date et l'heure")
    page.locator("#motif_id").select_option(str(day.motif))
    page.locator("#lieu_id").select_option(str(day.lieu))
    page.get_by_label("Date").fill(yesterday)
    page.get_by_label("Heure de début").fill("10:00")
    page.get_by_label("Heure de début").dispatch_event("change")
    # The time as the composer writes it (it may leave the motif out to keep one SMS).
    expect(preview.locator("[data-sms-text]")).to_contain_text(re.compile(r"à 10h( \(Pesée\))?, Centre PMI Pantin"))
    expect(preview.locator("[data-sms-segments]")).to_have_text("1 SMS")
    page.get_by_label("Heure de début").fill("11:15")
    page.get_by_label("Heure de début").dispatch_event("change")
    expect(preview.locator("[data-sms-text]")).to_contain_text("à 11h15")

    page.get_by_role("button", name="Créer le rendez-vous").click()
    expect(page.get_by_role("alert")).to_contain_text("Ce rendez-vous commence dans le passé")
    live_db.session.rollback()
    assert live_db.session.scalar(select(Rdv).where(Rdv.id != day.rdv)) is None
    page.locator("label[for=confirm_unusual]").click()
    page.get_by_role("button", name="Créer le rendez-vous").click()
    # Claire Martin has no opening hours: that alert is asked about on its own, the past one stays confirmed.
    expect(page.get_by_role("alert")).to_contain_text("en dehors des plages d'ouverture")
    expect(page.get_by_role("alert")).not_to_contain_text("dans le passé")
    page.locator("label[for=force]").click()
    page.get_by_role("button", name="Créer le rendez-vous").click()
    expect(page.get_by_text("Le rendez-vous a été créé.")).to_be_visible()


def test_on_a_phone_the_rdv_page_shows_the_sms_preview_and_asks_who_cancelled(phone_page: Page, day, live_db):
    page = phone_page
    upcoming = live_db.session.get(Rdv, day.rdv)
    upcoming.starts_at += timedelta(days=3)
    upcoming.ends_at += timedelta(days=3)
    live_db.session.commit()
    live_db.session.remove()
    log_in(page, day.email)
    page.goto(f"/rdvs/{day.rdv}")
    preview = page.locator("#apercu-sms")
    expect(preview.locator("[data-sms-text]")).to_contain_text("Centre PMI Pantin")
    expect(preview.locator("[data-sms-segments]")).to_have_text(re.compile(r"^[12] SMS$"))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.get_by_role("button", name="Annuler le rendez-vous").click()
    live_db.session.rollback()
    assert live_db.session.get(Rdv, day.rdv).status == RdvStatus.UNKNOWN
    page.locator("label[for=annule-service]").click()
    page.get_by_role("button", name="Annuler le rendez-vous").click()
    expect(page.get_by_role("status")).to_contain_text("Le rendez-vous a été annulé")
