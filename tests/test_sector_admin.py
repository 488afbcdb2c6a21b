"""The territory's online booking page and its sectors, for its administrators only; a motif's and a lieu's online
booking fields, checked in French before anything is stored."""
from __future__ import annotations

import html
import io
import re
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from lapins.infra.extensions import db as _db
from lapins.models import Lieu, Motif, Role, Sector, SectorZone
from lapins.models.territory_admins import TerritoryAdmin
from lapins.sectors import imports
from lapins.sectors.communes import communes
from tests.conftest import AuthActions, csrf_token_from

SECTORS = "secteur;commune;rue\nNord;92004;\nNord;92025;\nSud;92012;\nSud;92040;92040_0150\n"


@pytest.fixture()
def dept(factories):
    territory = factories.TerritoryFactory(number="92", name="Hauts-de-Seine")
    home = factories.OrganisationFactory(territory=territory, name="PMI Boulogne")
    sister = factories.OrganisationFactory(territory=territory, name="PMI Nanterre")
    far = factories.OrganisationFactory(territory=factories.TerritoryFactory(), name="PMI Lointaine")
    people = {
        "territory_admin": factories.AgentFactory(organisation=home, organisation__role=Role.AGENT, last_name="Terr"),
        "org_admin": factories.AgentFactory(organisation=home, organisation__role=Role.ADMIN, last_name="Orga"),
        "agent": factories.AgentFactory(organisation=home, organisation__role=Role.AGENT, last_name="Agent"),
        "secretary": factories.AgentFactory(organisation=home, organisation__role=Role.SECRETARY, last_name="Secr"),
        "far_admin": factories.AgentFactory(organisation=far, organisation__role=Role.ADMIN, last_name="Loin"),
    }
    _db.session.add(TerritoryAdmin(agent_id=people["territory_admin"].id, territory_id=territory.id))
    _db.session.commit()
    return SimpleNamespace(territory=territory, home=home, sister=sister, **people,
                           lieu=factories.LieuFactory(organisation=home, name="Centre Boulogne"),
                           sister_lieu=factories.LieuFactory(organisation=sister, name="Centre Nanterre"),
                           motif=factories.MotifFactory(organisation=home, name="Pesée"))


def login(client, agent):
    assert AuthActions(client).login(agent).status_code == 302


def token(client, url: str) -> str:
    return csrf_token_from(client.get(url).get_data(as_text=True))


def page_url(dept) -> str:
    return f"/admin/territoires/{dept.territory.id}/en-ligne"


def upload(client, dept, data: bytes, action: str, **extra):
    form = {"csrf_token": token(client, page_url(dept)), "action": action, **extra}
    if data is not None:
        form["file"] = (io.BytesIO(data), "secteurs.csv")
    return client.post(f"/admin/territoires/{dept.territory.id}/secteurs/import", data=form,
                       content_type="multipart/form-data")


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def zone_count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(SectorZone))


def test_an_administrator_checks_a_file_then_applies_it_as_checked(client, dept, db):
    login(client, dept.territory_admin)
    checked = upload(client, dept, SECTORS.encode(), "check")
    page = text(checked)
    assert checked.status_code == 200 and "Fichier vérifié : rien n'est encore enregistré" in page
    assert "4 ligne(s) lues : 2 secteur(s), 4 commune(s) ou rue(s)" in page
    assert "commune(s) du département resteraient sans secteur" in page and "Nanterre (92050)" in page
    assert zone_count(db) == 0
    kept = re.search(r'name="checked" value="([^"]+)"', page).group(1)
    applied = upload(client, dept, None, "apply", checked=kept)  # the file checked, sent back by the page
    assert applied.status_code == 302
    listed = text(client.get(applied.location))
    assert "Secteurs enregistrés : 2 secteur(s), 4 commune(s) ou rue(s)" in listed
    assert re.search(r">Sud</a></th>\s*<td>1</td>\s*<td>1</td>", listed)  # a commune, and a street of another
    assert zone_count(db) == 4


def test_a_bad_file_is_reported_and_applying_it_stores_nothing(client, dept, db):
    login(client, dept.territory_admin)
    bad = SECTORS + "Est;92999;\nEst;92012;\n"
    response = upload(client, dept, bad.encode(), "apply")
    page = text(response)
    assert response.status_code == 422 and "Rien n'a été enregistré" in page
    assert "Ligne 6 : code commune « 92999 » inconnu" in page
    assert "Ligne 7 : Boulogne-Billancourt (92012) est déjà dans le secteur « Sud » (ligne 4)" in page
    assert zone_count(db) == 0 and db.session.scalar(select(func.count()).select_from(Sector)) == 0


