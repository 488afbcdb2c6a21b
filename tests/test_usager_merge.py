"""Two files of one family become one: the finder's rules, the side-by-side merge, everything that follows the kept
file, the tombstone that sends on, and every refusal with its reason."""
from __future__ import annotations

import html
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from lapins.agenda import duplicates
from lapins.booking import BookingError, book_rdv
from lapins.infra import crypto
from lapins.infra.extensions import db as database
from lapins.locale.matching import Identity, likely_same, name_key, names_close
from lapins.models import (
    Channel, Message, MessageKind, Rdv, Role, Usager, WaitlistEntry,
)
from lapins.models.audit import AuditAction, AuditEvent, AuditObject
from lapins.models.webhooks import Webhook, WebhookDelivery
from tests.conftest import csrf_token_from

SOON = datetime.now(timezone.utc).replace(microsecond=0, second=0) + timedelta(days=2)


# --- The rules, in one function ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b"), [
    (("Inès", "Benali"), ("INES", "BENALI")),
    (("Marie-Claire", "Ben-Ali"), ("Marie Claire", "Benali")),
    (("Awa", "Diallo née Traoré"), ("Awa", "Traore")),
    (("Awa", "Diallo épouse Traoré"), ("awa", "DIALLO")),
    (("Marie", "Benali"), ("Marie-Claire", "Benali")),
    (("Inès", "Benalli"), ("Ines", "Benali")),
    (("Benali", "Inès"), ("Inès", "Benali")),  # first and last names swapped
])
def test_names_that_the_finder_forgives(a, b):
    assert names_close(name_key(*a), name_key(*b))


@pytest.mark.parametrize(("a", "b"), [
    (("Louis", "Benali"), ("Louise", "Benali")),  # twins, not a typo: first names must match
    (("Inès", "Benali"), ("Inès", "Durand")),
    (("Léo", "Roux"), ("Léa", "Roux")),
])
def test_names_that_stay_apart(a, b):
    assert not names_close(name_key(*a), name_key(*b))


def test_two_signals_of_three_and_no_birth_dates_that_differ():
    key = name_key("Inès", "Benali")
    born = date(2024, 3, 1)
    assert likely_same(Identity(key, born, None, None), Identity(name_key("INES", "BENALI"), born, None, None))
    # A family that booked online with another number: same names, one birth date missing, same e-mail.
    assert likely_same(Identity(key, born, "+33611111111", "ines@example.fr"),
                       Identity(key, None, "+33622222222", "Ines@Example.fr "))
    # Parents sharing a phone and an e-mail are one signal, not two.
    assert not likely_same(Identity(name_key("Awa", "Diallo"), None, "+33611111111", "f@example.fr"),
                           Identity(name_key("Moussa", "Diallo"), None, "+33611111111", "f@example.fr"))
    # Same names and phone, born on different days: a mother and her daughter named after her.
    assert not likely_same(Identity(key, born, "+33611111111", None), Identity(key, date(1990, 1, 1),
                                                                               "+33611111111", None))


def test_every_foreign_key_to_usagers_is_handled_by_the_merge():
    """A new table pointing at usagers must say, in duplicates.FOLLOWERS, what a merge does with its rows."""
    found = {(table.name, fk.parent.name) for table in database.metadata.tables.values()
             for fk in table.foreign_keys if fk.column.table.name == "usagers"}
    assert found == set(duplicates.FOLLOWERS), (
        f"not handled by the merge: {sorted(found - set(duplicates.FOLLOWERS))}; "
        f"handled but gone: {sorted(set(duplicates.FOLLOWERS) - found)}")


def test_the_name_key_is_kept_in_step_with_the_names(factories, db):
    usager = factories.UsagerFactory(first_name="Éloïse", last_name="N'Diaye née Lefèvre")
    assert usager.name_key == "eloise|ndiaye lefevre"
    usager.last_name = "Martin"
    db.session.commit()
    assert usager.name_key == "eloise|martin"


