"""The administration: a territory's organisations, and each organisation's lieux, motifs and agents — for the
territory's administrators and the organisation's, never for its agents, secretaries or anyone elsewhere."""
from __future__ import annotations

import html
import re
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from lapins.infra.extensions import db as _db
from lapins.models import Agent, Lieu, LocationType, Motif, Organisation, Rdv, Role
from lapins.models.territory_admins import TerritoryAdmin
from tests.conftest import AuthActions, csrf_token_from


@pytest.fixture()
def dept(factories):
    """Territory 59 with two organisations (« PMI Lille », « PMI Roubaix »), and territory 62 elsewhere."""
    territory = factories.TerritoryFactory(number="59", name="Nord")
    home = factories.OrganisationFactory(territory=territory, name="PMI Lille")
    sister = factories.OrganisationFactory(territory=territory, name="PMI Roubaix")
    far = factories.OrganisationFactory(territory=factories.TerritoryFactory(), name="PMI Lointaine")
    people = {
        "territory_admin": factories.AgentFactory(organisation=home, organisation__role=Role.AGENT, last_name="Terr"),
        "org_admin": factories.AgentFactory(organisation=home, organisation__role=Role.ADMIN, last_name="Orga"),
        "agent": factories.AgentFactory(organisation=home, organisation__role=Role.AGENT, last_name="Agent"),
        "secretary": factories.AgentFactory(organisation=home, organisation__role=Role.SECRETARY, last_name="Secr"),
        "sister_admin": factories.AgentFactory(organisation=sister, organisation__role=Role.ADMIN, last_name="Soeur"),
        "far_admin": factories.AgentFactory(organisation=far, organisation__role=Role.ADMIN, last_name="Loin"),
    }
    _db.session.add(TerritoryAdmin(agent_id=people["territory_admin"].id, territory_id=territory.id))
    _db.session.commit()
    return SimpleNamespace(
        territory=territory, home=home, sister=sister, far=far, **people,
        lieu=factories.LieuFactory(organisation=home, name="Centre Wazemmes"),
        motif=factories.MotifFactory(organisation=home, name="Pesée"),
        sister_lieu=factories.LieuFactory(organisation=sister, name="Centre Roubaix"),
        sister_motif=factories.MotifFactory(organisation=sister, name="Vaccination"),
    )


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def token(client, url: str = "/usagers") -> str:
    return csrf_token_from(client.get(url).get_data(as_text=True))


def post(client, url: str, data: dict | None = None, **kwargs):
    page = client.get(url) if not url.endswith(("/role", "/activation", "/invitation", "/retirer", "/administrateurs")) \
        else client.get("/usagers")
    form = {"csrf_token": csrf_token_from(page.get_data(as_text=True)), **(data or {})}
    return client.post(url, data=form, **kwargs)


def login(client, agent):
    response = AuthActions(client).login(agent)
    assert response.status_code == 302
    return client


def organisation_pages(organisation, lieu, motif) -> list[str]:
    base = f"/admin/organisations/{organisation.id}"
    return [f"{base}/lieux", f"{base}/lieux/nouveau", f"{base}/motifs", f"{base}/motifs/nouveau", f"{base}/agents",
            f"{base}/agents/inviter", f"{base}/modifier", f"/admin/lieux/{lieu.id}/modifier",
            f"/admin/motifs/{motif.id}/modifier"]


# --- Who reaches which page ----------------------------------------------------------------------------------

