"""The family's slot picker (`/r/<token>/changer`) answered before Flask's request machinery, when its page is kept.

A family opening « Changer de date » from an SMS gets the same page as every family moving an rdv of the same motif at
the same lieu and agent, but for its link and its rdv's time: lapins.family.moves keeps that page's HTML per process
(on the territory's agenda stamp, as lapins.slots.picker keeps the times). Through Flask, a kept page still costs
about two milliseconds of Python (contexts, the session, two ORM queries in a transaction, Jinja); here it costs one
query run by the driver in autocommit (lapins.infra.database.DriverQuery, as the agenda's fast path reads its agent).

This WSGI middleware answers a GET of the first page or of a week (`?du=`) itself when all of these hold, and hands
the request to Flask, unchanged, otherwise:
- the link is valid, its rdv neither past nor refused a move by the rules of lapins.booking.move_refusal;
- the session cookie is valid, not to be signed again, holds this rdv's identity check, and no signed-in agent and no
  flashed message (Flask renders those pages for their request alone);
- its times and HTML are kept, or read and rendered here as Flask would (then kept): a family of another motif,
  lieu or agent, or a later week, costs two queries (this rdv's row, the days) instead of Flask's six;
- the family's move limits (lapins.auth.limits) allow one more request: counted in the same buckets as Flask's.
tests/test_fast_picker.py proves that the whole stack answers exactly what Flask alone answers, byte for byte.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date

from flask import Flask
from sqlalchemy import bindparam, func, select
from werkzeug.http import parse_cookie

from lapins.auth import limits
from lapins.booking import move_refusal
from lapins.family import moves, services
from lapins.infra import security
from lapins.infra.database import DriverQuery, end_read_only_transaction
from lapins.models import Agent, Lieu, Motif, Organisation, Rdv, RdvAgent, RdvStatus, Territory, utcnow
from lapins.models.territories import TerritoryClock
from lapins.models.rdvs import RdvMove
from lapins.notifications.links import rdv_id_from_token
from lapins.slots import picker

log = logging.getLogger(__name__)

PICKER_PATH = re.compile(r"/r/([0-9a-f]{1,12}-[A-Za-z0-9_-]{1,64})/changer")
WEEK_QUERY = re.compile(r"du=([0-9]{4}-[0-9]{2}-[0-9]{2})")
PICKER_ENDPOINT = "family.move_picker"
# Session keys that make Flask render the page for this request alone (lapins.family.moves._picker), or that only
# Flask-Login manages.
FLASK_ONLY_KEYS = ("_user_id", "_remember", moves.FLASHES)
REMEMBERED = 1024  # Cookie headers seen, per process


@dataclass(frozen=True)
class TerritoryRow(TerritoryClock):
    """What lapins.slots.picker (and the availability it reads) and services.scope_of read of a territory."""
    id: int
    agenda_stamp: str
    timezone: str
    family_moves_any_agent: bool
    number: str


@dataclass(frozen=True)
class MotifRow:
    id: int
    move_limit_hours: int
    booking_horizon_weeks: int


class FastPicker:
    """`app.wsgi_app = FastPicker(app, app.wsgi_app)`: the picker's usual requests, before Flask."""

    def __init__(self, app: Flask, wsgi_app) -> None:
        self.app, self.wsgi_app = app, wsgi_app
        self.cookies: dict[str, str | None] = {}

    def __call__(self, environ, start_response):
        match = PICKER_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match and environ.get("REQUEST_METHOD") == "GET":
            body = self.answer(environ, match.group(1))
            if body is not None:
                start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                          ("Content-Length", str(len(body))), ("Vary", "Cookie"),
                                          *security.PRIVATE_HEADERS])  # Flask's headers
                return [body]
        return self.wsgi_app(environ, start_response)

    def answer(self, environ, token: str) -> bytes | None:
        """The page's body for this request, or None when Flask is to answer it."""
        try:
            with self.app.app_context():
                body = self._answer(environ, token)
                end_read_only_transaction()
                return body
        except Exception:  # noqa: BLE001 — Flask answers, and logs the error again if it is still there
            log.warning("sélecteur de créneaux : requête confiée à Flask après une erreur", exc_info=True)
            return None

    def _answer(self, environ, token: str) -> bytes | None:
        query = environ.get("QUERY_STRING", "")
        week = WEEK_QUERY.fullmatch(query)
        if query and week is None:
            return None
        first = _day(week.group(1)) if week else None
        if week and first is None:
            return None
        rdv_id = rdv_id_from_token(token)
        if rdv_id is None or not self.checked(environ, rdv_id):
            return None
        rows = PAGE_ROWS.rows(rdv_id=rdv_id)
        if not rows:
            return None
        (status, starts_at, ends_at, lieu_id, motif_id, territory_id, stamp, timezone, any_agent, moves_max,
         limit_hours, horizon_weeks, lieu_name, lieu_phone, organisation_phone, _, moves_done, _, number) = rows[0]
        now = utcnow()
        if ends_at < now or move_refusal(live=not RdvStatus(status).is_cancelled, moves_max=moves_max,
                                         limit_hours=limit_hours, starts_at=starts_at,
                                         moves_done=lambda: moves_done, now=now):
            return None
        territory = TerritoryRow(territory_id, stamp, timezone, any_agent, number)
        agents = sorted((row[15], row[17]) for row in rows if row[15] is not None)
        scope = services.scope_of(territory, MotifRow(motif_id, limit_hours, horizon_weeks), lieu_id,
                                  tuple(agent_id for agent_id, _ in agents), now, tuple(agents),
                                  length=ends_at - starts_at)
        phone, script_root = lieu_phone or organisation_phone, environ.get("SCRIPT_NAME", "")
        shell = moves.kept_shell(moves.shell_key(scope, first, lieu_name, phone, None, script_root))
        if shell is None:
            # Not kept yet: the times are read here (one query, as Flask would) and the page rendered as Flask
            # renders it, rather than handing Flask a request whose rdv, moves and stamps it would read again.
            shown = picker.page(scope, first)
            with self.app.request_context(environ):
                shell = moves.kept_or_rendered_shell(scope, first, shown, lieu_name, phone, None, script_root)
        if not limits.count_family_move(self.app, limits.address_of(environ), rdv_id):
            return None
        return moves.filled(shell, token, starts_at, territory.tz).encode()

    def checked(self, environ, rdv_id: int) -> bool:
        """Whether this browser's session, as Flask would read it unchanged, holds the identity check of this rdv."""
        sessions = self.app.session_interface
        cookie = self.session_cookie(environ.get("HTTP_COOKIE", ""))
        signed = sessions.signed_session(self.app, cookie) if cookie else None
        if signed is None:
            return False
        data, signed_at = signed
        if sessions.due_for_refresh(self.app, bool(data.get("_permanent")), signed_at):
            return False
        return not any(key in data for key in FLASK_ONLY_KEYS) and services.is_checked(data, rdv_id)

    def session_cookie(self, header: str) -> str | None:
        if header not in self.cookies:
            if len(self.cookies) >= REMEMBERED:
                self.cookies.clear()
            self.cookies[header] = parse_cookie(header).get(self.app.session_interface.get_cookie_name(self.app))
        return self.cookies[header]


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# The rdv and what its picker page shows, one row per agent of the rdv (its id 16th, its stamp 18th), in autocommit.
PAGE_ROWS = DriverQuery(
    select(Rdv.status, Rdv.starts_at, Rdv.ends_at, Rdv.lieu_id, Rdv.motif_id,
           Territory.id.label("territory_id"), Territory.agenda_stamp, Territory.timezone,
           Territory.family_moves_any_agent, Motif.family_moves_max, Motif.move_limit_hours,
           Motif.booking_horizon_weeks, Lieu.name.label("lieu_name"), Lieu.phone.label("lieu_phone"),
           Organisation.phone.label("organisation_phone"), RdvAgent.agent_id,
           select(func.count()).select_from(RdvMove).where(RdvMove.rdv_id == Rdv.id).scalar_subquery().label("moves"),
           Agent.agenda_stamp.label("agent_stamp"), Territory.number)
    .join(Organisation, Organisation.id == Rdv.organisation_id)
    .join(Territory, Territory.id == Organisation.territory_id)
    .join(Motif, Motif.id == Rdv.motif_id)
    .outerjoin(Lieu, Lieu.id == Rdv.lieu_id)
    .outerjoin(RdvAgent, RdvAgent.rdv_id == Rdv.id)
    .outerjoin(Agent, Agent.id == RdvAgent.agent_id)
    .where(Rdv.id == bindparam("rdv_id"))
)


def install(app: Flask) -> None:
    if PICKER_ENDPOINT not in app.view_functions:
        raise RuntimeError("FastPicker : la route du sélecteur de créneaux n'est pas enregistrée.")
    app.wsgi_app = FastPicker(app, app.wsgi_app)
