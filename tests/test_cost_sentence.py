"""The cost sentence: added to a reminder only when it still fits one segment, checked on the territory's own
longest motif and lieu, refused when no reminder could ever carry it."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lapins.booking import book_rdv
from lapins.infra.extensions import db as _db
from lapins.models import Channel, MessageKind, MessageStatus, Role, Territory
from lapins.notifications import outbox, sms_text
from lapins.notifications.gsm import septets
from lapins.territory_settings import services
from tests.conftest import csrf_token_from
from tests.test_outbox import PARIS, book, clock, local, make_clinic, messages  # noqa: F401 (fixture)

COST = "Un RDV manqué prive une autre famille."
LINK = "https://rdv.example.fr/r/1a2b3-AbC12x9Kf0"


def facts(**changes) -> sms_text.SmsFacts:
    values = dict(kind="reminder", starts_at_local=datetime(2026, 11, 24, 9, 30, tzinfo=ZoneInfo("Europe/Paris")),
                  motif="Pesée", location_type="on_site", link=LINK, organisation="PMI Nanterre",
                  lieu_name="PMI du Centre", phone="01 41 37 10 00")
    return sms_text.SmsFacts(**{**values, **changes})


def test_a_reminder_with_room_ends_with_the_cost_sentence_and_one_without_room_goes_without():
    short = dict(organisation="PMI 92", phone=None)
    text = sms_text.compose(facts(**short, cost=COST))
    assert "Un RDV manqué prive une autre famille." in text
    assert septets(text) <= 160 and sms_text.cost_kept(facts(**short, cost=COST))
    # With the phone there is no room: the reminder keeps the phone and goes without the sentence.
    crowded = sms_text.compose(facts(cost=COST))
    assert "Tél 01 41 37 10 00" in crowded and "prive" not in crowded
    assert not sms_text.cost_kept(facts(cost=COST))


@pytest.mark.parametrize("changes", [
    dict(motif="Consultation de puériculture et pesée du nourrisson", person="Marie-Christine",
         lieu_name="Maison départementale des solidarités Jean-Baptiste Clément", lieu_address="3 rue Hoche, 92000 Nanterre"),
    dict(motif="Entretien prénatal précoce", location_type="phone", two_way=True, person="Léa"),
    dict(lieu_name="Centre de PMI", lieu_address="12 avenue de la République, 92000 Nanterre", two_way=True),
    dict(),
])
def test_the_cost_sentence_never_takes_the_place_of_another_part(changes):
    """With the sentence, the reminder is the one without it, plus the sentence when it fits: nothing else moves."""
    without = sms_text.compose(facts(**changes))
    with_cost = sms_text.compose(facts(**changes, cost=COST))
    sentence = "Un RDV manqué prive une autre famille."
    if sms_text.cost_kept(facts(**changes, cost=COST)):
        assert with_cost.replace(f" {sentence}", "", 1) == without and septets(with_cost) <= 160
    else:
        assert with_cost == without


def test_other_kinds_never_carry_it():
    for kind in ("created", "changed", "cancelled"):
        assert "prive" not in sms_text.compose(facts(kind=kind, organisation="PMI", phone=None, cost=COST))


# --- The settings page ---------------------------------------------------------------------------------------------

@pytest.fixture()
def clinic(factories, clock):
    return make_clinic(factories)


@pytest.fixture()
def as_admin(client, auth, factories, clinic):
    admin = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.ADMIN)
    assert auth.login(admin).status_code == 302
    return client


def page_url(territory: Territory, suffix: str = "") -> str:
    return f"/territoires/{territory.id}/parametres{suffix}"


def post_cost(client, territory, cost: str):
    token = csrf_token_from(client.get(page_url(territory)).get_data(as_text=True))
    return client.post(page_url(territory, "/cout"), data={"csrf_token": token, "cost_note": cost})


def test_the_page_previews_the_territorys_longest_real_reminder(as_admin, clinic, factories):
    factories.MotifFactory(organisation=clinic.organisation, name="Consultation de puériculture du premier mois")
    factories.LieuFactory(organisation=clinic.organisation, name="Maison des solidarités Jean-Baptiste Clément",
                          address="3 rue Hoche, 92000 Nanterre")
    html = as_admin.get(page_url(clinic.territory)).get_data(as_text=True)
    assert "Le coût d'un rendez-vous manqué" in html and "Hallsworth" in html
    assert "motif « Consultation de puériculture du premier mois »" in html
    assert "lieu « Maison des solidarités Jean-Baptiste Clément »" in html
    assert "/ 160 caractères" in html


def test_a_sentence_that_fits_is_saved_and_goes_into_the_reminders_sent(as_admin, clinic, db, factories):
    response = post_cost(as_admin, clinic.territory, "Un RDV manqué, c'est une place perdue.")
    assert response.status_code == 302
    _db.session.expire_all()
    assert _db.session.get(Territory, clinic.territory.id).sms_cost_note == "Un RDV manqué, c'est une place perdue."

    crowded = book(clinic, local(PARIS, 10, 23, 9, 30))  # a long lieu and address: no room left
    # Short names, no phone: the room a 38-character sentence needs beside a 36-character link.
    short_lieu = factories.LieuFactory(organisation=clinic.organisation, name="PMI", address="", phone=None)
    short_motif = factories.MotifFactory(organisation=clinic.organisation, name="Pesée")
    clinic.organisation.phone = None
    roomy = book_rdv(actor=clinic.agent, motif=short_motif, agents=[clinic.agent], usagers=[clinic.mother],
                     starts_at=local(PARIS, 10, 23, 10, 30), lieu=short_lieu, force=True)
    reminders = [messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)[0]
                 for rdv in (crowded, roomy)]
    for reminder in reminders:
        reminder.due_at = local(PARIS, 10, 19, 9, 0)
    db.session.commit()
    outbox.dispatch_due()
    crowded_sms, roomy_sms = (messages(db, id=reminder.id)[0] for reminder in reminders)
    assert (crowded_sms.status, roomy_sms.status) == (MessageStatus.SENT, MessageStatus.SENT)
    assert "place perdue" not in crowded_sms.body and septets(crowded_sms.body) <= 160
    assert "Un RDV manqué, c'est une place perdue." in roomy_sms.body and septets(roomy_sms.body) <= 160
    confirmation = messages(db, rdv_id=roomy.id, kind=MessageKind.CREATED, channel=Channel.SMS)[0]
    assert "place perdue" not in confirmation.body


def test_a_sentence_no_reminder_could_carry_is_refused_and_nothing_stored(as_admin, clinic):
    room = services.cost_room(clinic.territory)
    assert 20 < room < 60
    too_long = "Merci de prévenir " + "x" * (room - len("Merci de prévenir ") - 1) + "x."
    assert septets(too_long) == room + 1
    refused = post_cost(as_admin, clinic.territory, too_long)
    assert refused.status_code == 422
    assert "ne tiendrait dans aucun rappel" in refused.get_data(as_text=True)
    _db.session.expire_all()
    assert _db.session.get(Territory, clinic.territory.id).sms_cost_note is None

    fitting = too_long[:-2] + "."
    assert post_cost(as_admin, clinic.territory, fitting).status_code == 302


def test_characters_outside_the_sms_alphabet_are_refused_in_french(as_admin, clinic):
    refused = post_cost(as_admin, clinic.territory, "Merci 🙂")
    assert refused.status_code == 422 and "alphabet des SMS" in refused.get_data(as_text=True)


def test_the_live_count_answers_as_typed_and_needs_its_csrf_token(as_admin, clinic):
    token = csrf_token_from(as_admin.get(page_url(clinic.territory)).get_data(as_text=True))
    answer = as_admin.post(page_url(clinic.territory, "/apercu-cout"), json={"cost": "Une place perdue."},
                           headers={"X-CSRFToken": token})
    data = answer.get_json()
    # The clinic's lieu and address are long: its longest reminder has no room left, and the page says so.
    assert answer.status_code == 200 and data["segments"] == 1 and data["kept"] is False and data["error"] is None
    assert "ajoutée qu'aux rappels plus courts" in data["html"]
    clinic.lieu.name, clinic.lieu.address, clinic.lieu.phone, clinic.organisation.phone = "PMI", "", None, None
    clinic.motif.name = "Pesée"
    _db.session.commit()
    data = as_admin.post(page_url(clinic.territory, "/apercu-cout"), json={"cost": "Une place perdue."},
                         headers={"X-CSRFToken": token}).get_json()
    assert data["kept"] is True and "phrase ajoutée" in data["html"] and "Une place perdue." in data["html"]
    assert as_admin.post(page_url(clinic.territory, "/apercu-cout"), json={"cost": "x"}).status_code == 400
    long = as_admin.post(page_url(clinic.territory, "/apercu-cout"), json={"cost": "y" * 59 + "."},
                         headers={"X-CSRFToken": token}).get_json()
    assert "ne tiendrait dans aucun rappel" in long["error"]


def test_an_agent_may_not_set_it(client, auth, factories, clinic):
    agent = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    assert auth.login(agent).status_code == 302
    token = csrf_token_from(client.get("/usagers").get_data(as_text=True))
    assert client.post(page_url(clinic.territory, "/cout"), data={"csrf_token": token, "cost_note": "x."}).status_code == 403
    _db.session.expire_all()
    assert _db.session.get(Territory, clinic.territory.id).sms_cost_note is None
