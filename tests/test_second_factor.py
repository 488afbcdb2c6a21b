"""Administrators may protect their account with a TOTP second factor: enrol from "Mes préférences" with a QR code,
then sign in with their password and the code of their application; a code serves once; recovery codes serve once."""
import re
from datetime import datetime, timedelta, timezone

import pyotp
import pytest
import time_machine
from sqlalchemy import text as sql

from lapins.infra import crypto
from lapins.auth import second_factor
from lapins.infra.extensions import db as _db
from lapins.models import Agent, Role
from tests.conftest import csrf_token_from

NOW = datetime(2026, 3, 23, 8, 0, 10, tzinfo=timezone.utc)  # 10 s into a 30 s time step
STEP = timedelta(seconds=30)


@pytest.fixture()
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def admin(factories):
    return factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.ADMIN)


def text(response) -> str:
    return response.get_data(as_text=True)


def reloaded(agent: Agent) -> Agent:
    """The agent as the requests left them (they ran in sessions of their own)."""
    _db.session.expire_all()
    return _db.session.get(Agent, agent.id)


def code_at(secret: str, instant: datetime) -> str:
    return pyotp.TOTP(secret).at(instant)


def enrolled(agent: Agent, at: datetime = NOW) -> tuple[str, list[str]]:
    """Enrols the agent through the services (the pages are tested once, below): their secret and recovery codes."""
    second_factor.start_enrolment(agent)
    secret = second_factor.pending_secret(agent)
    recovery_codes = second_factor.confirm_enrolment(agent, code_at(secret, at - 2 * STEP), now=at - 2 * STEP)
    assert recovery_codes
    return secret, recovery_codes


def post_code(client, code: str, path: str = "/connexion/code", field: str = "code"):
    token = csrf_token_from(text(client.get(path)))
    return client.post(path, data={field: code, "csrf_token": token})


def test_an_admin_enrols_from_the_preferences_page_then_signs_in_with_password_and_code(client, auth, admin,
                                                                                        frozen_time):
    auth.login(admin)
    page = client.get("/preferences")
    assert "Double authentification" in text(page) and "Activer la double authentification" in text(page)
    started = client.post("/preferences/double-authentification/activer",
                          data={"start-csrf_token": csrf_token_from(text(page))})
    assert started.status_code == 302 and started.location.endswith("/preferences/double-authentification")

    enrolment = client.get("/preferences/double-authentification")
    html = text(enrolment)
    assert "<svg" in html and "class=\"segno\"" in html  # the QR code is drawn by the server
    assert "<script src=\"http" not in html and "https://" not in html.split("<main", 1)[1]  # no third party
    secret = re.search(r'<code id="totp-secret">([A-Z2-7 ]+)</code>', html).group(1).replace(" ", "")

    refused = post_code(client, "000000" if code_at(secret, NOW) != "000000" else "111111",
                        "/preferences/double-authentification")
    assert refused.status_code == 422 and "Ce code ne correspond pas" in text(refused)
    assert not reloaded(admin).second_factor_enabled

    confirmed = post_code(client, code_at(secret, NOW), "/preferences/double-authentification")
    assert confirmed.status_code == 200
    recovery_codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", text(confirmed))
    assert len(recovery_codes) == 8 and len(set(recovery_codes)) == 8
    assert "Activée" in text(client.get("/preferences"))

    auth.logout()
    frozen_time.shift(STEP)
    password_step = auth.login(admin)
    assert password_step.status_code == 302 and password_step.location.endswith("/connexion/code")
    assert client.get("/usagers").status_code == 302  # the password alone signs no one in
    signed_in = post_code(client, code_at(secret, NOW + STEP))
    assert signed_in.status_code == 302
    assert client.get("/usagers").status_code == 200


def test_the_secret_is_kept_encrypted_in_the_database(app, db, admin, frozen_time):
    secret, _ = enrolled(admin)
    stored = db.session.execute(sql("SELECT totp_secret FROM agents WHERE id = :id"), {"id": admin.id}).scalar_one()
    assert secret not in stored and crypto.decrypt(stored) == secret
    codes = db.session.execute(sql("SELECT code_hash FROM agent_recovery_codes")).scalars().all()
    assert len(codes) == 8 and all(len(code) == 64 for code in codes)


def test_a_wrong_code_is_refused_in_french_and_signs_no_one_in(client, auth, admin, frozen_time):
    secret, _ = enrolled(admin)
    auth.login(admin)
    wrong = "123456" if code_at(secret, NOW) != "123456" else "654321"
    response = post_code(client, wrong)
    assert response.status_code == 422 and "Code incorrect ou expiré" in text(response)
    assert client.get("/usagers").status_code == 302


def test_codes_of_the_neighbouring_time_steps_are_accepted_but_not_further_ones(client, auth, factories, frozen_time):
    organisation = factories.OrganisationFactory()
    for offset, accepted in ((-1, True), (1, True), (-2, False), (2, False)):
        agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
        secret, _ = enrolled(agent, at=NOW - 3 * STEP)  # its enrolment code lies well before the codes tried
        auth.login(agent)
        response = post_code(client, code_at(secret, NOW + offset * STEP))
        assert (response.status_code == 302) is accepted, offset
        if accepted:
            auth.logout()


def test_a_code_serves_once(client, auth, admin, frozen_time):
    secret, _ = enrolled(admin)
    auth.login(admin)
    code = code_at(secret, NOW)
    assert post_code(client, code).status_code == 302
    auth.logout()
    auth.login(admin)
    reused = post_code(client, code)
    assert reused.status_code == 422 and "Ce code a déjà servi" in text(reused)
    earlier = post_code(client, code_at(secret, NOW - STEP))  # still in the window, but older than the one used
    assert earlier.status_code == 422
    frozen_time.shift(STEP)
    assert post_code(client, code_at(secret, NOW + STEP)).status_code == 302


