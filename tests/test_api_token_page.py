"""Administrators issue and revoke their own API tokens on a page: shown once, usable at once, revoked at once."""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from lapins.api.openapi import PREFIX
from lapins.models import ApiToken, Role
from tests.conftest import csrf_token_from

PAGE = "/preferences/jetons"


@pytest.fixture()
def people(factories, db):
    organisation = factories.OrganisationFactory()
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    colleague = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.MotifFactory(organisation=organisation)
    db.session.commit()
    return admin, colleague, agent


def issue(client, label: str):
    return client.post(PAGE, data={"csrf_token": csrf_token_from(client.get(PAGE).get_data(as_text=True)),
                                   "label": label})


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_an_admin_issues_a_token_shown_once_that_works_and_revokes_it(client, auth, people):
    admin, _, _ = people
    auth.login(admin)
    assert "gérer vos jetons d'accès" in text(client.get("/preferences"))
    issued = issue(client, "  SI PMI  ")
    assert issued.status_code == 201
    token = re.search(r'<code id="jeton-cree">(lap_[\w-]+)</code>', issued.get_data(as_text=True)).group(1)
    assert token not in "".join(issued.headers.getlist("Set-Cookie"))  # not in the session, nor a flash message
    api = {"Authorization": f"Bearer {token}"}
    assert client.get(f"{PREFIX}/motifs", headers=api).status_code == 200

    listing = text(client.get(PAGE))
    assert token not in listing and f"{token[:12]}…" in listing and "SI PMI" in listing

    revoked = client.post("/preferences/jetons/revoquer", data={
        "csrf_token": csrf_token_from(listing), "prefix": token[:12]})
    assert revoked.status_code == 302
    assert "révoqué : il ne donne plus accès à l'API" in text(client.get(PAGE))
    assert client.get(f"{PREFIX}/motifs", headers=api).status_code == 401


def test_an_admin_cannot_revoke_a_colleagues_token(client, auth, people, db):
    from lapins.auth import tokens

    admin, colleague, _ = people
    row, token = tokens.create(colleague, "Prise de rendez-vous en ligne")
    auth.login(admin)
    assert row.prefix not in text(client.get(PAGE))  # nor sees it
    answer = client.post("/preferences/jetons/revoquer", data={
        "csrf_token": csrf_token_from(client.get(PAGE).get_data(as_text=True)), "prefix": row.prefix})
    assert answer.status_code == 302 and "n'est pas à vous" in text(client.get(PAGE))
    assert client.get(f"{PREFIX}/motifs", headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize("label, message", [("", "Donnez un libellé au jeton"), ("x" * 81, "80 caractères au plus.")])
def test_a_bad_label_gets_a_french_message_and_no_token(client, auth, people, db, label, message):
    admin, _, _ = people
    auth.login(admin)
    answer = issue(client, label)
    assert answer.status_code == 422 and message in text(answer)
    assert db.session.scalar(select(func.count(ApiToken.id))) == 0


def test_agents_and_secretaries_get_no_token_page(client, auth, people, db):
    _, _, agent = people
    auth.login(agent)
    assert client.get(PAGE).status_code == 403
    assert "gérer vos jetons" not in text(client.get("/preferences"))
    token = csrf_token_from(client.get("/preferences").get_data(as_text=True))
    assert client.post(PAGE, data={"csrf_token": token, "label": "Mon outil"}).status_code == 403
    assert db.session.scalar(select(func.count(ApiToken.id))) == 0