@pytest.mark.parametrize("who, home_pages, sister_pages, territory_page, index", [
    ("territory_admin", 200, 200, 200, 200),
    ("org_admin", 200, 404, 403, 200),
    ("agent", 403, 404, 403, 403),
    ("secretary", 403, 404, 403, 403),
    ("sister_admin", 404, 200, 403, 200),
    ("far_admin", 404, 404, 404, 200),
])
def test_each_page_opens_for_whom_it_is_for(client, dept, who, home_pages, sister_pages, territory_page, index):
    login(client, getattr(dept, who))
    for url in organisation_pages(dept.home, dept.lieu, dept.motif):
        assert client.get(url).status_code == home_pages, url
    for url in organisation_pages(dept.sister, dept.sister_lieu, dept.sister_motif):
        assert client.get(url).status_code == sister_pages, url
    assert client.get(f"/admin/territoires/{dept.territory.id}/organisations").status_code == territory_page
    assert client.get("/admin/").status_code == index
    assert client.get("/admin/territoires/999999/organisations").status_code == 404
    assert client.get("/admin/organisations/999999/lieux").status_code == 404


def test_the_menu_shows_administration_to_administrators_only(client, dept, factories):
    for who, shown in (("org_admin", True), ("agent", False), ("secretary", False)):
        login(client, getattr(dept, who))
        assert ('href="/admin/"' in client.get("/usagers").get_data(as_text=True)) is shown, who
        AuthActions(client).logout()
    # A territory administrator with no admin role in any organisation has the entry too.
    login(client, dept.territory_admin)
    page = client.get("/admin/").get_data(as_text=True)
    # The « Administration » menu is marked as the current one, and its entry for these pages too.
    current = ('aria-current="true">Administration', 'aria-current="page">Organisations, lieux et agents')
    assert all(mark in page for mark in current) and "PMI Roubaix" in page
    lieux = client.get(f"/admin/organisations/{dept.sister.id}/lieux").get_data(as_text=True)
    assert all(mark in lieux for mark in current)


def test_a_territory_admin_administers_the_sister_organisation_but_sees_none_of_its_rdvs_or_families(
        client, dept, factories):
    agent = factories.AgentFactory(organisation=dept.sister)
    usager = factories.UsagerFactory(territory=dept.territory, organisations=[dept.sister])
    rdv = factories.RdvFactory(motif=dept.sister_motif, lieu=dept.sister_lieu, agents=[agent], usagers=[usager])
    login(client, dept.territory_admin)
    assert client.get(f"/admin/organisations/{dept.sister.id}/agents").status_code == 200
    assert client.get(f"/rdvs/{rdv.id}").status_code == 404
    assert client.get(f"/usagers/{usager.id}").status_code == 404
    assert usager.last_name not in client.get("/usagers").get_data(as_text=True)
    assert client.get(f"/agents/{agent.id}/horaires").status_code in (403, 404)
    # …and the agents page offers no link to that agent's plages.
    assert f"/agents/{agent.id}/horaires" not in client.get(f"/admin/organisations/{dept.sister.id}/agents").get_data(as_text=True)


def test_the_agents_page_links_each_agent_to_their_plages_for_the_organisation_admin(client, dept):
    login(client, dept.org_admin)
    page = client.get(f"/admin/organisations/{dept.home.id}/agents").get_data(as_text=True)
    assert f'href="/agents/{dept.agent.id}/horaires"' in page


# --- Organisations -------------------------------------------------------------------------------------------

def test_a_territory_admin_creates_renames_and_sets_the_phone_of_an_organisation(client, dept, db):
    login(client, dept.territory_admin)
    url = f"/admin/territoires/{dept.territory.id}/organisations"
    response = post(client, url, {"organisation-name": "  PMI   Tourcoing ", "organisation-phone": "03 20 00 00 00"})
    assert response.status_code == 302
    created = db.session.scalar(select(Organisation).where(Organisation.name == "PMI Tourcoing"))
    assert created.phone == "+33320000000" and created.territory_id == dept.territory.id
    assert response.location.endswith(f"/admin/organisations/{created.id}/agents")

    duplicate = post(client, url, {"organisation-name": "pmi tourcoing"})
    assert duplicate.status_code == 422 and "Une organisation porte déjà ce nom" in text(duplicate)
    bad_phone = post(client, url, {"organisation-name": "PMI Douai", "organisation-phone": "12"})
    assert bad_phone.status_code == 422 and "Numéro de téléphone invalide" in text(bad_phone)
    assert db.session.scalar(select(func.count(Organisation.id)).where(Organisation.territory_id == dept.territory.id)) == 3

    renamed = post(client, f"/admin/organisations/{created.id}/modifier", {"name": "PMI Tourcoing-Centre", "phone": ""})
    assert renamed.status_code == 302
    db.session.expire_all()
    assert (created.name, created.phone) == ("PMI Tourcoing-Centre", None)


