"""Signing in with an OpenID Connect provider (ProConnect, or a département's Keycloak, ADFS, Azure AD) through
Authlib's Flask client: discovery, the authorization code with PKCE (S256), `state` and `nonce` kept per attempt in
the session, the ID token's signature (algorithms pinned by OIDC_ALGORITHMS, never those discovery advertises alone)
and claims (iss, aud, exp, iat, nonce) checked by Authlib, userinfo read as JSON or as a signed JWT (ProConnect's),
logout at the provider with `id_token_hint`. Which agent the person is: lapins.auth.identities.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, session, url_for
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

logger = logging.getLogger(__name__)

EXTENSION = "lapins.oidc"
CLIENT_NAME = "sso"  # Authlib would read SSO_* settings for it: Lapins sets none, everything comes from OIDC_*
DISCOVERY_PATH = "/.well-known/openid-configuration"


class ProviderUnavailable(Exception):
    """The provider cannot be reached, or its discovery is unusable: a page saying so, the password still works."""


class AnswerRefused(Exception):
    """The provider's answer (or what came back through the browser) is not to be trusted: wrong state, replayed or
    refused code, bad nonce, signature or claims."""


@dataclass(frozen=True)
class ProviderIdentity:
    """The person as the provider described them, once every check passed."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    given_name: str | None
    family_name: str | None
    amr: tuple[str, ...]
    acr: str | None
    id_token: str


def enabled(app: Flask | None = None) -> bool:
    config = (app or current_app).config
    return bool(config["OIDC_ISSUER"] and config["OIDC_CLIENT_ID"])


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.replace(" ", ",").split(",") if part.strip()]


def init_app(app: Flask) -> None:
    """This app's Authlib client, when a provider is configured (nothing is fetched before the first sign-in)."""
    if not enabled(app):
        return
    config = app.config
    oauth = OAuth(app)
    oauth.register(
        CLIENT_NAME, client_id=config["OIDC_CLIENT_ID"], client_secret=config["OIDC_CLIENT_SECRET"],
        server_metadata_url=config["OIDC_ISSUER"].rstrip("/") + DISCOVERY_PATH,
        client_kwargs={
            "scope": " ".join(_list(config["OIDC_SCOPES"])), "code_challenge_method": "S256",
            "token_endpoint_auth_method": config["OIDC_TOKEN_ENDPOINT_AUTH_METHOD"],
            "leeway": config["OIDC_LEEWAY_SECONDS"], "default_timeout": config["OIDC_TIMEOUT_SECONDS"],
        })
    app.extensions[EXTENSION] = oauth.create_client(CLIENT_NAME)


def _client():
    return current_app.extensions[EXTENSION]


def algorithms() -> list[str]:
    return [alg for alg in _list(current_app.config["OIDC_ALGORITHMS"]) if alg.lower() != "none"]


def metadata() -> dict:
    """The provider's discovery document (fetched once per process), its issuer checked and its ID token algorithms
    narrowed to the pinned ones: Authlib's ID token check accepts what this list holds."""
    client = _client()
    try:
        found = client.load_server_metadata()
    except (requests.RequestException, ValueError) as error:
        raise ProviderUnavailable(f"discovery failed: {type(error).__name__}") from None
    expected = current_app.config["OIDC_ISSUER"].rstrip("/")
    if str(found.get("issuer", "")).rstrip("/") != expected:
        client.server_metadata.pop("_loaded_at", None)  # fetched again next time
        raise ProviderUnavailable("discovery names another issuer")
    advertised = found.get("id_token_signing_alg_values_supported") or algorithms()
    pinned = [alg for alg in algorithms() if alg in advertised]
    if not pinned:
        raise ProviderUnavailable("the provider signs with none of OIDC_ALGORITHMS")
    found["id_token_signing_alg_values_supported"] = pinned
    return found


def authorization_redirect(redirect_uri: str):
    """The redirect to the provider's sign-in, with a new state, nonce and PKCE verifier kept in the session."""
    metadata()
    # One attempt at a time: those left unfinished (the button clicked again) would swell the session's cookie.
    for key in [key for key in session if key.startswith(f"_state_{CLIENT_NAME}_")]:
        session.pop(key)
    extra = {}
    acr_values = current_app.config["OIDC_ACR_VALUES"].strip()
    if acr_values:
        extra["acr_values"] = acr_values
    # Providers put amr (and acr) in the ID token only when asked with the claims parameter (ProConnect does so).
    wanted = {}
    if _list(current_app.config["OIDC_MFA_AMR"]):
        wanted["amr"] = {"essential": True}
    if _list(current_app.config["OIDC_MFA_ACR"]):
        wanted["acr"] = None
    if wanted:
        extra["claims"] = json.dumps({"id_token": wanted}, separators=(",", ":"))
    try:
        return _client().authorize_redirect(redirect_uri, **extra)
    except requests.RequestException as error:
        raise ProviderUnavailable(type(error).__name__) from None


