"""Signing in with ProConnect in a real browser, against a real OpenID Connect provider (tests/fakes/oidc.py): the
button, the trip to the provider and back, the agenda, then « Se déconnecter » that signs out at the provider too —
on a desktop screen and on a 390×844 phone."""
from __future__ import annotations

import threading

import pytest
from playwright.sync_api import expect
from werkzeug.serving import make_server

from lapins import create_app
from lapins.infra.extensions import db
from tests import factories
from tests.browser.conftest import PHONE, watch_errors

pytestmark = pytest.mark.browser


class _Later:
    """The WSGI app served, set once the provider (which must know the server's address) has started."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


@pytest.fixture()
def oidc_site(tmp_path, oidc_provider_factory):
    later = _Later()
    server = make_server("127.0.0.1", 0, later, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    provider = oidc_provider_factory(base)
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'lapins.sqlite3'}",
                     WTF_CSRF_ENABLED=True, OIDC_TRUST_EMAIL=True, PUBLIC_URL=base,
                     **provider.settings_for_lapins)
    with app.app_context():
        db.create_all()
        organisation = factories.OrganisationFactory(territory__oidc_required=True)
        factories.AgentFactory(email="camille.martin@departement92.fr", organisation=organisation, first_name="Camille",
                               last_name="Martin")
        db.session.remove()
    later.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    provider.login_as("sub-camille", email="camille.martin@departement92.fr", email_verified=None)
    yield base
    server.shutdown()
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_an_agent_signs_in_with_proconnect_and_signs_out_there_too(browser, oidc_site, screen):
    phone = screen == "phone"
    context = browser.new_context(base_url=oidc_site, locale="fr-FR",
                                  **({"viewport": PHONE, "is_mobile": True, "has_touch": True} if phone else
                                     {"viewport": {"width": 1366, "height": 900}}))
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors = watch_errors(page)
    try:
        page.goto("/connexion")
        button = page.get_by_role("link", name="Se connecter avec ProConnect")
        expect(button).to_be_visible()
        button.click()  # to the provider, which signs Camille in, and back
        expect(page.locator("h1")).to_have_text("Mon agenda")
        assert page.url.startswith(oidc_site)

        if phone:
            page.get_by_role("button", name="Menu").click()
            page.locator("#menu-principal").get_by_role("button", name="Se déconnecter").click()
        else:
            page.get_by_role("button", name="Se déconnecter").click()
        expect(page.get_by_role("heading", name="Se déconnecter du fournisseur d'identité ?")).to_be_visible()
        page.get_by_role("button", name="Oui, me déconnecter").click()
        expect(page.locator("h1")).to_have_text("Connexion agent")
        expect(page.get_by_text("et de ProConnect")).to_be_visible()
        page.goto("/usagers")
        expect(page.locator("h1")).to_have_text("Connexion agent")  # signed out of Lapins
    finally:
        context.close()
    assert not errors, f"JavaScript errors or refusals of the Content-Security-Policy: {errors}"
