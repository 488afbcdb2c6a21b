"""Restoring a cancelled rdv while another agent books its time: one of them gets it, on SQLite and PostgreSQL.

Restoring books the rdv's time again, so it takes the agents' locks and checks their times like any booking. Both
requests are held inside the server at their first write (the lock), each having read what it read; whichever goes
first, the other then waits on the lock and finds the time taken.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from lapins.infra.extensions import db
from lapins.models import Rdv, RdvAgent, RdvStatus
from tests.races import PARTY_HEADER, HeldStatements
from tests.test_concurrent_cancellation import live_rdv  # noqa: F401  (the fixture: a live server, one rdv)

# The first write of a restore and of a booking: the agents' lock (BEGIN IMMEDIATE on SQLite), or, were the lock
# missing, the rdv's own writes.
FIRST_WRITES = ("BEGIN IMMEDIATE", "UPDATE agents SET booking_version", "UPDATE territories SET agenda_stamp",
                "UPDATE rdvs", "INSERT INTO rdvs")


def api(base: str, token: str, who: str, path: str, body: dict):
    return lambda: requests.post(f"{base}/api/v1{path}", json=body, timeout=60,
                                 headers={"Authorization": f"Bearer {token}", PARTY_HEADER: who})


@pytest.mark.parametrize("first", ["restore", "book"])
def test_restoring_and_booking_one_time_at_the_same_moment_leave_one_live_rdv(live_rdv, first):  # noqa: F811
    app, base, world = live_rdv
    tokens = world["tokens"]
    cancelled = requests.post(f"{base}/api/v1/rdvs/{world['rdv_id']}/cancel", json={"status": "excused"},
                              headers={"Authorization": f"Bearer {tokens['agent']}"}, timeout=30)
    assert cancelled.status_code == 200
    rdv = cancelled.json()
    booking = {"motif_id": rdv["motif_id"], "agent_ids": rdv["agent_ids"], "usager_ids": rdv["usager_ids"],
               "lieu_id": rdv["lieu_id"], "starts_at": rdv["starts_at"]}
    parties = {"restore": api(base, tokens["agent"], "restore", f"/rdvs/{world['rdv_id']}/outcome",
                              {"status": "unknown"}),
               "book": api(base, tokens["colleague"], "book", "/rdvs", booking)}

    with app.app_context():
        engine = db.engine
    with HeldStatements(engine, FIRST_WRITES, 2, first=first) as held, ThreadPoolExecutor(2) as pool:
        responses = dict(zip(parties, pool.map(lambda name: parties[name](), parties)))
    assert held.crossed == 2, "the restore and the booking did not meet before their first write"

    second = "book" if first == "restore" else "restore"
    assert responses[first].status_code in (200, 201), responses[first].text
    assert responses[second].status_code == 409, responses[second].text
    assert "a déjà un rendez-vous" in responses[second].json()["message"]
    with app.app_context():
        live = db.session.scalar(select(func.count()).select_from(RdvAgent).where(RdvAgent.live.is_(True)))
        status = db.session.get(Rdv, world["rdv_id"]).status
        db.session.remove()
    assert live == 1
    assert status == (RdvStatus.UNKNOWN if first == "restore" else RdvStatus.EXCUSED)
