"""Every public page of a family's links is rate-limited (lapins.auth.limits): per client address for all of them, per
link for the answers that change something; beyond a limit, a French page with HTTP 429 and nothing changed."""
from __future__ import annotations

import html

import pytest

from lapins import create_app
from lapins.auth.limits import TOO_MANY_REQUESTS
from lapins.infra.extensions import db
from lapins.models import Rdv
from tests.conftest import csrf_token_from
from tests.test_family_moves import check_identity, frozen_time, make_clinic  # noqa: F401 — its clock


@pytest.fixture()
def limited(tmp_path):
    """An app whose family limits are low, its Payet family's link, and a browser behind a proxy at `address`."""
    from tests import factories

    def start(**limits):
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'limits.sqlite3'}",
                         WTF_CSRF_ENABLED=True, RATELIMIT_ENABLED=True, TRUSTED_PROXIES=1, **limits)
        with app.app_context():
            db.create_all()
            clinic = make_clinic(factories)
            db.session.commit()
            rdv_id, url = clinic.rdv.id, clinic.url
            db.session.remove()
        return app, rdv_id, url

    return start


def page(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_the_pages_of_family_links_are_limited_per_address(limited):
    app, _, url = limited(FAMILY_LINK_LIMITS_PER_IP="3/minute")
    client = app.test_client()
    here = {"X-Forwarded-For": "203.0.113.7"}
    assert [client.get(url, headers=here).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get(url, headers=here)
    assert refused.status_code == 429 and TOO_MANY_REQUESTS in page(refused)
    assert int(refused.headers["Retry-After"]) > 0
    offer = client.get("/o/1-AAAAAAAAAAAAAAAAAAAAAA", headers=here)  # an offered slot's link: the same address
    assert offer.status_code == 429 and TOO_MANY_REQUESTS in page(offer)
    assert client.get(f"{url}/rendez-vous.ics", headers=here).status_code == 429
    assert client.get(url, headers={"X-Forwarded-For": "198.51.100.20"}).status_code == 200  # another family


def test_cancelling_is_limited_per_link_and_nothing_is_cancelled_beyond(limited):
    app, rdv_id, url = limited(FAMILY_ACTION_LIMITS_PER_LINK="2/minute")
    client = app.test_client()
    assert check_identity(client, url).status_code == 302
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    too_long = {"csrf_token": token, "reason": "x" * 300}  # refused by the form (422), but counted
    assert [client.post(f"{url}/annuler", data=too_long).status_code for _ in range(2)] == [422, 422]
    refused = client.post(f"{url}/annuler", data={"csrf_token": token, "reason": "", "confirme": "oui"})
    assert refused.status_code == 429 and TOO_MANY_REQUESTS in page(refused)
    elsewhere = app.test_client()  # another browser, another address: the same link is still limited
    assert check_identity(elsewhere, url).status_code == 302
    other_token = csrf_token_from(elsewhere.get(url, headers={"X-Forwarded-For": "198.51.100.9"}).get_data(
        as_text=True))
    assert elsewhere.post(f"{url}/annuler", data={"csrf_token": other_token},
                          headers={"X-Forwarded-For": "198.51.100.9"}).status_code == 429
    with app.app_context():
        assert db.session.get(Rdv, rdv_id).is_live
