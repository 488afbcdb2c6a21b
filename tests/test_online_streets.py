"""A commune split between sectors by street. With no geocoder to tell a family's street, the public page offers every
lieu serving part of the commune, says so in French with each lieu's number, and a time chosen at any of them is
booked. With the territory's addok (its loopback fake), the family types its street and sees its sector's lieux;
an unknown street or a silent geocoder falls back to the whole commune, said in French."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timezone

import pytest
import time_machine
from sqlalchemy import select

from lapins.models import Sector
from lapins.sectors import imports
from lapins.sectors.communes import communes
from lapins.sectors.serving import address_sectors, serving_lieux
from tests.fakes.addok import AddokFake
from tests.test_online_booking import START, give_details, page_text, slot_links
from tests.test_online_nearest import lieux_shown

NOW = datetime(2026, 10, 19, 4, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def split(factories, db):
    """Saint-Denis (97411) split by street between sectors Nord and Sud, no sector for the whole commune; Sainte-Marie
    (97418) wholly in Nord."""
    organisation = factories.OrganisationFactory(territory__number="974", territory__timezone="Indian/Reunion")
    territory = organisation.territory
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson", online_bookable=True,
                                   online_min_hours=2, online_max_days=14, sectorised=True)
    lieux = []
    for name, address, phone in (("PMI du Butor", "2 rue du Butor, 97400 Saint-Denis", "+262262111111"),
                                 ("PMI du Chaudron", "5 rue du Chaudron, 97400 Saint-Denis", "+262262222222")):
        lieu = factories.LieuFactory(organisation=organisation, name=name, address=address, phone=phone)
        factories.PlageFactory(lieu=lieu, agent__organisation=organisation, motifs=[motif],
                               first_day=date(2026, 1, 1), start_time=time(8), end_time=time(12), weekdays=0b1111111)
        lieux.append(lieu)
    imports.apply(territory, b"Nord,97411,97411_0420\nNord,97418,\nSud,97411,97411_0750\n", communes())
    nord, sud = (db.session.scalar(select(Sector).where(Sector.name == name)) for name in ("Nord", "Sud"))
    nord.lieux.append(lieux[0])
    sud.lieux.append(lieux[1])
    db.session.commit()
    return territory, motif, lieux


def test_without_a_street_every_lieu_serving_part_of_the_commune_is_offered_and_said_so(client, db, split):
    territory, motif, _ = split
    page = client.get(START, query_string={"motif": motif.id, "commune_code": "97411", "commune": ""})
    text = page_text(page)
    assert lieux_shown(page) == ["PMI du Butor", "PMI du Chaudron"]
    assert "Saint-Denis est partagée entre plusieurs secteurs selon la rue" in text
    assert re.findall(r"Sert-il votre rue \? Appelez le <a href=\"tel:[^\"]+\">([^<]+)</a>", text) == [
        "0262 11 11 11", "0262 22 22 22"]
    assert "Code de votre rue" not in text  # no BAN code asked of a family
    # A time at either lieu is booked: read again, the address is still served by it.
    chosen = next(link for label, link in slot_links(text) if label.startswith("PMI du Chaudron"))
    sent = give_details(client, chosen)
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/prendre-rendez-vous/code")


def test_a_commune_in_one_sector_has_no_note(client, db, split):
    territory, motif, _ = split
    text = page_text(client.get(START, query_string={"motif": motif.id, "commune_code": "97418", "commune": ""}))
    assert "partagée entre plusieurs secteurs" not in text and "Sert-il votre rue" not in text
    assert [label.split(",")[0] for label, _ in slot_links(text)][:1] == ["PMI du Butor"]


def test_a_known_street_still_narrows_to_its_sector(app, db, split):
    territory, motif, lieux = split
    today = date(2026, 10, 19)
    assert address_sectors(territory.id, "97411") == set()  # no whole-commune sector
    assert len(address_sectors(territory.id, "97411", any_street=True)) == 2
    assert [each.lieu.name for each in serving_lieux(motif, "97411", today=today, street_code="97411_0750",
                                                     any_street=True)] == ["PMI du Chaudron"]
    assert [each.lieu.name for each in serving_lieux(motif, "97411", today=today, any_street=True)] == [
        "PMI du Butor", "PMI du Chaudron"]


# --- With the territory's geocoder (addok, here its loopback fake) ----------------------------------------------

SAINT_DENIS_STREETS = [
    {"id": "97411_0420", "name": "Rue du Butor", "citycode": "97411", "city": "Saint-Denis", "type": "street"},
    {"id": "97411_0750", "name": "Rue du Chaudron", "citycode": "97411", "city": "Saint-Denis", "type": "street"},
    {"id": "97415_0420", "name": "Rue du Butor", "citycode": "97415", "city": "Saint-Paul", "type": "street"},
]


@pytest.fixture()
def addok(app):
    with AddokFake(SAINT_DENIS_STREETS) as fake:
        saved = app.config.get("ADDOK_URL")
        app.config["ADDOK_URL"] = fake.url
        yield fake
        app.config["ADDOK_URL"] = saved


def look(client, motif, **query):
    return client.get(START, query_string={"motif": motif.id, "commune_code": "97411", "commune": "", **query})


def test_a_family_gives_its_street_and_sees_the_lieux_of_its_sector(client, db, split, addok):
    territory, motif, _ = split
    first = page_text(look(client, motif))
    assert 'for="voie">Votre rue' in first and "Donnez votre rue ci-dessus" in first
    page = look(client, motif, voie="rue du chaudron")
    text = page_text(page)
    assert lieux_shown(page) == ["PMI du Chaudron"]
    assert "Lieux du secteur de votre rue : <strong>Rue du Chaudron</strong>" in text and "Sert-il" not in text
    assert addok.queries[-1] == {"q": "rue du chaudron", "citycode": "97411", "type": "street", "limit": "5"}
    # Its later dates keep the street, and its times book.
    more = re.search(r'href="([^"]+/dates\?curseur=[^"]+)"', text).group(1).replace("&amp;", "&")
    week = page_text(client.get(more))
    assert "PMI du Chaudron" in week and slot_links(week)
    sent = give_details(client, slot_links(week)[0][1])
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/prendre-rendez-vous/code")


def test_several_streets_found_the_best_is_taken_and_the_others_offered(client, db, split, addok):
    territory, motif, _ = split
    page = look(client, motif, voie="rue du")
    assert lieux_shown(page) == ["PMI du Butor"]  # the geocoder's first
    other = re.search(r'Ce n\'est pas votre rue \?\s*<a href="([^"]+)">Rue du Chaudron</a>', page_text(page))
    assert other and "97415" not in page_text(page)  # Saint-Paul's Rue du Butor: another commune
    assert lieux_shown(client.get(other.group(1).replace("&amp;", "&"))) == ["PMI du Chaudron"]


def test_an_unknown_street_or_a_silent_geocoder_falls_back_to_the_whole_commune(client, db, split, addok):
    territory, motif, _ = split
    unknown = look(client, motif, voie="avenue imaginaire")
    assert lieux_shown(unknown) == ["PMI du Butor", "PMI du Chaudron"]
    assert "Aucune rue « avenue imaginaire » trouvée à Saint-Denis" in page_text(unknown)
    addok.failing = True
    down = look(client, motif, voie="rue du butor")
    assert down.status_code == 200 and lieux_shown(down) == ["PMI du Butor", "PMI du Chaudron"]
    assert "La recherche de votre rue ne répond pas pour le moment" in page_text(down)


def test_a_street_code_of_another_commune_in_the_link_is_ignored(client, db, split, addok):
    territory, motif, _ = split
    page = look(client, motif, rue="97415_0420")
    assert lieux_shown(page) == ["PMI du Butor", "PMI du Chaudron"]
    assert lieux_shown(look(client, motif, rue="97411_0750")) == ["PMI du Chaudron"]


def test_the_street_position_orders_the_lieux_by_distance(client, db, split, addok, factories):
    territory, motif, lieux = split
    lieux[0].latitude, lieux[0].longitude = -20.8823, 55.4504  # Butor, about 90 m from the street's point
    db.session.commit()
    text = page_text(look(client, motif, voie="rue du butor"))
    assert re.search("2 rue du Butor, 97400 Saint-Denis — à 0,\\d\u00a0km", text)
