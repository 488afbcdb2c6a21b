"""The family picker's fast path (lapins.family.fast_picker): the same answers as Flask's view, and Flask for the rest."""
from __future__ import annotations

from datetime import timedelta

import pytest
from werkzeug.test import EnvironBuilder

from lapins.family import moves
from lapins.family.fast_picker import PICKER_PATH, FastPicker
from lapins.models import RdvStatus
from lapins.models.rdvs import MoveChannel, RdvMove
from lapins.notifications.links import rdv_token
from lapins.slots import picker
from lapins import create_app
from lapins.booking import book_rdv
from lapins.infra.extensions import db as database
from tests.conftest import AuthActions
from tests.fast_paths import three_ways
from tests.test_family_moves import (  # noqa: F401 — its fixtures
    NOW, check_identity, clinic, frozen_time, local, make_clinic, times_offered,
)


def forget_kept_pages() -> None:
    picker._kept.clear()
    moves._shells.clear()


def fast_picker_of(app) -> FastPicker:
    wsgi = app.wsgi_app
    while not isinstance(wsgi, FastPicker):
        wsgi = wsgi.wsgi_app
    return wsgi


class Family:
    """The Payet family's browser (tests.test_family_moves.clinic), and the picker requests it sends."""

    def __init__(self, app, client, clinic, db, frozen_time):
        self.app, self.client, self.clinic, self.db, self.frozen_time = app, client, clinic, db, frozen_time
        self.token = rdv_token(clinic.rdv.id)

    def checked(self) -> str:
        """The session cookie of a browser that passed the identity check of the rdv's page."""
        assert check_identity(self.client, self.clinic.url).status_code == 302
        return self.client.get_cookie("session").value

    def environ(self, cookie: str | None, query: str = "", method: str = "GET", token: str | None = None):
        environ = EnvironBuilder(path=f"/r/{token or self.token}/changer", query_string=query,
                                 method=method).get_environ()
        if cookie is not None:
            environ["HTTP_COOKIE"] = f"session={cookie}"
        return environ


def checked(family, **kwargs):
    return family.environ(family.checked(), **kwargs)


def then(change, **kwargs):
    """Checked, then the change is committed before the request."""
    def case(family):
        environ = checked(family, **kwargs)
        change(family)
        return environ
    return case


def moved_twice(family):
    for _ in range(2):
        rdv = family.clinic.rdv
        family.db.session.add(RdvMove(rdv_id=rdv.id, via=MoveChannel.LINK, moved_at=NOW,
                                      from_starts_at=rdv.starts_at, to_starts_at=rdv.starts_at))
    family.db.session.commit()


def cancelled(family):
    family.clinic.rdv.status = RdvStatus.EXCUSED
    family.db.session.commit()


def moves_forbidden(family):
    family.clinic.motif.family_moves_max = 0
    family.db.session.commit()


def too_late(family):
    family.clinic.motif.move_limit_hours = 100  # the rdv is 93 h away
    family.db.session.commit()


def past(family):
    family.frozen_time.move_to(family.clinic.rdv.ends_at + timedelta(minutes=1))


def aged(seconds: int):
    def age(family):
        family.frozen_time.shift(timedelta(seconds=seconds))
    return age


def with_session(extra: dict):
    """A checked browser whose session holds more: what Flask-Login or a flashed message put there."""
    def case(family):
        family.checked()
        with family.client.session_transaction() as session:
            session.update(extra)
        return family.environ(family.client.get_cookie("session").value)
    return case


def permanent_and_aged(family):
    """A permanent session (Flask-Login's, kept after an agent signed out) slides forward a minute later: Flask's."""
    environ = with_session({"_permanent": True})(family)
    family.frozen_time.shift(timedelta(seconds=61))
    return environ


def agent_signed_in(family):
    """An agent who opened a family's link in the browser where they are signed in: the page carries their header."""
    AuthActions(family.client).login(family.clinic.agent)
    return checked(family)


