"""Families sign up online for collective sessions (ateliers) whose motif is open online: the public page lists the
upcoming sessions with their places left; a place is taken with the number checked by SMS code, through
booking.sessions (via online), the family's own confirmation in the outbox; a full session (or one filled meanwhile)
offers its waiting list; another territory's session, or a past one, is refused with nothing stored."""
from __future__ import annotations

import html
import re
from datetime import datetime, time, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.booking import sessions
from lapins.models import (
    EntrySource, EntryStatus, Message, MessageKind, Participation, Role, Usager, WaitlistEntry,
)
from lapins.models.rdvs import BookingChannel
from tests.conftest import csrf_token_from

NOW = datetime(2026, 10, 19, 4, 0, tzinfo=timezone.utc)  # Monday 19 October, 08:00 in La Réunion
START = "/974/prendre-rendez-vous"
MOBILE = "0692123456"
MOBILE_E164 = "+262692123456"


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def at(days: int, hour: int) -> datetime:
    """`hour` o'clock in La Réunion (UTC+4), `days` after today."""
    return datetime.combine(NOW.date() + timedelta(days=days), time(hour), timezone.utc) - timedelta(hours=4)


def make_pmi(factories, number: str = "974"):
    organisation = factories.OrganisationFactory(territory__number=number, territory__timezone="Indian/Reunion",
                                                 name="PMI Nord")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Saint-Denis",
                                 address="3 rue de Paris, 97400 Saint-Denis", phone="+262262901010")
    motif = factories.MotifFactory(organisation=organisation, name="Atelier massage bébé", duration_minutes=90,
                                   collective=True, online_bookable=True, online_min_hours=2, online_max_days=14)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)

    def session(capacity: int = 3, days: int = 2, title: str = "Massage bébé", hour: int = 9):
        return sessions.create_sessions(actor=agent, motif=motif, agents=[agent], lieu=lieu,
                                        starts=[at(days, hour)], duration=timedelta(minutes=90), capacity=capacity,
                                        title=title)[0]
    return type("Pmi", (), dict(organisation=organisation, territory=organisation.territory, lieu=lieu, motif=motif,
                                agent=agent, session=staticmethod(session)))


@pytest.fixture()
def pmi(factories):
    return make_pmi(factories)


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def search(client, motif_id, commune="97411"):
    return client.get(START, query_string={"motif": motif_id, "commune_code": commune, "commune": ""})


def session_links(page: str) -> dict[int, str]:
    """{session id: its sign-up or waiting-list link} as listed."""
    found = {}
    for block in re.findall(r'<li class="fr-mb-3w" data-session="\d+">.*?</li>', page, re.S):
        session_id = int(re.search(r'data-session="(\d+)"', block).group(1))
        found[session_id] = html.unescape(re.search(r'href="([^"]+/seance[^"]*)"', block).group(1))
    return found


def details() -> dict:
    return {"last_name": "Payet", "first_name": "Noémie", "child_first_name": "Éloïse", "birth_date": "2026-03-02",
            "phone": MOBILE, "email": "noemie.payet@example.fr", "site_web": ""}


def give_details(client, link: str):
    token = csrf_token_from(client.get(link).get_data(as_text=True))
    seance = parse_qs(urlparse(link).query)["seance"][0]
    return client.post(urlparse(link).path, data={"csrf_token": token, "seance": seance} | details())


def send_last_code(client, db):
    body = db.session.scalars(select(Message.body).where(Message.kind == MessageKind.PHONE_CODE)
                              .order_by(Message.id.desc())).first()
    code = re.search(r"\b(\d{6})\b", body).group(1)
    token = csrf_token_from(client.get(f"{START}/code").get_data(as_text=True))
    return client.post(f"{START}/code", data={"csrf_token": token, "code": code})


def fill(session, factories, pmi, count: int) -> None:
    for index in range(count):
        parent = factories.UsagerFactory(territory=pmi.territory, organisations=[pmi.organisation],
                                         phone=f"+26269299000{index}")
        sessions.add_participant(actor=pmi.agent, session=session, usagers=[parent])


def usagers_count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(Usager))


