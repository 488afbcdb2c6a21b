"""Sessions that can be ended (architecture issue 13.4).

« Se déconnecter », a new password, a second factor put in force or taken off, a deactivation and an administrator's
« Fermer toutes ses sessions » end every session the agent has open: each session's signed-in id is the agent's id and
session generation (Agent.get_id), and each of these draws a new generation (Agent.end_sessions). Here a second
browser holds the old cookie, and every kind of route refuses it from the next request: a page, the events feed (its
fast path declines it, and Flask asks for the login page), the agenda's JSON API. A cookie from before the
generations (a plain id) asks for the login page too, never an error.
"""
from __future__ import annotations

import re
from datetime import date

import pytest
import time_machine

from lapins.auth import accounts
from lapins.infra.extensions import db as _db
from lapins.models import Agent, Rdv, Role
from tests.conftest import AuthActions, FreshContextClient, csrf_token_from
from tests.test_calendar import NOW, PARIS, Clinic, local, move
from tests.test_fast_feed import WEEK, fast_and_flask, request_of
from tests.test_second_factor import code_at, enrolled, post_code

NEW_PASSWORD = "Trois-lapins-et-un-renard-2026"


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


class Office:
    """Claire's agenda with an rdv; Hélène, an administrator of the organisation, whose sessions are ended; Marc,
    another administrator, who ends them from the administration."""

    def __init__(self, app, factories):
        self.app = app
        self.clinic = Clinic(factories)
        self.rdv = self.clinic.rdv(local(PARIS, date(2026, 3, 24), 9, 30))
        organisation = self.clinic.organisation
        self.target = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN,
                                             first_name="Hélène", last_name="Roux")
        self.admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN,
                                            first_name="Marc", last_name="Petit")

    def browser(self):
        return self.app.test_client()

    def signed_in(self, agent: Agent, recovery_code: str | None = None):
        """A browser where the agent has signed in (with a recovery code as second factor, if given)."""
        browser = self.browser()
        response = AuthActions(browser).login(agent)
        if recovery_code is not None:
            assert response.location.endswith("/connexion/code")
            response = post_code(browser, recovery_code)
        assert response.status_code == 302 and not response.location.startswith("/connexion")
        return browser

    def feed_path(self) -> str:
        return f"/agenda/api/agents/{self.clinic.agent.id}/evenements"

    def works(self, browser) -> None:
        """The session opens a page, the feed (through the fast path) and the agenda's JSON API."""
        page = browser.get("/usagers")
        assert page.status_code == 200
        environ = request_of(browser, self.clinic.agent.id)
        fast, status, _, _ = fast_and_flask(self.app, environ, self.clinic.agent.id)
        assert fast is not None and status == "200 OK"
        token = csrf_token_from(page.get_data(as_text=True))
        moved = move(browser, self.rdv.id, {"starts_at": "2026-03-24T10:30:00"}, token)
        assert moved.status_code == 200, moved.get_data(as_text=True)
        assert move(browser, self.rdv.id, {"starts_at": "2026-03-24T09:30:00"}, token).status_code == 200

    def refused(self, browser, token: str | None) -> None:
        """Each kind of route asks for the login page; the fast path hands the feed to Flask; nothing moves."""
        page = browser.get("/usagers")
        assert page.status_code == 302 and page.location.startswith("/connexion")
        environ = request_of(browser, self.clinic.agent.id)
        fast, status, headers, _ = fast_and_flask(self.app, environ, self.clinic.agent.id)
        assert fast is None and status == "302 FOUND" and headers["Location"].startswith("/connexion")
        answer = browser.get(self.feed_path(), query_string=WEEK)
        assert answer.status_code == 302 and answer.location.startswith("/connexion")
        refused = move(browser, self.rdv.id, {"starts_at": "2026-03-24T11:00:00"}, token)
        assert refused.status_code == 302 and refused.location.startswith("/connexion")
        _db.session.expire_all()
        assert _db.session.get(Rdv, self.rdv.id).starts_at == local(PARIS, date(2026, 3, 24), 9, 30)


@pytest.fixture()
def office(app, factories):
    app.test_client_class = FreshContextClient  # each request in a context of its own, as in production
    return Office(app, factories)


def token_of(browser) -> str:
    return csrf_token_from(browser.get("/usagers").get_data(as_text=True))


# Each revocation, performed as a person would; `acting` is the browser it is performed from, None when it is not
# one of the agent's own sessions. The agent's sessions opened before it are all ended.

def log_out(office: Office, acting) -> None:
    answer = AuthActions(acting).logout()
    assert answer.status_code == 302
    page = acting.get(answer.location).get_data(as_text=True)
    assert "sur cet appareil comme sur tous ceux où votre session était ouverte" in page


def reset_password(office: Office, acting) -> None:
    anonymous = office.browser()
    path = accounts.RESET_PATH + accounts.make_token(office.target, "reset")
    token = csrf_token_from(anonymous.get(path).get_data(as_text=True))
    answer = anonymous.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "csrf_token": token})
    assert answer.status_code == 302 and answer.location.endswith("/connexion")


def enrol_second_factor(office: Office, acting) -> None:
    page = acting.get("/preferences").get_data(as_text=True)
    acting.post("/preferences/double-authentification/activer", data={"start-csrf_token": csrf_token_from(page)})
    html = acting.get("/preferences/double-authentification").get_data(as_text=True)
    secret = re.search(r'<code id="totp-secret">([A-Z2-7 ]+)</code>', html).group(1).replace(" ", "")
    confirmed = post_code(acting, code_at(secret, NOW), "/preferences/double-authentification")
    assert confirmed.status_code == 200 and "Vos autres sessions ouvertes" in confirmed.get_data(as_text=True)


