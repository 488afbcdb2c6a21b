"""A territory's administrator sets, on the territory settings page, how its agents sign in when the instance has an
OpenID Connect provider: the provider only, and the e-mail domains whose agents are created at their first sign-in."""
from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from lapins.models import OidcJitRule, Role
from tests.conftest import csrf_token_from
from tests.test_territory_settings import as_admin, clinic, clock, token_of, url  # noqa: F401 — its fixtures


@pytest.fixture()
def provider_configured(app, monkeypatch):
    monkeypatch.setitem(app.config, "OIDC_ISSUER", "http://127.0.0.1:9/oidc")
    monkeypatch.setitem(app.config, "OIDC_CLIENT_ID", "lapins")


def page(response) -> str:
    return " ".join(html.unescape(response.get_data(as_text=True)).split())


def test_the_section_shows_only_with_a_provider(as_admin, clinic, app, monkeypatch):
    assert "Connexion des agents avec" not in page(as_admin.get(url(clinic.territory)))
    assert as_admin.post(url(clinic.territory, "/connexion"),
                         data={"csrf_token": token_of(as_admin, clinic.territory)}).status_code == 404
    monkeypatch.setitem(app.config, "OIDC_ISSUER", "http://127.0.0.1:9/oidc")
    monkeypatch.setitem(app.config, "OIDC_CLIENT_ID", "lapins")
    assert "Connexion des agents avec ProConnect" in page(as_admin.get(url(clinic.territory)))


def test_an_admin_requires_the_provider_and_adds_then_removes_a_domain(as_admin, clinic, db, provider_configured):
    territory = clinic.territory
    response = as_admin.post(url(territory, "/connexion"), data={
        "csrf_token": token_of(as_admin, territory), "required": "y", "jit_domain": "@Departement92.FR",
        "jit_organisation": clinic.organisation.name, "jit_role": Role.SECRETARY.value})
    assert response.status_code == 302
    shown = page(as_admin.get(url(territory)))
    assert "Connexion des agents enregistrée." in shown and "@departement92.fr" in shown
    db.session.expire_all()
    assert territory.oidc_required
    rule = db.session.scalar(select(OidcJitRule))
    assert (rule.email_domain, rule.organisation_id, rule.role) == ("departement92.fr", clinic.organisation.id,
                                                                    Role.SECRETARY)
    elsewhere = as_admin.post(url(territory, "/connexion/supprimer"),
                              data={"csrf_token": token_of(as_admin, territory), "domain": "autre.fr"})
    assert elsewhere.status_code == 404
    removed = as_admin.post(url(territory, "/connexion/supprimer"),
                            data={"csrf_token": token_of(as_admin, territory), "domain": "departement92.fr"})
    assert removed.status_code == 302
    assert db.session.scalar(select(OidcJitRule)) is None


@pytest.mark.parametrize("fields, message", [
    ({"jit_domain": "pas un domaine"}, "Indiquez un domaine de messagerie"),
    ({"jit_domain": "departement92.fr", "jit_organisation": ""}, "Choisissez le service"),
    ({"jit_domain": "departement92.fr", "jit_organisation": "Un service inventé"}, "Choisissez le service"),
    ({"jit_domain": "departement92.fr", "jit_role": "superadmin"}, "Choisissez un rôle"),
])
def test_bad_input_is_refused_on_the_form_and_nothing_is_stored(as_admin, clinic, db, provider_configured, fields,
                                                                message):
    data = {"csrf_token": token_of(as_admin, clinic.territory), "required": "y",
            "jit_organisation": clinic.organisation.name, "jit_role": Role.AGENT.value, **fields}
    response = as_admin.post(url(clinic.territory, "/connexion"), data=data)
    assert response.status_code == 422 and message in page(response)
    db.session.expire_all()
    assert not clinic.territory.oidc_required and db.session.scalar(select(OidcJitRule)) is None


def test_a_domain_of_another_territory_is_refused(as_admin, clinic, db, factories, provider_configured):
    other = factories.OrganisationFactory()
    db.session.add(OidcJitRule(territory_id=other.territory_id, email_domain="departement92.fr",
                               organisation_id=other.id, role=Role.AGENT))
    db.session.commit()
    response = as_admin.post(url(clinic.territory, "/connexion"), data={
        "csrf_token": token_of(as_admin, clinic.territory), "jit_domain": "departement92.fr",
        "jit_organisation": clinic.organisation.name, "jit_role": Role.AGENT.value})
    assert response.status_code == 422 and "déjà celui d'un autre département" in page(response)


def test_an_agent_who_is_not_an_administrator_cannot(client, auth, clinic, db, factories, provider_configured):
    agent = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    auth.login(agent)
    token = csrf_token_from(client.get("/usagers").get_data(as_text=True))  # the session's token, from any page
    response = client.post(url(clinic.territory, "/connexion"), data={"csrf_token": token, "required": "y"})
    assert response.status_code == 403
    db.session.expire_all()
    assert not clinic.territory.oidc_required
