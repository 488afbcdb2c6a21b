"""Importing a service's history from its previous tool: usagers with their relatives, past and future rdvs, a French
reason per rejected line, a dry run, re-runs that store nothing twice, reminders (never a confirmation) for the rdvs
to come, and the rate before Lapins computed from the past rdvs."""
from __future__ import annotations

import time as stopwatch
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.infra.extensions import db as _db
from lapins.models import Channel, Message, MessageKind, Rdv, RdvStatus, Role, Territory, Usager
from lapins.models.rdvs import BookingChannel

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)  # Monday 19 October 2026, 10:00 in Paris

HEADER = "id_usager;nom;prenom;date_naissance;telephone;email;id_responsable;id_rdv;date_rdv;heure_rdv;motif;lieu;agent;statut"


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def service(factories):
    territory = factories.TerritoryFactory(number="59", name="Nord", reminder_offsets="72,24")
    organisation = factories.OrganisationFactory(territory=territory, name="PMI Lille")
    factories.LieuFactory(organisation=organisation, name="Centre PMI Wazemmes")
    factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, first_name="Claire",
                                   last_name="Martin", email="claire.martin@lenord.fr")
    return type("Service", (), dict(territory=territory, organisation=organisation, agent=agent))


def run(app, tmp_path, text: str, *options: str, name: str = "historique.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return app.test_cli_runner().invoke(args=["territory", "import-historique", "59", "PMI Lille", str(path),
                                              "--quiet", *options])


def count(model) -> int:
    _db.session.expire_all()
    return _db.session.scalar(select(func.count()).select_from(model))


GOOD = "\n".join([
    HEADER,
    "F1;Benali;Aïcha;;06 12 34 56 78;aicha@example.fr;;R1;02/09/2026;09:30;Pesée du nourrisson;Centre PMI Wazemmes;claire.martin@lenord.fr;Vu",
    "E1;Benali;Léa;02/05/2026;;;F1;R2;16/09/2026;10:00;Pesée du nourrisson;Centre PMI Wazemmes;Claire Martin;Absent non excusé",
    "E1;;;;;;;R3;23/10/2026;14:00;Pesée du nourrisson;Centre PMI Wazemmes;claire.martin@lenord.fr;à venir",
    "F2;Dupont;Marc;;07 57 00 00 01;;;;;;;;;",
])


def test_usagers_relatives_and_rdvs_come_in_with_their_status(app, tmp_path, service):
    result = run(app, tmp_path, GOOD)
    assert result.exit_code == 0, result.output
    assert "importées : 4" in result.output and "rejetées : 0" in result.output
    _db.session.expire_all()
    mother = _db.session.scalar(select(Usager).where(Usager.external_id == "F1"))
    child = _db.session.scalar(select(Usager).where(Usager.external_id == "E1"))
    assert child.responsible_id == mother.id and child.birth_date == date(2026, 5, 2)
    assert mother.phone == "+33612345678" and mother.sms_consent and mother.email_consent
    assert [organisation.name for organisation in child.organisations] == ["PMI Lille"]
    rdvs = {rdv.external_id: rdv for rdv in _db.session.scalars(select(Rdv))}
    assert (rdvs["R1"].status, rdvs["R2"].status, rdvs["R3"].status) == (
        RdvStatus.SEEN, RdvStatus.NOSHOW, RdvStatus.UNKNOWN)
    assert rdvs["R3"].starts_at == datetime(2026, 10, 23, 14, 0, tzinfo=PARIS).astimezone(timezone.utc)
    assert rdvs["R2"].agents == [service.agent] and rdvs["R3"].usagers == [child]
    assert {rdv.booked_via for rdv in rdvs.values()} == {BookingChannel.IMPORT}
    assert "Taux de lapins de l'historique : 50,0 % (1 absent sur 2" in result.output


def test_the_rdvs_to_come_get_their_reminders_and_no_confirmation(app, tmp_path, service):
    assert run(app, tmp_path, GOOD).exit_code == 0
    _db.session.expire_all()
    future = _db.session.scalar(select(Rdv).where(Rdv.external_id == "R3"))
    messages = _db.session.scalars(select(Message).where(Message.rdv_id == future.id)).all()
    assert {message.kind for message in messages} == {MessageKind.REMINDER}
    sms = sorted(message.due_at for message in messages if message.channel == Channel.SMS)
    assert [due.astimezone(PARIS).strftime("%d %H:%M") for due in sms] == ["20 14:00", "22 14:00"]
    past = _db.session.scalars(select(Rdv).where(Rdv.external_id.in_(["R1", "R2"]))).all()
    assert _db.session.scalar(select(func.count()).select_from(Message)
                              .where(Message.rdv_id.in_([rdv.id for rdv in past]))) == 0


