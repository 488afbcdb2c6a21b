"""Two agents merge the same two files at the same moment: one merge is made, the other agent reads why not.

A live threaded server over a real database (PostgreSQL and SQLite), each agent signed in through the login form
and posting the comparison's form it opened. Both requests are held inside the server at the merge's lock (the rows'
FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), each having read both files as they were; whichever goes first,
the other waits on the lock, then finds the tombstone.
"""
from __future__ import annotations

import html
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from lapins import create_app
from lapins.agenda.duplicates import MERGE_FIELDS
from lapins.infra.extensions import db
from lapins.models import Role, Usager
from lapins.models.audit import AuditAction, AuditEvent
from lapins.models.rdvs import rdv_usagers
from tests.races import PARTY_HEADER, HeldStatements, live_server
from tests.test_double_booking import logged_in_session

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
REVISION = re.compile(r'name="revision" type="hidden" value="([^"]+)"')


class HeldAtTheMergeLock(HeldStatements):
    """Holds each merge at the statement that locks the two files (the reads before it look like any other)."""

    def _mine(self, statement: str) -> bool:
        text = statement.lstrip().upper()
        return text.startswith("BEGIN IMMEDIATE") or ("FROM USAGERS" in text and text.endswith("FOR UPDATE"))


@pytest.fixture()
def two_files(database_url):
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=True)
    with app.app_context():
        organisation = factories.OrganisationFactory()
        motif = factories.MotifFactory(organisation=organisation)
        agents = [factories.AgentFactory(organisation=organisation, organisation__role=role)
                  for role in (Role.SECRETARY, Role.AGENT)]
        files = [factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                         first_name=first, last_name=last, birth_date=date(2023, 9, 14))
                 for first, last in (("Yanis", "Hoarau"), ("YANIS", "HOARAU"))]
        soon = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3)
        for offset, usager in enumerate(files):
            factories.RdvFactory(motif=motif, usagers=[usager], starts_at=soon + timedelta(days=offset))
        world = {"emails": [agent.email for agent in agents], "ids": [usager.id for usager in files]}
        db.session.remove()
    with live_server(app) as base:
        yield app, base, world
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("first", ["secretary", "agent"])
def test_two_agents_merging_one_pair_at_once_make_one_merge(two_files, first):
    app, base, world = two_files
    kept_id, removed_id = world["ids"]
    path = f"{base}/usagers/{kept_id}/fusion/{removed_id}"
    posts, sessions = {}, {}
    for name, email in zip(("secretary", "agent"), world["emails"]):
        session = sessions[name] = logged_in_session(base, email)
        page = session.get(path).text
        form = {"csrf_token": CSRF.search(page).group(1), "revision": REVISION.search(page).group(1)}
        form |= {spec.name: "kept" for spec in MERGE_FIELDS}
        posts[name] = (lambda s=session, f=form, n=name:
                       s.post(path, data=f, headers={PARTY_HEADER: n}, allow_redirects=False, timeout=60))

    with app.app_context():
        engine = db.engine
    with HeldAtTheMergeLock(engine, (), 2, first=first) as held, ThreadPoolExecutor(2) as pool:
        responses = dict(zip(posts, pool.map(lambda name: posts[name](), posts)))
    assert held.crossed == 2, "the two merges did not meet at the lock"

    second = "agent" if first == "secretary" else "secretary"
    assert responses[first].status_code == 302
    assert responses[first].headers["Location"].endswith(f"/usagers/{kept_id}")
    # The other agent is sent to the kept file with a French sentence saying a colleague merged it.
    assert responses[second].status_code == 302, responses[second].text
    landing = sessions[second].get(base + responses[second].headers["Location"].removeprefix(base), timeout=30).text
    assert "vient d'être fusionné avec un autre, sans doute par un collègue" in html.unescape(landing)
    with app.app_context():
        merged = db.session.scalars(select(Usager.id).where(Usager.merged_into_id.is_not(None))).all()
        rdvs_of_kept = db.session.scalar(select(func.count()).select_from(rdv_usagers)
                                         .where(rdv_usagers.c.usager_id == kept_id))
        merges = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                   .where(AuditEvent.action == AuditAction.MERGED))
        db.session.remove()
    assert merged == [removed_id] and rdvs_of_kept == 2 and merges == 2  # one merge: its two sides

