"""The « taux de lapins » on the home page of an organisation and of a territory: the last 30 days, 24 months as a
DSFR chart with its table, the rate before Lapins entered by the administrator, the freed slots booked again."""
from __future__ import annotations

import html as html_text
import json
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from lapins.infra.extensions import db as _db
from lapins.models import RdvStatus, Role, Territory
from lapins.models.rdvs import Canceller
from tests.conftest import csrf_token_from

PARIS = ZoneInfo("Europe/Paris")
UTC = timezone.utc
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=UTC)  # Monday 19 October 2026, 10:00 in Paris


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def clinic(factories):
    territory = factories.TerritoryFactory(number="59", name="Nord")
    organisation = factories.OrganisationFactory(territory=territory, name="PMI Lille")
    lieu = factories.LieuFactory(organisation=organisation)
    motif = factories.MotifFactory(organisation=organisation)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    usager = factories.UsagerFactory(territory=territory, organisations=[organisation])

    def rdv(days_ago: float, status: RdvStatus, **values):
        starts_at = NOW - timedelta(days=days_ago)
        made = factories.RdvFactory(motif=motif, lieu=lieu, starts_at=starts_at, status=status, usagers=[usager],
                                    agents=[agent], **values)
        return made

    # The last 30 days: 2 no-shows out of 8 held or missed (25 %); a cancelled one and one not recorded don't count.
    for days_ago in (1, 3, 5, 7, 9, 11):
        rdv(days_ago, RdvStatus.SEEN)
    rdv(2, RdvStatus.NOSHOW)
    rdv(20, RdvStatus.NOSHOW)
    rdv(4, RdvStatus.UNKNOWN)
    cancelled = rdv(6, RdvStatus.EXCUSED, cancelled_at=NOW - timedelta(days=8), cancelled_by_party=Canceller.FAMILY)
    # Its time booked again by another family, after the cancellation: a freed slot re-booked.
    rdv(6, RdvStatus.SEEN, created_at=NOW - timedelta(days=7))
    # Three months ago (July 2026): 1 no-show out of 2.
    rdv(95, RdvStatus.NOSHOW)
    rdv(96, RdvStatus.SEEN)
    _db.session.commit()
    return type("Clinic", (), dict(territory=territory, organisation=organisation, agent=agent, admin=admin,
                                   cancelled=cancelled))


def page(client, kind: str, target_id: int) -> str:
    response = client.get(f"/statistiques/{kind}/{target_id}/accueil")
    assert response.status_code == 200
    return html_text.unescape(response.get_data(as_text=True))


def tile(html: str, tile_id: str) -> str:
    start = html.index(f'id="{tile_id}"')
    return " ".join(html[start:html.index("</div></div>", start)].split())


def test_the_organisation_home_page_leads_with_the_rate_of_the_last_30_days(client, auth, clinic):
    auth.login(clinic.agent)
    html = page(client, "organisation", clinic.organisation.id)
    # 2 no-shows ÷ 9 held or missed (7 seen, the re-booked one included, and 2 missed).
    assert "22,2 %" in tile(html, "taux-de-lapins") and "2 absents non excusés sur 9" in tile(html, "taux-de-lapins")
    freed = tile(html, "creneaux-re-reserves")
    assert 'fr-mb-1v">1</p>' in freed and "(1 rendez-vous annulés)" in freed
    assert "Taux avant Lapins non renseigné" in tile(html, "avant-lapins")
    assert 'href="/statistiques/organisation/' in html and "Toutes les statistiques" in html


def test_24_months_as_a_dsfr_chart_with_a_table_to_read_without_javascript(client, auth, clinic):
    auth.login(clinic.agent)
    html = page(client, "organisation", clinic.organisation.id)
    chart = re.search(r"<line-chart x='([^']*)' y='([^']*)' name='([^']*)'", html)
    labels, rates, names = (json.loads(chart.group(index)) for index in (1, 2, 3))
    assert names == ["Taux de lapins"] and len(labels[0]) == 24
    assert labels[0][0] == "11/2024" and labels[0][-1] == "10/2026"
    assert rates[0][labels[0].index("07/2026")] == 50.0 and rates[0][labels[0].index("01/2026")] is None
    table = html[html.index('id="tableau-taux-de-lapins"'):]
    assert re.search(r"juillet 2026</th><td>2</td><td>1</td>\s*<td>50,0\s%</td>", table)
    assert table.count("<tr><th scope=\"row\">") == 24


def test_the_administrator_enters_the_rate_before_lapins_and_the_page_compares(client, auth, clinic):
    auth.login(clinic.admin)
    settings = f"/territoires/{clinic.territory.id}/parametres"
    token = csrf_token_from(client.get(settings).get_data(as_text=True))
    refused = client.post(f"{settings}/reference", data={"csrf_token": token, "rate": "beaucoup", "label": ""})
    assert refused.status_code == 422 and "Indiquez un pourcentage" in refused.get_data(as_text=True)
    refused = client.post(f"{settings}/reference", data={"csrf_token": token, "rate": "120", "label": ""})
    assert refused.status_code == 422 and "entre 0 et 100" in refused.get_data(as_text=True)
    _db.session.expire_all()
    assert _db.session.get(Territory, clinic.territory.id).noshow_baseline_bp is None

    saved = client.post(f"{settings}/reference", data={"csrf_token": token, "rate": "32,5 %", "label": "2025, papier"})
    assert saved.status_code == 302
    _db.session.expire_all()
    assert _db.session.get(Territory, clinic.territory.id).noshow_baseline_bp == 3250

    html = page(client, "territoire", clinic.territory.id)
    before = tile(html, "avant-lapins")
    assert "32,5 %" in before and "(2025, papier)" in before and "les 30 derniers jours en comptent 10,3 points de moins" in before
    names = json.loads(re.search(r"name='([^']*)'", html).group(1))
    assert names == ["Taux de lapins", "Avant Lapins"]


def test_the_territory_page_is_for_those_who_oversee_it(client, auth, clinic, factories):
    auth.login(clinic.agent)
    assert client.get(f"/statistiques/territoire/{clinic.territory.id}/accueil").status_code == 403
    auth.logout()
    stranger = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.ADMIN)
    auth.login(stranger)
    assert client.get(f"/statistiques/organisation/{clinic.organisation.id}/accueil").status_code == 404
    assert client.get(f"/statistiques/territoire/{clinic.territory.id}/accueil").status_code == 404


def test_the_menu_leads_to_ones_own_organisation(client, auth, clinic):
    auth.login(clinic.agent)
    response = client.get("/statistiques/taux-de-lapins")
    assert response.status_code == 302
    assert response.location.endswith(f"/statistiques/organisation/{clinic.organisation.id}/accueil")
