"""Two guardians (issue 23.3): a child's second responsible adult, set on the agents' usager pages; both told of the
child's rdvs, each on their own link; either cancels or moves and the other is told; « ne prévenir que … »; no adult
sees the other's contact details; the API, the merge and the audit trail follow."""
from __future__ import annotations

import html
import re
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.auth import tokens
from lapins.agenda import duplicates
from lapins.booking import book_rdv
from lapins.models import Channel, Message, MessageKind, MessageStatus, Rdv, RdvStatus, Role, Usager
from lapins.models.audit import AuditEvent, AuditObject
from lapins.notifications import links, outbox
from tests.conftest import AuthActions, FreshContextClient, csrf_token_from

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)  # Monday 19 October 2026, 10:00 in Paris
STARTS_AT = datetime(2026, 10, 23, 9, 30, tzinfo=PARIS).astimezone(timezone.utc)
MOTHER_PHONE, FATHER_PHONE = "+33612345678", "+33698765432"


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def family(factories, db):
    territory = factories.TerritoryFactory(timezone="Europe/Paris", number="92")
    organisation = factories.OrganisationFactory(territory=territory, name="PMI Nanterre", phone="+33141371000")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Les Pâquerettes",
                                 address="12 rue de la République, 92000 Nanterre", phone="+33141371010")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif], start_time=time(8),
                           end_time=time(19), weekdays=0b1111111)
    mother = factories.UsagerFactory(territory=territory, first_name="Aïcha", last_name="Benali",
                                     phone=MOTHER_PHONE, sms_consent=True, email="aicha@example.fr",
                                     email_consent=True, organisations=[organisation])
    father = factories.UsagerFactory(territory=territory, first_name="Karim", last_name="Morel",
                                     phone=FATHER_PHONE, sms_consent=True, email="karim@example.fr",
                                     email_consent=False, organisations=[organisation])
    child = factories.UsagerFactory(territory=territory, first_name="Léa", last_name="Benali", phone=None,
                                    sms_consent=False, responsible=mother, second_responsible=father,
                                    birth_date=date(2026, 5, 2), organisations=[organisation])
    return type("Family", (), dict(territory=territory, organisation=organisation, lieu=lieu, motif=motif,
                                   agent=agent, mother=mother, father=father, child=child))


@pytest.fixture()
def on_twilio(app, db, family, twilio_app_config):
    saved = {key: app.config.get(key) for key in twilio_app_config}
    app.config.update(twilio_app_config)
    app.extensions.pop("lapins.sms_backend", None)
    family.territory.sms_sender = "PMI92"
    db.session.commit()
    yield
    app.config.update(saved)
    app.extensions.pop("lapins.sms_backend", None)


def book(family, **kwargs) -> Rdv:
    return book_rdv(actor=family.agent, motif=family.motif, agents=[family.agent], usagers=[family.child],
                    starts_at=STARTS_AT, lieu=family.lieu, **kwargs)


def messages(db, **where) -> list[Message]:
    query = select(Message).order_by(Message.due_at, Message.id).execution_options(populate_existing=True)
    for key, value in where.items():
        query = query.where(getattr(Message, key) == value)
    return list(db.session.scalars(query))


def link_in(body: str) -> str:
    return re.search(r"/r/[0-9a-fg]+-[A-Za-z0-9_-]{10}", body).group(0)


def agent_client(app, family) -> FreshContextClient:
    client = FreshContextClient(app, app.response_class, use_cookies=True)
    AuthActions(client).login(family.agent)
    return client


def check_identity(client, url: str, letters: str):
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    return client.post(f"{url}/verifier", data={"csrf_token": token, "letters": letters})


def cancel_on(client, url: str):
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    return client.post(f"{url}/annuler", data={"csrf_token": token, "reason": "", "confirme": "oui"})


# --- Both told, each on their own link ------------------------------------------------------------------------------

