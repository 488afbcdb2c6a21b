"""Agents sign in with an OpenID Connect provider (ProConnect or a département's directory), tested against a real one
(npm oidc-provider on 127.0.0.1, tests/fakes/oidc.py): the whole flow through Authlib, each check refusing what it
must (state, replayed code, nonce, expired or wrongly signed ID token), account linking, a provider down, territories
requiring it, the second factor skipped only after the provider's MFA, logout at the provider."""
from __future__ import annotations

import html
import re
from datetime import timedelta
from contextlib import contextmanager
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pyotp
import pytest
from sqlalchemy import func, select

from lapins import create_app
from lapins.auth import second_factor
from lapins.infra.extensions import db
from lapins.models import Agent, AgentIdentity, Role, utcnow
from lapins.models.identities import OidcJitRule
from tests import factories
from tests.conftest import FreshContextClient, csrf_token_from
from tests.fakes.oidc import OidcProvider, path_of

PASSWORD = factories.PASSWORD
UNKNOWN_ACCOUNT = "Votre compte n'existe pas encore dans Lapins, demandez à votre administrateur"


@pytest.fixture()
def provider(oidc_provider_factory) -> OidcProvider:
    return oidc_provider_factory()


@pytest.fixture()
def make_app(tmp_path):
    built = []

    def make(provider: OidcProvider | None, **settings):
        oidc = provider.settings_for_lapins if provider is not None else {}
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'lapins.sqlite3'}",
                         WTF_CSRF_ENABLED=True, **{"OIDC_TRUST_EMAIL": False, "PUBLIC_URL": "http://localhost",
                                                    **oidc, **settings})
        app.test_client_class = FreshContextClient
        with app.app_context():
            db.create_all()
        built.append(app)
        return app

    yield make
    for app in built:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture()
def oidc_app(make_app, provider):
    """Lapins configured for the provider, over a SQLite file of its own."""
    return make_app(provider)


@contextmanager
def data_of(app):
    with app.app_context():
        yield
        db.session.remove()


def make_agent(app, email: str = "camille.martin@departement92.fr", role: Role = Role.AGENT, **territory) -> int:
    with data_of(app):
        organisation = factories.OrganisationFactory(**{f"territory__{k}": v for k, v in territory.items()})
        return factories.AgentFactory(email=email, organisation=organisation, organisation__role=role).id


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def signed_in(client) -> bool:
    return client.get("/usagers").status_code == 200


def replaced_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    query[name] = [value]
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True)))


def to_provider(client) -> str:
    """The sign-in button's link: Lapins' redirect to the provider's authorization endpoint."""
    started = client.get("/connexion/oidc")
    assert started.status_code == 302, text(started)
    return started.headers["Location"]


def sign_in(client, provider: OidcProvider, tamper_authorization=None, tamper_callback=None):
    """The person clicks the button, is signed in at the provider, and comes back to Lapins' callback."""
    authorization = to_provider(client)
    if tamper_authorization:
        authorization = tamper_authorization(authorization)
    callback = provider.drive(authorization)
    if tamper_callback:
        callback = tamper_callback(callback)
    return client.get(path_of(callback))


def test_the_first_sign_in_links_the_agent_by_email_then_by_the_providers_sub_only(oidc_app, provider):
    agent_id = make_agent(oidc_app)
    client = oidc_app.test_client()
    page = text(client.get("/connexion"))
    assert "Se connecter avec ProConnect" in page and 'href="/connexion/oidc"' in page

    authorization = to_provider(client)
    query = parse_qs(urlsplit(authorization).query)
    assert authorization.startswith(provider.issuer + "/auth?")
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]  # PKCE
    assert query["state"][0] and query["nonce"][0] and query["scope"] == ["openid email given_name usual_name"]
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    back = client.get(path_of(provider.drive(authorization)))
    assert back.status_code == 302 and back.headers["Location"] == "/"
    assert signed_in(client)
    with data_of(oidc_app):
        link = db.session.scalar(select(AgentIdentity))
        assert (link.agent_id, link.issuer, link.subject, link.linked_by) == (agent_id, provider.issuer,
                                                                               "sub-camille", "email")
        agent = db.session.get(Agent, agent_id)
        assert agent.last_sign_in_method == "oidc" and agent.last_signed_in_at is not None
        agent.email = "c.martin@departement92.fr"  # renamed in Lapins: the provider's sub still finds her
        db.session.commit()

    other = oidc_app.test_client()
    provider.browser.cookies.clear()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    assert sign_in(other, provider).status_code == 302 and signed_in(other)
    with data_of(oidc_app):
        assert db.session.scalar(select(func.count(AgentIdentity.id))) == 1