def test_the_page_lists_upcoming_sessions_with_their_places_left(client, db, pmi, factories):
    start = page_text(client.get(START))
    assert "Atelier massage bébé" in start
    soon = pmi.session(capacity=3, days=2)
    fill(soon, factories, pmi, 1)
    full = pmi.session(capacity=1, days=3, title="Groupe complet")
    fill(full, factories, pmi, 1)
    too_far = pmi.session(days=20)  # beyond the motif's 14 days online
    page = page_text(search(client, pmi.motif.id))
    assert "mercredi 21 octobre 2026" in page and "Massage bébé" in page and "2 places restantes" in page
    links = session_links(page)
    assert set(links) == {soon.id, full.id} and too_far.id not in links
    assert "/seance?" in links[soon.id] and "/seance/liste-attente?" in links[full.id]
    assert "Complet" in page


def test_a_family_signs_up_with_its_code_and_gets_its_confirmation(client, db, pmi):
    session = pmi.session(capacity=3)
    link = session_links(page_text(search(client, pmi.motif.id)))[session.id]
    sent = give_details(client, link)
    assert sent.status_code == 302 and sent.headers["Location"].endswith(f"{START}/code")
    assert usagers_count(db) == 0  # nothing stored before the number is checked

    done = send_last_code(client, db)
    assert done.status_code == 302 and done.headers["Location"].endswith(f"{START}/confirme")
    page = page_text(client.get(done.headers["Location"]))
    assert "Votre inscription est confirmée" in page and "/r/p/" in page
    participation = db.session.scalars(select(Participation)).one()
    assert participation.via == BookingChannel.ONLINE and participation.rdv_id == session.id
    assert [person.first_name for person in participation.usagers] == ["Éloïse"]
    assert participation.usager.phone == MOBILE_E164
    db.session.refresh(session)
    assert session.places_taken == 1
    confirmation = db.session.scalars(select(Message).where(Message.participation_id == participation.id,
                                                            Message.kind == MessageKind.CREATED)).all()
    assert {message.channel.value for message in confirmation} == {"sms", "email"}
    assert page_text(search(client, pmi.motif.id)).count("2 places restantes") == 1


def test_a_full_session_is_refused_and_its_waiting_list_offered(client, db, pmi, factories):
    session = pmi.session(capacity=1)
    link = session_links(page_text(search(client, pmi.motif.id)))[session.id]
    fill(session, factories, pmi, 1)  # filled between the list and the family's click
    before = usagers_count(db)
    opened = client.get(link)
    assert opened.status_code == 302 and "/seance/liste-attente?" in opened.headers["Location"]
    waiting = client.get(opened.headers["Location"])
    assert "Cette séance est complète (1/1)" in page_text(waiting)
    assert "liste d'attente de la séance" in page_text(waiting)
    assert give_details(client, opened.headers["Location"]).status_code == 302
    assert usagers_count(db) == before
    done = send_last_code(client, db)
    assert done.headers["Location"].endswith(f"{START}/confirme")
    entry = db.session.scalars(select(WaitlistEntry)).one()
    assert (entry.session_id, entry.source, entry.status) == (session.id, EntrySource.ONLINE, EntryStatus.ACTIVE)
    assert db.session.scalar(select(func.count()).select_from(Participation)) == 1
    waiting_page = page_text(client.get(done.headers["Location"]))
    assert "Vous êtes sur la liste d'attente" in waiting_page and "Dès qu'une place se libère dans cette séance" in \
        waiting_page and "mercredi 21 octobre 2026" in waiting_page


def test_a_session_filled_after_the_code_was_asked_offers_its_waiting_list_with_nothing_stored(
        client, db, pmi, factories):
    session = pmi.session(capacity=1)
    link = session_links(page_text(search(client, pmi.motif.id)))[session.id]
    give_details(client, link)
    fill(session, factories, pmi, 1)
    before = usagers_count(db)
    refused = send_last_code(client, db)
    assert refused.status_code == 302 and "/seance/liste-attente?" in refused.headers["Location"]
    assert usagers_count(db) == before
    assert db.session.scalar(select(func.count()).select_from(Participation)) == 1
    page = page_text(client.get(refused.headers["Location"]))
    assert "Cette séance est complète (1/1)" in page