def test_both_guardians_get_the_confirmation_and_the_reminder_through_twilio_each_on_their_own_link(
        family, db, on_twilio, twilio_fake, clock):
    rdv = book(family)

    confirmations = {message.to: message.body for message in twilio_fake.messages}
    assert set(confirmations) == {MOTHER_PHONE, FATHER_PHONE}
    mother_link, father_link = link_in(confirmations[MOTHER_PHONE]), link_in(confirmations[FATHER_PHONE])
    assert mother_link == f"/r/{links.guardian_token(rdv.id, family.mother.id)}"
    assert father_link == f"/r/{links.guardian_token(rdv.id, family.father.id)}"
    # The e-mail goes to the mother only: the father refused e-mails.
    assert [m.usager_id for m in messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED, channel=Channel.EMAIL)] \
        == [family.mother.id]

    reminders = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)
    assert sorted(m.usager_id for m in reminders) == sorted([family.mother.id, family.father.id])
    clock.move_to(max(m.due_at for m in reminders))
    outbox.dispatch_due()
    sent = [m for m in twilio_fake.messages if m.body not in confirmations.values()]
    assert sorted(m.to for m in sent) == sorted([MOTHER_PHONE, FATHER_PHONE])
    assert {link_in(m.body) for m in sent} == {mother_link, father_link}
    assert all(m.status == MessageStatus.SENT for m in messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER,
                                                                  channel=Channel.SMS))


def test_a_child_with_one_guardian_keeps_the_plain_link(family, db):
    family.child.second_responsible = None
    db.session.commit()
    rdv = book(family)
    (sms,) = messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED, channel=Channel.SMS)
    assert f"/r/{links.rdv_token(rdv.id)}" in outbox.compose_sms(sms)


def test_one_guardian_cancels_on_their_link_and_the_other_is_told_once(client, family, db, on_twilio, twilio_fake):
    rdv = book(family)
    father_url = link_in(next(m.body for m in twilio_fake.messages if m.to == FATHER_PHONE))
    before = len(twilio_fake.messages)

    page = client.get(father_url).get_data(as_text=True)
    assert check_identity(client, father_url, "Mor").status_code == 302  # his own last name, not the child's
    page = client.get(father_url).get_data(as_text=True)
    assert "Lien personnel de :</strong> Karim Morel" in page
    assert cancel_on(client, father_url).status_code == 302

    db.session.refresh(rdv)
    assert rdv.status == RdvStatus.EXCUSED and rdv.link_actor_id == family.father.id
    told = messages(db, rdv_id=rdv.id, kind=MessageKind.CANCELLED)
    # The father: his receipt; the mother: one notice, by SMS, although she also accepts e-mails.
    assert sorted((m.usager_id, m.channel) for m in told) == sorted([(family.father.id, Channel.SMS),
                                                                      (family.mother.id, Channel.SMS)])
    new = {m.to: m.body for m in twilio_fake.messages[before:]}
    assert set(new) == {MOTHER_PHONE, FATHER_PHONE}
    assert "comme demandé" in new[FATHER_PHONE] and "comme demandé" not in new[MOTHER_PHONE]
    assert "annulé" in new[MOTHER_PHONE]
    assert all(m.status == MessageStatus.SKIPPED for m in messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER))


def test_one_guardian_moves_on_their_link_and_the_other_is_told(client, family, db):
    rdv = book(family)
    mother_url = f"/r/{links.guardian_token(rdv.id, family.mother.id)}"
    check_identity(client, mother_url, "Ben")
    picker = client.get(f"{mother_url}/changer").get_data(as_text=True)
    # The week's last time: far enough for its reminders to be ahead.
    confirm_url = html.unescape(re.findall(r'href="([^"]*/changer/confirmer\?[^"]+)"', picker)[-1])
    form = client.get(confirm_url).get_data(as_text=True)
    fields = {name: html.unescape(value) for name, value in
              re.findall(r'<input[^>]*name="(csrf_token|debut|agent|revision)"[^>]*value="([^"]*)"', form)}
    assert client.post(f"{mother_url}/changer", data=fields).status_code in (302, 303)

    db.session.refresh(rdv)
    assert rdv.starts_at != STARTS_AT and rdv.link_actor_id == family.mother.id
    changed = messages(db, rdv_id=rdv.id, kind=MessageKind.CHANGED)
    assert sorted((m.usager_id, m.channel) for m in changed) == sorted([
        (family.mother.id, Channel.SMS), (family.mother.id, Channel.EMAIL), (family.father.id, Channel.SMS)])
    # Both keep their reminders at the new time.
    live = [m for m in messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER) if m.status == MessageStatus.PENDING]
    assert {m.usager_id for m in live} == {family.mother.id, family.father.id}


def test_the_family_page_never_shows_the_other_adults_contact_details(client, family, db):
    rdv = book(family)
    father_url = f"/r/{links.guardian_token(rdv.id, family.father.id)}"
    check_identity(client, father_url, "Morel")
    for path in (father_url, f"{father_url}/annuler"):
        page = client.get(father_url).get_data(as_text=True) if path == father_url else \
            client.post(path, data={"csrf_token": csrf_token_from(client.get(father_url).get_data(as_text=True))}
                        ).get_data(as_text=True)
        for secret in ("aicha@example.fr", "06 12 34 56 78", MOTHER_PHONE, "Aïcha"):
            assert secret not in page, (path, secret)


