"""A family moves its own rdv from its link: the public slot picker, an atomic move, what follows it, its limits."""
from __future__ import annotations

import html
import re
from datetime import date, datetime, time, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import icalendar
import pytest
import time_machine
from sqlalchemy import select

from lapins.admin.services import set_active
from lapins.booking import book_rdv
from lapins.models import (
    Channel, Message, MessageKind, MessageStatus, RdvStatus, Role, SlotOffer, SlotStatus, WaitlistSlot,
)
from lapins.models.rdvs import MoveChannel, RdvMove
from lapins.notifications.gsm import segments
from lapins.notifications.links import rdv_token
from tests.conftest import csrf_token_from

REUNION = ZoneInfo("Indian/Reunion")
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)  # Monday 19 October, 12:00 in La Réunion
STARTS_AT = datetime(2026, 10, 23, 9, 30, tzinfo=REUNION)  # Friday 23 October, 09:30 in La Réunion
TAKEN = "Ce créneau vient d'être pris"


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def clinic(factories):
    return make_clinic(factories)


def make_clinic(factories) -> SimpleNamespace:
    """An agent seeing families every day from 8:00 to 17:00, away all Wednesday 21; the Payet family's rdv."""
    organisation = factories.OrganisationFactory(territory__number="974", territory__timezone="Indian/Reunion",
                                                 name="PMI La Réunion Nord")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Saint-Denis",
                                 address="3 rue de Paris, 97400 Saint-Denis", phone="+262262901010")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT,
                                   email="claire.martin@pmi.example.fr")
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif], start_time=time(8),
                           end_time=time(17), weekdays=0b1111111)
    factories.AbsenceFactory(agent=agent, first_day=date(2026, 10, 21), start_time=time(0), end_time=time(23, 59))
    parent = factories.UsagerFactory(territory=organisation.territory, first_name="Noémie", last_name="Payet",
                                     phone="+262692123456", email="noemie.payet@example.fr", email_consent=True)
    child = factories.UsagerFactory(territory=organisation.territory, first_name="Éloïse", last_name="Payet",
                                    responsible=parent, phone=None)
    rdv = book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[child], lieu=lieu, starts_at=STARTS_AT)
    return SimpleNamespace(organisation=organisation, territory=organisation.territory, lieu=lieu, motif=motif,
                           agent=agent, parent=parent, child=child, rdv=rdv, url=f"/r/{rdv_token(rdv.id)}")


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def check_identity(client, url: str, letters: str = "Pay"):
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    return client.post(f"{url}/verifier", data={"csrf_token": token, "letters": letters})


def times_offered(page: str) -> list[tuple[str, str]]:
    """(« mardi 20 octobre 2026 à 12h00 », the link to choose it) for each time of a picker page."""
    return [(html.unescape(label), html.unescape(href)) for label, href in re.findall(
        r'aria-label="([^"]+)" href="([^"]+/changer/confirmer[^"]+)"', page)]


def form_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in
            re.findall(r'<input[^>]*name="(csrf_token|debut|agent|revision)"[^>]*value="([^"]*)"', page)}


def move_to(client, url: str, label: str):
    page = client.get(f"{url}/changer").get_data(as_text=True)
    href = dict(times_offered(page))[label]
    confirm = client.get(href).get_data(as_text=True)
    return client.post(f"{url}/changer", data=form_fields(confirm)), form_fields(confirm)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 10, day, hour, minute, tzinfo=REUNION)


# --- The move --------------------------------------------------------------------------------------------------------