def test_a_session_of_another_territory_or_a_past_one_is_refused(client, db, pmi, factories, frozen_time):
    other = make_pmi(factories, number="976")
    theirs = other.session()
    other_link = session_links(page_text(client.get("/976/prendre-rendez-vous", query_string={
        "motif": other.motif.id, "commune_code": "97611", "commune": ""})))[theirs.id]
    # Their token on our territory's pages: refused, back to the start.
    refused = client.get(other_link.replace("/976/", "/974/"), follow_redirects=True)
    assert "Ce lien de séance n'est pas valide" in page_text(refused)

    ours = pmi.session(days=0, hour=11)
    link = session_links(page_text(search(client, pmi.motif.id)))[ours.id]
    frozen_time.move_to(at(0, 12))  # the session has started
    past = client.get(link, follow_redirects=True)
    assert "Cette séance n'est plus proposée en ligne" in page_text(past)
    assert db.session.scalar(select(func.count()).select_from(Participation)) == 0
    assert usagers_count(db) == 0


def test_a_number_holds_at_most_the_online_limit_of_places_of_a_motif(client, db, pmi, app, monkeypatch):
    monkeypatch.setitem(app.config, "ONLINE_LIVE_RDVS_PER_NUMBER", 1)
    first, second = pmi.session(days=2), pmi.session(days=3)
    links = session_links(page_text(search(client, pmi.motif.id)))
    give_details(client, links[first.id])
    send_last_code(client, db)
    refused = give_details(client, links[second.id])
    assert refused.status_code == 200 and "Ce numéro a déjà 1 inscriptions à venir" in page_text(refused)
    assert db.session.scalar(select(func.count()).select_from(Message).where(
        Message.kind == MessageKind.PHONE_CODE)) == 1  # no second code sent
    assert db.session.scalar(select(func.count()).select_from(Participation)) == 1


def test_the_sign_up_form_is_limited_per_address_as_individual_booking(tmp_path):
    from lapins import create_app
    from lapins.infra.extensions import db as _db
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'sessions.sqlite3'}",
                     WTF_CSRF_ENABLED=True, RATELIMIT_ENABLED=True, TRUSTED_PROXIES=1,
                     ONLINE_BOOKING_LIMITS_PER_IP="2/minute")
    with app.app_context():
        _db.create_all()
        pmi = make_pmi(factories)
        session_id, motif_id = pmi.session().id, pmi.motif.id
        _db.session.commit()
        _db.session.remove()
    client = app.test_client()
    here = {"X-Forwarded-For": "203.0.113.7"}
    link = session_links(page_text(client.get(START, query_string={"motif": motif_id, "commune_code": "97411"})))[
        session_id]
    token = csrf_token_from(client.get(link, headers=here).get_data(as_text=True))
    bad = {"csrf_token": token, "seance": parse_qs(urlparse(link).query)["seance"][0]} | details() | {"phone": "12"}
    assert [client.post(urlparse(link).path, data=bad, headers=here).status_code for _ in range(2)] == [200, 200]
    refused = client.post(urlparse(link).path, data=bad, headers=here)
    assert refused.status_code == 429 and "Trop de demandes depuis cette connexion" in page_text(refused)


def test_a_sectorised_motif_lists_the_sessions_of_the_address_sectors_only(client, db, pmi, factories):
    from lapins.models import Sector, SectorZone

    other_lieu = factories.LieuFactory(organisation=pmi.organisation, name="Centre PMI Saint-Paul")
    ours, theirs = pmi.session(days=2), pmi.session(days=3)
    theirs.lieu = other_lieu
    pmi.motif.sectorised = True
    north = Sector(territory=pmi.territory, name="Nord", lieux=[pmi.lieu])
    north.zones.append(SectorZone(territory_id=pmi.territory.id, commune_code="97411"))
    db.session.add(north)
    db.session.commit()
    assert set(session_links(page_text(search(client, pmi.motif.id)))) == {ours.id}
    assert session_links(page_text(search(client, pmi.motif.id, commune="97415"))) == {}
    # An agent attached to a sector serves it with every session they lead, wherever it is held.
    west = Sector(territory=pmi.territory, name="Ouest", agents=[pmi.agent])
    west.zones.append(SectorZone(territory_id=pmi.territory.id, commune_code="97415"))
    db.session.add(west)
    db.session.commit()
    assert set(session_links(page_text(search(client, pmi.motif.id, commune="97415")))) == {ours.id, theirs.id}