def test_an_organisation_admin_cannot_create_organisations_once_the_territory_has_an_administrator(client, dept, db):
    login(client, dept.org_admin)
    page = client.get("/usagers").get_data(as_text=True)
    refused = client.post(f"/admin/territoires/{dept.territory.id}/organisations",
                          data={"csrf_token": csrf_token_from(page), "organisation-name": "PMI Pirate"})
    assert refused.status_code == 403
    assert db.session.scalar(select(Organisation).where(Organisation.name == "PMI Pirate")) is None
    # Its own name and phone, though, are theirs to keep up to date.
    assert post(client, f"/admin/organisations/{dept.home.id}/modifier",
                {"name": "PMI Lille-Centre", "phone": "03 20 11 22 33"}).status_code == 302


def test_a_form_without_its_csrf_token_stores_nothing(client, dept, db):
    login(client, dept.territory_admin)
    response = client.post(f"/admin/territoires/{dept.territory.id}/organisations",
                           data={"organisation-name": "PMI Sans Jeton"})
    assert response.status_code == 400
    response = client.post(f"/admin/organisations/{dept.home.id}/lieux/nouveau",
                           data={"name": "Centre sans jeton", "address": "1 rue"})
    assert response.status_code == 400
    assert db.session.scalar(select(Lieu).where(Lieu.name == "Centre sans jeton")) is None


# --- Lieux ---------------------------------------------------------------------------------------------------

def test_an_organisation_admin_creates_and_edits_a_lieu(client, dept, db):
    login(client, dept.org_admin)
    response = post(client, f"/admin/organisations/{dept.home.id}/lieux/nouveau",
                    {"name": "Centre Fives", "address": "3 rue Pierre Legrand, 59000 Lille", "phone": "03 20 55 66 77"})
    assert response.status_code == 302
    lieu = db.session.scalar(select(Lieu).where(Lieu.name == "Centre Fives"))
    assert lieu.organisation_id == dept.home.id and lieu.phone == "+33320556677"
    assert "Centre Fives" in client.get(f"/admin/organisations/{dept.home.id}/lieux").get_data(as_text=True)

    edited = post(client, f"/admin/lieux/{lieu.id}/modifier", {"name": "Centre Fives-Hellemmes",
                                                               "address": "5 rue Pierre Legrand, 59000 Lille",
                                                               "phone": ""})
    assert edited.status_code == 302
    db.session.expire_all()
    assert (lieu.name, lieu.address, lieu.phone) == ("Centre Fives-Hellemmes", "5 rue Pierre Legrand, 59000 Lille", None)


@pytest.mark.parametrize("data, message", [
    ({"name": "", "address": "1 rue"}, "Saisissez le nom du lieu."),
    ({"name": "Centre", "address": ""}, "Saisissez l'adresse du lieu."),
    ({"name": "Centre", "address": "1 rue", "phone": "pas un numéro"}, "Numéro de téléphone invalide"),
    ({"name": "Centre", "address": "1 rue", "phone": "+1 212 555 0100"}, "Numéro de téléphone invalide"),
    ({"name": "x" * 10_000, "address": "1 rue"}, "160 caractères au plus."),
    ({"name": "Centre", "address": "y" * 10_000}, "255 caractères au plus."),
    ({"name": "<script>alert(1)</script>", "address": "1 rue"}, "Les caractères < et > ne sont pas acceptés."),
    ({"name": "centre wazemmes", "address": "1 rue"}, "Un lieu porte déjà ce nom dans cette organisation."),
])
def test_a_bad_lieu_gets_a_french_message_and_nothing_is_stored(client, dept, db, data, message):
    login(client, dept.org_admin)
    before = db.session.scalar(select(func.count(Lieu.id)))
    response = post(client, f"/admin/organisations/{dept.home.id}/lieux/nouveau", data)
    assert response.status_code == 422
    assert message in text(response)
    assert "<script>alert(1)" not in response.get_data(as_text=True)  # shown back escaped
    assert db.session.scalar(select(func.count(Lieu.id))) == before