def test_the_family_moves_its_rdv_and_keeps_its_id_history_and_family(client, clinic, db):
    page = client.get(clinic.url).get_data(as_text=True)
    assert "Changer de date" in page and "/changer" not in page  # not before the identity check
    assert client.get(f"{clinic.url}/changer").status_code == 302

    assert check_identity(client, clinic.url).status_code == 302
    page = client.get(clinic.url).get_data(as_text=True)
    assert "jusqu'au jeudi 22 octobre 2026 à 09h30" in page  # 24 h before, Réunion time

    picker = client.get(f"{clinic.url}/changer")
    text = picker.get_data(as_text=True)
    assert picker.status_code == 200 and "vendredi 23 octobre 2026 à 09h30" in text  # the current rdv
    offered = [label for label, _ in times_offered(text)]
    # From 24 h after now (Tuesday 12:00), the first 3 days with a free time: not Wednesday (absent).
    assert offered[0] == "mardi 20 octobre 2026 à 12h00"
    assert {label.rsplit(" à ", 1)[0] for label in offered} == {
        "mardi 20 octobre 2026", "jeudi 22 octobre 2026", "vendredi 23 octobre 2026"}
    assert "vendredi 23 octobre 2026 à 09h30" not in offered  # its own time
    assert "Voir plus de dates" in text

    moved, _ = move_to(client, clinic.url, "jeudi 22 octobre 2026 à 14h30")
    assert moved.status_code == 302 and moved.headers["Location"].endswith(f"{clinic.url}/deplace")
    confirmation = client.get(moved.headers["Location"]).get_data(as_text=True)
    assert "Votre rendez-vous est déplacé" in confirmation and "jeudi 22 octobre 2026 à 14h30" in confirmation
    assert "vendredi 23 octobre 2026 à 09h30" in confirmation  # « au lieu de »
    assert "jeudi 22 octobre 2026 à 14h30" in client.get(clinic.url).get_data(as_text=True)

    db.session.expire_all()
    rdv = clinic.rdv
    assert rdv.starts_at == local(22, 14, 30) and rdv.ends_at == local(22, 15) and rdv.is_live
    assert [usager.id for usager in rdv.usagers] == [clinic.child.id] and rdv.agents == [clinic.agent]
    assert rdv.revision == 1 and rdv.forced_by_id is None
    [move] = db.session.scalars(select(RdvMove)).all()
    assert (move.rdv_id, move.via, move.moved_at) == (rdv.id, MoveChannel.LINK, NOW)
    assert move.from_starts_at == STARTS_AT and move.to_starts_at == rdv.starts_at and move.notice_hours == 93


def test_the_move_is_confirmed_by_one_sms_and_an_email_that_moves_the_calendar_event(client, clinic, db):
    check_identity(client, clinic.url)
    move_to(client, clinic.url, "jeudi 22 octobre 2026 à 14h30")
    db.session.expire_all()
    messages = db.session.scalars(select(Message).where(Message.rdv_id == clinic.rdv.id)).all()
    pending = [m for m in messages if m.status == MessageStatus.PENDING]
    assert {(m.kind, m.channel) for m in pending} == {(MessageKind.REMINDER, Channel.SMS),
                                                        (MessageKind.REMINDER, Channel.EMAIL)}
    assert all(m.due_at == local(20, 14, 30) for m in pending)  # 48 h before the new time, none at the old one
    [sms] = [m for m in messages if m.kind == MessageKind.CHANGED and m.channel == Channel.SMS]
    assert sms.status == MessageStatus.SENT and segments(sms.body) == 1
    assert "déplacé au jeu. 22/10 à 14h30" in sms.body and clinic.url in sms.body
    [email] = [m for m in messages if m.kind == MessageKind.CHANGED and m.channel == Channel.EMAIL]
    assert email.status == MessageStatus.SENT
    created = next(m for m in messages if m.kind == MessageKind.CREATED and m.channel == Channel.EMAIL)
    assert created.status == MessageStatus.SENT

    from lapins.notifications.email import render_rdv_email
    from lapins.notifications.links import family_url

    calendar = icalendar.Calendar.from_ical(render_rdv_email(MessageKind.CHANGED, clinic.rdv,
                                                             family_url(clinic.rdv.id)).ics)
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]).startswith(f"rdv-{clinic.rdv.id}@") and event["SEQUENCE"] == 1
    assert event.decoded("DTSTART") == local(22, 14, 30)


def test_the_old_time_is_freed_and_goes_to_the_waiting_list(client, clinic, db, factories):
    waiting = factories.UsagerFactory(territory=clinic.territory, organisations=[clinic.organisation],
                                      phone="+262692000001")
    factories.WaitlistEntryFactory(usager=waiting, motif=clinic.motif, organisation=clinic.organisation)
    check_identity(client, clinic.url)
    move_to(client, clinic.url, "jeudi 22 octobre 2026 à 14h30")
    [slot] = db.session.scalars(select(WaitlistSlot)).all()
    assert (slot.starts_at, slot.source_rdv_id) == (STARTS_AT, clinic.rdv.id)
    assert slot.status == SlotStatus.OPEN
    [offer] = db.session.scalars(select(SlotOffer)).all()  # offered at once to the waiting family
    assert offer.slot_id == slot.id and offer.usager_id == waiting.id
    picker = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    assert "vendredi 23 octobre 2026 à 09h30" in [label for label, _ in times_offered(picker)]


