"""A secretary finds a family typed twice and merges the two files in a real browser, on a desktop and on a phone:
every rdv is then on the kept file, and the old file's link leads there."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from lapins.models import Role, Usager
from lapins.models.rdvs import rdv_usagers
from tests import factories
from tests.browser.test_agenda_browser import log_in

pytestmark = pytest.mark.browser


@pytest.fixture()
def twice(live_db):
    """Inès Benali, typed « Benali » at the desk and « BEN-ALI » by a colleague, with an rdv on each file."""
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", territory__number="93",
                                                 name="PMI Seine-Saint-Denis")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY,
                                   email="accueil@pmi93.example.fr")
    kept = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                   first_name="Inès", last_name="Benali", birth_date=date(2024, 3, 1), phone=None)
    other = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                    first_name="INES", last_name="BEN-ALI", birth_date=date(2024, 3, 1),
                                    phone="+33612345678")
    soon = datetime.now(timezone.utc).replace(microsecond=0, second=0) + timedelta(days=3)
    rdvs = [factories.RdvFactory(motif=motif, agents=[agent], usagers=[usager], starts_at=soon + timedelta(days=i))
            for i, usager in enumerate((kept, kept, other))]
    ids = dict(email=agent.email, kept=kept.id, other=other.id, rdvs=sorted(rdv.id for rdv in rdvs))
    live_db.session.remove()
    return type("Twice", (), ids)


@pytest.mark.parametrize("device", ["page", "phone_page"])
def test_two_files_of_one_child_are_merged_and_every_rdv_is_on_the_kept_one(request, device, twice, live_db):
    page: Page = request.getfixturevalue(device)
    log_in(page, twice.email)
    page.goto(f"/usagers/{twice.kept}")
    duplicates = page.locator("#doublons")
    expect(duplicates).to_contain_text("BEN-ALI INES")
    expect(duplicates).to_contain_text("même date de naissance, noms proches")
    duplicates.get_by_role("link", name="comparer et fusionner").click()

    expect(page.get_by_role("heading", name="Fusionner deux dossiers")).to_be_visible()
    table = page.get_by_role("table")
    expect(table).to_contain_text("Benali")
    expect(table).to_contain_text("BEN-ALI")
    # The kept file has no phone: the other one's is chosen (with its consent), the names stay the kept file's.
    expect(page.get_by_label(re.compile("^Téléphone du dossier fusionné"))).to_be_checked()
    page.locator("label[for=last_name-removed]").click()  # a change of mind, as at the desk
    expect(page.get_by_label(re.compile("^Nom du dossier fusionné"))).to_be_checked()
    page.locator("label[for=last_name-kept]").click()
    page.get_by_role("button", name=f"Fusionner dans le dossier n° {twice.kept}").click()

    expect(page.get_by_text("Les deux dossiers n'en font plus qu'un : 1 rendez-vous")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("BENALI Inès")
    rows = page.locator("table").last.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#doublons")).to_have_count(0)

    page.goto(f"/usagers/{twice.other}")  # the old file's link, from a bookmark or an SMS thread
    expect(page).to_have_url(f"{page.url.split('/usagers')[0]}/usagers/{twice.kept}")
    expect(page.get_by_text("Ce dossier a été fusionné avec un autre")).to_be_visible()

    live_db.session.rollback()
    kept = live_db.session.get(Usager, twice.kept)
    assert kept.phone == "+33612345678" and kept.last_name == "Benali"
    assert sorted(live_db.session.scalars(select(rdv_usagers.c.rdv_id)
                                          .where(rdv_usagers.c.usager_id == twice.kept))) == twice.rdvs
