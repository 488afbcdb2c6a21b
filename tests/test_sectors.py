"""Sectorisation: a territory imports its sectors from a CSV file (checked, then stored all at once), families find
their commune however they type it, and an address is served by the lieux and agents of its sectors."""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from lapins.locale.communes import normalised
from lapins.models import Sector, SectorZone
from lapins.sectors import imports
from lapins.sectors.communes import communes
from lapins.sectors.serving import address_sectors, online_refusal, serving_lieux

TODAY = date(2026, 12, 7)


def run(app, *args):
    return app.test_cli_runner().invoke(args=["territory", "import-sectors", *args])


def csv_file(tmp_path, text: str, encoding: str = "utf-8"):
    path = tmp_path / "secteurs.csv"
    path.write_bytes(text.encode(encoding))
    return str(path)


def zones(db) -> set[tuple[str, str, str]]:
    return set(db.session.execute(select(Sector.name, SectorZone.commune_code, SectorZone.street_code).join(Sector)))


def count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture()
def hauts_de_seine(factories):
    return factories.TerritoryFactory(number="92", name="Hauts-de-Seine")


NORTH = """secteur,commune,rue
Nord,92004,
Nord,92025,
Sud,92012,
Sud,92040,92040_0150
"""


# --- Commune search ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed, code", [
    ("saint etienne", "42218"), ("St-Étienne", "42218"), ("ST ETIENNE", "42218"),
    ("ste genevieve des bois", "91549"), ("Sainte-Geneviève-des-Bois", "91549"),
    ("lay st christophe", "54305"), ("l’abergement clemenciat", "01001"),
    ("boulogne billancourt", "92012"), ("92100", "92012"),
    ("ajaccio", "2A004"), ("20200", "2B033"), ("mamoudzou", "97611"), ("97411", "97415"),
    ("69003", "69383"),  # a family in Lyon 3e lives in its arrondissement
    ("13001", "13201"),  # Marseille 1er's postcode, not Aix-en-Provence's INSEE code
])
def test_a_commune_is_found_whatever_the_accents_case_hyphens_and_saint(app, typed, code):
    assert communes().search(typed)[0].code == code


def test_a_former_commune_leads_to_the_commune_it_now_belongs_to(app):
    # Annecy-le-Vieux merged into Annecy in 2017; Corsica's communes were numbered 20… before 1976.
    assert [commune.code for commune in communes().search("annecy le vieux")][:1] == ["74010"]
    assert communes().former["74011"].code == "74010" and communes().former["20004"].code == "2A004"


def test_the_search_keeps_to_the_departement_asked_and_forgives_nothing_absurd(app):
    found = communes().search("saint", departements={"92"})
    assert found and all(commune.departement == "92" for commune in found)
    assert communes().search("x") == [] and communes().search("zzzzqqq") == []
    assert normalised("Saint-Œuf-en-l’Île") == "saint oeuf en l ile"


def test_the_public_commune_search_answers_json_and_is_rate_limited_per_address(tmp_path):
    from lapins import create_app

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'communes.sqlite3'}",
                     RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://", COMMUNE_SEARCH_LIMITS_PER_IP="3/minute")
    client = app.test_client()
    found = client.get("/communes", query_string={"q": "ste marie", "departement": "974"})
    assert found.status_code == 200
    assert found.json["communes"][0] == {"code": "97418", "name": "Sainte-Marie", "departement": "974",
                                         "postcodes": ["97438"], "label": "Sainte-Marie (97438)"}
    assert client.get("/communes", query_string={"q": "x", "departement": "99"}).json == {
        "error": "Département inconnu (exemples : 01, 2A, 59, 974)."}
    assert client.get("/communes", query_string={"q": "<script>"}).json == {"communes": []}
    limited = client.get("/communes", query_string={"q": "paris"})
    assert limited.status_code == 429 and "Trop de recherches" in limited.json["error"]


# --- Import: dry run, apply, CLI -------------------------------------------------------------------------------------

