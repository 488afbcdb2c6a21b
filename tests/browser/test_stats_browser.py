"""The statistics page in a real browser: the DSFR chart draws its lines once, with one legend."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
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
    """Claire Martin's rdvs of last month: one seen, one no-show, one cancelled by the family."""
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="75",
                                                 name="PMI Paris 11")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT,
                                   first_name="Claire", last_name="Martin", email="claire.martin@pmi.example.fr")
    today = datetime.now(PARIS).date()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=10)
    for hour, status in ((9, RdvStatus.SEEN), (10, RdvStatus.NOSHOW), (11, RdvStatus.EXCUSED)):
        starts_at = datetime.combine(last_month, time(hour), tzinfo=PARIS).astimezone(timezone.utc)
        factories.RdvFactory(motif=motif, starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30),
                             agents=[agent], status=status, created_at=starts_at - timedelta(days=10),
                             cancelled_at=starts_at - timedelta(days=2) if status == RdvStatus.EXCUSED else None)
    ids = dict(organisation=organisation.id, email=agent.email)
    live_db.session.remove()
    return type("Clinic", (), ids)


# What a person sees of each text inside the chart: laid out, not transparent (the tooltip waits at opacity 0 until
# hovered), with the size of the coloured square drawn beside it.
SEEN_TEXTS = """chart => {
    const seen = element => {
        for (let node = element; node && node !== chart; node = node.parentElement) {
            const style = getComputedStyle(node);
            if (style.display === "none" || style.visibility === "hidden" || Number(style.opacity) === 0) return false;
        }
        const box = element.getBoundingClientRect();
        return box.width > 0 && box.height > 0;
    };
    return [...chart.querySelectorAll("p")].filter(seen).map(text => {
        const square = text.parentElement.querySelector("span");
        const box = square ? square.getBoundingClientRect() : {width: 0, height: 0};
        return {text: text.textContent.trim(), square: box.width * box.height,
                colour: square ? getComputedStyle(square).backgroundColor : null};
    });
}"""


def test_the_chart_has_one_legend_with_a_coloured_square_per_series(page: Page, clinic):
    log_in(page, clinic.email)
    page.goto(f"/statistiques/organisation/{clinic.organisation}")
    chart = page.locator("line-chart")
    expect(chart).to_have_count(1)
    expect(chart.locator("canvas")).to_be_visible()  # drawn in the page, where the chart's stylesheet applies
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(800)  # the chart sizes itself to its column, then animates its lines in
    page.screenshot(path=f"{SCREENSHOTS}/lapins-stats-chart.png", full_page=True)

    texts = chart.evaluate(SEEN_TEXTS)
    names = [text["text"] for text in texts]
    series = ["Taux d’absence", "Taux d’annulation", "Taux d’acceptation des propositions"]
    assert sorted(names) == sorted(series), names  # each series named once: no second legend
    colours = {text["text"]: text["colour"] for text in texts}
    assert all(text["square"] > 0 for text in texts) and len(set(colours.values())) == len(series), texts


def test_the_page_opens_on_the_last_twelve_months_and_a_month_out_of_the_history_is_explained(page: Page, clinic):
    log_in(page, clinic.email)
    page.goto("/statistiques/")
    today = date.today()
    expect(page.get_by_label("Au mois")).to_have_value(f"{today:%Y-%m}")
    first = page.get_by_label("Du mois")
    expect(first).to_have_attribute("min", re.compile(r"^\d{4}-\d{2}$"))
    assert first.input_value() >= first.get_attribute("min")
    page.goto(f"/statistiques/organisation/{clinic.organisation}?du=1990-01")
    expect(page.get_by_role("alert")).to_contain_text("Le mois de début est hors de l'historique : les statistiques "
                                                      "d'ici vont de")
