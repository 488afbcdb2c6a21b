"""Families book online with no account: a need and a commune, the lieux serving it with their first free times, their
details, a 6-digit SMS code, then one transaction (usagers and rdv) through booking; every bad input a French
message with nothing half-stored."""
from __future__ import annotations

import html
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta, timezone
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import time_machine
from celery._state import _set_task_join_will_block
from sqlalchemy import func, select

from lapins.booking import book_rdv
from lapins import create_app
from lapins.infra.extensions import db as _db
from lapins.models import (
    EntrySource, EntryStatus, Message, MessageKind, MessageStatus, PhoneVerification, Rdv, Role, Usager,
    WaitlistEntry,
)
from lapins.models.rdvs import BookingChannel
from lapins.notifications import outbox
from tests.conftest import csrf_token_from
from tests.races import PARTY_HEADER, HeldStatements, live_server

NOW = datetime(2026, 10, 19, 4, 0, tzinfo=timezone.utc)  # Monday 19 October, 08:00 in La Réunion
START = "/974/prendre-rendez-vous"
MOBILE = "0692123456"
MOBILE_E164 = "+262692123456"


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def make_clinic(factories, *, territory_number: str = "974") -> SimpleNamespace:
    """A lieu of Saint-Denis (La Réunion) whose agent sees babies online from 8:00 to 12:00 every day."""
    organisation = factories.OrganisationFactory(territory__number=territory_number,
                                                 territory__timezone="Indian/Reunion", name="PMI Nord")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Saint-Denis",
                                 address="3 rue de Paris, 97400 Saint-Denis", phone="+262262901010")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson", online_bookable=True,
                                   online_min_hours=2, online_max_days=14)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif], start_time=time(8),
                           end_time=time(12), weekdays=0b1111111)
    return SimpleNamespace(organisation=organisation, territory=organisation.territory, lieu=lieu, motif=motif,
                           agent=agent)


@pytest.fixture()
def clinic(factories):
    return make_clinic(factories)


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def slot_links(page: str) -> list[tuple[str, str]]:
    """(« Centre PMI Saint-Denis, mardi 20 octobre 2026 à 08h00 », its link) for each time offered."""
    return [(html.unescape(label), html.unescape(href)) for label, href in re.findall(
        r'aria-label="([^"]+)" href="([^"]+/coordonnees\?creneau=[^"]+)"', page)]


def search(client, motif_id, commune="97411"):
    return client.get(START, query_string={"motif": motif_id, "commune_code": commune, "commune": ""})


def details(**changes) -> dict:
    return {"last_name": "Payet", "first_name": "Noémie", "child_first_name": "Éloïse", "birth_date": "2026-03-02",
            "phone": MOBILE, "email": "noemie.payet@example.fr", "site_web": ""} | changes


def give_details(client, link: str, **changes):
    token = csrf_token_from(client.get(link).get_data(as_text=True))
    creneau = parse_qs(urlparse(link).query)["creneau"][0]
    return client.post(urlparse(link).path, data={"csrf_token": token, "creneau": creneau} | details(**changes))


def last_code(db) -> str:
    body = db.session.scalars(select(Message.body).where(Message.kind == MessageKind.PHONE_CODE)
                              .order_by(Message.id.desc())).first()
    return re.search(r"\b(\d{6})\b", body).group(1)


def send_code(client, code: str):
    token = csrf_token_from(client.get(f"{START}/code").get_data(as_text=True))
    return client.post(f"{START}/code", data={"csrf_token": token, "code": code})


def counts(db) -> tuple[int, int]:
    return (db.session.scalar(select(func.count()).select_from(Usager)),
            db.session.scalar(select(func.count()).select_from(Rdv)))


