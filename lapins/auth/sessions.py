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
# Valid cookies remembered by signed_session; beyond, the memory is emptied (a few hundred bytes a cookie).
SIGNED_REMEMBERED = 10_000


class SlidingSession(SecureCookieSession):
    signed_at: float | None = None  # Unix time the cookie was signed; None for a new session


class SlidingSessionInterface(SecureCookieSessionInterface):
    """Flask's session, whose cookie is sent again when its content changed or it is more than a minute old."""

    session_class = SlidingSession

    def __init__(self) -> None:
        self._signed: dict[str, tuple[dict, float]] = {}

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
        return session.modified or self.due_for_refresh(app, session.permanent, getattr(session, "signed_at", None))

    def due_for_refresh(self, app: Flask, permanent: bool, signed_at: float | None) -> bool:
        """Whether an unchanged session's cookie is to be signed again (sent with the response)."""
        if not (permanent and app.config["SESSION_REFRESH_EACH_REQUEST"]):
            return False
        return signed_at is None or time.time() - signed_at >= REFRESH_AFTER_SECONDS

    def signed_session(self, app: Flask, value: str) -> tuple[dict, float] | None:
        """The content of a session cookie and the Unix time it was signed; None if it is forged or expired.

        For the events feed's fast path (lapins.agenda.fast_feed), which only reads a session: the same cookie always
        holds the same content and is sent again for a minute, so its signature is checked once and remembered by
        value; its age is checked at every call. The content is shared between calls: read it, never change it.
        """
        known = self._signed.get(value)
        if known is None:
            serializer = self.get_signing_serializer(app)
            if serializer is None:
                return None
            try:
                data, signed_at = serializer.loads(value, return_timestamp=True)
            except BadSignature:
                return None
            if len(self._signed) >= SIGNED_REMEMBERED:
                self._signed.clear()
            known = self._signed[value] = (data, signed_at.timestamp())
        age = int(time.time()) - known[1]  # as open_session's check (itsdangerous's) counts it
        if age < 0 or age > int(app.permanent_session_lifetime.total_seconds()):
            return None
        return known