def test_a_dry_run_reports_what_would_be_stored_and_stores_nothing(app, db, hauts_de_seine):
    report = imports.check(hauts_de_seine, NORTH.encode(), communes())
    assert report.ok and report.zone_count == 4 and sorted(report.new_sectors) == ["Nord", "Sud"]
    assert {commune.code for commune in report.unsectored} >= {"92050", "92051"}  # Nanterre, Neuilly
    assert "92012" not in {commune.code for commune in report.unsectored}
    assert count(db, Sector) == 0 and count(db, SectorZone) == 0


def test_applying_stores_the_sectors_and_a_second_file_replaces_only_the_sectors_it_names(app, db, hauts_de_seine,
                                                                                         factories):
    imports.apply(hauts_de_seine, NORTH.encode(), communes())
    lieu = factories.LieuFactory(organisation=factories.OrganisationFactory(territory=hauts_de_seine))
    nord = db.session.scalar(select(Sector).where(Sector.name == "Nord"))
    nord.lieux.append(lieu)
    db.session.commit()
    # The Sud sector is renamed in capitals and loses a commune; Boulogne moves to « nord » (named in lower case).
    imports.apply(hauts_de_seine, "nord;92012\nNord;92004\nSUD;92040;92040_0150\n".encode(), communes())
    assert zones(db) == {("Nord", "92012", ""), ("Nord", "92004", ""), ("Sud", "92040", "92040_0150")}
    assert db.session.scalar(select(Sector).where(Sector.name == "Nord")).lieux == [lieu]


@pytest.mark.parametrize("text, message", [
    ("Nord,92999\n", "code commune « 92999 » inconnu"),
    ("Nord,59350\n", "Lille (59350) est dans le département 59, pas dans le 92"),
    ("Nord,92012,92040_0150\n", "la rue 92040_0150 n'est pas dans la commune 92012"),
    ("Nord,92012,rue de la paix\n", "code de rue « rue de la paix » non reconnu"),
    (",92012\n", "le nom du secteur manque"),
    ("Nord,92012\nSud,92012\n", "Ligne 2 : Boulogne-Billancourt (92012) est déjà dans le secteur « Nord » (ligne 1)"),
    ("Nord,92012,,en trop\n", "trois colonnes au plus"),
])
def test_bad_lines_are_reported_in_french_and_applying_stores_nothing(app, db, hauts_de_seine, tmp_path, text,
                                                                      message):
    valid = "Ouest,92050\n"  # a valid line before the bad one is not stored either
    result = run(app, "92", csv_file(tmp_path, valid + text), "--apply")
    assert result.exit_code != 0
    assert message.replace("Ligne 2", "Ligne 3").replace("ligne 1", "ligne 2") in result.output
    assert "Rien n'a été enregistré" in result.output
    assert count(db, Sector) == 0 and count(db, SectorZone) == 0


def test_a_commune_already_in_a_sector_the_file_does_not_name_is_an_overlap(app, db, hauts_de_seine):
    imports.apply(hauts_de_seine, b"Nord,92004\n", communes())
    report = imports.check(hauts_de_seine, b"Sud,92004\n", communes())
    assert report.overlaps == ["Ligne 1 : Asnières-sur-Seine (92004) est déjà dans le secteur « Nord », que le fichier "
                               "ne nomme pas."]
    with pytest.raises(imports.SectorFileError):
        imports.apply(hauts_de_seine, b"Sud,92004\n", communes())
    assert zones(db) == {("Nord", "92004", "")}