def test_a_family_books_online_with_its_number_checked_by_sms(client, db, clinic):
    start = client.get(START)
    assert start.status_code == 200 and "Pesée du nourrisson" in page_text(start)
    found = search(client, clinic.motif.id)
    links = slot_links(page_text(found))
    # 08:00 in La Réunion now: the motif's 2 hours make 10:00 today the first time; three days are shown.
    assert links[0][0] == "Centre PMI Saint-Denis, lundi 19 octobre 2026 à 10h00"
    assert {label.split(" à ")[0] for label, _ in links} == {
        "Centre PMI Saint-Denis, lundi 19 octobre 2026", "Centre PMI Saint-Denis, mardi 20 octobre 2026",
        "Centre PMI Saint-Denis, mercredi 21 octobre 2026"}
    chosen = next(link for label, link in links if label.endswith("mardi 20 octobre 2026 à 09h00"))

    sent = give_details(client, chosen)
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/974/prendre-rendez-vous/code")
    assert counts(db) == (0, 0)  # nothing of the family stored before its number is checked
    code_sms = db.session.scalars(select(Message).where(Message.kind == MessageKind.PHONE_CODE)).one()
    assert code_sms.to_address == MOBILE_E164 and code_sms.usager_id is None and code_sms.rdv_id is None
    assert "Payet" not in code_sms.body and len(code_sms.body) <= 160

    booked = send_code(client, last_code(db))
    assert booked.status_code == 302 and booked.headers["Location"].endswith("/974/prendre-rendez-vous/confirme")
    done = page_text(client.get(booked.headers["Location"]))
    assert "Votre rendez-vous est confirmé" in done and "mardi 20 octobre 2026 à 09h00" in done
    rdv = db.session.scalars(select(Rdv)).one()
    assert rdv.booked_via == BookingChannel.ONLINE and rdv.lieu_id == clinic.lieu.id
    assert rdv.starts_at == datetime(2026, 10, 20, 5, 0, tzinfo=timezone.utc)
    child = rdv.usagers[0]
    assert (child.first_name, child.birth_date, child.responsible.phone, child.responsible.sms_consent) == (
        "Éloïse", date(2026, 3, 2), MOBILE_E164, True)
    confirmation = db.session.scalars(select(Message).where(Message.rdv_id == rdv.id,
                                                            Message.kind == MessageKind.CREATED)).all()
    assert {message.channel.value for message in confirmation} == {"sms", "email"}


@pytest.mark.parametrize("label", [None, "PMI Réunion", "Protection maternelle et infantile — Conseil départemental œ 😀"])
def test_the_code_sms_is_one_gsm7_segment_whatever_the_territory_label(app, label):
    from lapins.notifications import gsm
    from lapins.public.online import code_sms

    text = code_sms(SimpleNamespace(sms_label=label), "012345")
    assert gsm.is_gsm7(text) and gsm.segments(text) == 1 and "012345" in text


def test_the_code_sms_is_sent_by_the_outbox_to_the_number(client, db, clinic, app):
    give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1])
    message = db.session.scalars(select(Message).where(Message.kind == MessageKind.PHONE_CODE)).one()
    outbox.send_batch(outbox.claim_due(NOW + timedelta(seconds=1), 10))
    db.session.refresh(message)
    assert message.status == MessageStatus.SENT and message.to_address == MOBILE_E164


def test_the_dev_inbox_shows_the_code_to_the_territory_agents(client, db, clinic, auth, factories):
    give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1])
    code = last_code(db)
    auth.login(clinic.agent)
    page = page_text(client.get("/dev/messages"))
    assert "vérification d'un numéro (réservation en ligne)" in page and code in page
    stranger = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.AGENT)
    auth.logout()
    auth.login(stranger)
    assert code not in page_text(client.get("/dev/messages"))


def test_a_need_offered_by_two_organisations_is_shown_once_with_the_lieux_of_both(client, db, clinic, factories):
    south = factories.OrganisationFactory(territory=clinic.territory, name="PMI Sud")
    lieu = factories.LieuFactory(organisation=south, name="Centre PMI Saint-Pierre", address="1 rue Archambaud")
    motif = factories.MotifFactory(organisation=south, name="Pesée du nourrisson", online_bookable=True)
    agent = factories.AgentFactory(organisation=south, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif], start_time=time(14),
                           end_time=time(16), weekdays=0b1111111)
    page = page_text(search(client, motif.id))  # the other organisation's motif of that name: the same need
    assert page.count('name="motif"') == 1 and 'value="%d" checked' % clinic.motif.id in page
    labels = [label for label, _ in slot_links(page)]
    assert labels[0].startswith("Centre PMI Saint-Denis,") and labels[-1].startswith("Centre PMI Saint-Pierre,")
    chosen = next(link for label, link in slot_links(page) if label.startswith("Centre PMI Saint-Pierre"))
    give_details(client, chosen)
    send_code(client, last_code(db))
    rdv = db.session.scalars(select(Rdv)).one()
    assert (rdv.motif_id, rdv.lieu_id, rdv.organisation_id) == (motif.id, lieu.id, south.id)