def test_a_guardians_link_cannot_be_made_into_the_others_and_dies_with_their_role(client, family, db, app):
    rdv = book(family)
    father_token = links.guardian_token(rdv.id, family.father.id)
    number, signature = father_token.split("-", 1)  # the signature itself may hold a « - » (base64url)
    forged = f"{rdv.id:x}g{family.mother.id:x}-{signature}"
    assert client.get(f"/r/{forged}").status_code == 404
    assert links.link_of(father_token) == (rdv.id, family.father.id)
    assert links.rdv_id_from_token(father_token) == rdv.id

    # Another file made the second guardian: the father's link opens nothing any more.
    other = Usager(territory_id=family.territory.id, first_name="Samia", last_name="Morel",
                   organisations=[family.organisation])
    family.child.second_responsible = other
    db.session.commit()
    assert client.get(f"/r/{father_token}").status_code == 404


# --- « Ne prévenir que … » ------------------------------------------------------------------------------------------

def booking_form(client, family, **extra) -> dict:
    page = client.get(f"/rdvs/nouveau?usager_id={family.child.id}").get_data(as_text=True)
    assert "Ne prévenir que Karim Morel" in page and "Les deux responsables" in page
    return {"csrf_token": csrf_token_from(page), "usager_ids": [family.child.id], "motif_id": family.motif.id,
            "lieu_id": family.lieu.id, "agent_ids": [family.agent.id], "day": "2026-10-23", "start_time": "09:30",
            "duration": "30", "notes": ""} | extra


def test_ne_prevenir_que_on_the_booking_form_and_the_rdv_page_is_respected(app, family, db, clock):
    agent = agent_client(app, family)
    booked = agent.post("/rdvs/nouveau", data=booking_form(agent, family, notify_only_id=family.mother.id))
    assert booked.status_code == 302, booked.get_data(as_text=True)
    rdv = db.session.scalar(select(Rdv))
    assert rdv.notify_only_id == family.mother.id
    assert {m.usager_id for m in messages(db, rdv_id=rdv.id)} == {family.mother.id}
    _, token = tokens.create(family.agent, "Logiciel du centre")
    shown = agent.get(f"/api/v1/rdvs/{rdv.id}", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert shown["notify_only_id"] == family.mother.id  # the API says who alone is told

    page = agent.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    assert "Qui prévenir ?" in page
    token = csrf_token_from(page)
    # Both again: the father gets the reminders still ahead.
    agent.post(f"/rdvs/{rdv.id}/prevenir", data={"csrf_token": token, "notify_only_id": "0"})
    db.session.refresh(rdv)
    assert rdv.notify_only_id is None
    assert {m.usager_id for m in messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER)} \
        == {family.mother.id, family.father.id}
    # Now only the father: the mother's reminder, planned already, is not sent.
    agent.post(f"/rdvs/{rdv.id}/prevenir", data={"csrf_token": token, "notify_only_id": str(family.father.id)})
    reminders = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER)
    clock.move_to(max(m.due_at for m in reminders))
    outbox.dispatch_due()
    by_person = {(m.usager_id, m.channel): m for m in messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER)}
    assert by_person[(family.father.id, Channel.SMS)].status == MessageStatus.SENT
    assert by_person[(family.mother.id, Channel.SMS)].status == MessageStatus.SKIPPED
    assert "ne prévenir que" in by_person[(family.mother.id, Channel.SMS)].error


def test_ne_prevenir_que_someone_else_is_refused_and_nothing_is_booked(app, family, db, factories):
    agent = agent_client(app, family)
    stranger = factories.UsagerFactory(territory=family.territory, organisations=[family.organisation])
    refused = agent.post("/rdvs/nouveau", data=booking_form(agent, family, notify_only_id=stranger.id))
    assert refused.status_code == 422
    assert "Choisissez l&#39;un des deux responsables" in refused.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Rdv.id))) == 0


# --- The agents' usager pages ---------------------------------------------------------------------------------------