def test_the_button_shows_only_when_a_provider_is_configured(make_app):
    client = make_app(None).test_client()
    assert "Se connecter avec ProConnect" not in text(client.get("/connexion"))
    assert client.get("/connexion/oidc").status_code == 404
    assert client.get("/connexion/oidc/retour?code=x&state=y").status_code == 404


def test_the_button_label_and_acr_values_come_from_the_settings(make_app, provider):
    app = make_app(provider, OIDC_BUTTON_LABEL="Se connecter avec le Keycloak du 92", OIDC_ACR_VALUES="eidas1")
    client = app.test_client()
    assert "Se connecter avec le Keycloak du 92" in text(client.get("/connexion"))
    assert parse_qs(urlsplit(to_provider(client)).query)["acr_values"] == ["eidas1"]


def test_a_userinfo_answered_as_plain_json_works_too(make_app, oidc_provider_factory):
    provider = oidc_provider_factory(json_userinfo=True)
    app = make_app(provider)
    make_agent(app)
    client = app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    assert sign_in(client, provider).status_code == 302 and signed_in(client)


def refused(response) -> bool:
    return response.status_code == 400 and "La connexion n'a pas abouti" in text(response)


def test_a_wrong_state_is_refused(oidc_app, provider):
    make_agent(oidc_app)
    client = oidc_app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    assert refused(sign_in(client, provider, tamper_callback=lambda url: replaced_param(url, "state", "forged")))
    assert not signed_in(client)


def test_only_the_last_attempt_comes_back_and_abandoned_ones_do_not_swell_the_cookie(oidc_app, provider):
    make_agent(oidc_app)
    client = oidc_app.test_client()
    first = to_provider(client)
    for _ in range(10):  # the button clicked again and again
        last = to_provider(client)
    assert len(client.get_cookie("session").value) < 1000
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    assert refused(client.get(path_of(provider.drive(first))))
    provider.browser.cookies.clear()
    assert client.get(path_of(provider.drive(last))).status_code == 302 and signed_in(client)


def test_a_code_serves_once(oidc_app, provider):
    make_agent(oidc_app)
    client = oidc_app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    callback = path_of(provider.drive(to_provider(client)))
    before = client.get_cookie("session").value  # the state and PKCE verifier of this attempt
    assert client.get(callback).status_code == 302 and signed_in(client)

    replay = oidc_app.test_client()
    replay.set_cookie("session", before)  # the same browser state, the same code: the provider refuses it
    assert refused(replay.get(callback)) and not signed_in(replay)
    assert refused(client.get(callback))  # and the state is used up in the first browser


def test_an_id_token_with_another_nonce_is_refused(oidc_app, provider):
    make_agent(oidc_app)
    client = oidc_app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    response = sign_in(client, provider, tamper_authorization=lambda url: replaced_param(url, "nonce", "x" * 20))
    assert refused(response) and not signed_in(client)


def test_an_expired_id_token_is_refused(oidc_app, provider):
    make_agent(oidc_app)
    provider.settings(tokenClockOffsetSeconds=-3600)
    client = oidc_app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    assert refused(sign_in(client, provider)) and not signed_in(client)


def test_an_id_token_whose_signature_does_not_verify_with_the_published_keys_is_refused(oidc_app, provider):
    make_agent(oidc_app)
    provider.settings(decoyKeys=True)
    client = oidc_app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    assert refused(sign_in(client, provider)) and not signed_in(client)
    with data_of(oidc_app):
        assert db.session.scalar(select(func.count(AgentIdentity.id))) == 0


def test_an_unknown_email_gets_the_page_and_no_account(oidc_app, provider):
    make_agent(oidc_app)
    client = oidc_app.test_client()
    provider.login_as("sub-inconnu", email="dominique.petit@departement92.fr")
    response = sign_in(client, provider)
    assert response.status_code == 403 and UNKNOWN_ACCOUNT in text(response)
    assert "Se déconnecter de ProConnect" in text(response)
    assert not signed_in(client)
    with data_of(oidc_app):
        assert db.session.scalar(select(func.count(Agent.id))) == 1
        assert db.session.scalar(select(func.count(AgentIdentity.id))) == 0