# --- The pages ----------------------------------------------------------------------------------------------------

@pytest.fixture()
def world(factories, db):
    territory = factories.TerritoryFactory(number="974", timezone="Indian/Reunion")
    organisation = factories.OrganisationFactory(territory=territory, name="PMI Saint-Denis")
    other_organisation = factories.OrganisationFactory(territory=territory, name="PMI Saint-Pierre")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY)
    motif = factories.MotifFactory(organisation=organisation, name="Pesée")
    mother = factories.UsagerFactory(territory=territory, organisations=[organisation], first_name="Awa",
                                     last_name="Diallo", phone="+262692000001", birth_date=date(1990, 4, 2))
    kept = factories.UsagerFactory(territory=territory, organisations=[organisation], first_name="Inès",
                                   last_name="Benali", birth_date=date(2024, 3, 1), phone=None, responsible=mother,
                                   sms_consent=False)
    removed = factories.UsagerFactory(territory=territory, organisations=[organisation, other_organisation],
                                      first_name="INES", last_name="BEN-ALI", birth_date=date(2024, 3, 1),
                                      phone="+262692000002", sms_consent=True, email="famille@example.fr",
                                      email_consent=True, external_id="ANC-42", address_street="3 chemin des Goyaves",
                                      address_postcode="97400", address_commune="Saint-Denis",
                                      address_access="portail vert")
    return {"territory": territory, "organisation": organisation, "agent": agent, "motif": motif,
            "mother": mother, "kept": kept, "removed": removed, "factories": factories}


def _merge_form(client, kept_id: int, removed_id: int, **choices) -> tuple[str, dict]:
    path = f"/usagers/{kept_id}/fusion/{removed_id}"
    page = client.get(path)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    revision = text.split('name="revision" type="hidden" value="')[1].split('"')[0]
    data = {"csrf_token": csrf_token_from(text), "revision": revision}
    data.update({spec.name: "kept" for spec in duplicates.MERGE_FIELDS} | choices)
    return path, data