def test_a_lieu_of_another_organisation_cannot_be_edited(client, dept, db):
    login(client, dept.org_admin)
    url = f"/admin/lieux/{dept.sister_lieu.id}/modifier"
    page = client.get("/usagers").get_data(as_text=True)
    response = client.post(url, data={"csrf_token": csrf_token_from(page), "name": "Volé", "address": "1 rue"})
    assert response.status_code == 404
    db.session.expire_all()
    assert dept.sister_lieu.name == "Centre Roubaix"


# --- Motifs --------------------------------------------------------------------------------------------------

MOTIF = {"name": "Consultation prénatale", "duration_minutes": "45", "location_type": "home", "color": "#18753C",
         "cancellation_limit_hours": "24", "reminder_offsets": "72, 24", "notify": "y", "active": "y",
         "move_limit_hours": "48", "family_moves_max": "1", "booking_horizon_weeks": "12"}


def test_an_admin_creates_and_edits_a_motif(client, dept, db):
    login(client, dept.territory_admin)
    response = post(client, f"/admin/organisations/{dept.sister.id}/motifs/nouveau", MOTIF)
    assert response.status_code == 302
    motif = db.session.scalar(select(Motif).where(Motif.name == "Consultation prénatale"))
    assert (motif.organisation_id, motif.duration_minutes, motif.location_type, motif.color) == (
        dept.sister.id, 45, LocationType.HOME, "#18753c")
    assert (motif.cancellation_limit_hours, motif.reminder_offsets, motif.notify, motif.active) == (24, "72,24", True, True)
    assert (motif.move_limit_hours, motif.family_moves_max, motif.booking_horizon_weeks) == (48, 1, 12)

    form = client.get(f"/admin/motifs/{motif.id}/modifier").get_data(as_text=True)
    assert 'value="home" selected' in form or 'selected value="home"' in form
    changed = {**MOTIF, "duration_minutes": "20", "location_type": "phone", "reminder_offsets": ""}
    del changed["active"], changed["notify"]  # unticked boxes are not sent
    assert post(client, f"/admin/motifs/{motif.id}/modifier", changed).status_code == 302
    db.session.expire_all()
    assert (motif.duration_minutes, motif.location_type, motif.active, motif.notify, motif.reminder_offsets) == (
        20, LocationType.PHONE, False, False, None)
    listing = client.get(f"/admin/organisations/{dept.sister.id}/motifs").get_data(as_text=True)
    assert "Inactif" in listing and "jusqu'à 48 h avant, 1 fois au plus" in html.unescape(listing)