def disable_second_factor(office: Office, acting) -> None:
    page = acting.get("/preferences").get_data(as_text=True)
    answer = acting.post("/preferences/double-authentification/desactiver",
                         data={"disable-code": office.recovery_codes[2], "disable-csrf_token": csrf_token_from(page)})
    assert answer.status_code == 302
    assert "Vos autres sessions ouvertes sont fermées" in acting.get(answer.location).get_data(as_text=True)


def deactivate(office: Office, acting) -> None:
    path = f"/admin/organisations/{office.clinic.organisation.id}/agents/{office.target.id}/activation"
    answer = acting.post(path, data={"csrf_token": token_of(acting)})
    assert answer.status_code == 302


def end_sessions_from_the_administration(office: Office, acting) -> None:
    page = acting.get(f"/admin/organisations/{office.clinic.organisation.id}/agents").get_data(as_text=True)
    path = f"/admin/organisations/{office.clinic.organisation.id}/agents/{office.target.id}/sessions"
    assert f'action="{path}"' in page and "Fermer toutes ses sessions" in page
    answer = acting.post(path, data={"csrf_token": csrf_token_from(page)})
    assert answer.status_code == 302
    assert "Toutes les sessions de Hélène Roux sont fermées" in acting.get(answer.location).get_data(as_text=True)


# (revocation, who performs it, whether that browser stays signed in, whether the agent can sign in again)
REVOCATIONS = {
    "logout": (log_out, "self", False, True),
    "password reset": (reset_password, None, None, True),
    "second factor put in force": (enrol_second_factor, "self", True, True),
    "second factor taken off": (disable_second_factor, "self", True, True),
    "deactivation": (deactivate, "admin", True, False),
    "« Fermer toutes ses sessions »": (end_sessions_from_the_administration, "admin", True, True),
}


@pytest.mark.parametrize("revocation", REVOCATIONS)
def test_every_revocation_ends_the_agents_other_sessions_on_every_route(office, revocation):
    revoke, performer, performer_stays, can_sign_in_again = REVOCATIONS[revocation]
    codes: list[str | None] = [None, None]
    if revocation == "second factor taken off":
        _, office.recovery_codes = enrolled(office.target)
        codes = office.recovery_codes[:2]
    victim = office.signed_in(office.target, codes[0])
    office.works(victim)
    token = token_of(victim)
    acting = {"self": lambda: office.signed_in(office.target, codes[1]),
              "admin": lambda: office.signed_in(office.admin), None: lambda: None}[performer]()

    revoke(office, acting)

    office.refused(victim, token)
    if acting is not None:
        assert (acting.get("/usagers").status_code == 200) is performer_stays
        if performer_stays:
            office.works(acting)
    if can_sign_in_again:
        password = NEW_PASSWORD if revocation == "password reset" else "motdepasse-solide-2026"
        again = office.browser()
        signed = AuthActions(again).login(office.target, password)
        if signed.location.endswith("/connexion/code"):  # the second factor just put in force
            return
        office.works(again)


def test_a_reactivated_agent_does_not_get_their_old_sessions_back(office):
    victim = office.signed_in(office.target)
    token = token_of(victim)
    admin = office.signed_in(office.admin)
    deactivate(office, admin)
    deactivate(office, admin)  # the same button reactivates
    _db.session.expire_all()
    assert _db.session.get(Agent, office.target.id).active
    office.refused(victim, token)


def test_an_administrator_cannot_end_their_own_sessions_from_the_administration(office):
    admin = office.signed_in(office.admin)
    page = admin.get(f"/admin/organisations/{office.clinic.organisation.id}/agents").get_data(as_text=True)
    own = f"/admin/organisations/{office.clinic.organisation.id}/agents/{office.admin.id}/sessions"
    assert f'action="{own}"' not in page
    answer = admin.post(own, data={"csrf_token": csrf_token_from(page)})
    assert answer.status_code == 302
    assert "utilisez « Se déconnecter »" in admin.get(answer.location).get_data(as_text=True)
    assert admin.get("/usagers").status_code == 200


def test_ending_sessions_is_for_the_organisations_administrators(office, factories):
    """Through lapins.policies like the page's other actions: 403 for a colleague who is not an administrator, 404
    for an administrator of another organisation; nothing ended."""
    outsider = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.ADMIN)
    victim = office.signed_in(office.target)
    path = f"/admin/organisations/{office.clinic.organisation.id}/agents/{office.target.id}/sessions"
    for agent, status in ((office.clinic.agent, 403), (outsider, 404)):
        browser = office.signed_in(agent)
        assert browser.post(path, data={"csrf_token": token_of(browser)}).status_code == status
    admin = office.signed_in(office.admin)
    assert admin.post(path).status_code == 400  # no CSRF token
    office.works(victim)


def test_a_cookie_from_before_session_generations_asks_to_sign_in_again(office):
    """A session opened before the upgrade holds the agent's plain id: the login page, on every kind of route."""
    browser = office.browser()
    serializer = office.app.session_interface.get_signing_serializer(office.app)
    browser.set_cookie("session", serializer.dumps({"_user_id": str(office.target.id), "_fresh": True,
                                                     "_permanent": True}))
    office.refused(browser, None)
    assert browser.get("/connexion").status_code == 200  # the login form, not a redirection loop
    AuthActions(browser).login(office.target)
    office.works(browser)