def test_an_email_the_provider_did_not_verify_links_nothing(oidc_app, provider):
    make_agent(oidc_app)
    client = oidc_app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr", email_verified=False)
    response = sign_in(client, provider)
    assert response.status_code == 403 and "n'a pas confirmé votre adresse électronique" in text(response)
    assert not signed_in(client)


def test_a_trusted_provider_needs_no_email_verified(make_app, provider):
    app = make_app(provider, OIDC_TRUST_EMAIL=True)  # ProConnect sends no email_verified
    make_agent(app)
    client = app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr", email_verified=None)
    assert sign_in(client, provider).status_code == 302 and signed_in(client)


def test_a_territory_that_opted_in_creates_the_agent_of_its_domain_with_its_default_role(oidc_app, provider):
    with data_of(oidc_app):
        organisation = factories.OrganisationFactory(name="PMI Nanterre")
        db.session.add(OidcJitRule(territory_id=organisation.territory_id, email_domain="departement92.fr",
                                   organisation_id=organisation.id, role=Role.SECRETARY))
        db.session.commit()
        organisation_id = organisation.id
    client = oidc_app.test_client()
    provider.login_as("sub-dominique", email="Dominique.Petit@departement92.fr", given_name="Dominique",
                      usual_name="Petit")
    assert sign_in(client, provider).status_code == 302 and signed_in(client)
    with data_of(oidc_app):
        agent = db.session.scalar(select(Agent).where(Agent.email == "dominique.petit@departement92.fr"))
        assert (agent.first_name, agent.last_name) == ("Dominique", "Petit")
        assert agent.role_in(organisation_id) == Role.SECRETARY

    stranger = oidc_app.test_client()
    provider.browser.cookies.clear()
    provider.login_as("sub-autre", email="alex@autre-domaine.fr")
    assert sign_in(stranger, provider).status_code == 403


def test_a_deactivated_agent_is_refused_before_and_after_linking(oidc_app, provider):
    agent_id = make_agent(oidc_app)
    client = oidc_app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    assert signed_in(client) is False and sign_in(client, provider).status_code == 302  # linked
    with data_of(oidc_app):
        db.session.get(Agent, agent_id).active = False
        db.session.commit()
    for _ in range(2):  # linked, then unlinked
        other = oidc_app.test_client()
        provider.browser.cookies.clear()
        response = sign_in(other, provider)
        assert response.status_code == 403 and "Votre compte Lapins est désactivé" in text(response)
        assert not signed_in(other)
        with data_of(oidc_app):
            db.session.execute(AgentIdentity.__table__.delete())
            db.session.commit()


def log_in_with_password(client, email: str, password: str = PASSWORD):
    token = csrf_token_from(text(client.get("/connexion")))
    return client.post("/connexion", data={"email": email, "password": password, "csrf_token": token})


def test_a_provider_that_is_down_gets_a_clear_page_and_the_password_still_works(oidc_app, provider):
    make_agent(oidc_app)
    provider.stop()
    client = oidc_app.test_client()
    response = client.get("/connexion/oidc")
    assert response.status_code == 503 and "ProConnect ne répond pas pour le moment" in text(response)
    assert log_in_with_password(client, "camille.martin@departement92.fr").status_code == 302
    assert signed_in(client)


def test_a_territory_requiring_the_provider_refuses_the_password_of_its_agents(oidc_app, provider):
    make_agent(oidc_app, oidc_required=True)
    make_agent(oidc_app, email="autre@departement93.fr")
    client = oidc_app.test_client()
    response = log_in_with_password(client, "camille.martin@departement92.fr")
    assert response.status_code == 422 and not signed_in(client)
    assert "Votre département demande de se connecter avec ProConnect" in text(response)
    wrong = log_in_with_password(client, "camille.martin@departement92.fr", "pas-le-bon")
    assert "Votre département demande" not in text(wrong)  # told only to who knows the password
    assert log_in_with_password(oidc_app.test_client(), "autre@departement93.fr").status_code == 302

    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    assert sign_in(client, provider).status_code == 302 and signed_in(client)


def test_without_a_provider_configured_a_requiring_territory_keeps_the_password(make_app):
    app = make_app(None)
    make_agent(app, oidc_required=True)
    client = app.test_client()
    assert log_in_with_password(client, "camille.martin@departement92.fr").status_code == 302