def test_agents_see_the_rdv_came_online(client, db, clinic, auth):
    give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1])
    send_code(client, last_code(db))
    rdv = db.session.scalars(select(Rdv)).one()
    auth.login(clinic.agent)
    page = page_text(client.get(f"/rdvs/{rdv.id}"))
    assert ", en ligne" in page
    # The family's files are the organisation's: its agents open them.
    child = rdv.usagers[0]
    assert [organisation.id for organisation in child.organisations] == [clinic.organisation.id]
    assert client.get(f"/usagers/{child.id}").status_code == 200
    assert client.get(f"/usagers/{child.responsible_id}").status_code == 200


def test_the_statistics_split_the_rdvs_by_channel(client, db, clinic, auth, factories):
    give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1])
    send_code(client, last_code(db))
    other = factories.UsagerFactory(territory=clinic.territory)
    book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[other], lieu=clinic.lieu,
             starts_at=datetime(2026, 10, 21, 5, 0, tzinfo=timezone.utc))
    auth.login(clinic.agent)
    page = client.get(f"/statistiques/organisation/{clinic.organisation.id}").get_data(as_text=True)
    row = re.search(r'<tr data-channels-month="2026-10">(.*?)</tr>', page, re.S).group(1)
    cells = [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
             for cell in re.findall(r"<t[hd][^>]*>.*?</t[hd]>", row, re.S)]
    assert cells == ["octobre 2026", "1", "1", "0", "0", "0", "50,0\u00a0%"]


def test_the_exported_figures_and_rdv_list_carry_the_booking_channel(client, db, clinic, auth, factories):
    import csv
    import io

    import openpyxl

    from lapins.stats import exports
    from lapins.stats.figures import Filters

    give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1])
    send_code(client, last_code(db))
    online_rdv = db.session.scalars(select(Rdv)).one()
    other = factories.UsagerFactory(territory=clinic.territory)
    agenda_rdv = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[other],
                          lieu=clinic.lieu, starts_at=datetime(2026, 10, 21, 5, 0, tzinfo=timezone.utc))
    auth.login(clinic.agent)
    base = f"/statistiques/organisation/{clinic.organisation.id}/statistiques"
    headers = exports.FIGURE_HEADERS
    first = headers.index("RDV pris par un agent")
    assert headers[first:] == ["RDV pris par un agent", "RDV pris en ligne", "RDV pris sur une proposition acceptée",
                               "RDV pris via l'API", "RDV de l'historique importé", "Part en ligne (%)"]
    figures = list(csv.reader(io.StringIO(client.get(f"{base}.csv?du=2026-10&au=2026-10").data.decode("utf-8-sig")),
                              delimiter=";"))
    october = next(row for row in figures if row[0] == "2026-10")
    assert figures[0] == headers and october[first:] == ["1", "1", "0", "0", "0", "50,0"]
    sheet = openpyxl.load_workbook(io.BytesIO(client.get(f"{base}.xlsx?du=2026-10&au=2026-10").data)).active
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == headers and rows[1][first:] == [1, 1, 0, 0, 0, 50.0]

    for file_format in ("csv", "xlsx"):
        export = exports.request_export(clinic.agent, clinic.territory.id, clinic.organisation.id,
                                        Filters(date(2026, 10, 1), date(2026, 10, 1)), file_format)
        db.session.commit()
        exports.run_export(export.id)
        data = client.get(f"/statistiques/exports/{export.id}/fichier").data
        if file_format == "csv":
            listed = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
        else:
            listed = [["" if cell is None else str(cell) for cell in row]
                      for row in openpyxl.load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True)]
        column = listed[0].index("Canal de prise du RDV")
        assert {row[0]: row[column] for row in listed[1:]} == {str(online_rdv.id): "En ligne",
                                                               str(agenda_rdv.id): "Par un agent"}, file_format