def test_an_agent_sees_the_duplicate_and_merges_it_with_everything_that_follows(client, auth, world, db):
    w = world
    kept, removed, factories = w["kept"], w["removed"], w["factories"]
    agent_of_rdv = factories.AgentFactory(organisation=w["organisation"])
    rdv_kept = factories.RdvFactory(motif=w["motif"], agents=[agent_of_rdv], usagers=[kept], starts_at=SOON)
    rdv_removed = factories.RdvFactory(motif=w["motif"], agents=[agent_of_rdv], usagers=[removed],
                                       starts_at=SOON + timedelta(days=7))
    both = factories.RdvFactory(motif=w["motif"], agents=[agent_of_rdv], usagers=[kept, removed],
                                starts_at=SOON - timedelta(days=30), ends_at=SOON - timedelta(days=30, minutes=-30))
    sibling = factories.UsagerFactory(territory=w["territory"], organisations=[w["organisation"]],
                                      first_name="Noé", responsible=removed)
    entry = factories.WaitlistEntryFactory(usager=removed, motif=w["motif"], organisation=w["organisation"])
    message = Message(territory_id=w["territory"].id, rdv_id=rdv_removed.id, usager_id=removed.id,
                      channel=Channel.SMS, kind=MessageKind.REMINDER, due_at=SOON)
    webhook = Webhook(organisation_id=w["organisation"].id, url="https://si.example.fr/hook",
                      secret_encrypted=crypto.encrypt("secret"))
    db.session.add_all([message, webhook])
    db.session.commit()
    ids = {"kept": kept.id, "removed": removed.id}

    auth.login(w["agent"])
    page = client.get(f"/usagers/{kept.id}").get_data(as_text=True)
    assert "Doublons probables" in page and "même date de naissance, noms proches" in page
    assert f"/usagers/{kept.id}/fusion/{removed.id}" in page
    listed = client.get("/usagers/doublons").get_data(as_text=True)
    assert f"/usagers/{kept.id}/fusion/{removed.id}" in listed

    path, data = _merge_form(client, kept.id, removed.id, phone="removed", email="removed", external_id="removed",
                             address_street="removed")
    side_by_side = client.get(path).get_data(as_text=True)
    assert "Benali" in side_by_side and "BEN-ALI" in side_by_side and "Diallo" in side_by_side
    response = client.post(path, data=data)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/usagers/{ids['kept']}")
    assert "2 rendez-vous, 1 proche(s), 1 demande(s)" in client.get(f"/usagers/{ids['kept']}").get_data(as_text=True)

    db.session.expire_all()
    kept, removed = db.session.get(Usager, ids["kept"]), db.session.get(Usager, ids["removed"])
    # Field by field: names and birth date from the kept file, phone and e-mail (with their consents) from the other.
    assert (kept.first_name, kept.last_name, kept.phone, kept.sms_consent, kept.email, kept.email_consent,
            kept.external_id, kept.responsible_id) == ("Inès", "Benali", "+262692000002", True,
                                                       "famille@example.fr", True, "ANC-42", w["mother"].id)
    # The address as a whole (street, postcode, commune, access notes), for home visits.
    assert (kept.address_street, kept.address_postcode, kept.address_commune, kept.address_access) == (
        "3 chemin des Goyaves", "97400", "Saint-Denis", "portail vert")
    assert {org.name for org in kept.organisations} == {"PMI Saint-Denis", "PMI Saint-Pierre"}
    # Everything follows: rdvs (the shared one holds the kept file once), relatives, messages, waiting list.
    for rdv in (rdv_kept, rdv_removed, both):
        db.session.refresh(rdv)
        assert [usager.id for usager in rdv.usagers] == [kept.id]
    assert db.session.get(Usager, sibling.id).responsible_id == kept.id
    assert db.session.get(Message, message.id).usager_id == kept.id
    assert db.session.get(WaitlistEntry, entry.id).usager_id == kept.id
    # The tombstone: no personal data, pointing at the kept file.
    assert (removed.merged_into_id, removed.first_name, removed.phone, removed.email, removed.birth_date,
            removed.external_id, removed.address_street, removed.address_access) == (
        kept.id, "", None, None, None, None, None, None)
    # The audit trail on both sides, and the webhook.
    actions = {(event.object_id, event.action) for event in db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == AuditObject.USAGER))}
    assert {(kept.id, AuditAction.MERGED), (removed.id, AuditAction.MERGED)} <= actions
    merged_events = [delivery.payload for delivery in db.session.scalars(select(WebhookDelivery))
                     if delivery.event == "usager.merged"]
    assert [payload["data"] for payload in merged_events] == [{"id": removed.id, "merged_into_id": kept.id}]

    # The tombstone's pages lead to the kept file; it is no longer found nor listed as a duplicate.
    old_link = client.get(f"/usagers/{removed.id}")
    assert old_link.status_code == 302 and old_link.headers["Location"].endswith(f"/usagers/{kept.id}")
    assert client.get(f"/usagers/{removed.id}/modifier").headers["Location"].endswith(f"/usagers/{kept.id}/modifier")
    assert "BEN-ALI" not in client.get("/usagers?q=ben").get_data(as_text=True)
    assert "Doublons probables</h2>" not in client.get(f"/usagers/{kept.id}").get_data(as_text=True)
    # An administrator reads both files' history on the kept one, the merge on both sides.
    admin = factories.AgentFactory(organisation=w["organisation"], organisation__role=Role.ADMIN)
    auth.logout()
    auth.login(admin)
    history = client.get(f"/usagers/{removed.id}/historique", follow_redirects=True).get_data(as_text=True)
    assert history.count("Fusion de dossiers") == 2 and f"Dossier n° {removed.id} (fusionné)" in history
    assert "Création" in history  # the removed file's own creation, now on the kept file's page