def test_an_agent_adds_a_second_guardian_and_a_third_is_refused(app, family, db):
    family.child.second_responsible = None
    db.session.commit()
    agent = agent_client(app, family)
    form = agent.get(f"/usagers/{family.child.id}/responsables/nouveau").get_data(as_text=True)
    assert "Ajouter un responsable de Léa Benali" in form
    created = agent.post(f"/usagers/{family.child.id}/responsables/nouveau", data={
        "csrf_token": csrf_token_from(form), "first_name": "Yanis", "last_name": "Morel", "phone": "06 11 22 33 44",
        "sms_consent": "y", "email": ""})
    assert created.status_code == 302
    db.session.refresh(family.child)
    assert family.child.second_responsible.full_name == "Yanis Morel"
    assert family.child.second_responsible.phone == "+33611223344"

    page = agent.get(f"/usagers/{family.child.id}").get_data(as_text=True)
    assert "Yanis Morel" in page and "Ajouter un second responsable" not in page
    again = agent.get(f"/usagers/{family.child.id}/responsables/nouveau", follow_redirects=True)
    assert "a déjà deux responsables" in again.get_data(as_text=True)
    count = db.session.scalar(select(func.count(Usager.id)))
    third = agent.post(f"/usagers/{family.child.id}/responsables", data={
        "csrf_token": csrf_token_from(page), "usager_id": str(family.father.id)})
    assert third.status_code == 422 and "a déjà deux responsables" in html.unescape(third.get_data(as_text=True))
    assert db.session.scalar(select(func.count(Usager.id))) == count


def test_a_landline_for_a_new_guardian_is_refused_and_nothing_is_stored(app, family, db):
    family.child.second_responsible = None
    db.session.commit()
    agent = agent_client(app, family)
    count = db.session.scalar(select(func.count(Usager.id)))
    form = agent.get(f"/usagers/{family.child.id}/responsables/nouveau").get_data(as_text=True)
    refused = agent.post(f"/usagers/{family.child.id}/responsables/nouveau", data={
        "csrf_token": csrf_token_from(form), "first_name": "Yanis", "last_name": "Morel", "phone": "01 41 37 10 00"})
    assert refused.status_code == 422
    assert "n'est pas un numéro de mobile" in html.unescape(refused.get_data(as_text=True))
    assert db.session.scalar(select(func.count(Usager.id))) == count
    db.session.refresh(family.child)
    assert family.child.second_responsible_id is None


@pytest.mark.parametrize("who, message", [
    ("child", "ne peut pas être son propre responsable"),
    ("sibling", "est un enfant rattaché à une famille"),
    ("nobody", "Aucun dossier de ce numéro"),
    ("junk", "Aucun dossier de ce numéro"),
])
def test_an_existing_file_that_cannot_be_a_guardian_is_refused(app, family, db, factories, who, message):
    family.child.second_responsible = None
    sibling = factories.UsagerFactory(territory=family.territory, first_name="Nour", last_name="Benali",
                                      responsible=family.mother, organisations=[family.organisation])
    db.session.commit()
    number = {"child": str(family.child.id), "sibling": str(sibling.id), "nobody": "987654", "junk": "12; DROP"}[who]
    agent = agent_client(app, family)
    page = agent.get(f"/usagers/{family.child.id}").get_data(as_text=True)
    refused = agent.post(f"/usagers/{family.child.id}/responsables",
                         data={"csrf_token": csrf_token_from(page), "usager_id": number})
    assert refused.status_code == 422 and message in html.unescape(refused.get_data(as_text=True))
    db.session.refresh(family.child)
    assert family.child.second_responsible_id is None and family.child.responsible_id == family.mother.id


def test_an_existing_adult_is_chosen_as_second_guardian(app, family, db):
    family.child.second_responsible = None
    db.session.commit()
    agent = agent_client(app, family)
    page = agent.get(f"/usagers/{family.child.id}").get_data(as_text=True)
    done = agent.post(f"/usagers/{family.child.id}/responsables",
                      data={"csrf_token": csrf_token_from(page), "usager_id": f" {family.father.id} "})
    assert done.status_code == 302
    db.session.refresh(family.child)
    assert family.child.second_responsible_id == family.father.id
    # The father's page lists the child among his own.
    assert "Léa Benali" in agent.get(f"/usagers/{family.father.id}").get_data(as_text=True)