def test_a_known_number_is_matched_not_duplicated(client, db, clinic, factories):
    parent = factories.UsagerFactory(territory=clinic.territory, first_name="Noémie", last_name="Payet",
                                     phone=MOBILE_E164, sms_consent=False)
    child = factories.UsagerFactory(territory=clinic.territory, first_name="Éloïse", last_name="Payet",
                                    responsible=parent, phone=None, birth_date=date(2026, 3, 2))
    give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1])
    send_code(client, last_code(db))
    rdv = db.session.scalars(select(Rdv)).one()
    assert [usager.id for usager in rdv.usagers] == [child.id]
    assert counts(db) == (2, 1) and db.session.get(Usager, parent.id).sms_consent


@pytest.mark.parametrize(("changes", "message"), [
    ({"phone": "0262901010"}, "Ce numéro n'est pas un numéro de mobile"),
    ({"phone": "12"}, "Numéro de téléphone invalide"),
    ({"birth_date": "2027-01-05"}, "La date de naissance ne peut pas être dans le futur."),
    ({"birth_date": "05/13/2026"}, "Saisissez une date valide"),
    ({"child_first_name": ""}, "Saisissez le prénom de l'enfant."),
    ({"last_name": "<script>"}, "Saisissez seulement des lettres"),
])
def test_bad_details_are_told_in_french_and_nothing_is_sent(client, db, clinic, changes, message):
    answer = give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1], **changes)
    assert answer.status_code == 200 and message in page_text(answer)
    assert db.session.scalar(select(func.count()).select_from(Message)) == 0
    assert db.session.scalar(select(func.count()).select_from(PhoneVerification)) == 0


def test_a_wrong_code_counts_and_five_end_it(client, db, clinic):
    give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1])
    code = last_code(db)
    wrong = "000000" if code != "000000" else "111111"
    first = send_code(client, wrong)
    assert "Code incorrect. Il vous reste 4 essais." in page_text(first)
    for _ in range(4):
        answer = send_code(client, wrong)
    assert "c'était le dernier essai" in page_text(answer)
    assert "Trop d'essais avec ce code" in page_text(send_code(client, code))
    assert counts(db) == (0, 0)


def test_an_expired_code_is_refused(client, db, clinic, frozen_time):
    give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1])
    frozen_time.shift(timedelta(minutes=11))
    assert "Ce code a expiré" in page_text(send_code(client, last_code(db)))
    assert counts(db) == (0, 0)


def test_a_number_asks_three_codes_an_hour_at_most(client, db, clinic):
    link = slot_links(page_text(search(client, clinic.motif.id)))[0][1]
    give_details(client, link)
    for _ in range(2):
        token = csrf_token_from(client.get(f"{START}/code").get_data(as_text=True))
        client.post(f"{START}/code/renvoyer", data={"csrf_token": token})
    token = csrf_token_from(client.get(f"{START}/code").get_data(as_text=True))
    answer = client.post(f"{START}/code/renvoyer", data={"csrf_token": token}, follow_redirects=True)
    assert "Trop de codes envoyés à ce numéro" in page_text(answer)
    assert db.session.scalar(select(func.count()).select_from(PhoneVerification)) == 3


def test_a_slot_taken_meanwhile_sends_back_to_the_slots_with_nothing_stored(client, db, clinic, factories):
    links = slot_links(page_text(search(client, clinic.motif.id)))
    give_details(client, links[0][1])
    other = factories.UsagerFactory(territory=clinic.territory)
    book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[other], lieu=clinic.lieu,
             starts_at=datetime(2026, 10, 19, 6, 0, tzinfo=timezone.utc))
    answer = send_code(client, last_code(db))
    assert answer.status_code == 302 and "motif=" in answer.headers["Location"]
    assert "Ce créneau vient d'être pris" in page_text(client.get(answer.headers["Location"]))
    assert counts(db) == (1, 1)
    # The number stays checked: another time is booked without a new code.
    again = slot_links(page_text(search(client, clinic.motif.id)))[0][1]
    booked = give_details(client, again)
    assert booked.headers["Location"].endswith("/confirme")
    assert db.session.scalar(select(func.count()).select_from(PhoneVerification)) == 1


def test_a_time_taken_before_the_details_page_opens_sends_back_to_the_search(client, db, clinic, factories):
    link = slot_links(page_text(search(client, clinic.motif.id)))[0][1]
    book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent],
             usagers=[factories.UsagerFactory(territory=clinic.territory)], lieu=clinic.lieu,
             starts_at=datetime(2026, 10, 19, 6, 0, tzinfo=timezone.utc))
    answer = client.get(link)
    assert answer.status_code == 302 and "commune_code=97411" in answer.headers["Location"]
    page = page_text(client.get(answer.headers["Location"]))
    assert "Ce créneau vient d'être pris" in page and slot_links(page)[0][0].endswith("à 10h30")


