"""The accessibility check of every browser test (axe-core, tests/browser/conftest.py) does find what it must."""
from __future__ import annotations

import pytest

from tests.browser.conftest import check_accessibility, finish_accessibility

pytestmark = pytest.mark.browser

BROKEN = ("<!doctype html><html lang='fr'><head><title>Essai</title></head><body><main>"
          "<img src='/static/nothing.png'><button></button></main></body></html>")


def test_a_page_with_an_image_without_alt_and_an_empty_button_is_reported(browser, live_server):
    context = browser.new_context(base_url=live_server)
    violations = check_accessibility(context)
    context.route("**/essai-accessibilite", lambda route: route.fulfill(status=200, body=BROKEN,
                                                                     content_type="text/html"))
    page = context.new_page()
    page.goto("/essai-accessibilite")
    page.wait_for_function("() => document.readyState === 'complete'")
    finish_accessibility(page, violations)
    context.close()
    found = {violation["id"] for violation in violations["/essai-accessibilite"]}
    assert {"image-alt", "button-name"} <= found