BAD_LINES = {
    "X1;Durand;Paul;;06 00 00 00 01;;;B1;31/02/2026;09:00;Pesée du nourrisson;;;vu": "n'est pas une date",
    "X2;Durand;Jade;;01 41 37 10 00;;;;;;;;;": "n'est pas un numéro de mobile",
    "X3;Durand;Inès;;;;;B3;01/09/2026;09:00;Pesée du nourrisson;Centre inconnu;;vu": "Lieu « Centre inconnu » inconnu",
    "X4;Durand;Noé;;;;;B4;01/09/2026;09:00;Vaccination;;;vu": "Motif « Vaccination » inconnu",
    "F1;;;;;;;R1;02/09/2026;09:30;Pesée du nourrisson;;;vu": "figure déjà ligne 2",
    "X5;Durand;Zoé;;;;;B5;30/10/2026;09:00;Pesée du nourrisson;;claire.martin@lenord.fr;vu": "à venir",
    "X6;Durand;Lou;;;;Z9;;;;;;;": "Responsable « Z9 » inconnu",
    "X7;Durand;Tom;;;;;B7;01/09/2026;25:00;Pesée du nourrisson;;;vu": "n'est pas une heure",
    "X8;Durand;Max;;;;;B8;01/09/2026;09:00;Pesée du nourrisson;;;annulé": "précisez « annulé par l'usager »",
    "X9;Durand;Eva;;;;;B9;29/03/2026;02:30;Pesée du nourrisson;;;vu": "changement d'heure",
}


def test_bad_lines_are_reported_in_french_and_the_good_ones_imported(app, tmp_path, service):
    text = "\n".join([GOOD, *BAD_LINES])
    result = run(app, tmp_path, text, "--report", str(tmp_path / "rejets.csv"))
    assert result.exit_code == 1
    assert "importées : 4" in result.output and f"rejetées : {len(BAD_LINES)}" in result.output
    for line_number, reason in enumerate(BAD_LINES.values(), start=6):
        assert f"ligne {line_number} : " in result.output and reason in result.output, reason
    assert count(Usager) == 3 and count(Rdv) == 3  # the rejected lines' usagers are not half-stored
    rejected = (tmp_path / "rejets.csv").read_text(encoding="utf-8-sig")
    assert rejected.startswith("ligne;id_usager") and "Centre inconnu" in rejected


def test_a_second_run_stores_nothing_twice_and_a_dry_run_nothing_at_all(app, tmp_path, service):
    dry = run(app, tmp_path, GOOD, "--dry-run")
    assert dry.exit_code == 0 and "rien n'a été enregistré" in dry.output and "à importer : 4" in dry.output
    assert count(Usager) == 0 and count(Rdv) == 0 and count(Message) == 0
    assert run(app, tmp_path, GOOD).exit_code == 0
    usagers, rdvs, messages = count(Usager), count(Rdv), count(Message)
    again = run(app, tmp_path, GOOD)
    assert again.exit_code == 0 and "déjà présentes : 4" in again.output and "importées : 0" in again.output
    assert (count(Usager), count(Rdv), count(Message)) == (usagers, rdvs, messages)


RDV_SOLIDARITES = "\n".join([
    "année;date prise rdv;heure prise rdv;date rdv;heure rdv;motif;pris par;statut;lieux du rdv;service;agents",
    "2025;01/02/2025;10:12;03/02/2025;09:00;Pesée du nourrisson;agent;Rendez-vous honoré;Centre PMI Wazemmes;PMI;Martin Claire",
    "2025;01/02/2025;10:15;03/02/2025;09:30;Pesée du nourrisson;agent;Absent non excusé;Centre PMI Wazemmes;PMI;Martin Claire",
    "2025;01/02/2025;10:20;03/02/2025;10:00;Pesée du nourrisson;agent;Vu;Centre PMI Wazemmes;PMI;Martin Claire",
    "2025;01/02/2025;10:22;04/02/2025;10:00;Pesée du nourrisson;usager;Annulé (excusé);Centre PMI Wazemmes;PMI;Agent Parti",
    "2025;01/02/2025;10:25;05/02/2025;11:00;Pesée du nourrisson;agent;Vu;Centre PMI Wazemmes;PMI;Martin Claire",
])