def test_agents_who_asked_get_an_email_that_the_family_moved_the_rdv(client, clinic, db, smtp_app, smtp_server):
    clinic.agent.notify_on_family_cancellation = True
    db.session.commit()
    check_identity(client, clinic.url)
    move_to(client, clinic.url, "jeudi 22 octobre 2026 à 14h30")
    [received] = [email for email in smtp_server.received if email.rcpt_tos == ("claire.martin@pmi.example.fr",)]
    assert "Rendez-vous déplacé par la famille : jeudi 22 octobre à 14 h 30" == received.message["Subject"]
    text = received.message.get_body(("plain",)).get_content()
    assert ("du vendredi 23 octobre 2026 à 9 h 30 au jeudi 22 octobre 2026 à 14 h 30, via le lien, 93 h avant"
            in text)
    assert "Payet" not in text and "Éloïse" not in text


# --- The picker's pages ----------------------------------------------------------------------------------------------

def test_more_dates_come_a_week_at_a_time_up_to_the_motifs_horizon(client, clinic, db):
    clinic.motif.booking_horizon_weeks = 2
    db.session.commit()
    check_identity(client, clinic.url)
    first = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    more = html.unescape(re.search(r'href="([^"]+)">Voir plus de dates', first).group(1))
    assert more.endswith("/changer?du=2026-10-24")
    week = client.get(more).get_data(as_text=True)
    days = sorted({label.rsplit(" à ", 1)[0] for label, _ in times_offered(week)})
    assert len(days) == 7 and "samedi 24 octobre 2026" in days and "vendredi 30 octobre 2026" in days
    last = text(client.get(html.unescape(re.search(r'href="([^"]+)">Voir plus de dates', week).group(1))))
    offered = [label for label, _ in times_offered(last)]
    # Two weeks from now (Monday 2 November, 12:00 Réunion): nothing later.
    assert offered[-1] == "lundi 2 novembre 2026 à 11h30" and "Voir plus de dates" not in last
    beyond = client.get(f"{clinic.url}/changer?du=2026-12-01").get_data(as_text=True)
    assert times_offered(beyond) == [] and "Aucun créneau libre" in beyond


def test_the_picker_works_without_javascript_and_shows_large_tap_targets(client, clinic, db):
    check_identity(client, clinic.url)
    page = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    assert 'class="lapins-creneaux"' in page and "<form" not in page.split('id="contenu"')[1]
    confirm = client.get(times_offered(page)[0][1]).get_data(as_text=True)
    assert '<form method="post"' in confirm and "Confirmer ce créneau" in confirm


def test_with_any_agent_of_the_lieu_the_family_may_move_to_a_colleagues_time(client, clinic, db, factories):
    colleague = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=colleague, lieu=clinic.lieu, first_day=date(2026, 10, 21), last_day=date(2026, 10, 21),
                           motifs=[clinic.motif], start_time=time(8), end_time=time(9), weekdays=0b1111111)
    check_identity(client, clinic.url)
    assert "mercredi 21 octobre" not in client.get(f"{clinic.url}/changer").get_data(as_text=True)
    clinic.territory.family_moves_any_agent = True
    db.session.commit()
    assert "mercredi 21 octobre" in client.get(f"{clinic.url}/changer").get_data(as_text=True)
    set_active(colleague, False, actor=clinic.agent)  # the page kept for the territory's stamp is not shown again
    assert "mercredi 21 octobre" not in client.get(f"{clinic.url}/changer").get_data(as_text=True)
    set_active(colleague, True, actor=clinic.agent)
    assert move_to(client, clinic.url, "mercredi 21 octobre 2026 à 08h30")[0].status_code == 302
    db.session.expire_all()
    assert clinic.rdv.agents == [colleague] and clinic.rdv.starts_at == local(21, 8, 30)


# --- Races, replays and bad input: a clear French page, nothing changed --------------------------------------------

