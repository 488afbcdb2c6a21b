"""A family cancels from its link, after a light identity check; every cancellation is recorded, agents may be told."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from lapins.slots import availability
from lapins.booking import book_rdv, cancel_rdv
from lapins.family import services
from lapins.models import Channel, Message, MessageKind, MessageStatus, RdvStatus, Role
from lapins.notifications.gsm import segments
from lapins.notifications.outbox import compose_sms
from lapins.models.rdvs import CancellationChannel, Canceller, RdvLinkCheck
from lapins.notifications.links import rdv_token
from tests.conftest import AuthActions, FreshContextClient, csrf_token_from

REUNION = ZoneInfo("Indian/Reunion")
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)  # Monday 19 October, 12:00 in La Réunion
STARTS_AT = datetime(2026, 10, 23, 9, 30, tzinfo=REUNION)  # Friday 23 October, 09:30 in La Réunion


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def clinic(factories):
    organisation = factories.OrganisationFactory(territory__number="974", territory__timezone="Indian/Reunion",
                                                 name="PMI La Réunion Nord")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Saint-Denis",
                                 address="3 rue de Paris, 97400 Saint-Denis", phone="+262262901010")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT,
                                   email="claire.martin@pmi.example.fr")
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif], start_time=time(8),
                           end_time=time(17), weekdays=0b1111111)
    parent = factories.UsagerFactory(territory=organisation.territory, first_name="Noémie", last_name="Payet",
                                     phone="+262692123456")
    child = factories.UsagerFactory(territory=organisation.territory, first_name="Éloïse", last_name="Élodie",
                                    responsible=parent, phone=None)
    rdv = book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[child], lieu=lieu, starts_at=STARTS_AT)
    return SimpleNamespace(organisation=organisation, lieu=lieu, motif=motif, agent=agent, parent=parent, child=child,
                           rdv=rdv, url=f"/r/{rdv_token(rdv.id)}")


def check_identity(client, url: str, letters: str, token: str | None = None):
    token = token or csrf_token_from(client.get(url).get_data(as_text=True))
    return client.post(f"{url}/verifier", data={"csrf_token": token, "letters": letters})


def cancel(client, url: str, reason: str = "", *, confirmed: bool = True):
    """The cancel button, then « Oui, annuler le rendez-vous » on the confirmation step when `confirmed`."""
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    data = {"csrf_token": token, "reason": reason}
    if confirmed:
        data["confirme"] = "oui"
    return client.post(f"{url}/annuler", data=data)


def assert_unchanged(db, rdv):
    db.session.refresh(rdv)
    assert rdv.status == RdvStatus.UNKNOWN and rdv.cancelled_at is None and rdv.is_live


def first_slot_from(clinic):
    return availability.first_available(territory=clinic.organisation.territory, motif=clinic.motif,
                                        start=clinic.rdv.starts_at, limit=1)[0]


def test_the_family_cancels_after_giving_the_first_letters_of_its_name_and_the_slot_is_free_again(client, clinic, db):
    assert first_slot_from(clinic).starts_at == clinic.rdv.starts_at + timedelta(minutes=30)  # 09:30 is taken
    page = client.get(clinic.url).get_data(as_text=True)
    assert "Payet" not in page and "Éloïse" not in page and "Annuler le rendez-vous" not in page

    refused = check_identity(client, clinic.url, "Dur")
    text = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "Ces lettres ne correspondent pas au nom de famille" in text and "4 essais restants" in text
    assert 'aria-describedby="letters-error"' in text and 'id="letters-error"' in text
    assert "Payet" not in text
    assert_unchanged(db, clinic.rdv)

    passed = check_identity(client, clinic.url, "  pAY ")
    assert passed.status_code == 302
    page = client.get(clinic.url).get_data(as_text=True)
    assert "Éloïse Élodie" in page and "Annuler le rendez-vous" in page
    assert "jusqu'au vendredi 23 octobre 2026 à 05h30" in page  # 4 h before, Réunion time

    done = cancel(client, clinic.url, reason="Enfant malade")
    assert done.status_code == 302 and done.headers["Location"].endswith(f"{clinic.url}/annule")
    confirmation = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Votre rendez-vous est annulé" in confirmation and "0262 90 10 10" in confirmation

    db.session.refresh(clinic.rdv)
    rdv = clinic.rdv
    assert rdv.status == RdvStatus.EXCUSED and rdv.cancelled_via == CancellationChannel.LINK
    assert rdv.cancelled_by_id is None and rdv.cancelled_by_party == Canceller.FAMILY
    assert rdv.cancel_reason == "Enfant malade" and rdv.cancelled_at == NOW
    assert rdv.cancelled_hours_before == 93
    assert first_slot_from(clinic).starts_at == rdv.starts_at  # the slot engine offers it at once
    # Its pending reminders are skipped; the family gets a receipt saying the slot goes to another family.
    assert not db.session.scalars(select(Message).where(Message.kind == MessageKind.REMINDER,
                                                        Message.status == MessageStatus.PENDING)).all()


def test_cancelling_asks_for_confirmation_first_then_sends_a_one_segment_receipt(client, clinic, db):
    check_identity(client, clinic.url, "Pay")
    asked = cancel(client, clinic.url, reason="Enfant malade", confirmed=False)
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Confirmer l'annulation ?" in page
    assert "Oui, annuler le rendez-vous" in page and "Non, garder mon rendez-vous" in page
    assert 'name="reason" value="Enfant malade"' in page  # carried to the second step, no JavaScript needed
    assert_unchanged(db, clinic.rdv)
    assert not db.session.scalars(select(Message).where(Message.kind == MessageKind.CANCELLED)).all()

    token = csrf_token_from(page)
    done = client.post(f"{clinic.url}/annuler", data={"csrf_token": token, "reason": "Enfant malade",
                                                      "confirme": "oui"})
    assert done.status_code == 302
    db.session.refresh(clinic.rdv)
    assert clinic.rdv.status == RdvStatus.EXCUSED and clinic.rdv.cancel_reason == "Enfant malade"
    (receipt,) = db.session.scalars(select(Message).where(Message.kind == MessageKind.CANCELLED)).all()
    assert receipt.channel == Channel.SMS and receipt.usager_id == clinic.parent.id
    text = compose_sms(receipt)
    # The motif would make it two SMS: it goes first, the thanks and the freed slot stay.
    assert text == ("PMI La Réunion Nord : le RDV d'Éloise du ven. 23/10 à 9h30 est annulé, comme demandé. "
                    "Merci : le créneau est libéré pour une autre famille.")
    assert segments(text) == 1


def test_an_agent_cancelling_for_the_family_on_the_phone_sends_no_receipt(clinic, db):
    cancel_rdv(actor=clinic.agent, rdv=clinic.rdv, status=RdvStatus.EXCUSED, reason="Appel de la famille")
    assert not db.session.scalars(select(Message).where(Message.kind == MessageKind.CANCELLED)).all()


def test_the_pages_with_the_familys_names_stay_out_of_a_shared_pcs_browser_cache(client, clinic, db):
    """The attack: on a shared PC, the next person opens the browser's cache (or presses Back) and reads the child's
    name shown after the identity check."""
    check_identity(client, clinic.url, "Payet")
    for path in (clinic.url, f"{clinic.url}/rendez-vous.ics"):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store", path
    assert "Éloïse Élodie" in client.get(clinic.url).get_data(as_text=True)
    done = cancel(client, clinic.url)
    assert done.headers["Cache-Control"] == "no-store"
    assert client.get(done.headers["Location"]).headers["Cache-Control"] == "no-store"


def test_the_rdv_page_of_agents_says_who_cancelled_through_which_channel_and_how_long_before(client, clinic, db,
                                                                                             frozen_time, app):
    frozen_time.move_to(clinic.rdv.starts_at - timedelta(hours=26, minutes=10))
    check_identity(client, clinic.url, "Payet")
    cancel(client, clinic.url)
    agent_client = FreshContextClient(app, app.response_class, use_cookies=True)
    AuthActions(agent_client).login(clinic.agent)
    page = agent_client.get(f"/rdvs/{clinic.rdv.id}").get_data(as_text=True)
    assert "Annulé par l'usager, via le lien, 26 h avant" in page


def test_an_agent_cancelling_is_recorded_as_the_agent_from_the_agenda(clinic, db):
    cancel_rdv(actor=clinic.agent, rdv=clinic.rdv, status=RdvStatus.REVOKED, reason="Agent absent")
    assert clinic.rdv.cancelled_by_id == clinic.agent.id and clinic.rdv.cancelled_by_party == Canceller.AGENT
    assert clinic.rdv.cancelled_via == CancellationChannel.AGENDA


@pytest.mark.parametrize("letters, matches", [
    ("Pay", True), ("PAYET", True), ("pâY", True), ("elo", True), ("ÉLO", True), ("Élodie", True),
    ("Pa", False), ("Dur", False), ("Payets", False), ("", False), ("---", False), ("<script>", False),
])
def test_the_identity_check_ignores_case_and_accents(letters, matches):
    parent = SimpleNamespace(last_name="Payet", guardians=[])
    rdv = SimpleNamespace(usagers=[SimpleNamespace(last_name="Élodie", guardians=[parent])])
    assert services.identity_matches(rdv, letters) is matches


def test_too_late_to_cancel_online_the_page_says_to_call_and_nothing_changes(client, clinic, db, frozen_time):
    frozen_time.move_to(clinic.rdv.starts_at - timedelta(hours=5))
    check_identity(client, clinic.url, "Pay")
    later = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.parent],
                     lieu=clinic.lieu, starts_at=STARTS_AT + timedelta(days=7))
    frozen_time.move_to(clinic.rdv.starts_at - timedelta(hours=4) + timedelta(minutes=1))
    page = client.get(clinic.url).get_data(as_text=True)
    assert "Il est trop tard pour annuler en ligne" in page and "0262 90 10 10" in page
    assert "Annuler le rendez-vous" not in page and "<form" not in page.split('id="annuler"')[1]
    token = csrf_token_from(client.get(f"/r/{rdv_token(later.id)}").get_data(as_text=True))  # a fresh token
    response = client.post(f"{clinic.url}/annuler", data={"csrf_token": token, "reason": ""})
    assert response.status_code == 409 and "trop tard" in response.get_data(as_text=True)
    assert_unchanged(db, clinic.rdv)


def test_a_motif_may_allow_cancelling_later(client, clinic, db, frozen_time):
    clinic.motif.cancellation_limit_hours = 1
    db.session.commit()
    frozen_time.move_to(clinic.rdv.starts_at - timedelta(hours=2))
    check_identity(client, clinic.url, "Pay")
    assert cancel(client, clinic.url).status_code == 302
    db.session.refresh(clinic.rdv)
    assert clinic.rdv.status == RdvStatus.EXCUSED


def test_a_forged_token_or_another_rdvs_check_cannot_cancel(client, clinic, db, factories):
    other = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.parent],
                     lieu=clinic.lieu, starts_at=STARTS_AT + timedelta(hours=2))
    check_identity(client, clinic.url, "Pay")  # this browser passed the check for the first rdv only
    token = csrf_token_from(client.get(clinic.url).get_data(as_text=True))
    other_url = f"/r/{rdv_token(other.id)}"
    refused = client.post(f"{other_url}/annuler", data={"csrf_token": token, "reason": ""})
    assert refused.status_code == 403 and "3 premières lettres" in refused.get_data(as_text=True)
    forged = rdv_token(other.id)[:-1] + ("A" if rdv_token(other.id)[-1] != "A" else "B")
    assert client.post(f"/r/{forged}/annuler", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/r/{forged}/verifier", data={"csrf_token": token, "letters": "Pay"}).status_code == 404
    assert_unchanged(db, other)


def test_without_csrf_token_nothing_is_checked_nor_cancelled(client, clinic, db):
    assert client.post(f"{clinic.url}/verifier", data={"letters": "Pay"}).status_code == 400
    check_identity(client, clinic.url, "Pay")
    response = client.post(f"{clinic.url}/annuler", data={"reason": "x"})
    assert response.status_code == 400 and "Le formulaire a expiré" in response.get_data(as_text=True)
    bad = client.post(f"{clinic.url}/annuler", data={"reason": "x", "csrf_token": "not-a-token"})
    assert bad.status_code == 400
    assert_unchanged(db, clinic.rdv)


def test_a_cancelled_rdv_shows_no_cancel_button_and_the_number_to_call(client, clinic, db):
    check_identity(client, clinic.url, "Pay")
    token = csrf_token_from(client.get(clinic.url).get_data(as_text=True))
    cancel(client, clinic.url)
    page = client.get(clinic.url)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Rendez-vous annulé" in text and "0262 90 10 10" in text
    assert "Annuler le rendez-vous" not in text and "Ajouter à mon agenda" not in text and "<form" not in text.split("contenu")[-1]
    again = client.post(f"{clinic.url}/annuler", data={"csrf_token": token, "reason": ""})
    assert again.status_code == 409 and "Annuler le rendez-vous" not in again.get_data(as_text=True)


def test_five_wrong_tries_lock_the_check_for_15_minutes_in_every_browser(client, clinic, db, frozen_time, app):
    token = csrf_token_from(client.get(clinic.url).get_data(as_text=True))
    for attempt in range(4):
        assert check_identity(client, clinic.url, "Dur").status_code == 422
    locked = check_identity(client, clinic.url, "Dur")
    text = locked.get_data(as_text=True)
    assert locked.status_code == 429 and "Trop d'essais incorrects" in text and "jusqu'à 12h15" in text
    assert db.session.get(RdvLinkCheck, clinic.rdv.id, populate_existing=True).locked_until == NOW + timedelta(minutes=15)

    # The right letters do not pass while locked, from this browser or from another one (another worker).
    assert check_identity(client, clinic.url, "Pay", token).status_code == 429
    other_browser = FreshContextClient(app, app.response_class, use_cookies=True)
    other_token = csrf_token_from(other_browser.get("/connexion").get_data(as_text=True))
    assert check_identity(other_browser, clinic.url, "Pay", other_token).status_code == 429
    assert "Annuler le rendez-vous" not in client.get(clinic.url).get_data(as_text=True)

    frozen_time.move_to(NOW + timedelta(minutes=15, seconds=1))
    assert check_identity(client, clinic.url, "Pay").status_code == 302
    assert "Annuler le rendez-vous" in client.get(clinic.url).get_data(as_text=True)


def test_wrong_tries_are_forgotten_after_a_quiet_quarter_of_an_hour(client, clinic, db, frozen_time):
    for attempt in range(4):
        check_identity(client, clinic.url, "Dur")
    frozen_time.move_to(NOW + timedelta(minutes=16))
    response = check_identity(client, clinic.url, "Dur")
    assert response.status_code == 422 and "4 essais restants" in response.get_data(as_text=True)


@pytest.mark.parametrize("letters", ["<script>alert(1)</script>" * 2000, "\x00\x01", "é" * 100, "🐇🐇🐇"])
def test_any_input_gets_a_french_answer_never_an_error(client, clinic, db, letters):
    response = check_identity(client, clinic.url, letters)
    text = response.get_data(as_text=True)
    assert response.status_code in (400, 422) and "<script>alert(1)" not in text
    assert_unchanged(db, clinic.rdv)


def test_huge_reasons_tokens_and_bodies_are_refused_cleanly(client, clinic, db):
    check_identity(client, clinic.url, "Pay")
    too_long = cancel(client, clinic.url, reason="<script>x</script>" * 100)
    assert too_long.status_code == 422 and "255 caractères au plus" in too_long.get_data(as_text=True)
    assert "<script>x</script>" not in too_long.get_data(as_text=True)
    assert client.get("/r/" + "f" * 5000).status_code == 404
    assert client.get(f"/r/{'1' * 12}-{'A' * 10}").status_code == 404
    token = csrf_token_from(client.get(clinic.url).get_data(as_text=True))
    huge = client.post(f"{clinic.url}/annuler", data={"csrf_token": token, "reason": "x" * 3_000_000})
    assert huge.status_code in (413, 422)
    assert_unchanged(db, clinic.rdv)


# --- Agents told by e-mail ---------------------------------------------------------------------------------------

def test_an_agent_who_asked_for_it_gets_an_email_when_the_family_cancels(client, clinic, db, app, factories,
                                                                         smtp_app, smtp_server):
    agent_client = FreshContextClient(app, app.response_class, use_cookies=True)
    AuthActions(agent_client).login(clinic.agent)
    page = agent_client.get("/preferences").get_data(as_text=True)
    assert "Mes préférences" in page
    saved = agent_client.post("/preferences", data={"csrf_token": csrf_token_from(page),
                                                    "notify_on_family_cancellation": "y"})
    assert saved.status_code == 302
    db.session.refresh(clinic.agent)
    assert clinic.agent.notify_on_family_cancellation is True

    check_identity(client, clinic.url, "Pay")
    cancel(client, clinic.url, reason="Enfant malade")

    (received,) = smtp_server.received
    assert received.rcpt_tos == ("claire.martin@pmi.example.fr",)
    message = received.message
    assert "Rendez-vous annulé par la famille" in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    assert "Pesée du nourrisson" in text and "vendredi 23 octobre 2026 à 9 h 30" in text
    assert f"/rdvs/{clinic.rdv.id}" in text and "via le lien, 93 h avant" in text
    # The notice names no one of the family and does not repeat the reason it typed.
    assert "Payet" not in text and "Éloïse" not in text and "malade" not in text


def test_no_email_for_agents_who_did_not_ask_nor_for_an_agents_own_cancellation(client, clinic, db, smtp_app,
                                                                                  smtp_server, factories):
    check_identity(client, clinic.url, "Pay")
    cancel(client, clinic.url)
    clinic.agent.notify_on_family_cancellation = True
    db.session.commit()
    other = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.parent],
                     lieu=clinic.lieu, starts_at=STARTS_AT + timedelta(hours=2))
    cancel_rdv(actor=clinic.agent, rdv=other, status=RdvStatus.EXCUSED, reason="Appel de la famille")
    assert smtp_server.received == []


def test_the_preferences_page_needs_a_signed_in_agent_and_a_csrf_token(client, clinic, db, auth):
    assert client.get("/preferences").status_code == 302
    auth.login(clinic.agent)
    assert client.post("/preferences", data={"notify_on_family_cancellation": "y"}).status_code == 400
    db.session.refresh(clinic.agent)
    assert clinic.agent.notify_on_family_cancellation is False
    assert "Mes préférences" in client.get("/usagers").get_data(as_text=True)  # in the header of every page