def test_the_api_sends_a_merged_id_on_to_the_kept_file(client, auth, world, db):
    from lapins.auth.tokens import create

    w = world
    kept, removed = w["kept"], w["removed"]
    rdv = w["factories"].RdvFactory(motif=w["motif"], usagers=[removed], starts_at=SOON)
    auth.login(w["agent"])
    path, data = _merge_form(client, kept.id, removed.id)
    assert client.post(path, data=data).status_code == 302
    token = create(w["agent"], "SI")[1]
    headers = {"Authorization": f"Bearer {token}"}
    body = client.get(f"/api/v1/usagers/{removed.id}", headers=headers).get_json()
    assert (body["id"], body["merged_from_id"], body["first_name"]) == (kept.id, removed.id, "Inès")
    rdvs = client.get(f"/api/v1/rdvs?usager_id={removed.id}", headers=headers).get_json()
    assert [item["id"] for item in rdvs["items"]] == [rdv.id]
    listed = client.get("/api/v1/usagers", headers=headers).get_json()
    assert removed.id not in [item["id"] for item in listed["items"]]
    assert client.patch(f"/api/v1/usagers/{removed.id}", json={"first_name": "X"}, headers=headers).status_code == 403


def _refused(client, path, data, message):
    response = client.post(path, data=data)
    assert response.status_code == 409, response.status_code
    assert message in html.unescape(response.get_data(as_text=True))


def _unchanged(db, *usagers):
    db.session.expire_all()
    return all(database.session.get(Usager, usager_id).merged_into_id is None for usager_id in usagers)


def test_two_live_rdvs_at_the_same_time_are_refused(client, auth, world, db):
    w = world
    factories = w["factories"]
    factories.RdvFactory(motif=w["motif"], usagers=[w["kept"]], starts_at=SOON)
    factories.RdvFactory(motif=w["motif"], usagers=[w["removed"]], starts_at=SOON + timedelta(minutes=15))
    ids = (w["kept"].id, w["removed"].id)
    auth.login(w["agent"])
    path, data = _merge_form(client, *ids)
    _refused(client, path, data, "une même personne ne peut pas être à deux rendez-vous à la fois")
    assert _unchanged(db, *ids)


def test_a_parent_is_not_merged_into_their_child(client, auth, world, db):
    w = world
    ids = (w["kept"].id, w["mother"].id)
    auth.login(w["agent"])
    path, data = _merge_form(client, *ids)
    _refused(client, path, data, "on ne fusionne pas un parent et son enfant")
    assert _unchanged(db, *ids)


def test_a_responsible_that_would_be_the_file_itself_is_refused(client, auth, world, db):
    w = world
    child_of_removed = w["factories"].UsagerFactory(territory=w["territory"], organisations=[w["organisation"]],
                                                     responsible=w["removed"])
    kept = w["factories"].UsagerFactory(territory=w["territory"], organisations=[w["organisation"]],
                                        responsible=child_of_removed)
    ids = (kept.id, w["removed"].id)
    auth.login(w["agent"])
    path, data = _merge_form(client, *ids)
    _refused(client, path, data, "deviendrait son propre responsable")
    assert _unchanged(db, *ids)


def test_a_stale_form_is_refused(client, auth, world, db):
    w = world
    ids = (w["kept"].id, w["removed"].id)
    auth.login(w["agent"])
    path, data = _merge_form(client, *ids)
    w["removed"].phone = "+262692009999"  # a colleague corrects the number meanwhile
    db.session.commit()
    _refused(client, path, data, "a changé depuis l'ouverture de la comparaison")
    assert _unchanged(db, *ids)


