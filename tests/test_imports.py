"""A département imports its lieux and agents from the CSV files its IT team exports: what is valid is stored, what is
not is reported line by line in French, and nothing is stored twice."""
from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from lapins.models import Agent, AgentRole, Lieu, Role


@pytest.fixture()
def nord(factories):
    territory = factories.TerritoryFactory(number="59", name="Nord")
    return factories.OrganisationFactory(territory=territory, name="PMI Lille")


def run(app, command: str, *args):
    return app.test_cli_runner().invoke(args=["territory", command, *args])


def csv_file(tmp_path, text: str, encoding: str = "utf-8", name: str = "import.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def lieux_of(db, organisation) -> list[Lieu]:
    return list(db.session.scalars(select(Lieu).where(Lieu.organisation_id == organisation.id).order_by(Lieu.name)))


def count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


LIEUX = """nom,adresse,telephone
Centre PMI Moulins,"12 rue d'Arras, 59000 Lille",03 20 12 34 56
Centre PMI Wazemmes,3 place de la Nouvelle Aventure 59000 Lille,
Maison des familles Fives,"45 rue Pierre Legrand, 59800 Lille",06 12 34 56 78
"""


# --- Lieux ---------------------------------------------------------------------------------------------------

def test_a_clean_file_of_lieux_is_imported_with_landlines_and_mobiles_in_e164(app, db, nord, tmp_path):
    result = run(app, "import-lieux", "59", "PMI Lille", csv_file(tmp_path, LIEUX))
    assert result.exit_code == 0, result.output
    assert "importées : 3" in result.output and "rejetées : 0" in result.output
    lieux = lieux_of(db, nord)
    assert [(lieu.name, lieu.address, lieu.phone) for lieu in lieux] == [
        ("Centre PMI Moulins", "12 rue d'Arras, 59000 Lille", "+33320123456"),
        ("Centre PMI Wazemmes", "3 place de la Nouvelle Aventure 59000 Lille", None),
        ("Maison des familles Fives", "45 rue Pierre Legrand, 59800 Lille", "+33612345678"),
    ]


def test_excel_windows_1252_with_semicolons_accented_headers_spaces_and_blank_lines(app, db, nord, tmp_path):
    text = ("Nom du lieu;Adresse;Tél.\r\n"
            "  Centre PMI Hellemmes  ; 8 rue Roger Salengro, 59260 Lille  ;03 20 12 34 56\r\n"
            "\r\n"
            ";;\r\n"
            "Pôle enfance Saint-Maurice;2 rue Léon Gambetta, 59000 Lille;\r\n")
    result = run(app, "import-lieux", "59", str(nord.id), csv_file(tmp_path, text, "cp1252"))
    assert result.exit_code == 0, result.output
    assert [(lieu.name, lieu.address) for lieu in lieux_of(db, nord)] == [
        ("Centre PMI Hellemmes", "8 rue Roger Salengro, 59260 Lille"),
        ("Pôle enfance Saint-Maurice", "2 rue Léon Gambetta, 59000 Lille"),
    ]


def test_a_utf8_file_with_a_bom_and_capitalised_headers(app, db, nord, tmp_path):
    text = "NOM;ADRESSE;Téléphone\nCrèche Lomme;1 avenue de Dunkerque, 59160 Lille;0320123456\n"
    result = run(app, "import-lieux", "59", "pmi lille", csv_file(tmp_path, text, "utf-8-sig"))
    assert result.exit_code == 0, result.output
    (lieu,) = lieux_of(db, nord)
    assert (lieu.name, lieu.phone) == ("Crèche Lomme", "+33320123456")


def test_bad_lines_are_rejected_with_their_line_number_and_reason_and_the_others_imported(app, db, nord, factories,
                                                                                       tmp_path):
    factories.LieuFactory(organisation=nord, name="Centre PMI Fives", address="10 rue de Lannoy, 59800 Lille")
    long_name = "x" * 10_000
    text = (
        "nom;adresse;telephone\n"
        "Centre PMI Moulins;12 rue d'Arras, 59000 Lille;03 20 12 34 56\n"  # 2: imported
        "Centre PMI Lomme;1 avenue de Dunkerque;12345\n"                   # 3: bad phone
        ";5 rue Nationale;\n"                                               # 4: no name
        f"{long_name};5 rue Nationale;\n"                                   # 5: too long
        "centre pmi moulins;7 rue Solférino;\n"                             # 6: twice in the file
        "Centre PMI Fives;99 rue Inconnue;\n"                               # 7: another address in the database
        "Centre PMI Lambersart;2 rue de Lille;+44 20 7946 0958\n"           # 8: not a French number
        "Centre PMI Wazemmes;3 place Nouvelle Aventure;\n"                  # 9: imported
    )
    report_path = tmp_path / "rejets.csv"
    result = run(app, "import-lieux", "59", "PMI Lille", csv_file(tmp_path, text), "--report", str(report_path))

    assert result.exit_code == 1
    assert "importées : 2" in result.output and "déjà présentes : 0" in result.output
    assert "rejetées : 6" in result.output
    reasons = {
        3: "Numéro de téléphone invalide (exemple : 03 20 12 34 56).",
        4: "Le nom est obligatoire.",
        5: "Le nom compte 10 000 caractères : 160 au plus.",
        6: "Le lieu « centre pmi moulins » figure déjà ligne 2 de ce fichier.",
        7: "Un lieu « Centre PMI Fives » existe déjà dans ce service, à une autre adresse (10 rue de Lannoy, 59800 "
           "Lille).",
        8: "Seuls les numéros français (métropole et outre-mer) sont acceptés.",
    }
    for line, reason in reasons.items():
        assert f"ligne {line} : {reason}" in result.output
    assert [lieu.name for lieu in lieux_of(db, nord)] == ["Centre PMI Fives", "Centre PMI Moulins",
                                                          "Centre PMI Wazemmes"]

    rows = list(csv.reader(io.StringIO(report_path.read_text("utf-8-sig")), delimiter=";"))
    assert rows[0] == ["ligne", "nom", "adresse", "telephone", "motif_du_rejet"]
    assert [(int(row[0]), row[-1]) for row in rows[1:]] == list(reasons.items())
    assert rows[1][1:4] == ["Centre PMI Lomme", "1 avenue de Dunkerque", "12345"]


def test_a_dry_run_checks_everything_and_stores_nothing(app, db, nord, tmp_path):
    result = run(app, "import-lieux", "59", "PMI Lille", csv_file(tmp_path, LIEUX), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "rien n'a été enregistré" in result.output and "à importer : 3" in result.output
    assert lieux_of(db, nord) == []


def test_all_or_nothing_stores_nothing_when_one_line_is_bad(app, db, nord, tmp_path):
    path = csv_file(tmp_path, LIEUX + "Centre PMI Lomme,1 avenue de Dunkerque,12345\n")
    result = run(app, "import-lieux", "59", "PMI Lille", path, "--all-or-nothing")
    assert result.exit_code == 1
    assert "Rien n'a été enregistré" in result.output and "ligne 5 : Numéro de téléphone invalide" in result.output
    assert lieux_of(db, nord) == []

    fixed = run(app, "import-lieux", "59", "PMI Lille", csv_file(tmp_path, LIEUX), "--all-or-nothing")
    assert fixed.exit_code == 0 and len(lieux_of(db, nord)) == 3


def test_running_the_same_file_again_stores_nothing_twice(app, db, nord, tmp_path):
    path = csv_file(tmp_path, LIEUX)
    assert run(app, "import-lieux", "59", "PMI Lille", path).exit_code == 0
    again = run(app, "import-lieux", "59", "PMI Lille", path)
    assert again.exit_code == 0, again.output
    assert "importées : 0" in again.output and "déjà présentes : 3" in again.output
    assert len(lieux_of(db, nord)) == 3


def test_lines_are_committed_in_batches(app, db, nord, tmp_path, monkeypatch):
    from lapins.onboarding import imports

    monkeypatch.setattr(imports, "BATCH_SIZE", 2)
    text = "nom,adresse\n" + "".join(f"Centre {n},{n} rue Nationale\n" for n in range(5))
    result = run(app, "import-lieux", "59", "PMI Lille", csv_file(tmp_path, text), "--quiet")
    assert result.exit_code == 0 and "importées : 5" in result.output
    assert len(lieux_of(db, nord)) == 5


def test_a_file_without_the_required_columns_is_refused_whole(app, db, nord, tmp_path):
    result = run(app, "import-lieux", "59", "PMI Lille", csv_file(tmp_path, "nom;ville\nCentre;Lille\n"))
    assert result.exit_code == 1
    assert "Colonnes obligatoires absentes : adresse (colonnes lues : nom, ville)." in result.output
    assert "Rien n'a été enregistré." in result.output and lieux_of(db, nord) == []


def test_an_unknown_departement_or_service_is_refused(app, db, nord, tmp_path):
    path = csv_file(tmp_path, LIEUX)
    unknown_territory = run(app, "import-lieux", "62", "PMI Lille", path)
    assert unknown_territory.exit_code == 1 and "Aucun département 62" in unknown_territory.output
    unknown_service = run(app, "import-lieux", "59", "PMI Roubaix", path)
    assert unknown_service.exit_code == 1
    assert f"Aucun service « PMI Roubaix » dans le département 59 ; ses services : « PMI Lille » (n° {nord.id})." \
        in unknown_service.output
    assert count(db, Lieu) == 0


# --- Agents --------------------------------------------------------------------------------------------------

AGENTS = """email;prenom;nom;role
Claire.Martin@lenord.fr;Claire;Martin;Administrateur
nadia.benali@lenord.fr;Nadia;Benali;agent
luc.dupont@lenord.fr;Luc;Dupont;Secrétaire
"""


def test_agents_are_imported_with_their_roles_and_invited_once_each(app, db, nord, tmp_path, smtp_app, smtp_server):
    path = csv_file(tmp_path, AGENTS)
    result = run(app, "import-agents", "59", "PMI Lille", path)
    assert result.exit_code == 0, result.output
    assert "importées : 3" in result.output and "Invitations envoyées par courriel : 3" in result.output
    agents = {agent.email: agent for agent in db.session.scalars(select(Agent))}
    assert set(agents) == {"claire.martin@lenord.fr", "nadia.benali@lenord.fr", "luc.dupont@lenord.fr"}
    assert agents["claire.martin@lenord.fr"].role_in(nord.id) == Role.ADMIN
    assert agents["nadia.benali@lenord.fr"].role_in(nord.id) == Role.AGENT
    assert agents["luc.dupont@lenord.fr"].role_in(nord.id) == Role.SECRETARY
    assert all(agent.password_hash is None for agent in agents.values())
    assert sorted(email["To"] for email in smtp_server.messages) == sorted(agents)
    assert all("choisissez votre mot de passe" in email["Subject"] for email in smtp_server.messages)

    again = run(app, "import-agents", "59", "PMI Lille", path)
    assert again.exit_code == 0, again.output
    assert "importées : 0" in again.output and "déjà présentes : 3" in again.output
    assert len(smtp_server.messages) == 3  # no second invitation
    assert count(db, Agent) == 3 and count(db, AgentRole) == 3


def test_an_agent_with_an_account_gets_the_role_in_this_service_without_a_new_account(app, db, nord, factories,
                                                                                    tmp_path, smtp_app, smtp_server):
    other_service = factories.OrganisationFactory(territory=nord.territory, name="PMI Roubaix")
    existing = factories.AgentFactory(email="nadia.benali@lenord.fr", organisation=other_service)
    result = run(app, "import-agents", "59", "PMI Lille", csv_file(tmp_path, AGENTS))
    assert result.exit_code == 0, result.output
    assert "dont 1 agent(s) ayant déjà un compte" in result.output
    db.session.refresh(existing)
    assert existing.role_in(nord.id) == Role.AGENT and existing.role_in(other_service.id) == Role.AGENT
    assert count(db, Agent) == 3
    assert "nadia.benali@lenord.fr" not in [email["To"] for email in smtp_server.messages]
    assert len(smtp_server.messages) == 2


def test_bad_agent_lines_are_rejected_in_french_and_the_others_imported(app, db, nord, factories, tmp_path):
    factories.AgentFactory(email="deja.admin@lenord.fr", organisation=nord, organisation__role=Role.ADMIN)
    arras = factories.OrganisationFactory(territory=factories.TerritoryFactory(number="62"))
    neighbour = factories.AgentFactory(email="agent.pas-de-calais@pasdecalais.fr", organisation=arras)
    text = (
        "E-mail,Prénom,Nom,Rôle\n"
        "claire.martin@lenord.fr,Claire,Martin,agent\n"             # 2: imported
        "claire.martin,Claire,Martin,agent\n"                       # 3: bad e-mail
        "nadia@lenord.fr,,Benali,agent\n"                           # 4: no first name
        f"luc@lenord.fr,Luc,{'y' * 10_000},agent\n"                 # 5: too long
        "Claire.Martin@lenord.fr,Claire,Martin,agent\n"             # 6: twice in the file
        "deja.admin@lenord.fr,Déjà,Admin,agent\n"                   # 7: in the service with another role
        "agent.pas-de-calais@pasdecalais.fr,Paul,Arras,agent\n"     # 8: an agent of another département
        "awa@lenord.fr,Awa,Diallo,directrice\n"                     # 9: unknown role
        "deja.admin@lenord.fr,Déjà,Admin,admin\n"                   # 10: already there
    )
    result = run(app, "import-agents", "59", "PMI Lille", csv_file(tmp_path, text), "--quiet")
    assert result.exit_code == 1
    assert "importées : 1" in result.output and "déjà présentes : 1" in result.output
    assert "rejetées : 7" in result.output
    for line, reason in {
        3: "« claire.martin » n'est pas une adresse électronique valide.",
        4: "Le prénom est obligatoire.",
        5: "Le nom compte 10 000 caractères : 80 au plus.",
        6: "L'adresse claire.martin@lenord.fr figure déjà ligne 2 de ce fichier.",
        7: "Cet agent est déjà dans ce service avec le rôle Administrateur : un import ne change pas le rôle d'un "
           "agent.",
        8: "Cette adresse est celle d'un agent d'un autre département : un compte ne sert qu'un département.",
        9: "Rôle « directrice » inconnu : admin, agent ou secrétaire.",
    }.items():
        assert f"ligne {line} : {reason}" in result.output
    assert count(db, Agent) == 3
    db.session.refresh(neighbour)
    assert neighbour.organisation_ids == {arras.id}


def test_dry_run_and_all_or_nothing_store_no_agent_and_send_no_invitation(app, db, nord, tmp_path, smtp_app,
                                                                          smtp_server):
    dry = run(app, "import-agents", "59", "PMI Lille", csv_file(tmp_path, AGENTS), "--dry-run")
    assert dry.exit_code == 0, dry.output
    bad = run(app, "import-agents", "59", "PMI Lille", csv_file(tmp_path, AGENTS + "x;Awa;Diallo;agent\n"),
              "--all-or-nothing")
    assert bad.exit_code == 1 and "ligne 5 : « x » n'est pas une adresse électronique valide." in bad.output
    assert count(db, Agent) == 0 and count(db, AgentRole) == 0
    assert smtp_server.messages == []


def test_agents_cannot_be_imported_into_a_service_of_another_departement(app, db, nord, factories, tmp_path):
    elsewhere = factories.OrganisationFactory(territory=factories.TerritoryFactory(number="62"), name="PMI Arras")
    path = csv_file(tmp_path, AGENTS)
    by_id = run(app, "import-agents", "59", str(elsewhere.id), path)
    assert by_id.exit_code == 1
    assert f"Le service n° {elsewhere.id} n'est pas un service du département 59." in by_id.output
    by_name = run(app, "import-agents", "59", "PMI Arras", path)
    assert by_name.exit_code == 1 and "Aucun service « PMI Arras » dans le département 59" in by_name.output
    assert count(db, Agent) == 0


def test_the_progress_bar_goes_to_stderr_and_not_with_quiet(app, db, nord, tmp_path):
    path = csv_file(tmp_path, LIEUX)
    shown = run(app, "import-lieux", "59", "PMI Lille", path, "--dry-run")
    assert "Import des lieux — PMI Lille" in shown.stderr and "Import des lieux — PMI Lille" not in shown.stdout
    quiet = run(app, "import-lieux", "59", "PMI Lille", path, "--dry-run", "--quiet")
    assert quiet.stderr == ""


def test_no_name_or_e_mail_of_an_imported_agent_reaches_the_logs(app, db, nord, tmp_path, caplog):
    caplog.set_level("DEBUG")
    text = AGENTS + "pas-une-adresse;Ysaline;Kerbrat;agent\n"
    run(app, "import-agents", "59", "PMI Lille", csv_file(tmp_path, text))
    logged = " ".join(record.getMessage() + str(record.args) for record in caplog.records).casefold()
    for value in ["claire", "martin", "benali", "dupont", "lenord", "ysaline", "kerbrat", "pas-une-adresse"]:
        assert value not in logged


def test_the_file_of_rejected_lines_once_corrected_imports_as_it_is(app, db, nord, tmp_path):
    report_path = tmp_path / "rejets.csv"
    text = "nom;adresse;telephone\nCentre PMI Lomme;1 avenue de Dunkerque;12345\n"
    assert run(app, "import-lieux", "59", "PMI Lille", csv_file(tmp_path, text), "--report", str(report_path)) \
        .exit_code == 1
    report_path.write_text(report_path.read_text("utf-8-sig").replace(";12345;", ";03 20 12 34 56;"), "utf-8-sig")
    fixed = run(app, "import-lieux", "59", "PMI Lille", str(report_path))
    assert fixed.exit_code == 0, fixed.output
    (lieu,) = lieux_of(db, nord)
    assert (lieu.name, lieu.phone) == ("Centre PMI Lomme", "+33320123456")
