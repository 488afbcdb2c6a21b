"""The lieux serving a family's address come nearest first. The commune dataset has no centres, so a lieu's commune is
read from its address and compared with the family's by the smallest area holding both (the same commune, city, EPT,
EPCI, arrondissement, département), real INSEE codes throughout; a lieu's position, when a geocoder gives the
family's, still comes first."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timezone

import pytest
import time_machine

from lapins.sectors.communes import communes
from lapins.sectors.serving import serving_lieux
from tests.test_online_booking import page_text, search

NOW = datetime(2026, 10, 19, 4, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.mark.parametrize("address, code", [
    ("3 rue de Paris, 97400 Saint-Denis", "97411"),
    ("10 rue Marius et Ary Leblond, 97460 Saint-Paul", "97415"),  # 97460 is Saint-Paul's alone
    ("4 rue du Lac, 97438 Sainte-Marie", "97418"),
    ("12 avenue Jean Jaurès, 69003 Lyon", "69383"),  # a city's arrondissement, not the city
    ("1 place Charles de Gaulle 75015 PARIS", "75115"),
    ("2 rue de la Loge, 13001 Marseille", "13201"),
    ("5 rue Gallieni, 92100 Boulogne-Billancourt CEDEX 3", "92012"),
    ("Place de la Mairie, 74960 Annecy", "74010"),
    ("Centre de PMI, rue des Écoles", None),  # no postcode
    ("1 rue X, 97400 St Denis", "97411"),
    ("1 rue X, 01400 Nulle-Part", None),  # a postcode of several communes, none of that name
    ("1 rue X, 01400 Châtillon-sur-Chalaronne", "01093"),
])
def test_a_lieu_commune_is_read_from_its_address(app, address, code):
    found = communes().of_address(address)
    assert (found.code if found else None) == code


def test_how_near_two_communes_are_is_the_smallest_area_holding_both(app):
    gazetteer = communes()
    near = lambda one, other: gazetteer.nearness(gazetteer.get(one), gazetteer.get(other))  # noqa: E731
    assert near("97411", "97411") == 0
    # Saint-Denis with Sainte-Marie and Sainte-Suzanne make the CINOR; Le Port is in the TCO, Saint-Pierre in the
    # south: both only share the département (24 communes).
    assert near("97411", "97418") == 3 and near("97411", "97407") == 24 == near("97411", "97416")
    # Boulogne: Issy in its EPT (GPSO, 8), Montrouge in the département only; Paris 15e in the Métropole du Grand Paris.
    assert near("92012", "92040") == 8 < near("92012", "92049") == 36 < near("92012", "75115")
    assert near("69383", "69381") == 9 < near("69383", "69266")  # Lyon's arrondissements, then the Métropole
    assert near("97411", "92012") is None


@pytest.fixture()
def reunion(factories):
    """Four lieux of one organisation offering the motif, named so that by name their order is another."""
    organisation = factories.OrganisationFactory(territory__number="974", territory__timezone="Indian/Reunion")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson", online_bookable=True,
                                   online_min_hours=2, online_max_days=14)
    lieux = {}
    for name, address in (("Antenne du Port", "1 rue Évenor Lucas, 97420 Le Port"),
                          ("Bureau de Sainte-Marie", "4 rue du Lac, 97438 Sainte-Marie"),
                          ("Centre sans adresse complète", "rue des Écoles"),
                          ("Maison de Saint-Denis", "3 rue de Paris, 97400 Saint-Denis"),
                          ("Antenne de Saint-Pierre", "8 rue Archambaud, 97410 Saint-Pierre")):
        lieux[name] = factories.LieuFactory(organisation=organisation, name=name, address=address)
        factories.PlageFactory(lieu=lieux[name], agent__organisation=organisation, motifs=[motif],
                               first_day=date(2026, 1, 1), start_time=time(8), end_time=time(12), weekdays=0b1111111)
    return motif, lieux


def lieux_shown(response) -> list[str]:
    return re.findall(r'<h3 class="fr-h5 fr-mb-1w" id="lieu-\d+">([^<]+)</h3>', page_text(response))


def test_the_family_sees_the_lieux_nearest_its_commune_first(client, db, reunion):
    motif, _ = reunion
    from_saint_denis = search(client, motif.id, "97411")
    # Saint-Denis, then the CINOR, then the island by name, then the lieu whose commune cannot be read.
    assert lieux_shown(from_saint_denis) == ["Maison de Saint-Denis", "Bureau de Sainte-Marie",
                                             "Antenne de Saint-Pierre", "Antenne du Port",
                                             "Centre sans adresse complète"]
    assert "3 rue de Paris, 97400 Saint-Denis — dans votre commune" in page_text(from_saint_denis)
    assert lieux_shown(search(client, motif.id, "97407"))[:3] == [  # from Le Port: then the rest of the island
        "Antenne du Port", "Antenne de Saint-Pierre", "Bureau de Sainte-Marie"]
    assert lieux_shown(search(client, motif.id, "97416"))[0] == "Antenne de Saint-Pierre"


def test_a_known_position_still_beats_the_communes(app, db, reunion):
    motif, lieux = reunion
    lieux["Antenne du Port"].latitude, lieux["Antenne du Port"].longitude = -20.937, 55.293
    db.session.commit()
    home = communes().get("97411")
    found = serving_lieux(motif, "97411", today=date(2026, 10, 19), home=home, near=(-20.88, 55.45))
    assert [each.lieu.name for each in found][:2] == ["Antenne du Port", "Maison de Saint-Denis"]
    assert [each.nearness for each in found][:2] == [24, 0]