def test_the_code_typed_to_enrol_does_not_sign_in(client, auth, admin, frozen_time):
    second_factor.start_enrolment(admin)
    secret = second_factor.pending_secret(admin)
    assert second_factor.confirm_enrolment(admin, code_at(secret, NOW), now=NOW)
    auth.login(admin)
    assert post_code(client, code_at(secret, NOW)).status_code == 422


def test_a_recovery_code_signs_in_once(client, auth, admin, frozen_time):
    _, recovery_codes = enrolled(admin)
    auth.login(admin)
    used = post_code(client, recovery_codes[3].upper().replace("-", " "))  # typed loosely from the paper
    assert used.status_code == 302
    assert "Il vous en reste 7" in text(client.get("/usagers", follow_redirects=True))
    auth.logout()
    auth.login(admin)
    again = post_code(client, recovery_codes[3])
    assert again.status_code == 422 and "Code incorrect" in text(again)
    assert post_code(client, recovery_codes[4]).status_code == 302


def test_the_code_step_expires_and_asks_for_the_password_again(client, auth, admin, frozen_time):
    secret, _ = enrolled(admin)
    auth.login(admin)
    frozen_time.shift(timedelta(minutes=6))
    response = client.get("/connexion/code")
    assert response.status_code == 302 and response.location.endswith("/connexion")
    assert "saisissez à nouveau votre mot de passe" in text(client.get("/connexion"))


def test_the_code_page_without_a_password_leads_to_the_login(client, db):
    response = client.get("/connexion/code")
    assert response.status_code == 302 and response.location.endswith("/connexion")


def test_disabling_asks_for_a_current_code(client, auth, admin, frozen_time):
    secret, _ = enrolled(admin)
    auth.login(admin)
    post_code(client, code_at(secret, NOW))
    frozen_time.shift(STEP)
    page = text(client.get("/preferences"))
    token = csrf_token_from(page)
    wrong = client.post("/preferences/double-authentification/desactiver",
                        data={"disable-code": "000000" if code_at(secret, NOW + STEP) != "000000" else "111111",
                              "disable-csrf_token": token})
    assert wrong.status_code == 422 and "Code incorrect" in text(wrong)
    disabled = client.post("/preferences/double-authentification/desactiver",
                           data={"disable-code": code_at(secret, NOW + STEP), "disable-csrf_token": token})
    assert disabled.status_code == 302
    assert "est désactivée" in text(client.get("/preferences"))
    agent = reloaded(admin)
    assert not agent.second_factor_enabled and agent.totp_secret is None and not agent.recovery_codes
    auth.logout()
    assert auth.login(admin).location.endswith("/")  # the password alone again


def test_an_agent_who_administers_nothing_cannot_enrol(client, auth, factories):
    for role in (Role.AGENT, Role.SECRETARY):
        agent = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=role)
        auth.login(agent)
        page = client.get("/preferences")
        assert "Double authentification" not in text(page)
        token = csrf_token_from(text(page))
        assert client.post("/preferences/double-authentification/activer",
                           data={"start-csrf_token": token}).status_code == 403
        assert client.get("/preferences/double-authentification").status_code == 403
        assert client.post("/preferences/double-authentification",
                           data={"code": "123456", "csrf_token": token}).status_code == 403
        assert reloaded(agent).totp_secret is None
        auth.logout()


def test_enrolling_needs_the_csrf_token(client, auth, admin):
    auth.login(admin)
    assert client.post("/preferences/double-authentification/activer").status_code == 400
    assert reloaded(admin).totp_secret is None


def test_a_changed_encryption_key_leaves_the_recovery_codes(app, client, auth, admin, frozen_time):
    secret, recovery_codes = enrolled(admin)
    app.config["LAPINS_ENCRYPTION_KEY"] = "another key than the one the secret was encrypted with"
    try:
        auth.login(admin)
        response = post_code(client, code_at(secret, NOW))
        assert response.status_code == 422 and "code de secours" in text(response)
        assert post_code(client, recovery_codes[0]).status_code == 302
    finally:
        app.config["LAPINS_ENCRYPTION_KEY"] = None


def test_encryption_keys_rotate(app):
    app.config["LAPINS_ENCRYPTION_KEY"] = "old key"
    try:
        token = crypto.encrypt("JBSWY3DPEHPK3PXP")
        app.config["LAPINS_ENCRYPTION_KEY"] = "new key, old key"
        assert crypto.decrypt(token) == "JBSWY3DPEHPK3PXP"
        rotated = crypto.reencrypt(token)
        app.config["LAPINS_ENCRYPTION_KEY"] = "new key"
        assert crypto.decrypt(rotated) == "JBSWY3DPEHPK3PXP"
        with pytest.raises(crypto.InvalidToken):
            crypto.decrypt(token)
        with pytest.raises(crypto.InvalidToken):
            crypto.decrypt(rotated[:-4] + "AAAA")
    finally:
        app.config["LAPINS_ENCRYPTION_KEY"] = None


def test_second_factor_leaves_no_secret_or_code_in_the_logs(client, auth, admin, frozen_time, caplog):
    caplog.set_level("DEBUG")
    secret, recovery_codes = enrolled(admin)
    auth.login(admin)
    code = code_at(secret, NOW)
    post_code(client, code)
    logged = caplog.text
    assert secret not in logged and code not in logged and admin.email not in logged
    assert not any(recovery_code in logged for recovery_code in recovery_codes)