def other_rdv_checked(family):
    other = family.clinic
    second = book_rdv(actor=other.agent, motif=other.motif, agents=[other.agent], usagers=[other.parent],
                      lieu=other.lieu, starts_at=local(30, 9))
    family.db.session.commit()
    assert check_identity(family.client, f"/r/{rdv_token(second.id)}").status_code == 302
    return family.environ(family.client.get_cookie("session").value)


def forged_token(family):
    return family.environ(family.checked(), token=family.token[:-2] + ("AA" if not family.token.endswith("AA")
                                                                        else "BB"))


# case: (request, who answers: "fast", or Flask's status)
CASES = {
    "a checked family, first page": (checked, "fast"),
    "a checked family, the following week": (lambda family: checked(family, query="du=2026-10-27"), "fast"),
    "a week before the first day: the first page": (lambda family: checked(family, query="du=2026-10-01"), "fast"),
    "no session cookie": (lambda family: family.environ(None), "302 FOUND"),
    "the check of another rdv only": (other_rdv_checked, "302 FOUND"),
    "a forged link": (forged_token, "404 NOT FOUND"),
    "a past rdv": (then(past), "410 GONE"),
    "a cancelled rdv": (then(cancelled), "409 CONFLICT"),
    "a motif that forbids moves": (then(moves_forbidden), "409 CONFLICT"),
    "moved twice already": (then(moved_twice), "409 CONFLICT"),
    "after the change limit": (then(too_late), "409 CONFLICT"),
    "a browser session an hour old (not signed again)": (then(aged(3600)), "fast"),
    "an expired session": (then(aged(4 * 3600 + 1)), "302 FOUND"),
    "a permanent session a minute old: Flask signs it again": (permanent_and_aged, "200 OK"),
    "a flashed message waiting": (with_session({"_flashes": [("info", "Bonjour")]}), "200 OK"),
    "an agent signed in, in the same browser": (agent_signed_in, "200 OK"),
    "a day that does not exist": (lambda family: checked(family, query="du=2026-02-30"), "200 OK"),
    "another parameter": (lambda family: checked(family, query="du=2026-10-27&x=1"), "200 OK"),
    "HEAD": (lambda family: checked(family, method="HEAD"), "200 OK"),
}


@pytest.mark.parametrize("case", CASES)
def test_the_fast_path_answers_exactly_what_flask_answers(app, client, clinic, db, frozen_time, case):
    make_request, expected = CASES[case]
    family = Family(app, client, clinic, db, frozen_time)
    environ = make_request(family)
    fast_app = fast_picker_of(app)
    token = PICKER_PATH.fullmatch(environ["PATH_INFO"]).group(1)
    forget_kept_pages()
    with app.app_context():
        read_and_rendered = fast_app.answer(dict(environ), token)  # nothing kept: the fast path reads and renders
    forget_kept_pages()
    if environ["REQUEST_METHOD"] == "GET":  # the middleware asks for nothing else
        assert (read_and_rendered is not None) == (expected == "fast")
    for round_ in range(2):  # computed by Flask, then kept
        ways = three_ways(app, fast_app, environ, lambda environ: fast_app.answer(environ, token))
        flask, fast, fast_answered = ways.flask, ways.fast, ways.fast_answered
        assert ways.through == flask  # status, every header (security headers, Vary, cookies), body
        if environ["REQUEST_METHOD"] == "GET":
            assert (fast is not None) == fast_answered
        if fast_answered:
            assert fast == flask[2]
            if round_ == 0:
                assert read_and_rendered == flask[2]  # rendered by the fast path exactly as by Flask
            assert dict(flask[1])["Cache-Control"] == "no-store"
        assert ("fast" if fast_answered else flask[0]) == expected
    if expected == "fast":
        assert b"lapins-creneaux" in flask[2] and b"/changer/confirmer?debut=" in flask[2]


