"""One request sent three ways to a fast path (a WSGI middleware before Flask): to Flask alone, to the fast path's own
decision, and to the whole stack. tests/test_fast_feed.py and tests/test_fast_picker.py check that the stack answers
exactly what Flask alone answers, and that the fast path answers only where they say."""
from __future__ import annotations

from dataclasses import dataclass

from werkzeug.test import run_wsgi_app


@dataclass
class ThreeWays:
    flask: tuple  # (status, sorted headers, body) of Flask alone
    through: tuple  # the same, through the whole stack
    fast: bytes | None  # the fast path's own answer, None when it hands over
    fast_answered: bool  # the whole stack's answer came from the fast path


def three_ways(app, middleware, environ: dict, answer) -> ThreeWays:
    """`middleware` is the app's fast path (its `wsgi_app` is Flask); `answer(environ)` asks for its decision. Each
    is run in an application context of its own, as in production."""
    handed: list[int] = []

    def flask_app(environ, start_response):
        handed.append(1)
        return middleware.wsgi_app(environ, start_response)

    with app.app_context():
        body, status, headers = run_wsgi_app(middleware.wsgi_app, dict(environ))
        flask = (status, sorted(headers.items()), b"".join(body))
    with app.app_context():
        fast = answer(dict(environ))
    with app.app_context():
        body, status, headers = run_wsgi_app(type(middleware)(app, flask_app), dict(environ))
        through = (status, sorted(headers.items()), b"".join(body))
    return ThreeWays(flask, through, fast, not handed)