def identity_from_callback(issuer_param: str | None) -> ProviderIdentity:
    """Reads the provider's answer on the callback URL: the code exchanged (once, with its PKCE verifier), the ID
    token and userinfo verified. Raises AnswerRefused or ProviderUnavailable."""
    found = metadata()
    issuer = found["issuer"]
    client_id = current_app.config["OIDC_CLIENT_ID"]
    # RFC 9207: the issuer the answer comes from, when the provider says it (a mix-up with another provider).
    if issuer_param is not None and issuer_param.rstrip("/") != issuer.rstrip("/"):
        raise AnswerRefused("iss parameter of another provider")
    claims_options = {"iss": {"essential": True, "value": issuer}, "aud": {"essential": True, "value": client_id}}
    try:
        token = _client().authorize_access_token(claims_options=claims_options,
                                                 leeway=current_app.config["OIDC_LEEWAY_SECONDS"])
    except OAuthError as error:  # state unknown or used, code refused by the provider, access denied...
        raise AnswerRefused(f"oauth: {error.error}") from None
    except JoseError as error:  # signature, algorithm, key, claims (iss, aud, exp, nonce...)
        raise AnswerRefused(f"id token: {type(error).__name__}") from None
    except requests.RequestException as error:
        raise ProviderUnavailable(f"token: {type(error).__name__}") from None
    claims = token.get("userinfo")
    if not claims or not token.get("id_token") or not claims.get("sub"):
        raise AnswerRefused("no ID token")
    profile = _userinfo(token, found, claims["sub"]) if found.get("userinfo_endpoint") else {}
    merged = {**claims, **profile}
    # A provider trusted with e-mails (OIDC_TRUST_EMAIL, ProConnect's are its directories') may leave email_verified
    # out; one that says false is believed.
    stated = merged.get("email_verified")
    email_verified = stated is True or (stated is None and current_app.config["OIDC_TRUST_EMAIL"])
    amr = claims.get("amr") or []
    return ProviderIdentity(
        issuer=issuer, subject=str(claims["sub"]),
        email=(merged.get("email") or None), email_verified=email_verified,
        given_name=merged.get("given_name"), family_name=merged.get("usual_name") or merged.get("family_name"),
        amr=tuple(str(value) for value in amr) if isinstance(amr, list) else (),
        acr=claims.get("acr"), id_token=token["id_token"])


def _userinfo(token: dict, found: dict, subject: str) -> dict:
    """Userinfo right after the token (ProConnect's access tokens live 60 s), as JSON or as a JWT signed with the
    provider's keys (ProConnect), whose `sub` must be the ID token's (OIDC Core 5.3.2)."""
    client = _client()
    try:
        response = client.get(found["userinfo_endpoint"], token=token)
        response.raise_for_status()
    except OAuthError as error:
        raise AnswerRefused(f"userinfo: {error.error}") from None
    except requests.RequestException as error:
        raise ProviderUnavailable(f"userinfo: {type(error).__name__}") from None
    if response.headers.get("Content-Type", "").split(";")[0].strip() == "application/jwt":
        profile = _verified_jwt(response.text, found["issuer"])
    else:
        try:
            profile = response.json()
        except ValueError:
            raise AnswerRefused("userinfo is not JSON") from None
    if not isinstance(profile, dict) or str(profile.get("sub")) != subject:
        raise AnswerRefused("userinfo of another subject")
    return profile


def _verified_jwt(value: str, issuer: str) -> dict:
    client = _client()
    registry = JWSRegistry(algorithms=algorithms())
    try:
        try:
            decoded = jwt.decode(value, KeySet.import_key_set(client.fetch_jwk_set()), registry=registry)
        except InvalidKeyIdError:  # the provider rolled its keys
            decoded = jwt.decode(value, KeySet.import_key_set(client.fetch_jwk_set(force=True)), registry=registry)
        jwt.JWTClaimsRegistry(leeway=current_app.config["OIDC_LEEWAY_SECONDS"], iss={"value": issuer},
                              aud={"value": current_app.config["OIDC_CLIENT_ID"]}).validate(decoded.claims)
    except JoseError as error:
        raise AnswerRefused(f"userinfo: {type(error).__name__}") from None
    except requests.RequestException as error:
        raise ProviderUnavailable(f"keys: {type(error).__name__}") from None
    return decoded.claims


def did_mfa(identity: ProviderIdentity) -> bool:
    """Whether the provider says it checked more than one factor, as OIDC_MFA_AMR / OIDC_MFA_ACR define it."""
    amr = set(_list(current_app.config["OIDC_MFA_AMR"]))
    acr = set(_list(current_app.config["OIDC_MFA_ACR"]))
    return bool(amr & set(identity.amr)) or (identity.acr is not None and identity.acr in acr)


def public_url(endpoint: str) -> str:
    """A URL registered at the provider (callback, post-logout), on PUBLIC_URL: never built from the request's Host
    header, which behind a proxy may not be the public name."""
    return current_app.config["PUBLIC_URL"].rstrip("/") + url_for(endpoint)


def logout_url(id_token: str, post_logout_redirect_uri: str) -> str | None:
    """The provider's end-session URL (RP-initiated logout) for this ID token; None when it has none or is down."""
    try:
        if not metadata().get("end_session_endpoint"):
            return None
        return _client().create_logout_url(post_logout_redirect_uri=post_logout_redirect_uri,
                                           id_token_hint=id_token)["url"]
    except ProviderUnavailable:
        return None