def test_a_number_holds_two_online_rdvs_of_a_motif_at_most(client, db, clinic):
    links = slot_links(page_text(search(client, clinic.motif.id)))
    give_details(client, links[0][1])
    send_code(client, last_code(db))
    give_details(client, links[1][1], child_first_name="Lou")
    send_code(client, last_code(db))
    answer = give_details(client, links[2][1], child_first_name="Tom")
    assert answer.status_code == 200
    assert "Ce numéro a déjà 2 rendez-vous à venir pour ce motif pris en ligne" in page_text(answer)
    assert db.session.scalar(select(func.count()).select_from(Rdv)) == 2
    assert db.session.scalar(select(func.count()).select_from(PhoneVerification)) == 2


def test_the_honeypot_refuses_robots(client, db, clinic):
    answer = give_details(client, slot_links(page_text(search(client, clinic.motif.id)))[0][1], site_web="http://x")
    assert answer.status_code == 400 and db.session.scalar(select(func.count()).select_from(Message)) == 0


def test_unknown_commune_and_closed_motif_are_told(client, db, clinic, factories):
    unknown = client.get(START, query_string={"motif": clinic.motif.id, "commune": "Paris"})
    assert "Aucune commune du département 974 ne correspond à « Paris »." in page_text(unknown)
    outside = client.get(START, query_string={"motif": clinic.motif.id, "commune_code": "75056"})
    assert "Saisissez la commune" in page_text(outside)
    closed = factories.MotifFactory(organisation=clinic.organisation, name="Vaccins", online_bookable=False)
    refused = client.get(START, query_string={"motif": closed.id, "commune_code": "97411"})
    assert "Choisissez un motif dans la liste." in page_text(refused) or "ne se réserve pas en ligne" in page_text(
        refused)
    assert slot_links(page_text(refused)) == []


def test_a_slot_token_of_another_territory_or_forged_is_refused(client, db, clinic, factories):
    link = slot_links(page_text(search(client, clinic.motif.id)))[0][1]
    other = make_clinic(factories, territory_number="972")
    elsewhere = client.get(link.replace("/974/", "/972/"))
    assert elsewhere.status_code == 302
    assert "Ce lien de créneau n'est pas valide" in page_text(client.get(elsewhere.headers["Location"]))
    forged = client.get(link[:-3] + "abc", follow_redirects=True)
    assert "Ce lien de créneau n'est pas valide" in page_text(forged)
    assert other.territory.number == "972"


def test_a_territory_closed_online_offers_nothing(client, db, clinic):
    clinic.territory.online_booking = False
    db.session.commit()
    assert "n'est pas ouverte dans ce département" in page_text(client.get(START))
    assert client.get("/999/prendre-rendez-vous").status_code == 404


def test_no_free_slot_shows_the_lieu_phone(client, db, clinic):
    clinic.motif.online_max_days = 1
    clinic.motif.online_min_hours = 30
    db.session.commit()
    page = page_text(search(client, clinic.motif.id))
    assert "Aucun créneau libre en ligne pour le moment" in page and "0262 90 10 10" in page


def test_with_no_free_slot_the_family_joins_the_waiting_list_with_its_number_checked(client, db, clinic):
    clinic.motif.online_max_days = 1
    clinic.motif.online_min_hours = 30
    db.session.commit()
    page = page_text(search(client, clinic.motif.id))
    link = html.unescape(re.search(r'href="([^"]+/liste-attente\?attente=[^"]+)"', page).group(1))
    form = client.get(link)
    assert "M'inscrire sur la liste d'attente" in page_text(form)
    token = csrf_token_from(form.get_data(as_text=True))
    attente = parse_qs(urlparse(link).query)["attente"][0]
    sent = client.post(urlparse(link).path, data={"csrf_token": token, "attente": attente} | details())
    assert sent.headers["Location"].endswith("/code") and counts(db) == (0, 0)
    done = send_code(client, last_code(db))
    assert "Vous êtes sur la liste d'attente" in page_text(client.get(done.headers["Location"]))
    entry = db.session.scalars(select(WaitlistEntry)).one()
    assert (entry.source, entry.status, entry.motif_id, entry.lieu_id) == (
        EntrySource.ONLINE, EntryStatus.ACTIVE, clinic.motif.id, clinic.lieu.id)
    assert entry.usager.first_name == "Éloïse" and entry.usager.responsible.phone == MOBILE_E164
    assert db.session.scalar(select(func.count()).select_from(Rdv)) == 0


