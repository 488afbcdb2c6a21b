"""Every form of every page, filled with hostile content: never a 500, never a script echoed unescaped, never a huge
string stored.

The pages are found as the permission walk finds them (every GET route of the URL map, with ids of the signed-in
administrator's own organisation), and their forms are read from the HTML the browser would get: a form added
later is filled too. Each field of each form gets, in turn, a script, a string of 10,000 characters and an
impossible date, with the form's own CSRF token.
"""
from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from sqlalchemy import String, Text, func, select

from lapins.infra.extensions import db
from lapins.models import Role
from tests.test_permission_walk import _urls, _walked_rules, worlds  # noqa: F401  (the same objects, the same routes)

SCRIPT = "<script>alert('lapins')</script>"
HUGE = "A" * 10_000
HOSTILE = {"script": SCRIPT, "huge": HUGE, "date": "31/02/2026", "number": "-1e309"}
NOT_FILLED = {"csrf_token"}
# Forms that end the session or the test's footing: filling them teaches nothing about validation.
SKIPPED_ACTIONS = ("/deconnexion",)


class Forms(HTMLParser):
    """The POST forms of a page: action, the fields to fill (name → kind) and what the page already put in each
    field (an edit form's values, a select's chosen option), which the other fields keep while one is filled."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._current: dict | None = None
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (attrs.get("method") or "get").lower() == "post":
            self._current = {"action": attrs.get("action") or "", "fields": {}, "values": {}}
            self.forms.append(self._current)
        elif self._current is None:
            return
        elif tag == "input" and attrs.get("name"):
            kind = (attrs.get("type") or "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in attrs:
                    self._current["values"][attrs["name"]] = attrs.get("value") or "y"
            elif kind not in ("submit", "button", "file"):
                self._current["values"].setdefault(attrs["name"], attrs.get("value") or "")
                if kind != "hidden":
                    self._current["fields"][attrs["name"]] = kind
        elif tag == "textarea" and attrs.get("name"):
            self._textarea = attrs["name"]
            self._current["fields"][self._textarea] = "textarea"
            self._current["values"][self._textarea] = ""
        elif tag == "select" and attrs.get("name"):
            self._select = attrs["name"]
            self._current["fields"][self._select] = "select"
        elif tag == "option" and self._select and ("selected" in attrs or self._select not in self._current["values"]):
            self._current["values"][self._select] = attrs.get("value") or ""

    def handle_data(self, data):
        if self._current is not None and self._textarea:
            self._current["values"][self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def _pages(app, objects) -> list[str]:
    pages = []
    for rule in _walked_rules(app):
        if "GET" not in rule.methods or rule.endpoint.startswith(("api.", "vendor.", "static")):
            continue
        urls = _urls(app, rule, objects) if rule.arguments else [app.url_map.bind("localhost").build(rule.endpoint, {})]
        pages += urls
    return pages


def _longest_stored_text() -> int:
    """The longest value of any text column of any table."""
    longest = 0
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, (String, Text)):
                value = db.session.scalar(select(func.max(func.length(column))))
                longest = max(longest, value or 0)
    return longest


@pytest.mark.parametrize("hostile", list(HOSTILE))
def test_every_form_takes_hostile_input_without_a_500_an_echoed_script_or_a_huge_row(app, client, auth, factories,
                                                                                      worlds, hostile):
    own, _, _ = worlds
    admin = factories.AgentFactory(organisation=own["organisation"], organisation__role=Role.ADMIN)
    assert auth.login(admin).status_code == 302
    value = HOSTILE[hostile]
    broken, filled = [], 0
    for page_url in _pages(app, own):
        page = client.get(page_url)
        if page.status_code != 200 or "text/html" not in page.content_type:
            continue
        parser = Forms()
        parser.feed(page.get_data(as_text=True))
        for form in parser.forms:
            action = urlsplit(urljoin(f"http://localhost{page_url}", form["action"] or page_url)).path
            if action.startswith(SKIPPED_ACTIONS) or not form["fields"]:
                continue
            for name in form["fields"]:
                data = dict(form["values"]) | {name: value}
                response = client.post(action, data=data)
                filled += 1
                text = response.get_data(as_text=True)
                if response.status_code >= 500 or SCRIPT in text:
                    broken.append(f"POST {action} [{name}] from {page_url} → {response.status_code}"
                                  + (" (script echoed)" if SCRIPT in text else ""))
    assert filled > 50  # the pages had forms, and they were filled
    assert broken == []
    assert _longest_stored_text() < len(HUGE)