def assert_unchanged(db, clinic):
    db.session.expire_all()
    assert clinic.rdv.starts_at == STARTS_AT and clinic.rdv.revision == 0 and clinic.rdv.is_live
    assert db.session.scalars(select(RdvMove)).all() == []


def test_a_time_taken_meanwhile_says_so_and_shows_the_next_ones(client, clinic, db, factories):
    check_identity(client, clinic.url)
    page = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    href = dict(times_offered(page))["jeudi 22 octobre 2026 à 14h30"]
    fields = form_fields(client.get(href).get_data(as_text=True))
    other = factories.UsagerFactory(territory=clinic.territory)
    book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[other], lieu=clinic.lieu,
             starts_at=local(22, 14, 30))
    refused = client.post(f"{clinic.url}/changer", data=fields)
    assert refused.status_code == 409 and TAKEN in text(refused)
    assert "jeudi 22 octobre 2026 à 14h30" not in [label for label, _ in times_offered(text(refused))]
    assert times_offered(text(refused))  # the next ones
    again = client.get(href)
    assert again.status_code == 409 and TAKEN in text(again)
    assert_unchanged(db, clinic)


def test_a_replayed_form_changes_nothing_more(client, clinic, db):
    check_identity(client, clinic.url)
    moved, fields = move_to(client, clinic.url, "jeudi 22 octobre 2026 à 14h30")
    assert moved.status_code == 302
    fields["debut"] = "2026-10-22T12:00Z"  # 16:00 in La Réunion, still free
    replayed = client.post(f"{clinic.url}/changer", data=fields)
    assert replayed.status_code == 409 and "a changé entre-temps" in text(replayed)
    db.session.expire_all()
    assert clinic.rdv.starts_at == local(22, 14, 30) and len(db.session.scalars(select(RdvMove)).all()) == 1


@pytest.mark.parametrize("debut, status, says", [
    ("2026-10-19T12:00Z", 422, "n'est pas proposé"),  # today: within the change limit
    ("2026-10-01T06:00Z", 422, "n'est pas proposé"),  # in the past
    ("2027-02-01T06:00Z", 422, "n'est pas proposé"),  # beyond the horizon
    ("2026-10-22T06:05Z", 409, TAKEN),  # 10:05: not a time the picker offers
    ("2026-10-22T14:00Z", 409, TAKEN),  # 18:00: outside the opening
    ("2026-10-22T06:00", 400, "n'est plus valable"),
    ("demain", 400, "n'est plus valable"),
    ("9" * 5000, 400, "n'est plus valable"),
])
def test_a_time_the_picker_does_not_offer_is_refused(client, clinic, db, debut, status, says):
    check_identity(client, clinic.url)
    page = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    fields = form_fields(client.get(times_offered(page)[0][1]).get_data(as_text=True)) | {"debut": debut}
    refused = client.post(f"{clinic.url}/changer", data=fields)
    assert refused.status_code == status and says in text(refused)
    assert_unchanged(db, clinic)


def test_a_time_of_another_lieu_motif_or_territory_is_refused(client, clinic, db, factories):
    other_lieu = factories.LieuFactory(organisation=clinic.organisation)
    elsewhere = factories.AgentFactory(organisation=clinic.organisation)
    factories.PlageFactory(agent=elsewhere, lieu=other_lieu, first_day=date(2026, 10, 21), motifs=[clinic.motif],
                           start_time=time(8), end_time=time(17), weekdays=0b1111111)
    far = factories.PlageFactory(first_day=date(2026, 10, 21), start_time=time(8), end_time=time(17),
                                 weekdays=0b1111111)
    check_identity(client, clinic.url)
    page = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    fields = form_fields(client.get(times_offered(page)[0][1]).get_data(as_text=True))
    for agent in (elsewhere, far.agent):  # free all Wednesday, at another lieu or in another territory
        refused = client.post(f"{clinic.url}/changer", data=fields | {"debut": "2026-10-21T05:00Z",
                                                                       "agent": str(agent.id)})
        assert refused.status_code == 409 and TAKEN in text(refused)
    assert_unchanged(db, clinic)