@pytest.mark.parametrize("change, message", [
    ({"name": ""}, "Saisissez le nom du motif."),
    ({"duration_minutes": "4"}, "La durée va de 5 à 480 minutes."),
    ({"duration_minutes": "481"}, "La durée va de 5 à 480 minutes."),
    ({"duration_minutes": "trente"}, "Saisissez un nombre entier"),
    ({"duration_minutes": "9" * 10_000}, "Saisissez un nombre entier"),
    ({"duration_minutes": ""}, "Saisissez la durée en minutes."),
    ({"location_type": "lune"}, "Choisissez où se tient le rendez-vous parmi la liste."),
    ({"color": "red"}, "La couleur s'écrit #RRGGBB"),
    ({"color": "#12345g"}, "La couleur s'écrit #RRGGBB"),
    ({"cancellation_limit_hours": "-1"}, "Indiquez un nombre d'heures de 0 à 720."),
    ({"reminder_offsets": "demain"}, "Indiquez des nombres d'heures séparés par des virgules"),
    ({"move_limit_hours": "721"}, "Indiquez un nombre d'heures de 0 à 720."),
    ({"family_moves_max": "-1"}, "Indiquez un nombre de 0 à 10 (0 : jamais en ligne)."),
    ({"family_moves_max": ""}, "Indiquez un nombre de 0 à 10 (0 : jamais en ligne)."),
    ({"booking_horizon_weeks": "0"}, "Indiquez un nombre de semaines de 1 à 52."),
    ({"name": "pesée"}, "Un motif porte déjà ce nom dans cette organisation."),
    ({"name": "<img src=x onerror=alert(1)>"}, "Les caractères < et > ne sont pas acceptés."),
])
def test_a_bad_motif_gets_a_french_message_and_nothing_is_stored(client, dept, db, change, message):
    login(client, dept.org_admin)
    before = db.session.scalar(select(func.count(Motif.id)))
    response = post(client, f"/admin/organisations/{dept.home.id}/motifs/nouveau", {**MOTIF, **change})
    assert response.status_code == 422
    assert message in text(response)
    assert "<img src=x" not in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Motif.id))) == before


# --- Agents --------------------------------------------------------------------------------------------------

def test_an_invited_agent_gets_the_email_chooses_a_password_and_signs_in(app, client, dept, db, smtp_app, smtp_server):
    login(client, dept.org_admin)
    response = post(client, f"/admin/organisations/{dept.home.id}/agents/inviter",
                    {"email": " Nadia.Benali@LeNord.fr ", "first_name": "Nadia", "last_name": "Benali",
                     "role": "secretary"})
    assert response.status_code == 302
    agent = db.session.scalar(select(Agent).where(Agent.email == "nadia.benali@lenord.fr"))
    assert agent.role_in(dept.home.id) == Role.SECRETARY and agent.password_hash is None
    listing = text(client.get(response.location))
    assert "Invitation envoyée à Nadia Benali" in listing and "Invitation en attente" in listing

    (email,) = smtp_server.messages
    assert email["To"] == "nadia.benali@lenord.fr" and "choisissez votre mot de passe" in email["Subject"]
    path = re.search(r"https?://[^/\s]+(/invitation/[\w.-]+)", email.get_body(("plain",)).get_content()).group(1)

    invited = app.test_client()
    page = invited.get(path)
    assert page.status_code == 200
    password = "cerf-volant vert sous la pluie"
    chosen = invited.post(path, data={"csrf_token": csrf_token_from(page.get_data(as_text=True)),
                                      "password": password, "confirm": password})
    assert chosen.status_code == 302
    assert AuthActions(invited).login(agent, password).status_code == 302


@pytest.mark.parametrize("data, message", [
    ({"email": "pas-une-adresse"}, "Adresse électronique invalide"),
    ({"email": ""}, "Saisissez l'adresse électronique de l'agent."),
    ({"first_name": ""}, "Saisissez le prénom."),
    ({"last_name": "z" * 10_000}, "80 caractères au plus."),
    ({"role": "superadmin"}, "Choisissez un rôle parmi la liste."),
    ({"first_name": "<script>alert(1)</script>"}, "Les caractères < et > ne sont pas acceptés."),
])
def test_a_bad_invitation_gets_a_french_message_and_nothing_is_stored(client, dept, db, data, message):
    login(client, dept.org_admin)
    before = db.session.scalar(select(func.count(Agent.id)))
    form = {"email": "nouvel.agent@lenord.fr", "first_name": "Nouvel", "last_name": "Agent", "role": "agent", **data}
    response = post(client, f"/admin/organisations/{dept.home.id}/agents/inviter", form)
    assert response.status_code == 422 and message in text(response)
    assert "<script>alert(1)" not in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Agent.id))) == before


