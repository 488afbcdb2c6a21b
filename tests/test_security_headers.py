"""Every answer carries Lapins' security headers (lapins.infra.security): pages, JSON, files, errors."""
from __future__ import annotations

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