@pytest.mark.parametrize("data, message", [
    (b"", "Le fichier est vide."),
    (b"secteur,commune\n", "aucune ligne de secteur"),
    (b"Nord,92012\n" * (imports.MAX_BYTES // 11 + 1), "Fichier trop volumineux"),
    (b"\x00\x01\x02PK\x03\x04", "n'est pas un CSV"),
    ("Nord,92012\n".encode("utf-8") + b"\x81\x8d\x8f\x90\x9d", "Encodage du fichier non reconnu"),
    (b'Nord,"92012\n', "n'est pas un CSV lisible"),
])
def test_a_file_that_cannot_be_read_is_refused_whole_in_french(app, db, hauts_de_seine, tmp_path, data, message):
    path = tmp_path / "secteurs.csv"
    path.write_bytes(data)
    for args in ((), ("--apply",)):
        result = run(app, "92", str(path), *args)
        assert result.exit_code != 0 and message in result.output, result.output
    assert count(db, Sector) == 0


def test_a_10_mb_file_is_refused_without_being_read_whole(app, db, hauts_de_seine, tmp_path):
    path = tmp_path / "gros.csv"
    path.write_bytes(b"Nord;92012\n" * (10 * 1024 * 1024 // 11))
    result = run(app, "92", str(path), "--apply")
    assert result.exit_code != 0 and "Fichier trop volumineux" in result.output
    assert count(db, SectorZone) == 0


def test_the_cli_checks_by_default_and_applies_on_request_windows_1252_included(app, db, hauts_de_seine, tmp_path):
    text = "Secteur;Code INSEE;Rue\r\nSecteur Rive Gauche;92012;\r\nSecteur Rive Gauche;92040;92040_0150\r\n"
    path = csv_file(tmp_path, text, "cp1252")
    result = run(app, "92", path)
    assert result.exit_code == 0, result.output
    assert "2 commune(s) ou rue(s)" in result.output and "rien n'a été enregistré" in result.output
    assert "commune(s) du département sans secteur" in result.output
    assert count(db, SectorZone) == 0
    result = run(app, "92", path, "--apply")
    assert result.exit_code == 0 and "Secteurs enregistrés." in result.output
    assert zones(db) == {("Secteur Rive Gauche", "92012", ""), ("Secteur Rive Gauche", "92040", "92040_0150")}
    assert "Aucun département 93" in run(app, "93", path).output


@pytest.mark.parametrize("number, lines, code", [("2A", "Ajaccio;2A004\n", "2A004"),
                                                  ("2B", "Bastia;2b033\n", "2B033"),
                                                  ("976", "Centre;97611;97611_a001\n", "97611"),
                                                  ("971", "Pointe;97120\n", "97120")])
def test_corsica_and_overseas_departements_import_and_serve(app, db, factories, number, lines, code):
    territory = factories.TerritoryFactory(number=number, timezone="Europe/Paris")
    imports.apply(territory, lines.encode(), communes())
    assert {zone[1] for zone in zones(db)} == {code}
    street = lines.rstrip().split(";")[2] if lines.count(";") == 2 else None
    assert address_sectors(territory.id, code, street)
    assert bool(address_sectors(territory.id, code)) is (street is None)  # only the street is in a sector


# --- Who serves an address -----------------------------------------------------------------------------------------

@pytest.fixture()
def department(app, db, factories, hauts_de_seine):
    """Two lieux, each with an agent offering a sectorised motif; Boulogne in sector Ouest, except one street of it
    in sector Est; Montrouge's agent also serves Ouest without their lieu being in it."""
    organisation = factories.OrganisationFactory(territory=hauts_de_seine)
    motif = factories.MotifFactory(organisation=organisation, online_bookable=True, sectorised=True)
    boulogne = factories.LieuFactory(organisation=organisation, name="Centre Boulogne", latitude=48.835,
                                     longitude=2.241)
    montrouge = factories.LieuFactory(organisation=organisation, name="Centre Montrouge", latitude=48.816,
                                      longitude=2.316)
    plages = [factories.PlageFactory(lieu=lieu, agent__organisation=organisation) for lieu in (boulogne, montrouge)]
    for plage in plages:
        plage.motifs.append(motif)
    imports.apply(hauts_de_seine, b"Ouest,92012\nEst,92012,92012_0420\nEst,92049\n", communes())
    ouest, est = (db.session.scalar(select(Sector).where(Sector.name == name)) for name in ("Ouest", "Est"))
    ouest.lieux.append(boulogne)
    est.lieux.append(montrouge)
    db.session.commit()
    return motif, boulogne, montrouge, plages, ouest


def names(found) -> list[str]:
    return [serving.lieu.name for serving in found]


def test_a_street_in_a_sector_beats_its_commune(department):
    motif = department[0]
    assert names(serving_lieux(motif, "92012", today=TODAY)) == ["Centre Boulogne"]
    assert names(serving_lieux(motif, "92012", street_code="92012_0420", today=TODAY)) == ["Centre Montrouge"]
    assert names(serving_lieux(motif, "92012", street_code="92012_9999", today=TODAY)) == ["Centre Boulogne"]
    assert names(serving_lieux(motif, "92049", today=TODAY)) == ["Centre Montrouge"]
    assert serving_lieux(motif, "92050", today=TODAY) == []  # Nanterre: no sector


def test_an_agent_of_a_sector_serves_it_from_their_lieu_with_only_themselves(db, department, factories):
    motif, boulogne, montrouge, plages, ouest = department
    other = factories.PlageFactory(lieu=montrouge, agent__organisation=motif.organisation)
    other.motifs.append(motif)
    ouest.agents.append(plages[1].agent)
    db.session.commit()
    found = serving_lieux(motif, "92012", today=TODAY, near=(48.84, 2.24))
    assert names(found) == ["Centre Boulogne", "Centre Montrouge"]  # nearest first
    assert found[1].agent_ids == (plages[1].agent_id,) and found[0].distance_km < 1 < found[1].distance_km
    # The whole lieu of sector Est serves with both its agents.
    assert set(serving_lieux(motif, "92049", today=TODAY)[0].agent_ids) == {plages[1].agent_id, other.agent_id}


def test_a_motif_open_to_all_is_served_by_every_lieu_offering_it_nearest_first(db, department):
    motif = department[0]
    motif.sectorised = False
    db.session.commit()
    assert names(serving_lieux(motif, "92050", today=TODAY)) == ["Centre Boulogne", "Centre Montrouge"]
    assert names(serving_lieux(motif, "92050", today=TODAY, near=(48.81, 2.32))) == ["Centre Montrouge",
                                                                                     "Centre Boulogne"]


def test_nothing_is_offered_where_online_booking_is_off_or_the_plage_is_over(db, department):
    motif, boulogne, montrouge, plages, _ = department
    boulogne.online_booking = False
    plages[1].last_day = date(2026, 12, 6)
    db.session.commit()
    motif.sectorised = False
    assert serving_lieux(motif, "92012", today=TODAY) == []
    plages[1].last_day = None
    assert names(serving_lieux(motif, "92012", today=TODAY)) == ["Centre Montrouge"]
    motif.organisation.territory.online_booking = False
    assert online_refusal(motif) and serving_lieux(motif, "92012", today=TODAY) == []
    motif.organisation.territory.online_booking = True
    motif.online_bookable = False
    assert online_refusal(motif) == "Ce motif ne se réserve pas en ligne : appelez le centre."
    assert serving_lieux(motif, "92012", today=TODAY) == []


def test_an_arrondissement_is_served_by_the_sector_of_its_city_unless_it_has_its_own(app, db, factories):
    lyon = factories.TerritoryFactory(number="69")
    imports.apply(lyon, b"Lyon,69123\nLyon 3,69383\n", communes())
    city, third = (db.session.scalar(select(Sector.id).where(Sector.name == name)) for name in ("Lyon", "Lyon 3"))
    assert address_sectors(lyon.id, "69383", city_code="69123") == {third}
    assert address_sectors(lyon.id, "69387", city_code="69123") == {city}


def test_the_demo_departement_has_sectors_of_real_communes_and_online_motifs(app, db):
    from lapins.models import Motif, Territory
    from lapins.onboarding.seeding import seed_demo

    seed_demo()
    territory = db.session.scalar(select(Territory).where(Territory.number == "92"))
    # Its sectors, exported as a file and checked again: real codes of the 92, no overlap, and communes left over.
    exported = "".join(f"{name};{commune};{street}\n" for name, commune, street in sorted(zones(db)))
    report = imports.check(territory, exported.encode(), communes())
    assert report.ok and report.zone_count == 10 and report.unsectored
    nourrisson = db.session.scalar(select(Motif).where(Motif.name == "Consultation nourrisson",
                                                       Motif.organisation_id == territory.organisations[0].id))
    today = date.today()
    assert names(serving_lieux(nourrisson, "92025", today=today)) == ["Centre de PMI Colombes Fossés-Jean"]
    assert names(serving_lieux(nourrisson, "92025", street_code="92025_0420", today=today)) == [
        "Centre de PMI Gennevilliers Le Luth"]