@pytest.mark.parametrize("data, message", [
    ("Nord;92012\n".encode() + b"\x81\x8d\x8f\x90\x9d", "Encodage du fichier non reconnu"),
    (b"Nord;92012\n" * (10 * 1024 * 1024 // 11), "Fichier trop volumineux"),
    (None, "Choisissez le fichier CSV des secteurs."),
])
def test_an_unreadable_or_missing_file_gets_a_french_message(client, dept, db, data, message):
    login(client, dept.territory_admin)
    response = upload(client, dept, data, "apply")
    assert response.status_code in (413, 422) and message in text(response)
    assert zone_count(db) == 0


def test_a_sector_gets_its_lieux_agents_and_communes_typed_without_javascript(client, dept, db):
    imports.apply(dept.territory, SECTORS.encode(), communes())
    sector = db.session.scalar(select(Sector).where(Sector.name == "Nord"))
    login(client, dept.territory_admin)
    url = f"/admin/secteurs/{sector.id}"
    page = text(client.get(url))
    assert "Asnières-sur-Seine" in page and "Centre Nanterre" in page  # a territory admin sees every organisation
    response = client.post(url, data={"csrf_token": token(client, url), "lieux": [dept.lieu.id, dept.sister_lieu.id],
                                      "agents": [dept.agent.id]})
    assert response.status_code == 302
    db.session.expire_all()
    assert {lieu.name for lieu in sector.lieux} == {"Centre Boulogne", "Centre Nanterre"}
    assert [agent.id for agent in sector.agents] == [dept.agent.id]

    add = f"{url}/zones"
    response = client.post(add, data={"csrf_token": token(client, url), "commune": "st cloud"})
    assert response.status_code == 302 and "Saint-Cloud fait désormais partie du secteur « Nord »" in text(
        client.get(response.location))
    for typed, message in [("Boulogne-Billancourt", "Boulogne-Billancourt est déjà dans le secteur « Sud »"),
                           ("Lille", "Aucune commune du département 92 ne correspond à « Lille »"),
                           ("", "Saisissez la commune")]:
        response = client.post(add, data={"csrf_token": token(client, url), "commune": typed})
        assert response.status_code == 422 and message in text(response)
    response = client.post(add, data={"csrf_token": token(client, url), "commune": "Boulogne",
                                      "commune_code": "92012", "street": "92012_0420"})
    assert response.status_code == 302
    zone = db.session.scalar(select(SectorZone).where(SectorZone.commune_code == "92064"))
    response = client.post(f"{url}/zones/retirer", data={"csrf_token": token(client, url), "zone": zone.id})
    assert "Saint-Cloud ne fait plus partie du secteur « Nord »" in text(client.get(response.location))
    assert {(z.commune_code, z.street_code) for z in db.session.get(Sector, sector.id).zones} == {
        ("92004", ""), ("92025", ""), ("92012", "92012_0420")}


def test_an_organisation_admin_keeps_the_other_organisations_lieux_as_they_are(client, dept, db, factories):
    """In a territory without territory administrator, an organisation's admin administers its sectors but chooses
    only among their own lieux and agents, and sees no other organisation's names."""
    _db.session.query(TerritoryAdmin).delete()
    sector = Sector(territory=dept.territory, name="Nord", lieux=[dept.sister_lieu])
    _db.session.add(sector)
    _db.session.commit()
    login(client, dept.org_admin)
    url = f"/admin/secteurs/{sector.id}"
    page = text(client.get(url))
    assert "Centre Boulogne" in page and "Centre Nanterre" not in page
    assert "Centre Nanterre" not in text(client.get(page_url(dept)))
    assert client.post(url, data={"csrf_token": token(client, url), "lieux": [dept.lieu.id]}).status_code == 302
    db.session.expire_all()
    assert {lieu.name for lieu in db.session.get(Sector, sector.id).lieux} == {"Centre Boulogne", "Centre Nanterre"}
    response = client.post(url, data={"csrf_token": token(client, url), "lieux": [dept.sister_lieu.id]})
    assert response.status_code == 422 and "Choisissez des lieux et des agents de vos organisations" in text(response)


@pytest.mark.parametrize("who, status", [("agent", 403), ("secretary", 403), ("org_admin", 403), ("far_admin", 404)])
def test_only_the_territorys_administrators_reach_its_online_booking_and_sectors(client, dept, db, who, status):
    sector = Sector(territory=dept.territory, name="Nord")
    _db.session.add(sector)
    _db.session.commit()
    login(client, getattr(dept, who))
    csrf = token(client, "/usagers")
    for url, method in [(page_url(dept), "GET"), (f"/admin/secteurs/{sector.id}", "GET"),
                        (f"/admin/secteurs/{sector.id}", "POST"), (f"/admin/secteurs/{sector.id}/zones", "POST"),
                        (f"{page_url(dept)}/interrupteur", "POST"),
                        (f"/admin/territoires/{dept.territory.id}/secteurs/import", "POST")]:
        response = client.open(url, method=method, data={"csrf_token": csrf, "commune_code": "92012"})
        assert response.status_code == status, (url, method)
    db.session.expire_all()
    assert zone_count(db) == 0 and db.session.get(type(dept.territory), dept.territory.id).online_booking is True


def test_the_territory_switch_closes_and_reopens_online_booking(client, dept, db):
    login(client, dept.territory_admin)
    url = f"{page_url(dept)}/interrupteur"
    response = client.post(url, data={"csrf_token": token(client, page_url(dept))})
    assert "fermée dans tout le département" in text(client.get(response.location))
    db.session.expire_all()
    assert dept.territory.online_booking is False
    client.post(url, data={"csrf_token": token(client, page_url(dept))})
    db.session.expire_all()
    assert dept.territory.online_booking is True


def test_an_address_is_tried_on_the_page(client, dept, db):
    imports.apply(dept.territory, SECTORS.encode(), communes())
    login(client, dept.territory_admin)
    page = text(client.get(page_url(dept), query_string={"commune": "issy les moulineaux", "street": "92040_0150"}))
    assert "Issy-les-Moulineaux (92040) :" in page and ">Sud</a>" in page
    page = text(client.get(page_url(dept), query_string={"commune": "Nanterre"}))
    assert "aucun secteur" in page


# --- A motif's and a lieu's online booking fields -------------------------------------------------------------------

MOTIF = {"name": "Consultation prénatale", "duration_minutes": "45", "location_type": "on_site", "color": "#18753C",
         "cancellation_limit_hours": "24", "active": "y", "online_bookable": "y", "online_min_hours": "2",
         "online_max_days": "42", "sectorised": "y", "online_for_self": "y"}


def test_a_motif_is_opened_to_online_booking_with_its_delays(client, dept, db):
    login(client, dept.territory_admin)
    url = f"/admin/organisations/{dept.home.id}/motifs/nouveau"
    assert "Prise de rendez-vous en ligne" in text(client.get(url))
    response = client.post(url, data={"csrf_token": token(client, url), **MOTIF})
    assert response.status_code == 302
    motif = db.session.scalar(select(Motif).where(Motif.name == "Consultation prénatale"))
    assert (motif.online_bookable, motif.online_min_hours, motif.online_max_days, motif.sectorised) == (True, 2, 42, True)
    assert motif.online_for_self  # a prenatal consultation: the family gives the person's own birth date


@pytest.mark.parametrize("change, message", [
    ({"online_min_hours": "48", "online_max_days": "2"}, "Le délai maximum (2 jours) doit dépasser le délai minimum (48 heures)."),
    ({"online_min_hours": "721"}, "Indiquez un nombre d'heures de 0 à 720."),
    ({"online_max_days": "0"}, "Indiquez un nombre de jours de 1 à 365."),
    ({"online_max_days": "six semaines"}, "Saisissez un nombre entier (exemple : 30)."),
])
def test_bad_online_delays_get_a_french_message_and_nothing_is_stored(client, dept, db, change, message):
    login(client, dept.territory_admin)
    url = f"/admin/motifs/{dept.motif.id}/modifier"
    response = client.post(url, data={"csrf_token": token(client, url), **MOTIF, "name": "Pesée", **change})
    assert response.status_code == 422 and message in text(response)
    db.session.expire_all()
    assert db.session.get(Motif, dept.motif.id).online_bookable is False


def test_a_lieu_is_closed_to_online_booking_and_placed(client, dept, db):
    login(client, dept.territory_admin)
    url = f"/admin/lieux/{dept.lieu.id}/modifier"
    data = {"name": "Centre Boulogne", "address": "1 rue de Paris, 92100 Boulogne-Billancourt",
            "active": "y", "latitude": "48,8351", "longitude": "2.2410"}
    assert client.post(url, data={"csrf_token": token(client, url), **data}).status_code == 302
    db.session.expire_all()
    lieu = db.session.get(Lieu, dept.lieu.id)
    assert (lieu.online_booking, lieu.latitude, lieu.longitude) == (False, 48.8351, 2.241)
    for change, message in [({"latitude": "91"}, "La latitude s'écrit en degrés décimaux, de -90 à 90"),
                            ({"longitude": "est"}, "La longitude s'écrit en degrés décimaux, de -180 à 180"),
                            ({"longitude": ""}, "Indiquez la latitude et la longitude, ou aucune des deux.")]:
        response = client.post(url, data={"csrf_token": token(client, url), **data, **change})
        assert response.status_code == 422 and message in text(response)
    db.session.expire_all()
    assert db.session.get(Lieu, dept.lieu.id).latitude == 48.8351
