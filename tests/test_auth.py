"""Agents sign in with their account; sessions expire; every agenda page needs a signed-in agent."""
from datetime import datetime, timedelta, timezone

from tests.conftest import csrf_token_from


def test_login_then_logout(client, auth, factories):
    agent = factories.AgentFactory(organisation=factories.OrganisationFactory())
    response = auth.login(agent)
    assert response.status_code == 302
    assert client.get("/usagers").status_code == 200
    auth.logout()
    assert client.get("/usagers").status_code == 302


def test_wrong_password_is_refused_with_a_french_message(client, auth, factories):
    agent = factories.AgentFactory(organisation=factories.OrganisationFactory())
    response = auth.login(agent, password="pas-le-bon-mot-de-passe")
    assert response.status_code == 422
    assert "Adresse électronique ou mot de passe incorrect." in response.get_data(as_text=True)


def test_deactivated_agent_cannot_log_in(client, auth, factories, db):
    agent = factories.AgentFactory(organisation=factories.OrganisationFactory(), active=False)
    assert auth.login(agent).status_code == 422


def test_login_without_csrf_token_is_refused(client, factories):
    agent = factories.AgentFactory(organisation=factories.OrganisationFactory())
    response = client.post("/connexion", data={"email": agent.email, "password": "motdepasse-solide-2026"})
    assert response.status_code == 400
    assert "formulaire a expiré" in response.get_data(as_text=True)


def test_login_does_not_redirect_to_another_site(client, factories):
    agent = factories.AgentFactory(organisation=factories.OrganisationFactory())
    token = csrf_token_from(client.get("/connexion").get_data(as_text=True))
    response = client.post("/connexion?next=https://evil.example/", data={
        "email": agent.email, "password": "motdepasse-solide-2026", "csrf_token": token})
    assert response.status_code == 302 and "evil" not in response.location


def test_pages_redirect_to_login_when_signed_out(client, db):
    for path in ("/", "/usagers", "/rdvs/a-renseigner", "/creneaux", "/rdvs/nouveau"):
        response = client.get(path)
        assert response.status_code == 302 and "/connexion" in response.location, path


def test_session_expires_after_inactivity(app, client, auth, factories):
    import time_machine

    agent = factories.AgentFactory(organisation=factories.OrganisationFactory())
    auth.login(agent)
    lifetime = app.permanent_session_lifetime
    with time_machine.travel(lifetime + timedelta(minutes=5)):
        assert client.get("/usagers").status_code == 302


def session_cookie_sent(response) -> bool:
    return any(value.startswith("session=") for value in response.headers.getlist("Set-Cookie"))


def test_the_session_cookie_is_signed_again_at_most_once_a_minute(client, auth, factories):
    import time_machine

    agent = factories.AgentFactory(organisation=factories.OrganisationFactory())
    with time_machine.travel(datetime(2026, 3, 23, 8, 0, tzinfo=timezone.utc), tick=False) as traveller:
        auth.login(agent)
        client.get("/usagers")  # the first page keeps a CSRF token in the session: its content changes
        traveller.shift(timedelta(seconds=30))
        assert not session_cookie_sent(client.get("/usagers"))
        traveller.shift(timedelta(seconds=31))
        assert session_cookie_sent(client.get("/usagers"))
        assert not session_cookie_sent(client.get("/usagers"))


def test_activity_keeps_the_session_alive_beyond_its_lifetime(app, client, auth, factories):
    import time_machine

    agent = factories.AgentFactory(organisation=factories.OrganisationFactory())
    lifetime = app.permanent_session_lifetime
    with time_machine.travel(datetime(2026, 3, 23, 8, 0, tzinfo=timezone.utc), tick=False) as traveller:
        auth.login(agent)
        for _ in range(3):
            traveller.shift(lifetime - timedelta(minutes=1))
            assert client.get("/usagers").status_code == 200
        traveller.shift(lifetime + timedelta(minutes=1))
        assert client.get("/usagers").status_code == 302


def test_unknown_page_gets_the_dsfr_404(client, db):
    response = client.get("/nimporte-quoi")
    assert response.status_code == 404
    assert "Page non trouvée" in response.get_data(as_text=True)
    assert "fr-header" in response.get_data(as_text=True)
