"""Security headers of every answer: what the browser may load and run for Lapins' pages, and what it tells others.

- Content-Security-Policy: scripts, styles, fonts and images from Lapins alone (the DSFR and FullCalendar are served by
  lapins.infra.vendor from the npm packages); no inline script, so a name that slipped through escaping could not run
  anything. Inline *styles* stay allowed: FullCalendar writes its own <style> elements, and a few templates set a
  style attribute. No framing by other sites (`frame-ancestors`), no plugins, forms posted to Lapins only.
- Referrer-Policy `same-origin`: a family's link (`/r/<jeton>`) is never sent to another site as the referer.
- X-Content-Type-Options `nosniff`, and X-Frame-Options for browsers older than `frame-ancestors`.
- Cache-Control `no-store` on every answer but the static and vendor assets: an agent's pages (a usager's file, the
  events feed, exports), the family's pages after the identity check, the API's JSON, and the anonymous forms that
  carry a CSRF token all stay out of the browser's cache of a shared PC (and of any proxy). Deciding by who asked
  would mean loading the agent or reading the session cookie (Vary: Cookie) on every answer, and nothing else is
  worth caching. A view's own Cache-Control stays when it already says no-store. The events feed's fast path
  (lapins.agenda.fast_feed) sends PRIVATE_HEADERS too: the same headers as Flask, byte for byte.
Strict-Transport-Security belongs to the TLS front (nginx, docs/deploy.md), which alone knows it serves HTTPS.
"""
from __future__ import annotations

from flask import Flask, Response, request

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("Referrer-Policy", "same-origin"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
)
NO_STORE = ("Cache-Control", "no-store")
PRIVATE_HEADERS = (*HEADERS, NO_STORE)  # those of every answer but the assets'

# Files of Lapins' own or of the npm packages, the same for everyone: cached (lapins.vendor sets a day).
ASSET_ENDPOINTS = frozenset({"static", "vendor.asset"})


def init_app(app: Flask) -> None:
    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in HEADERS:
            response.headers.setdefault(name, value)
        if request.endpoint not in ASSET_ENDPOINTS and "no-store" not in response.headers.get("Cache-Control", ""):
            response.headers[NO_STORE[0]] = NO_STORE[1]
        return response
