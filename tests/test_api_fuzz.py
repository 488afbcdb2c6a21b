"""Fuzzing the API against its own OpenAPI document (schemathesis): no 5xx, and every answer is documented.

Each operation gets valid (positive) and invalid (negative) requests from the document, with a real token, against
seeded data (ids 1, 2… are the ones the generator tries first, and the seeded objects, a collective session and a
family's place in it among them). Derandomized, and bounded so that the whole walk stays well under a minute.
"""
from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance,
)

from lapins.auth import tokens
from lapins.booking import sessions
from lapins.api.openapi import PREFIX
from lapins.models import Role

EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture()
def seeded(factories):
    """Two organisations of one territory, with every kind of object, and the token of an agent of the first."""
    organisation = factories.OrganisationFactory()
    other = factories.OrganisationFactory(territory=organisation.territory)
    objects = {}
    for org in (organisation, other):
        lieu = factories.LieuFactory(organisation=org)
        motif = factories.MotifFactory(organisation=org)
        agent = factories.AgentFactory(organisation=org, organisation__role=Role.AGENT)
        plage = factories.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=date.today())
        factories.AbsenceFactory(agent=agent, first_day=date.today() + timedelta(days=20))
        usager = factories.UsagerFactory(territory=org.territory, organisations=[org])
        rdv = factories.RdvFactory(motif=motif, lieu=lieu, agents=[agent], usagers=[usager])
        # A collective session with one family's place, for the session and participation routes.
        atelier = factories.MotifFactory(organisation=org, collective=True, duration_minutes=60)
        [session] = sessions.create_sessions(actor=agent, motif=atelier, agents=[agent], lieu=lieu,
                                             starts=[rdv.starts_at + timedelta(days=1)],
                                             duration=timedelta(minutes=60), capacity=3, title="Atelier")
        participation = sessions.add_participant(actor=agent, session=session, usagers=[usager])
        objects.setdefault("mine", {"agent": agent, "rdv": rdv, "usager": usager, "plage": plage, "motif": motif,
                                    "session": session, "participation": participation})
    _, token = tokens.create(objects["mine"]["agent"], "Fuzzing")
    return objects["mine"], {"Authorization": f"Bearer {token}"}


def _run(operation, mode: GenerationMode, headers: dict, statuses: Counter, **fixed) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses[operation.label, response.status_code] += 1

    check()


def test_every_operation_answers_within_its_document(app, client, seeded):
    mine, headers = seeded
    schema = schemathesis.openapi.from_wsgi(f"{PREFIX}/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19
    ids = {"rdv_id": mine["rdv"].id, "usager_id": mine["usager"].id, "plage_id": mine["plage"].id,
           "session_id": mine["session"].id, "participation_id": mine["participation"].id}
    statuses: Counter = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation, mode, headers, statuses)
        # Again with ids of the agent's own objects in the path, to reach past the 404.
        path_ids = {name: ids[name] for name in ids if "{" + name + "}" in operation.path}
        if path_ids:
            _run(operation, GenerationMode.POSITIVE, headers, statuses, path_parameters=path_ids)
        if operation.path == f"{PREFIX}/slots":  # a motif of the agent's, so that slots are found
            _run(operation, GenerationMode.POSITIVE, headers, statuses, query={"motif_id": mine["motif"].id})
    reached = {label for (label, status), count in statuses.items() if status < 300}
    assert {f"GET {PREFIX}/rdvs", f"GET {PREFIX}/rdvs/{{rdv_id}}", f"GET {PREFIX}/slots",
            f"GET {PREFIX}/usagers/{{usager_id}}", f"GET {PREFIX}/sessions", f"GET {PREFIX}/sessions/{{session_id}}",
            f"GET {PREFIX}/sessions/{{session_id}}/participations",
            f"GET {PREFIX}/participations/{{participation_id}}"} <= reached, sorted(statuses.items())