def enrol_second_factor(app, agent_id: int) -> str:
    """Enrolled a minute ago (the code typed then is used up; the current one is not)."""
    with data_of(app):
        agent = db.session.get(Agent, agent_id)
        second_factor.start_enrolment(agent)
        secret = second_factor.pending_secret(agent)
        then = utcnow() - timedelta(minutes=1)
        assert second_factor.confirm_enrolment(agent, pyotp.TOTP(secret).at(then), now=then)
        return secret


def test_the_second_factor_is_skipped_only_when_the_provider_says_it_did_mfa(make_app, provider):
    app = make_app(provider, OIDC_MFA_AMR="mfa", OIDC_MFA_ACR="eidas2,eidas3")
    agent_id = make_agent(app, role=Role.ADMIN)
    secret = enrol_second_factor(app, agent_id)

    with_mfa = app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr", amr=["pwd", "otp", "mfa"])
    assert sign_in(with_mfa, provider).headers["Location"] == "/" and signed_in(with_mfa)

    with_eidas2 = app.test_client()
    provider.browser.cookies.clear()
    provider.login_as("sub-camille", amr=["pwd"], acr="eidas2")
    assert sign_in(with_eidas2, provider).headers["Location"] == "/"

    without = app.test_client()
    provider.browser.cookies.clear()
    provider.login_as("sub-camille", amr=["pwd"], acr="eidas1")
    response = sign_in(without, provider)
    assert response.headers["Location"] == "/connexion/code" and not signed_in(without)
    token = csrf_token_from(text(without.get("/connexion/code")))
    code = pyotp.TOTP(secret).now()
    assert without.post("/connexion/code", data={"code": code, "csrf_token": token}).status_code == 302
    assert signed_in(without)
    with data_of(app):
        assert db.session.get(Agent, agent_id).last_sign_in_method == "oidc"


def test_logging_out_signs_out_at_the_provider_too(oidc_app, provider):
    make_agent(oidc_app)
    client = oidc_app.test_client()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr")
    sign_in(client, provider)
    token = csrf_token_from(text(client.get("/usagers")))
    out = client.post("/deconnexion", data={"csrf_token": token})
    assert out.headers["Location"] == "/connexion/oidc/sortie"  # a page of Lapins: CSP's form-action is 'self'
    leaving = text(client.get("/connexion/oidc/sortie"))
    end_session = re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', leaving).group(1)
    assert f'href="{end_session}"' in leaving
    query = parse_qs(urlsplit(end_session).query)
    assert end_session.startswith(provider.issuer + "/session/end?")
    assert query["id_token_hint"][0].count(".") == 2
    assert query["post_logout_redirect_uri"] == ["http://localhost/connexion/oidc/deconnecte"]
    assert not signed_in(client)

    confirm = provider.browser.get(end_session, timeout=10)  # the provider asks « Se déconnecter ? »
    form = re.search(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', confirm.text, re.S)
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(2)))
    back = provider.drive(provider.issuer + form.group(1) if form.group(1).startswith("/") else form.group(1),
                          method="POST", data={**fields, "logout": "yes"})
    assert back.startswith("http://localhost/connexion/oidc/deconnecte")
    landing = client.get(path_of(back), follow_redirects=True)
    assert "Vous êtes déconnecté" in text(landing) and "et de ProConnect" in text(landing)

    # The provider's session ended: the next sign-in is a new login there (as someone else, here).
    make_agent(oidc_app, email="autre@departement92.fr")
    provider.login_as("sub-autre", email="autre@departement92.fr")
    again = oidc_app.test_client()
    assert sign_in(again, provider).status_code == 302
    with data_of(oidc_app):
        assert db.session.scalar(select(AgentIdentity.subject).order_by(AgentIdentity.id.desc()).limit(1)) == \
            "sub-autre"


def test_the_sign_in_routes_are_rate_limited_per_client_address(make_app, provider):
    app = make_app(provider, RATELIMIT_ENABLED=True, LOGIN_LIMITS_PER_IP="3/minute")
    client = app.test_client()
    assert [client.get("/connexion/oidc").status_code for _ in range(2)] == [302, 302]
    assert client.get("/connexion/oidc/retour?code=x&state=y").status_code == 400  # counted together
    limited = client.get("/connexion/oidc")
    assert limited.status_code == 429 and "Trop de tentatives de connexion" in text(limited)
    assert "<h1>Connexion agent</h1>" in text(limited)
