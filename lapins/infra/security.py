"""Security headers of every answer: what the browser may load and run for Lapins' pages, and what it tells others.

- Content-Security-Policy: scripts, styles, fonts and images from Lapins alone (the DSFR and FullCalendar are served by
  lapins.infra.vendor from the npm packages); no inline script, so a name that slipped through escaping could not run
  anything. Inline *styles* stay allowed: FullCalendar writes its own <style> elements, and a few templates set a
  style attribute. No framing by other sites (`frame-ancestors`), no plugins, forms posted to Lapins only.
- Referrer-Policy `same-origin`: a family's link (`/r/<jeton>`) is never sent to another site as the referer.
- X-Content-Type-Options `nosniff`, and X-Frame-Options for browsers older than `frame-ancestors`.
Strict-Transport-Security belongs to the TLS front (nginx, docs/deploy.md), which alone knows it serves HTTPS.
"""
from __future__ import annotations

from flask import Flask, Response

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


def init_app(app: Flask) -> None:
    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in HEADERS:
            response.headers.setdefault(name, value)
        return response