def test_removing_the_last_guardian_of_a_child_with_rdvs_to_come_is_refused(app, family, db):
    book(family)
    agent = agent_client(app, family)
    page = agent.get(f"/usagers/{family.child.id}").get_data(as_text=True)
    token = csrf_token_from(page)
    # The mother goes: the father becomes the first guardian.
    removed = agent.post(f"/usagers/{family.child.id}/responsables/{family.mother.id}/retirer",
                         data={"csrf_token": token}, follow_redirects=True)
    assert "n&#39;est plus responsable" in removed.get_data(as_text=True)
    db.session.refresh(family.child)
    assert family.child.responsible_id == family.father.id and family.child.second_responsible_id is None

    refused = agent.post(f"/usagers/{family.child.id}/responsables/{family.father.id}/retirer",
                         data={"csrf_token": token}, follow_redirects=True)
    assert "a des rendez-vous à venir" in html.unescape(refused.get_data(as_text=True))
    db.session.refresh(family.child)
    assert family.child.responsible_id == family.father.id


def test_the_second_guardian_is_in_the_audit_trail_without_its_name(app, family, db):
    family.child.second_responsible = None
    db.session.commit()
    agent = agent_client(app, family)
    page = agent.get(f"/usagers/{family.child.id}").get_data(as_text=True)
    agent.post(f"/usagers/{family.child.id}/responsables",
               data={"csrf_token": csrf_token_from(page), "usager_id": str(family.father.id)})
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == AuditObject.USAGER,
                                                         AuditEvent.object_id == family.child.id)).all()
    fields = [change for event in events for change in event.changes]
    assert {"field": "second_responsible_id"} in fields
    assert "Morel" not in repr(fields)


# --- API and merge --------------------------------------------------------------------------------------------------

def test_the_api_shows_a_childs_guardians(family, db, client):
    from lapins.auth import tokens

    _, token = tokens.create(family.agent, "Logiciel du centre")
    headers = {"Authorization": f"Bearer {token}"}
    child = client.get(f"/api/v1/usagers/{family.child.id}", headers=headers).get_json()
    assert child["responsible_id"] == family.mother.id and child["second_responsible_id"] == family.father.id
    assert child["guardian_ids"] == [family.mother.id, family.father.id]
    father = client.get(f"/api/v1/usagers/{family.father.id}", headers=headers).get_json()
    assert father["relative_ids"] == [family.child.id] and father["guardian_ids"] == []


def test_a_merged_second_guardian_follows_the_kept_file(family, db, factories):
    twin = factories.UsagerFactory(territory=family.territory, first_name="Karim", last_name="MOREL",
                                   phone=FATHER_PHONE, organisations=[family.organisation])
    rdv = book(family, notify_only=family.father)
    kept, removed = twin, family.father
    duplicates.merge(family.agent, kept.id, removed.id, {}, duplicates.revision(kept, removed))
    db.session.refresh(family.child)
    db.session.refresh(rdv)
    assert family.child.second_responsible_id == twin.id and rdv.notify_only_id == twin.id


def test_erasing_one_guardian_leaves_the_child_with_the_other(family, db, factories):
    from lapins.privacy import erasure

    admin = factories.AgentFactory(organisation=family.organisation, organisation__role=Role.ADMIN)
    lone = factories.UsagerFactory(territory=family.territory, first_name="Nour", last_name="Benali",
                                   responsible=family.father, organisations=[family.organisation])
    other = factories.UsagerFactory(territory=family.territory, first_name="Sami", last_name="Morel",
                                    organisations=[family.organisation])
    shared = factories.UsagerFactory(territory=family.territory, first_name="Lina", last_name="Morel",
                                     responsible=other, second_responsible=family.father,
                                     organisations=[family.organisation])
    erasure.erase(admin, family.father)
    db.session.expire_all()
    assert db.session.get(Usager, lone.id) is None  # his own child goes with him, as any relative
    for child_id, first in ((shared.id, other.id), (family.child.id, family.mother.id)):
        kept = db.session.get(Usager, child_id)  # those he was second guardian of stay, with their first
        assert kept.responsible_id == first and kept.second_responsible_id is None


def test_a_confirmation_round_lists_both_guardians_numbers(app, family, db, clock):
    clock.move_to(datetime(2026, 10, 22, 8, 0, tzinfo=timezone.utc))  # the day before, 10:00 in Paris
    book(family)
    page = agent_client(app, family).get(f"/a-confirmer/lieux/{family.lieu.id}").get_data(as_text=True)
    assert f"tel:{MOTHER_PHONE}" in page and f"tel:{FATHER_PHONE}" in page


def test_searching_the_second_guardians_number_finds_the_child(app, family, db):
    page = agent_client(app, family).get("/usagers?q=06 98 76 54 32").get_data(as_text=True)
    assert "Léa" in page and "Karim" in page