def test_a_family_whose_street_is_in_another_sector_than_its_commune_books_the_time_its_street_was_offered(
        client, db, clinic):
    from lapins.models import Sector, SectorZone

    # Saint-Denis belongs to no sector of this lieu; one of its streets does. Without the street (no geocoder) the
    # lieu is offered with a note; with it (a geocoder's answer), the time is checked against that same street.
    clinic.motif.sectorised = True
    street = Sector(territory=clinic.territory, name="Rue de Paris", lieux=[clinic.lieu])
    street.zones.append(SectorZone(territory_id=clinic.territory.id, commune_code="97411", street_code="97411_0420"))
    db.session.add(street)
    db.session.commit()
    assert "Sert-il votre rue ?" in page_text(search(client, clinic.motif.id))
    page = page_text(client.get(START, query_string={"motif": clinic.motif.id, "commune_code": "97411",
                                                     "rue": "97411_0420"}))
    assert "Sert-il votre rue ?" not in page
    chosen = next(link for label, link in slot_links(page) if label.endswith("mardi 20 octobre 2026 à 09h00"))
    sent = give_details(client, chosen)
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/code")
    booked = send_code(client, last_code(db))
    assert booked.headers["Location"].endswith("/confirme")
    rdv = db.session.scalars(select(Rdv)).one()
    assert (rdv.lieu_id, rdv.starts_at) == (clinic.lieu.id, datetime(2026, 10, 20, 5, 0, tzinfo=timezone.utc))


def test_a_motif_for_the_person_herself_asks_her_own_birth_date(client, db, clinic):
    clinic.motif.online_for_self = True
    clinic.motif.name = "Consultation prénatale"
    db.session.commit()
    link = slot_links(page_text(search(client, clinic.motif.id)))[0][1]
    assert "Prénom de l'enfant" not in page_text(client.get(link))
    give_details(client, link, child_first_name="", birth_date="1995-06-01")
    send_code(client, last_code(db))
    rdv = db.session.scalars(select(Rdv)).one()
    person = rdv.usagers[0]
    assert (person.first_name, person.birth_date, person.phone, person.responsible_id) == (
        "Noémie", date(1995, 6, 1), MOBILE_E164, None)
    assert counts(db) == (1, 1)


@pytest.fixture()
def limited_app(tmp_path):
    from tests import factories

    def start(**limits):
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'online.sqlite3'}",
                         WTF_CSRF_ENABLED=True, RATELIMIT_ENABLED=True, TRUSTED_PROXIES=1, **limits)
        with app.app_context():
            _db.create_all()
            motif_id = make_clinic(factories).motif.id
            _db.session.commit()
            _db.session.remove()
        return app, motif_id

    return start


def test_the_forms_are_limited_per_address(limited_app):
    app, motif_id = limited_app(ONLINE_BOOKING_LIMITS_PER_IP="2/minute")
    client = app.test_client()
    here = {"X-Forwarded-For": "203.0.113.7"}
    link = slot_links(page_text(client.get(START, query_string={"motif": motif_id, "commune_code": "97411"})))[0][1]
    token = csrf_token_from(client.get(link, headers=here).get_data(as_text=True))
    creneau = parse_qs(urlparse(link).query)["creneau"][0]
    bad = {"csrf_token": token, "creneau": creneau} | details(phone="12")
    assert [client.post(urlparse(link).path, data=bad, headers=here).status_code for _ in range(2)] == [200, 200]
    refused = client.post(urlparse(link).path, data=bad, headers=here)
    assert refused.status_code == 429 and "Trop de demandes depuis cette connexion" in page_text(refused)
    other = client.post(urlparse(link).path, data=bad, headers={"X-Forwarded-For": "198.51.100.20"})
    assert other.status_code == 200


