"""Territory administrators: who administers a territory, what that role opens and what it never shows."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from lapins import policies
from lapins.infra.extensions import db as _db
from lapins.models import Agent, Role, Territory
from lapins.models.territory_admins import TerritoryAdmin
from tests.conftest import AuthActions, csrf_token_from
from tests.test_permission_walk import _api_token, _login, _methods, _open, _snapshot, _urls, _walked_rules, worlds  # noqa: F401


def name_territory_admin(agent, territory) -> None:
    _db.session.add(TerritoryAdmin(agent_id=agent.id, territory_id=territory.id))
    _db.session.commit()


def test_territory_create_makes_the_first_admin_a_territory_admin(app, db):
    result = app.test_cli_runner().invoke(args=["territory", "create", "--number", "59", "--name", "Nord",
                                                "--timezone", "Europe/Paris", "--admin-email", "claire.martin@lenord.fr"])
    assert result.exit_code == 0, result.output
    territory = db.session.scalar(select(Territory).where(Territory.number == "59"))
    admin = db.session.scalar(select(Agent).where(Agent.email == "claire.martin@lenord.fr"))
    assert admin.administered_territory_ids == {territory.id}
    assert admin.role_in(territory.organisations[0].id) == Role.ADMIN


def test_a_territory_without_territory_admin_is_administered_by_its_organisations_admins_until_one_is_named(
        client, auth, factories, db):
    organisation = factories.OrganisationFactory(name="PMI Lille")
    territory = organisation.territory
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    colleague = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, email="nadia@pmi.fr")
    assert policies.can(admin, "administer", territory) and not policies.can(colleague, "administer", territory)

    auth.login(admin)
    url = f"/admin/territoires/{territory.id}/organisations"
    page = client.get(url)
    assert page.status_code == 200 and "n'a pas encore d'administrateur" in page.get_data(as_text=True)
    assert client.get(f"/territoires/{territory.id}/sms").status_code == 200
    # Standing in, they create an organisation: they become its administrator, so that someone can run it.
    created = client.post(url, data={"csrf_token": csrf_token_from(page.get_data(as_text=True)),
                                     "organisation-name": "PMI Roubaix"})
    assert created.status_code == 302 and client.get(created.location).status_code == 200
    unknown = client.post(f"{url[:-len('organisations')]}administrateurs",
                          data={"csrf_token": csrf_token_from(page.get_data(as_text=True)),
                                "admin-email": "personne@ailleurs.fr"})
    assert unknown.status_code == 422 and "Aucun agent actif de ce territoire" in unknown.get_data(as_text=True)
    named = client.post(f"{url[:-len('organisations')]}administrateurs",
                        data={"csrf_token": csrf_token_from(page.get_data(as_text=True)), "admin-email": "NADIA@pmi.fr"})
    assert named.status_code == 302
    db.session.expire_all()
    assert colleague.administered_territory_ids == {territory.id}

    # From now on the territory is its territory administrator's: the organisation admin keeps their organisation.
    assert client.get(url).status_code == 403
    # The territory's figures (SMS sent, statistics) stay open to the administrators of its organisations.
    assert client.get(f"/territoires/{territory.id}/sms").status_code == 200
    assert client.get(f"/admin/organisations/{organisation.id}/lieux").status_code == 200
    AuthActions(client).logout()
    auth.login(colleague)
    assert client.get(url).status_code == 200
    assert client.get(f"/territoires/{territory.id}/sms").status_code == 200

    # A territory whose only territory administrator was deactivated goes back to its organisations' admins.
    colleague.active = False
    db.session.commit()
    assert policies.can(admin, "administer", territory)


def test_a_territory_admin_cannot_remove_themselves_but_can_remove_another(client, auth, factories, db):
    organisation = factories.OrganisationFactory()
    first = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    second = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    name_territory_admin(first, organisation.territory)
    name_territory_admin(second, organisation.territory)
    auth.login(first)
    base = f"/admin/territoires/{organisation.territory.id}/administrateurs"
    token = csrf_token_from(client.get(f"/admin/territoires/{organisation.territory.id}/organisations").get_data(as_text=True))
    client.post(f"{base}/{first.id}/retirer", data={"csrf_token": token})
    assert client.post(f"{base}/{second.id}/retirer", data={"csrf_token": token}).status_code == 302
    db.session.expire_all()
    assert first.administered_territory_ids == {organisation.territory.id} and second.administered_territory_ids == set()
    assert client.post(f"{base}/{second.id}/retirer", data={"csrf_token": token}).status_code == 404


def test_a_territory_admin_sees_the_territorys_figures_and_is_offered_a_second_factor(client, auth, factories):
    organisation = factories.OrganisationFactory()
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    elsewhere = factories.OrganisationFactory()
    assert not policies.may_use_second_factor(agent)
    name_territory_admin(agent, organisation.territory)
    assert policies.may_use_second_factor(agent)
    auth.login(agent)
    assert client.get(f"/statistiques/territoire/{organisation.territory.id}").status_code == 200
    assert client.get(f"/statistiques/territoire/{elsewhere.territory.id}").status_code == 404
    assert client.get(f"/admin/territoires/{elsewhere.territory.id}/organisations").status_code == 404


def test_a_territory_admin_reaches_no_rdv_or_family_of_an_organisation_they_do_not_work_in(app, client, auth,
                                                                                             factories, worlds):
    """The permission walk, for a territory administrator of the actor's territory: the neighbour organisation's
    administration pages are theirs (lapins.admin), nothing else of it is; nothing at all of another territory."""
    own, neighbour, stranger = worlds
    actor = factories.AgentFactory(organisation=own["organisation"], organisation__role=Role.AGENT)
    name_territory_admin(actor, own["territory"])
    token, bearer = _login(client, auth, actor), _api_token(actor)
    before = {"neighbour": _snapshot(neighbour), "stranger": _snapshot(stranger)}

    reached, allowed = [], 0
    for rule in _walked_rules(app):
        for others, label in ((neighbour, "autre organisation"), (stranger, "autre territoire")):
            for url in _urls(app, rule, others, skip_territory=others is neighbour):
                for method in _methods(rule):
                    # The organisations' administration pages, whichever room serves them (an agent's ICS link is
                    # revoked by lapins.calendars under /admin/organisations/...).
                    if others is neighbour and (rule.endpoint.startswith("admin.") or rule.rule.startswith("/admin/")):
                        if method == "GET":
                            allowed += client.get(url).status_code == 200
                        continue  # administering the neighbour organisation is this role's job
                    response = _open(client, rule, url, method, csrf=token, bearer=bearer)
                    if response.status_code not in (403, 404):
                        reached.append(f"{method} {url} ({label}) → {response.status_code}")
    assert reached == []
    assert allowed >= 8  # lieux, motifs, agents... of the neighbour organisation
    assert {"neighbour": _snapshot(neighbour), "stranger": _snapshot(stranger)} == before


@pytest.mark.parametrize("role", [Role.ADMIN, Role.AGENT])
def test_statistics_of_a_territory_stay_open_to_its_organisations_admins(client, auth, factories, role):
    organisation = factories.OrganisationFactory()
    agent = factories.AgentFactory(organisation=organisation, organisation__role=role)
    name_territory_admin(factories.AgentFactory(organisation=organisation), organisation.territory)
    auth.login(agent)
    expected = 200 if role == Role.ADMIN else 403
    assert client.get(f"/statistiques/territoire/{organisation.territory.id}").status_code == expected
