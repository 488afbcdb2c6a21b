"""Signed-cookie sessions that expire after inactivity, re-signed at most once a minute."""
from __future__ import annotations

import time

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import BadSignature

# A permanent session lasts PERMANENT_SESSION_LIFETIME from the moment its cookie was signed. Flask re-signs it on
# every request to slide that moment forward; every minute is as good for an inactivity limit of hours, and it
# spares each request of the agenda's calendar (which asks for its events at every move) a serialisation, an HMAC
# and a Set-Cookie.
REFRESH_AFTER_SECONDS = 60


class SlidingSession(SecureCookieSession):
    signed_at: float | None = None  # Unix time the cookie was signed; None for a new session


class SlidingSessionInterface(SecureCookieSessionInterface):
    """Flask's session, whose cookie is sent again when its content changed or it is more than a minute old."""

    session_class = SlidingSession

    def open_session(self, app: Flask, request: Request) -> SlidingSession | None:
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        max_age = int(app.permanent_session_lifetime.total_seconds())
        try:
            data, signed_at = serializer.loads(value, max_age=max_age, return_timestamp=True)
        except BadSignature:
            return self.session_class()
        session = self.session_class(data)
        session.signed_at = signed_at.timestamp()
        return session

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        if session.modified:
            return True
        if not (session.permanent and app.config["SESSION_REFRESH_EACH_REQUEST"]):
            return False
        signed_at = getattr(session, "signed_at", None)
        return signed_at is None or time.time() - signed_at >= REFRESH_AFTER_SECONDS
