"""Administrators see how each agent signs in (password, the OpenID Connect provider) and when last, and unlink an
agent's provider account: the link's row keeps who unlinked it and when, and the agent's sessions end."""
from __future__ import annotations

import html
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from lapins.models import Agent, AgentIdentity, Role
from tests.conftest import AuthActions, csrf_token_from

ISSUER = "https://auth.agentconnect.gouv.fr/api/v2"


def text(response) -> str:
    """The page as read: entities decoded, runs of spaces and line ends as one space."""
    return " ".join(html.unescape(response.get_data(as_text=True)).split())


@pytest.fixture()
def team(db, factories):
    organisation = factories.OrganisationFactory(name="PMI Lille", territory__timezone="Europe/Paris")
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN, last_name="Admin")
    linked = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, last_name="Liee",
                                    last_signed_in_at=datetime(2026, 12, 3, 8, 30, tzinfo=timezone.utc),
                                    last_sign_in_method="oidc")
    plain = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, last_name="Simple")
    db.session.add(AgentIdentity(agent_id=linked.id, issuer=ISSUER, subject="sub-liee", linked_by="email"))
    db.session.commit()
    return organisation, admin, linked, plain


def test_the_agents_page_shows_how_and_when_each_agent_last_signed_in(client, auth, team):
    organisation, admin, linked, plain = team
    auth.login(admin)
    page = text(client.get(f"/admin/organisations/{organisation.id}/agents"))
    row_linked = page[page.index(linked.full_name):page.index(plain.full_name)]
    assert "ProConnect ou mot de passe" in row_linked
    assert "Dernière connexion : jeudi 3 décembre 2026 à 09h30 (ProConnect)" in row_linked  # Paris time
    assert "Délier le compte ProConnect" in row_linked
    row_plain = page[page.index(plain.full_name):]
    assert "Mot de passe" in row_plain and "Jamais connecté" in row_plain and "Délier" not in row_plain


def unlink(client, organisation, agent):
    token = csrf_token_from(text(client.get(f"/admin/organisations/{organisation.id}/agents")))
    return client.post(f"/admin/organisations/{organisation.id}/agents/{agent.id}/identite/delier",
                       data={"csrf_token": token})


def test_an_admin_unlinks_the_account_the_row_records_who_and_when_and_the_sessions_end(app, db, client, auth, team):
    organisation, admin, linked, _ = team
    other_browser = app.test_client()
    AuthActions(other_browser).login(linked)
    assert other_browser.get("/usagers").status_code == 200
    auth.login(admin)
    response = unlink(client, organisation, linked)
    assert response.status_code == 302
    assert "est délié et ses sessions sont fermées" in text(client.get(response.headers["Location"]))
    db.session.expire_all()
    row = db.session.scalar(select(AgentIdentity))
    assert row.unlinked_by_id == admin.id and row.unlinked_at is not None
    assert other_browser.get("/usagers").status_code == 302  # signed out
    assert "Délier le compte" not in text(client.get(f"/admin/organisations/{organisation.id}/agents"))
    again = unlink(client, organisation, linked)
    assert "n'est lié à aucun compte" in text(client.get(again.headers["Location"]))


def test_only_administrators_of_the_agent_unlink(db, client, auth, factories, team):
    organisation, _, linked, plain = team
    auth.login(plain)
    token = csrf_token_from(text(client.get("/usagers")))
    url = f"/admin/organisations/{organisation.id}/agents/{linked.id}/identite/delier"
    assert client.post(url, data={"csrf_token": token}).status_code == 403
    elsewhere = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.ADMIN)
    auth.logout()
    auth.login(elsewhere)
    token = csrf_token_from(text(client.get("/usagers")))
    assert client.post(url, data={"csrf_token": token}).status_code == 404
    db.session.expire_all()
    assert db.session.scalar(select(AgentIdentity.unlinked_at)) is None
    assert db.session.get(Agent, linked.id).active


def test_the_territory_command_requires_the_provider_and_sets_just_in_time_rules(app, db, factories):
    organisation = factories.OrganisationFactory(name="PMI Nanterre", territory__number="92")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["territory", "oidc", "--number", "92", "--require", "--jit-domain",
                                 "@Departement92.fr", "--jit-organisation", "pmi nanterre", "--jit-role", "secretary"])
    assert result.exit_code == 0, result.output
    assert "connexion avec le fournisseur d'identité obligatoire" in result.output
    assert "@departement92.fr → PMI Nanterre (Secrétariat)" in result.output
    db.session.expire_all()
    assert organisation.territory.oidc_required
    other = factories.OrganisationFactory(name="PMI Créteil", territory__number="976")
    taken = runner.invoke(args=["territory", "oidc", "--number", "976", "--jit-domain", "departement92.fr",
                                "--jit-organisation", other.name])
    assert taken.exit_code != 0 and "déjà celui d'un autre département" in taken.output
    bad = runner.invoke(args=["territory", "oidc", "--number", "92", "--jit-domain", "pas un domaine",
                              "--jit-organisation", "PMI Nanterre"])
    assert bad.exit_code != 0 and "Domaine de messagerie invalide" in bad.output
    removed = runner.invoke(args=["territory", "oidc", "--number", "92", "--allow-password", "--remove-jit-domain",
                                  "departement92.fr"])
    assert removed.exit_code == 0 and "le mot de passe aussi" in removed.output and "→" not in removed.output