def test_searches_are_limited_per_address(limited_app):
    app, motif_id = limited_app(ONLINE_SEARCH_LIMITS_PER_IP="3/minute")
    client = app.test_client()
    here = {"X-Forwarded-For": "203.0.113.7"}
    search = {"motif": motif_id, "commune_code": "97411"}
    assert [client.get(START, query_string=search, headers=here).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get(START, query_string=search, headers=here)
    assert refused.status_code == 429 and "Trop de demandes depuis cette connexion" in page_text(refused)
    assert client.get(START, query_string=search, headers={"X-Forwarded-For": "198.51.100.20"}).status_code == 200


def test_codes_are_limited_per_number_whatever_the_address(limited_app):
    app, motif_id = limited_app(ONLINE_LIMITS_PER_NUMBER="2/hour")
    sent = []
    for address in ("203.0.113.7", "198.51.100.20", "192.0.2.5"):
        client = app.test_client()
        here = {"X-Forwarded-For": address}
        link = slot_links(page_text(client.get(START, query_string={"motif": motif_id, "commune_code": "97411"})))[0][1]
        token = csrf_token_from(client.get(link, headers=here).get_data(as_text=True))
        creneau = parse_qs(urlparse(link).query)["creneau"][0]
        sent.append(client.post(urlparse(link).path, headers=here,
                                data={"csrf_token": token, "creneau": creneau} | details()))
    assert [answer.status_code for answer in sent] == [302, 302, 200]
    assert "Trop d'essais pour ce numéro" in page_text(sent[2])
    with app.app_context():
        assert _db.session.scalar(select(func.count()).select_from(PhoneVerification)) == 2


# --- A race ----------------------------------------------------------------------------------------------------------

RACERS = 6


@pytest.fixture()
def live_clinic(database_url):
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=True)
    with app.app_context():
        motif_id = make_clinic(factories).motif.id
        _db.session.remove()
    with live_server(app) as base:
        yield app, base, motif_id
    _set_task_join_will_block(False)  # eager tasks of concurrent requests can leave Celery's process-wide flag set
    with app.app_context():
        _db.engine.dispose()


def test_families_with_checked_numbers_racing_for_one_time_book_it_once(live_clinic):
    app, base, motif_id = live_clinic
    browsers, codes = [], []
    for index in range(RACERS):
        browser = requests.Session()
        page = html.unescape(browser.get(f"{base}{START}", params={"motif": motif_id, "commune_code": "97411"},
                                         timeout=30).text)
        link = f"{base}{slot_links(page)[0][1]}"  # the same first time for every family
        token = csrf_token_from(browser.get(link, timeout=30).text)
        creneau = parse_qs(urlparse(link).query)["creneau"][0]
        sent = browser.post(urlparse(link)._replace(query="").geturl(), allow_redirects=False, timeout=30,
                            data={"csrf_token": token, "creneau": creneau}
                            | details(last_name=f"Famille{'abcdef'[index]}", phone=f"069212340{index}"))
        assert sent.status_code == 302 and sent.headers["Location"].endswith("/code"), sent.text
        with app.app_context():
            codes.append(last_code(_db))
        browsers.append((browser, csrf_token_from(browser.get(f"{base}{START}/code", timeout=30).text)))

    def post_code(index: int) -> requests.Response:
        browser, token = browsers[index]
        return browser.post(f"{base}{START}/code", data={"csrf_token": token, "code": codes[index]},
                            headers={PARTY_HEADER: f"family-{index}"}, allow_redirects=False, timeout=60)

    with app.app_context():
        engine = _db.engine
    # Each request held at its booking's first write (the new usager), having read the time as free.
    with HeldStatements(engine, ("INSERT INTO usagers",), RACERS) as held, ThreadPoolExecutor(RACERS) as pool:
        answers = list(pool.map(post_code, range(RACERS)))
    assert held.crossed == RACERS, "the bookings did not meet before their first write"
    places = sorted(answer.headers["Location"].split("?")[0].rsplit("/", 1)[-1] for answer in answers)
    assert places == ["confirme"] + ["prendre-rendez-vous"] * (RACERS - 1)
    with app.app_context():
        rdvs = _db.session.scalars(select(Rdv)).all()
        assert len(rdvs) == 1 and rdvs[0].booked_via == BookingChannel.ONLINE
        # The families who lost stored nothing: only the winner's parent and child exist.
        assert _db.session.scalar(select(func.count()).select_from(Usager)) == 2