def test_an_rdv_solidarites_export_gives_the_rate_before_lapins(app, tmp_path, service):
    result = run(app, tmp_path, RDV_SOLIDARITES, "--set-baseline", name="export.csv")
    assert result.exit_code == 0, result.output
    assert "importées : 5" in result.output
    assert "25,0 % (1 absent sur 4" in result.output and "avant Lapins" in result.output
    _db.session.expire_all()
    territory = _db.session.get(Territory, service.territory.id)
    assert territory.noshow_baseline_bp == 2500
    assert territory.noshow_baseline_label == "historique importé, 03/02/2025 – 05/02/2025"
    statuses = sorted(str(rdv.status) for rdv in _db.session.scalars(select(Rdv)))
    assert statuses == ["excused", "noshow", "seen", "seen", "seen"]
    again = run(app, tmp_path, RDV_SOLIDARITES, name="export.csv")
    assert "déjà présentes : 5" in again.output and count(Rdv) == 5


def test_ten_thousand_lines_with_bad_ones(app, tmp_path, service):
    """The file of a département's year: good lines in, bad ones reported, the second run stores nothing twice."""
    lines, bad, families = [HEADER], 0, set()
    start = date(2025, 1, 6)
    for index in range(10_000):
        day = start + timedelta(days=index % 600)
        status = "Absent" if index % 9 == 0 else "Vu"
        first_name = "Prénom " + "".join("abcdefghij"[int(digit)] for digit in str(index % 3000))  # no digits in a name
        row = [f"U{index % 3000}", "Famille", first_name, "", f"06{12000000 + index % 3000:08d}", "", "",
               f"R{index}", f"{day:%d/%m/%Y}", f"{8 + index % 9}:{15 * (index % 4):02d}", "Pesée du nourrisson",
               "Centre PMI Wazemmes", "claire.martin@lenord.fr", status]
        if index % 250 == 0:
            row[8], bad = "32/13/2025", bad + 1  # a date that does not exist
        elif index % 250 == 1:
            row[11], bad = "Centre fermé", bad + 1
        elif index % 250 == 10:
            row[7], bad = f"R{index - 1}", bad + 1  # the id of the line above
        else:
            families.add(row[0])
        lines.append(";".join(row))
    text = "\n".join(lines)
    began = stopwatch.perf_counter()
    first = run(app, tmp_path, text)
    seconds = stopwatch.perf_counter() - began
    assert first.exit_code == 1
    assert f"rejetées : {bad}" in first.output and f"importées : {10_000 - bad}" in first.output
    rdvs, usagers = count(Rdv), count(Usager)
    assert rdvs == 10_000 - bad and usagers == len(families)  # a family only on rejected lines is not stored
    second = run(app, tmp_path, text)
    assert f"déjà présentes : {10_000 - bad}" in second.output and "importées : 0" in second.output
    assert (count(Rdv), count(Usager)) == (rdvs, usagers)
    print(f"10 000 lignes importées en {seconds:.1f} s")


def test_a_family_known_from_another_service_joins_this_one(app, tmp_path, service, factories):
    assert run(app, tmp_path, GOOD).exit_code == 0
    other = factories.OrganisationFactory(territory=service.territory, name="PMI Roubaix")
    factories.MotifFactory(organisation=other, name="Pesée du nourrisson")
    path = tmp_path / "roubaix.csv"
    path.write_text(HEADER + "\nF1;;;;;;;RX1;05/10/2026;09:00;Pesée du nourrisson;;;vu", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["territory", "import-historique", "59", "PMI Roubaix", str(path),
                                                "--quiet"])
    assert result.exit_code == 0 and "importées : 1" in result.output, result.output
    _db.session.expire_all()
    mother = _db.session.scalar(select(Usager).where(Usager.external_id == "F1"))
    assert sorted(organisation.name for organisation in mother.organisations) == ["PMI Lille", "PMI Roubaix"]
    assert count(Usager) == 3