def test_a_usager_of_another_territory_is_refused(client, auth, world, db):
    w = world
    elsewhere = w["factories"].OrganisationFactory(territory__number="971", territory__timezone="America/Guadeloupe")
    w["agent"].roles.append(type(w["agent"].roles[0])(organisation=elsewhere, role=Role.SECRETARY))
    stranger = w["factories"].UsagerFactory(territory=elsewhere.territory, organisations=[elsewhere],
                                            first_name="Inès", last_name="Benali", birth_date=date(2024, 3, 1))
    db.session.commit()
    ids = (w["kept"].id, stranger.id)
    auth.login(w["agent"])
    path, data = _merge_form(client, *ids)
    _refused(client, path, data, "deux territoires différents")
    assert _unchanged(db, *ids)


def test_a_file_of_another_organisation_cannot_be_merged(client, auth, world, factories, db):
    w = world
    neighbour = factories.OrganisationFactory(territory=w["territory"])
    theirs = factories.UsagerFactory(territory=w["territory"], organisations=[neighbour], first_name="Inès",
                                     last_name="Benali", birth_date=date(2024, 3, 1))
    auth.login(w["agent"])
    assert client.get(f"/usagers/{w['kept'].id}/fusion/{theirs.id}").status_code == 404
    # Their file is a likely duplicate, but not one this agent may see: not named on the page nor in the list.
    assert f"fusion/{theirs.id}" not in client.get(f"/usagers/{w['kept'].id}").get_data(as_text=True)
    assert f"fusion/{theirs.id}" not in client.get("/usagers/doublons").get_data(as_text=True)
    assert f"/fusion/{w['removed'].id}" in client.get(f"/usagers/{w['kept'].id}").get_data(as_text=True)


def test_a_merge_replayed_after_it_was_made_changes_nothing(client, auth, world, db):
    w = world
    ids = (w["kept"].id, w["removed"].id)
    auth.login(w["agent"])
    path, data = _merge_form(client, *ids)
    assert client.post(path, data=data).status_code == 302
    replay = client.post(path, data=data)
    assert replay.status_code == 302 and replay.headers["Location"].endswith(f"/usagers/{ids[0]}")
    assert db.session.scalar(select(Usager.merged_into_id).where(Usager.id == ids[1])) == ids[0]
    assert db.session.scalar(select(Usager.merged_into_id).where(Usager.id == ids[0])) is None


def test_a_forged_choice_is_refused_and_nothing_is_merged(client, auth, world, db):
    w = world
    ids = (w["kept"].id, w["removed"].id)
    auth.login(w["agent"])
    path, data = _merge_form(client, *ids)
    response = client.post(path, data=data | {"phone": "<script>alert(1)</script>"})
    assert response.status_code == 422
    assert "n'est pas celui de cette page" in html.unescape(response.get_data(as_text=True))
    assert "<script>alert(1)" not in response.get_data(as_text=True)
    assert _unchanged(db, *ids)


def test_the_territory_list_of_a_large_file_set_is_bounded_and_skips_families(client, auth, world, db):
    """A parent and child sharing a phone are no pair; the mother typed twice is one."""
    w = world
    w["factories"].UsagerFactory(territory=w["territory"], organisations=[w["organisation"]], first_name="Awa",
                                 last_name="DIALLO", phone="+262692000001", birth_date=date(1990, 4, 2))
    child = w["factories"].UsagerFactory(territory=w["territory"], organisations=[w["organisation"]],
                                         first_name="Awa", last_name="Diallo", phone="+262692000001",
                                         responsible=w["mother"], birth_date=None)
    pairs = duplicates.territory_pairs(w["agent"])
    named = {frozenset((pair.first.id, pair.second.id)) for pair in pairs}
    assert frozenset((w["kept"].id, w["removed"].id)) in named
    assert frozenset((w["mother"].id, child.id)) not in named
    assert len([pair for pair in pairs if w["mother"].id in (pair.first.id, pair.second.id)]) == 1


