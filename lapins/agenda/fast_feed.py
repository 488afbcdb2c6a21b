"""The calendar's events feed answered before Flask's request machinery, when nothing about the request is unusual.

FullCalendar asks for an agenda's events at every view change and after every move, all day long: it is the hottest
route of the service, and its answer is most often cached (calendar.feed_json). Through Flask, such a request still
costs about a millisecond of Python on a small server: the request and application contexts, Flask-Login's proxies,
the session's signature, the view's wrappers and the teardown, about as much again as gunicorn and the network
(docs/benchmarks.md, `agenda.week.*`).

This WSGI middleware answers the usual case itself, with the functions the view uses: the signed-in agent read in one
query at every request (lapins.models.light_agent), the permissions decided by lapins.policies, the body computed or
cached by calendar.agent_feed. It hands any other request to Flask, unchanged:
- another route, or a method other than GET;
- no valid session cookie (none, forged, expired), or one to be signed again (lapins.auth.sessions);
- no signed-in agent in it, or one unknown, deactivated, or whose sessions have been ended since (a session
  generation other than the agent's, or a plain id from before generations);
- a refusal of the policies (404, 403) or a bad parameter (400);
- an unexpected error (logged).
Flask then answers as it always did, with its messages, statuses and cookies. tests/test_fast_feed.py proves, with one
parametrised test over these cases (session age, forged or hand-made cookies, deactivated agent, ended sessions,
permissions, parameters, methods), that the whole stack answers exactly what Flask alone answers, headers and cookies
included, and that the fast path answers only where Flask answers 200 without touching the cookie.
"""
from __future__ import annotations

import logging
import re

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_cookie

from lapins.infra import security
from lapins.agenda import calendar
from lapins.infra.database import end_read_only_transaction
from lapins.models.agents import parse_session_user_id
from lapins.models.light_agent import light_agent
from lapins.infra.routing import MAX_ID

log = logging.getLogger(__name__)

# The feed's route (calendar.agent_events_api); any other spelling of it goes to Flask, which knows them all.
FEED_PATH = re.compile(r"/agenda/api/agents/([1-9][0-9]{0,9})/evenements")
FEED_ENDPOINT = "agenda.agent_events"
# Flask-Login's session keys: who is signed in, and a "remember me" cookie to manage (Lapins sets none).
USER_ID, REMEMBER = "_user_id", "_remember"
REMEMBERED = 1024  # Cookie headers, query strings and mount points seen, per process


class FastFeed:
    """`app.wsgi_app = FastFeed(app, app.wsgi_app)`: the events feed's usual requests, before Flask."""

    def __init__(self, app: Flask, wsgi_app) -> None:
        if app.login_manager.session_protection:
            # Flask-Login's session protection marks a session "not fresh" when the client's address changes,
            # which means signing the cookie again: only Flask can do that.
            raise RuntimeError("FastFeed suppose la protection de session de Flask-Login désactivée.")
        self.app, self.wsgi_app = app, wsgi_app
        self.rdv_url_templates: dict[str, str] = {}  # per SCRIPT_NAME, where a proxy mounts the application
        self.cookies: dict[str, str | None] = {}  # the session cookie's value, per Cookie header
        self.periods: dict[str, tuple[str | None, str | None]] = {}  # start and end, per query string

    def __call__(self, environ, start_response):
        match = FEED_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match and environ.get("REQUEST_METHOD") == "GET" and int(match.group(1)) <= MAX_ID:
            body = self.answer(environ, int(match.group(1)))
            if body is not None:
                start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                          ("Vary", "Cookie"), *security.PRIVATE_HEADERS])  # Flask's headers
                return [body]
        return self.wsgi_app(environ, start_response)

    def answer(self, environ, agent_id: int) -> bytes | None:
        """The feed's body for this request, or None when Flask is to answer it."""
        try:
            with self.app.app_context():
                body = self._answer(environ, agent_id)
                end_read_only_transaction()
                return body
        except (HTTPException, calendar.InvalidParameter):
            return None  # Flask answers with the view's French message
        except Exception:  # noqa: BLE001 — Flask answers, and logs the error again if it is still there
            log.warning("flux d'événements : requête confiée à Flask après une erreur", exc_info=True)
            return None

    def _answer(self, environ, agent_id: int) -> bytes | None:
        sessions = self.app.session_interface
        cookie = self.session_cookie(environ.get("HTTP_COOKIE", ""))
        signed = sessions.signed_session(self.app, cookie) if cookie else None
        if signed is None:
            return None
        data, signed_at = signed
        if sessions.due_for_refresh(self.app, bool(data.get("_permanent")), signed_at) or REMEMBER in data:
            return None
        parsed = parse_session_user_id(data.get(USER_ID))  # as lapins.auth.views.load_agent
        if parsed is None:
            return None
        viewer = light_agent(parsed[0])
        if viewer is None or viewer.session_generation != parsed[1] or not viewer.is_authenticated:
            return None
        start, end = self.period(environ)
        return calendar.agent_feed(viewer, agent_id, start, end, self.rdv_url_template(environ))

    # A browser sends the same Cookie header, and FullCalendar the same weeks, again and again: each is parsed once
    # (by werkzeug, as for Flask) and remembered by its raw value.

    def session_cookie(self, header: str) -> str | None:
        return remembered(self.cookies, header, lambda: parse_cookie(header).get(
            self.app.session_interface.get_cookie_name(self.app)))

    def period(self, environ) -> tuple[str | None, str | None]:
        def parse():
            args = self.app.request_class(environ).args  # Flask's own parsing of the query string
            return args.get("start"), args.get("end")

        return remembered(self.periods, environ.get("QUERY_STRING", ""), parse)

    def rdv_url_template(self, environ) -> str:
        """calendar.rdv_url_template as Flask computes it for this request's mount point, once per mount point."""
        def compute():
            with self.app.request_context(environ):
                return calendar.rdv_url_template()

        return remembered(self.rdv_url_templates, environ.get("SCRIPT_NAME", ""), compute)


def remembered(memo: dict, key, compute):
    """memo[key], computed at its first use. Keys come from requests: a full memo is emptied (REMEMBERED)."""
    if key not in memo:
        if len(memo) >= REMEMBERED:
            memo.clear()
        memo[key] = compute()
    return memo[key]


def install(app: Flask) -> None:
    if FEED_ENDPOINT not in app.view_functions:
        raise RuntimeError("FastFeed : la route du flux d'événements n'est pas enregistrée.")
    app.wsgi_app = FastFeed(app, app.wsgi_app)