def test_a_time_taken_meanwhile_leaves_the_picker_at_once(app, client, clinic, db):
    """Kept pages are kept on the agenda stamps: a booking draws new ones, the next page is read again."""
    family = Family(app, client, clinic, db, None)
    environ = checked(family)
    page = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    first_label = times_offered(page)[0][0]
    assert first_label == "mardi 20 octobre 2026 à 12h00"
    with app.app_context():
        assert fast_picker_of(app).answer(dict(environ), family.token) == page.encode()
    book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.parent],
             lieu=clinic.lieu, starts_at=local(20, 12))
    db.session.commit()
    with app.app_context():
        fresh = fast_picker_of(app).answer(dict(environ), family.token).decode()
    assert first_label not in [label for label, _ in times_offered(fresh)]
    assert client.get(f"{clinic.url}/changer").get_data(as_text=True) == fresh


def test_two_families_share_a_kept_page_each_with_its_own_link_and_time(app, client, clinic, db):
    other = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.parent],
                     lieu=clinic.lieu, starts_at=local(30, 11))
    db.session.commit()
    assert check_identity(client, clinic.url).status_code == 302
    first = client.get(f"{clinic.url}/changer").get_data(as_text=True)
    second_url = f"/r/{rdv_token(other.id)}"
    browser = app.test_client()
    assert check_identity(browser, second_url).status_code == 302
    second = browser.get(f"{second_url}/changer").get_data(as_text=True)
    assert "vendredi 23 octobre 2026 à 09h30" in first and "vendredi 30 octobre 2026 à 11h00" in second
    assert all(second_url in href for _, href in times_offered(second))
    assert all(clinic.url in href for _, href in times_offered(first))


def test_the_fast_path_counts_in_the_same_buckets_as_flask(tmp_path):
    """Three requests a minute per rdv: the fast path's and Flask's requests count together, the fourth is refused
    with the French page, whichever path it came to."""
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'limits.sqlite3'}",
                     WTF_CSRF_ENABLED=True, RATELIMIT_ENABLED=True, FAMILY_MOVE_LIMITS_PER_RDV="3/minute",
                     FAMILY_MOVE_LIMITS_PER_IP="100/minute")
    with app.app_context():
        database.create_all()
        url = make_clinic(factories).url
        database.session.commit()
        database.session.remove()
    client = app.test_client()
    assert check_identity(client, url).status_code == 302
    handed: list[int] = []
    fast_app = fast_picker_of(app)
    inner = fast_app.wsgi_app

    def counting(environ, start_response):
        handed.append(1)
        return inner(environ, start_response)

    fast_app.wsgi_app = counting
    statuses = [client.get(f"{url}/changer").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert len(handed) == 1  # three pages answered by the fast path (the first read and kept), the fourth Flask's 429
    refused = client.get(f"{url}/changer")
    assert refused.status_code == 429 and "Trop de demandes pour changer la date" in refused.get_data(as_text=True)


def test_another_agents_booking_keeps_the_page(app, client, clinic, factories, db):
    """Kept pages are kept on the stamps of the agents they show (and the territory's): a booking for a colleague
    at another lieu leaves the family's page kept, and served before Flask."""
    family = Family(app, client, clinic, db, None)
    environ = checked(family)
    page = client.get(f"{clinic.url}/changer").get_data()
    colleague = factories.AgentFactory(organisation=clinic.organisation)
    other_lieu = factories.LieuFactory(organisation=clinic.organisation)
    other_motif = factories.MotifFactory(organisation=clinic.organisation)
    factories.PlageFactory(agent=colleague, lieu=other_lieu, first_day=NOW.date(), motifs=[other_motif])
    db.session.commit()
    kept = len(picker._kept)
    with app.app_context():
        assert fast_picker_of(app).answer(dict(environ), family.token) == page
    assert len(picker._kept) > kept  # a new plage draws the territory's stamp: the days were read again
    kept = len(picker._kept)
    book_rdv(actor=colleague, motif=other_motif, agents=[colleague], usagers=[clinic.parent], lieu=other_lieu,
             starts_at=local(20, 10))
    db.session.commit()
    with app.app_context():
        assert fast_picker_of(app).answer(dict(environ), family.token) == page
    assert len(picker._kept) == kept  # the colleague's booking left the page's days kept
