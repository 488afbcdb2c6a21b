"""Every answer carries Lapins' security headers (lapins.infra.security): pages, JSON, files, errors."""
from __future__ import annotations

import re

from lapins.infra.security import HEADERS


def test_pages_json_files_and_errors_carry_the_security_headers(client, auth, factories, db):
    agent = factories.AgentFactory(organisation=factories.OrganisationFactory())
    db.session.commit()
    anonymous = [client.get("/connexion"), client.get("/static/lapins.css"), client.get("/page-qui-n-existe-pas"),
                 client.get("/api/v1/openapi.json")]
    auth.login(agent)
    signed_in = [client.get(f"/agenda/agents/{agent.id}"),
                 client.get(f"/agenda/api/agents/{agent.id}/evenements",
                            query_string={"start": "2026-03-23T00:00:00", "end": "2026-03-30T00:00:00"}),
                 client.get("/agenda/api/agents/2147483647/evenements")]
    assert [response.status_code for response in anonymous + signed_in] == [200, 200, 404, 200, 200, 200, 404]
    for response in anonymous + signed_in:
        for name, value in HEADERS:
            assert response.headers[name] == value, (response.request.path, name)
    policy = dict(HEADERS)["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy


# --- No personal data in a shared PC's browser cache -------------------------------------------------------------

def test_a_usagers_file_and_the_agenda_stay_out_of_the_browser_cache(client, auth, factories, db):
    """The attack: an agent signs out of a shared PC; the next person reads the usager's file in the browser's cache
    (or with Back)."""
    organisation = factories.OrganisationFactory()
    agent = factories.AgentFactory(organisation=organisation)
    usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                     last_name="Payet")
    db.session.commit()
    auth.login(agent)
    page = client.get(f"/usagers/{usager.id}")
    assert page.status_code == 200 and "Payet" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    feed = client.get(f"/agenda/api/agents/{agent.id}/evenements",
                      query_string={"start": "2026-03-23T00:00:00", "end": "2026-03-30T00:00:00"})
    assert feed.status_code == 200 and feed.headers["Cache-Control"] == "no-store"


def test_every_route_but_the_assets_says_no_store(app, client, auth, factories, db):
    """Walks the URL map, so that a page added later is covered: signed in with ids of the agent's own objects (so
    that most pages answer 200), then signed out. Whatever the status, only static and vendor files may be cached."""
    from lapins.notifications.links import rdv_token
    from tests.test_permission_walk import _world

    own = _world(factories, "971", "Guadeloupe")("Mienne")
    ids = {f"{name}_id": thing.id for name, thing in own.items()} | {"token": rdv_token(own["rdv"].id)}
    paths = sorted({re.sub(r"<(?:\w+:)?(\w+)>", lambda match: str(ids.get(match.group(1), 1)), rule.rule)
                    for rule in app.url_map.iter_rules() if "GET" in rule.methods})
    assert len(paths) > 60

    def walk() -> dict[str, int]:
        statuses = {}
        for path in paths:
            response = client.get(path)
            statuses[path] = response.status_code
            if path.startswith(("/static/", "/vendor/")):
                assert "no-store" not in response.headers.get("Cache-Control", ""), path
            else:
                assert "no-store" in response.headers.get("Cache-Control", ""), (path, response.status_code)
        return statuses

    auth.login(own["agent"])
    signed_in = walk()
    assert signed_in[f"/usagers/{own['usager'].id}"] == signed_in[f"/rdvs/{own['rdv'].id}"] == 200
    assert sum(status == 200 for status in signed_in.values()) > 20
    auth.logout()
    walk()


def test_static_and_vendor_files_are_still_cached(client, auth, factories, db):
    agent = factories.AgentFactory(organisation=factories.OrganisationFactory())
    db.session.commit()
    auth.login(agent)
    css = client.get("/static/lapins.css")
    assert css.status_code == 200 and "no-store" not in css.headers.get("Cache-Control", "")
    page = client.get(f"/agenda/agents/{agent.id}").get_data(as_text=True)
    vendor = re.search(r'src="(/vendor/[^"]+\.js)"', page).group(1)
    script = client.get(vendor)
    assert script.status_code == 200 and script.headers["Cache-Control"] == "public, max-age=86400"