def test_an_account_of_another_departement_is_refused(client, dept, db):
    login(client, dept.territory_admin)
    response = post(client, f"/admin/organisations/{dept.sister.id}/agents/inviter",
                    {"email": dept.far_admin.email.upper(), "first_name": "Autre", "last_name": "Personne",
                     "role": "agent"})
    assert response.status_code == 422 and "agent d'un autre département" in text(response)
    db.session.expire_all()
    assert dept.far_admin.role_in(dept.sister.id) is None


def test_an_agent_with_an_account_in_a_sister_organisation_is_added_and_keeps_their_name_and_password(
        app, client, dept, db, smtp_app, smtp_server):
    login(client, dept.org_admin)
    response = post(client, f"/admin/organisations/{dept.home.id}/agents/inviter",
                    {"email": f" {dept.sister_admin.email.upper()} ", "first_name": "Autre", "last_name": "Nom",
                     "role": "agent"})
    assert response.status_code == 302
    db.session.expire_all()
    agent = db.session.get(Agent, dept.sister_admin.id)
    assert agent.role_in(dept.home.id) == Role.AGENT and agent.role_in(dept.sister.id) == Role.ADMIN
    assert agent.last_name == "Soeur" and agent.password_hash is not None
    assert db.session.scalar(select(func.count(Agent.id)).where(func.lower(Agent.email) == agent.email)) == 1
    assert f"{agent.full_name} fait maintenant partie de ce service" in text(client.get(response.location))
    assert smtp_server.messages == []  # nothing to choose: the account has its password
    added = app.test_client()
    assert AuthActions(added).login(agent).status_code == 302  # and sees its new colleagues' agendas at once
    assert added.get(f"/agenda/agents/{dept.agent.id}").status_code == 200


@pytest.mark.parametrize("who, message", [
    ("agent", "fait déjà partie de ce service (rôle « Agent »)"),
    ("deactivated", "Le compte de cette adresse est désactivé"),
])
def test_a_member_or_a_deactivated_account_is_not_added(client, dept, db, factories, who, message):
    target = dept.agent if who == "agent" else factories.AgentFactory(organisation=dept.sister, active=False)
    _db.session.commit()
    roles_before = _db.session.scalar(select(func.count()).select_from(Agent).join(Agent.roles))
    login(client, dept.org_admin)
    response = post(client, f"/admin/organisations/{dept.home.id}/agents/inviter",
                    {"email": target.email, "first_name": "X", "last_name": "Y", "role": "secretary"})
    assert response.status_code == 422 and message in text(response)
    assert _db.session.scalar(select(func.count()).select_from(Agent).join(Agent.roles)) == roles_before


def test_roles_change_but_an_admin_keeps_their_last_admin_role(client, dept, db):
    login(client, dept.org_admin)
    url = f"/admin/organisations/{dept.home.id}/agents/{dept.agent.id}/role"
    response = post(client, url, {f"agent-{dept.agent.id}-role": "secretary"}, follow_redirects=True)
    assert "rôle « Secrétariat » enregistré" in text(response)
    db.session.expire_all()
    assert dept.agent.role_in(dept.home.id) == Role.SECRETARY

    bad = post(client, url, {f"agent-{dept.agent.id}-role": "roi"}, follow_redirects=True)
    assert "Choisissez un rôle parmi la liste." in text(bad)

    own = f"/admin/organisations/{dept.home.id}/agents/{dept.org_admin.id}/role"
    refused = post(client, own, {f"agent-{dept.org_admin.id}-role": "agent"}, follow_redirects=True)
    assert "Vous ne pouvez pas retirer votre dernier rôle d'administrateur" in text(refused)
    db.session.expire_all()
    assert dept.org_admin.role_in(dept.home.id) == Role.ADMIN


def test_a_territory_admin_may_give_up_an_organisation_admin_role(client, dept, db):
    dept.territory_admin.roles[0].role = Role.ADMIN
    db.session.commit()
    login(client, dept.territory_admin)
    own = f"/admin/organisations/{dept.home.id}/agents/{dept.territory_admin.id}/role"
    assert post(client, own, {f"agent-{dept.territory_admin.id}-role": "agent"}).status_code == 302
    db.session.expire_all()
    assert dept.territory_admin.role_in(dept.home.id) == Role.AGENT


