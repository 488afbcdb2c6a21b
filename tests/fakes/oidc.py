"""A real OpenID Connect provider on 127.0.0.1 for the tests: npm `oidc-provider` (certified), run by node from
tests/fakes/oidc_provider.mjs, configured like ProConnect (see that file).

`OidcProvider(redirect_base).start()` starts one whose only client is Lapins at `redirect_base` (the callback and
the post-logout pages); `login_as(sub, email=...)` chooses who its login interaction signs in (the person at the
provider), `settings(...)` turns its token endpoint's clock back or makes its published keys wrong. `drive(url)`
follows its redirects as a browser would, up to the URL that leaves it (Lapins' callback), with a cookie jar of its own.

Fixture `oidc_provider_factory`: starts providers for a test and stops them after. Without node or the npm package
(`npm ci` installs it) the test is skipped, and under CI=true it fails (tests/services.py strict()).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests import services

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
CLIENT_ID = "lapins-tests"
CLIENT_SECRET = "un-secret-de-test-assez-long-pour-oidc-provider"
CALLBACK_PATH = "/connexion/oidc/retour"
SIGNED_OUT_PATH = "/connexion/oidc/deconnecte"


class OidcProvider:
    def __init__(self, redirect_base: str, *, json_userinfo: bool = False) -> None:
        node = shutil.which("node")
        if node is None:
            raise services.ServiceUnavailable("node not found (Debian package: nodejs)")
        if not (ROOT / "node_modules" / "oidc-provider" / "package.json").exists():
            raise services.ServiceUnavailable("npm package oidc-provider not installed (npm ci)")
        self.node = node
        self.redirect_base = redirect_base.rstrip("/")
        self.json_userinfo = json_userinfo
        self.process: subprocess.Popen | None = None
        self.issuer = ""
        self.browser = requests.Session()  # the person's browser, at the provider

    def start(self) -> OidcProvider:
        config = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
                  "redirectUris": [self.redirect_base + CALLBACK_PATH],
                  "postLogoutRedirectUris": [self.redirect_base + SIGNED_OUT_PATH],
                  "jsonUserinfo": self.json_userinfo}
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            services.dying_with_this_process([self.node, str(SCRIPT), json.dumps(config)]), cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True, text=True)
        line = self.process.stdout.readline()  # printed once listening
        if not line:
            self._log.seek(0)
            raise services.ServiceUnavailable(f"oidc-provider did not start: {self._log.read().decode()[-2000:]}")
        self.issuer = json.loads(line)["issuer"]
        return self

    def stop(self) -> None:
        services.stop_process(self.process)
        self.process = None

    @property
    def settings_for_lapins(self) -> dict:
        return {"OIDC_ISSUER": self.issuer, "OIDC_CLIENT_ID": CLIENT_ID, "OIDC_CLIENT_SECRET": CLIENT_SECRET}

    def login_as(self, sub: str, *, email: str | None = None, email_verified: bool | None = True,
                 given_name: str = "Camille", usual_name: str = "Martin", amr: list[str] | None = None, acr: str | None = "eidas1") -> None:
        claims = {"given_name": given_name, "usual_name": usual_name, "uid": sub, "siret": "22920001500017"}
        if email is not None:
            claims["email"] = email
        if email_verified is not None:  # ProConnect sends none
            claims["email_verified"] = email_verified
        self._post("/_test/login", {"sub": sub, "claims": claims, "amr": amr or ["pwd"], "acr": acr})

    def settings(self, **values) -> None:
        """tokenClockOffsetSeconds (tokens issued as if it were that much later; negative: expired ones), decoyKeys
        (publish another key under the signing key's kid: signatures no longer verify)."""
        self._post("/_test/settings", values)

    def _post(self, path: str, body: dict) -> None:
        requests.post(self.issuer + path, json=body, timeout=5).raise_for_status()

    def drive(self, url: str, method: str = "GET", data: dict | None = None) -> str:
        """Follows the provider's redirects from `url` and returns the first URL outside it (back to Lapins)."""
        response = self.browser.request(method, url, data=data, allow_redirects=False, timeout=10)
        for _ in range(10):
            location = response.headers.get("Location")
            if location is None:
                raise AssertionError(f"the provider stopped at {response.status_code}: {response.text[:500]}")
            location = urljoin(response.url, location)
            if not location.startswith(self.issuer):
                return location
            response = self.browser.get(location, allow_redirects=False, timeout=10)
        raise AssertionError("too many redirects at the provider")


def path_of(url: str) -> str:
    """Lapins' URL without its host, for the Flask test client."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture()
def oidc_provider_factory():
    started: list[OidcProvider] = []

    def start(redirect_base: str = "http://localhost", **options) -> OidcProvider:
        try:
            provider = OidcProvider(redirect_base, **options).start()
        except services.ServiceUnavailable as error:
            if services.strict():
                pytest.fail(f"OpenID Connect provider not available: {error} (CI=true: a missing server is a "
                            "failure)", pytrace=False)
            pytest.skip(f"OpenID Connect provider not available: {error}")
        started.append(provider)
        return provider

    yield start
    for provider in started:
        provider.stop()
