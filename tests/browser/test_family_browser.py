"""A family on its phone opens the link of its SMS, proves it is the family, cancels, and sees it is done."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect

from lapins.infra.extensions import db
from lapins.models import Rdv, RdvStatus
from lapins.models.rdvs import CancellationChannel
from lapins.notifications.links import rdv_token
from tests import factories
from tests.browser.conftest import PHONE, SCREENSHOTS

pytestmark = pytest.mark.browser


@pytest.fixture()
def family_rdv(live_db, live_app):
    organisation = factories.OrganisationFactory(territory__timezone="Indian/Reunion", territory__number="974")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Saint-Denis", phone="+262262901010")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson")
    agent = factories.AgentFactory(organisation=organisation)
    parent = factories.UsagerFactory(territory=organisation.territory, first_name="Noémie", last_name="Payet")
    starts_at = (datetime.now(timezone.utc) + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    rdv = factories.RdvFactory(motif=motif, lieu=lieu, usagers=[parent], agents=[agent], starts_at=starts_at)
    with live_app.test_request_context():
        url = f"/r/{rdv_token(rdv.id)}"
    rdv_id = rdv.id
    live_db.session.remove()
    return rdv_id, url


def assert_no_icon_only_control(page) -> None:
    """Every DSFR button or link drawn with an icon also shows words, on the family's phone (issue 19.13)."""
    controls = page.locator("main a[class*='fr-icon'], main button[class*='fr-icon'], main [class*='fr-btn']")
    assert controls.count() > 0
    for index in range(controls.count()):
        control = controls.nth(index)
        if control.is_visible():
            assert len(control.inner_text().strip()) >= 3, control.evaluate("element => element.outerHTML")


def test_a_family_cancels_from_its_phone(phone_page, family_rdv, live_db):
    rdv_id, url = family_rdv
    page = phone_page
    page.goto(url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Votre rendez-vous")
    expect(page.get_by_text("Noémie Payet")).to_have_count(0)

    expect(page.get_by_role("link", name="Ajouter à mon agenda")).to_be_visible()
    assert_no_icon_only_control(page)

    field = page.get_by_label("Les 3 premières lettres du nom de famille")
    field.fill("dur")
    page.get_by_role("button", name="Continuer").click()
    expect(page.locator("#letters-error")).to_contain_text("ne correspondent pas")
    expect(field).to_have_attribute("aria-describedby", "letters-error")

    page.get_by_label("Les 3 premières lettres du nom de famille").fill("PAY")
    page.get_by_role("button", name="Continuer").click()
    expect(page.get_by_text("Noémie Payet")).to_be_visible()
    assert_no_icon_only_control(page)
    page.get_by_label("Raison de l'annulation (facultatif)").fill("Enfant malade")
    button = page.get_by_role("button", name="Annuler le rendez-vous")
    box = button.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]  # reachable without scrolling sideways
    button.click()

    # One tap is not enough: a confirmation step, which can still be left without cancelling.
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirmer l'annulation ?")
    assert db.session.get(Rdv, rdv_id).is_live
    page.get_by_role("button", name="Oui, annuler le rendez-vous").click()

    expect(page.get_by_role("heading", name="Votre rendez-vous est annulé")).to_be_visible()
    expect(page.get_by_role("link", name="0262 90 10 10")).to_be_visible()
    page.screenshot(path=f"{SCREENSHOTS}/lapins-family-cancelled.png", full_page=True)

    rdv = db.session.get(Rdv, rdv_id)
    assert rdv.status == RdvStatus.EXCUSED and rdv.cancelled_via == CancellationChannel.LINK
    assert rdv.cancelled_by_id is None and rdv.cancel_reason == "Enfant malade"

    page.goto(url)  # the link now says the rdv is cancelled, with no button left
    expect(page.get_by_role("heading", level=1)).to_have_text("Rendez-vous annulé")
    expect(page.get_by_role("button", name="Annuler le rendez-vous")).to_have_count(0)