def test_a_deactivated_agent_cannot_sign_in_keeps_their_history_and_can_be_reactivated(app, client, dept, db,
                                                                                         factories):
    rdv = factories.RdvFactory(motif=dept.motif, lieu=dept.lieu, agents=[dept.agent])
    colleague = app.test_client()
    login(colleague, dept.agent)
    assert colleague.get("/usagers").status_code == 200

    login(client, dept.org_admin)
    url = f"/admin/organisations/{dept.home.id}/agents/{dept.agent.id}/activation"
    response = post(client, url, follow_redirects=True)
    assert "désactivé : il ne peut plus se connecter" in text(response)
    db.session.expire_all()
    assert dept.agent.active is False and db.session.get(Rdv, rdv.id).agents == [dept.agent]

    signed_in_before = colleague.get("/usagers")  # the session already open is closed too
    assert signed_in_before.status_code == 302 and "/connexion" in signed_in_before.location
    again = AuthActions(app.test_client()).login(dept.agent)
    assert again.status_code == 422 and "Adresse électronique ou mot de passe incorrect." in text(again)
    assert "Désactivé" in client.get(f"/admin/organisations/{dept.home.id}/agents").get_data(as_text=True)

    post(client, url)
    db.session.expire_all()
    assert dept.agent.active is True
    assert AuthActions(app.test_client()).login(dept.agent).status_code == 302


def test_an_admin_cannot_deactivate_themselves_nor_a_territory_admin(client, dept, db):
    login(client, dept.org_admin)
    own = post(client, f"/admin/organisations/{dept.home.id}/agents/{dept.org_admin.id}/activation",
               follow_redirects=True)
    assert "Vous ne pouvez pas désactiver votre propre compte." in text(own)
    above = post(client, f"/admin/organisations/{dept.home.id}/agents/{dept.territory_admin.id}/activation")
    assert above.status_code == 403
    db.session.expire_all()
    assert dept.org_admin.active and dept.territory_admin.active


def test_an_agent_of_another_organisation_cannot_be_reached_through_ones_own(client, dept, db):
    login(client, dept.org_admin)
    for action in ("activation", "role", "invitation"):
        url = f"/admin/organisations/{dept.home.id}/agents/{dept.sister_admin.id}/{action}"
        assert post(client, url, {f"agent-{dept.sister_admin.id}-role": "agent"}).status_code == 404
        url = f"/admin/organisations/{dept.sister.id}/agents/{dept.sister_admin.id}/{action}"
        assert post(client, url, {f"agent-{dept.sister_admin.id}-role": "agent"}).status_code == 404
    db.session.expire_all()
    assert dept.sister_admin.active and dept.sister_admin.role_in(dept.sister.id) == Role.ADMIN


def test_agents_and_secretaries_change_nothing(client, dept, db):
    for who in ("agent", "secretary"):
        login(client, getattr(dept, who))
        for url, data in (
            (f"/admin/organisations/{dept.home.id}/lieux/nouveau", {"name": "Centre X", "address": "1 rue"}),
            (f"/admin/organisations/{dept.home.id}/agents/{dept.org_admin.id}/activation", {}),
            (f"/admin/organisations/{dept.home.id}/agents/{dept.agent.id}/role", {f"agent-{dept.agent.id}-role": "admin"}),
        ):
            page = client.get("/usagers").get_data(as_text=True)
            assert client.post(url, data={"csrf_token": csrf_token_from(page), **data}).status_code == 403
        AuthActions(client).logout()
    db.session.expire_all()
    assert dept.org_admin.active and dept.agent.role_in(dept.home.id) == Role.AGENT
    assert db.session.scalar(select(Lieu).where(Lieu.name == "Centre X")) is None