def test_erasing_the_kept_file_erases_its_tombstones(client, auth, world, factories, db):
    from lapins.privacy.erasure import erase

    w = world
    w["removed"].organisations = [w["organisation"]]  # followed by this organisation alone: erased, not detached
    db.session.commit()
    ids = (w["kept"].id, w["removed"].id)
    auth.login(w["agent"])
    path, data = _merge_form(client, *ids)
    assert client.post(path, data=data).status_code == 302
    admin = factories.AgentFactory(organisation=w["organisation"], organisation__role=Role.ADMIN)
    with client.application.test_request_context():
        erase(admin, db.session.get(Usager, ids[0]))
        db.session.commit()
    db.session.expire_all()
    assert db.session.get(Usager, ids[0]) is None and db.session.get(Usager, ids[1]) is None


def test_the_migration_computes_the_name_key_of_existing_usagers(empty_database_url):
    from flask_migrate import downgrade, upgrade

    from lapins import create_app

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=empty_database_url)
    with app.app_context():
        upgrade(revision="18a0e5c0571d")
        with database.engine.begin() as connection:  # plain SQL: the models hold columns of later revisions
            connection.execute(database.text(
                "INSERT INTO territories (number, name, timezone, agenda_stamp) VALUES ('01', 'Ain', 'Europe/Paris', 'x')"))
            connection.execute(database.text(
                "INSERT INTO usagers (territory_id, first_name, last_name, sms_consent, email_consent, created_at) "
                "SELECT id, 'Zoé', 'Lefèvre née Ben-Ali', false, false, CURRENT_TIMESTAMP FROM territories"))
        upgrade()
        assert database.session.scalar(select(Usager.name_key)) == "zoe|lefevre benali"
        database.session.remove()
        downgrade(revision="base")
        database.engine.dispose()


def test_a_place_in_a_collective_session_follows_the_kept_file(client, auth, world, db):
    """The removed file had a place in an atelier: after the merge the kept file is the one told and the one coming,
    and its family link still opens that place."""
    from lapins.booking import sessions
    from lapins.models import Participation

    w = world
    atelier = w["factories"].MotifFactory(organisation=w["organisation"], name="Atelier massage bébé",
                                          collective=True)
    agent = w["factories"].AgentFactory(organisation=w["organisation"])
    lieu = w["factories"].LieuFactory(organisation=w["organisation"])
    db.session.commit()
    [session] = sessions.create_sessions(actor=agent, motif=atelier, agents=[agent], lieu=lieu,
                                         starts=[SOON + timedelta(days=14)], duration=timedelta(minutes=90),
                                         capacity=5, title="Massage bébé")
    place = sessions.add_participant(actor=agent, session=session, usagers=[w["removed"]])
    ids = {"kept": w["kept"].id, "removed": w["removed"].id, "place": place.id}

    auth.login(w["agent"])
    path, data = _merge_form(client, ids["kept"], ids["removed"])
    assert client.post(path, data=data).status_code == 302
    db.session.expire_all()
    place = db.session.get(Participation, ids["place"])
    assert place.usager_id == ids["kept"] and [usager.id for usager in place.usagers] == [ids["kept"]]
    assert place.is_live


def test_a_booking_on_a_file_merged_meanwhile_is_refused_and_stores_nothing(client, auth, world, db):
    w = world
    removed, agent = w["removed"], w["agent"]
    lieu = w["factories"].LieuFactory(organisation=w["organisation"])
    assert removed.merged_into_id is None  # the booking form read the file before the merge
    auth.login(agent)
    path, data = _merge_form(client, w["kept"].id, removed.id)
    assert client.post(path, data=data).status_code == 302
    with pytest.raises(BookingError, match="vient d'être fusionné"):
        book_rdv(actor=agent, motif=w["motif"], agents=[agent], usagers=[removed], starts_at=SOON, force=True,
                 lieu=lieu)
    database.session.rollback()
    assert database.session.scalar(select(func.count(Rdv.id))) == 0