def test_forged_expired_and_unchecked_links_move_nothing(client, clinic, db, frozen_time):
    check_identity(client, clinic.url)
    page = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    fields = form_fields(client.get(times_offered(page)[0][1]).get_data(as_text=True))
    forged = clinic.url[:-1] + ("A" if clinic.url[-1] != "A" else "B")
    assert client.post(f"{forged}/changer", data=fields).status_code == 404
    assert client.get(f"{forged}/changer").status_code == 404
    assert client.post(f"{clinic.url}/changer", data=fields | {"csrf_token": "x"}).status_code == 400

    stranger = client.application.test_client()
    refused = stranger.post(f"{clinic.url}/changer", data=fields)
    assert refused.status_code in (400, 403)
    assert "Payet" not in refused.get_data(as_text=True)

    frozen_time.move_to(STARTS_AT + timedelta(hours=1))
    assert client.get(f"{clinic.url}/changer").status_code == 410
    fresh = csrf_token_from(client.get("/connexion").get_data(as_text=True))
    assert client.post(f"{clinic.url}/changer", data=fields | {"csrf_token": fresh}).status_code == 410
    assert_unchanged(db, clinic)


def test_after_the_change_limit_the_page_says_why_and_gives_the_phone(client, clinic, db, frozen_time):
    check_identity(client, clinic.url)
    page = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    fields = form_fields(client.get(times_offered(page)[0][1]).get_data(as_text=True))
    frozen_time.move_to(STARTS_AT - timedelta(hours=23))
    check_identity(client, clinic.url)  # the session of three days ago is over: the family checks again
    page = text(client.get(clinic.url))
    assert "trop tard pour changer la date en ligne" in page and "jusqu'à 24 h avant" in page
    assert "0262 90 10 10" in page and f'href="{clinic.url}/changer"' not in page
    fields["csrf_token"] = csrf_token_from(page)
    refused = client.post(f"{clinic.url}/changer", data=fields)
    assert refused.status_code == 409 and "trop tard pour changer la date" in text(refused)
    assert client.get(f"{clinic.url}/changer").status_code == 409
    assert_unchanged(db, clinic)


def test_at_most_the_motifs_number_of_moves_then_call(client, clinic, db):
    check_identity(client, clinic.url)
    assert move_to(client, clinic.url, "jeudi 22 octobre 2026 à 14h30")[0].status_code == 302
    assert move_to(client, clinic.url, "jeudi 22 octobre 2026 à 15h00")[0].status_code == 302
    page = text(client.get(clinic.url))
    assert "déjà été déplacé 2 fois en ligne" in page and "0262 90 10 10" in page
    assert client.get(f"{clinic.url}/changer").status_code == 409
    db.session.expire_all()
    assert clinic.rdv.revision == 2 and len(db.session.scalars(select(RdvMove)).all()) == 2


def test_a_motif_may_forbid_moves_from_the_link(client, clinic, db):
    clinic.motif.family_moves_max = 0
    db.session.commit()
    check_identity(client, clinic.url)
    page = text(client.get(clinic.url))
    assert "ne peut pas être déplacé en ligne" in page and "Annuler le rendez-vous" in page
    assert client.get(f"{clinic.url}/changer").status_code == 409


def test_a_cancelled_rdv_cannot_be_moved(client, clinic, db):
    check_identity(client, clinic.url)
    page = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    fields = form_fields(client.get(times_offered(page)[0][1]).get_data(as_text=True))
    token = csrf_token_from(client.get(clinic.url).get_data(as_text=True))
    client.post(f"{clinic.url}/annuler", data={"csrf_token": token, "reason": "", "confirme": "oui"})
    refused = client.post(f"{clinic.url}/changer", data=fields)
    assert refused.status_code == 409
    db.session.expire_all()
    assert clinic.rdv.status == RdvStatus.EXCUSED and clinic.rdv.starts_at == STARTS_AT


def test_the_check_asked_from_the_picker_leads_back_to_it(client, clinic, db):
    asked = client.get(f"{clinic.url}/changer")
    assert asked.status_code == 302 and "suite=changer" in asked.headers["Location"]
    page = client.get(asked.headers["Location"]).get_data(as_text=True)
    assert 'name="suite" value="changer"' in page
    passed = client.post(f"{clinic.url}/verifier", data={"csrf_token": csrf_token_from(page), "letters": "pay",
                                                         "suite": "changer"})
    assert passed.status_code == 302 and passed.headers["Location"].endswith(f"{clinic.url}/changer")
