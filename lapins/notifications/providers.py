"""The backend each message goes through: the operator a territory chose (else the deployment's, SMS_BACKEND), with
the territory's own credentials when it stored some (else the environment's for that operator).

SMS_BACKEND=console keeps every SMS in the dev inbox, whatever the territories chose: a copy of a production
database on a developer's machine never texts a family. A third operator is one more name in OPERATORS, one more
branch in `_deployment_backend` and `_own_backend` (docs/deploy.md, « Ajouter un opérateur »).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from flask import Flask, current_app

from lapins.infra import crypto
from lapins.notifications.backends import (
    ConsoleEmailBackend, ConsoleSmsBackend, EmailBackend, ProviderAccount, SmsBackend, TransientError,
)
from lapins.notifications.brevo import BrevoSmsBackend
from lapins.notifications.email import SmtpEmailBackend
from lapins.notifications.twilio import TwilioSmsBackend

# The operators a territory may choose, with the name shown to people.
OPERATORS = {"twilio": "Twilio", "brevo": "Brevo"}
# What builds the backend of the deployment's account of each operator, from the settings.
_FROM_CONFIG: dict[str, Callable[[Mapping], SmsBackend]] = {
    "twilio": TwilioSmsBackend.from_config, "brevo": BrevoSmsBackend.from_config,
}


def operator_of(chosen: str | None, app: Flask | None = None) -> str:
    """The operator a territory's SMS leave through: "console" under SMS_BACKEND=console, else the territory's
    choice (`chosen`), else the deployment's."""
    default = (app or current_app).config["SMS_BACKEND"]
    if default == "console":
        return "console"
    return chosen if chosen in OPERATORS else default


def has_deployment_account(operator: str, app: Flask | None = None) -> bool:
    """Whether the environment holds credentials of this operator (a territory without its own may use them)."""
    config = (app or current_app).config
    if operator == "twilio":
        return bool(config.get("TWILIO_ACCOUNT_SID") and config.get("TWILIO_AUTH_TOKEN"))
    if operator == "brevo":
        return bool(config.get("BREVO_API_KEY"))
    return False


def sms_backend(app: Flask | None = None, account: ProviderAccount | None = None) -> SmsBackend:
    """The SMS backend chosen by SMS_BACKEND, built once per process; with a territory's `account`, the backend of
    its operator, with its own credentials when it has some (built once per process and credentials, see
    `_own_backend`), else the environment's for that operator."""
    app = app or current_app
    default = app.config["SMS_BACKEND"]
    if account is not None and default != "console":
        if _has_own_credentials(account):
            return _own_backend(app, account)
        if account.operator != default:
            return _deployment_backend(app, account.operator)
    backend = app.extensions.get("lapins.sms_backend")
    if backend is None:
        if default == "console":
            backend = ConsoleSmsBackend()
        elif default in _FROM_CONFIG:
            backend = _FROM_CONFIG[default](app.config)
        else:
            raise RuntimeError(f"SMS_BACKEND inconnu : {default!r} (choix : console, {', '.join(OPERATORS)}).")
        app.extensions["lapins.sms_backend"] = backend
    return backend


def email_backend(app: Flask | None = None) -> EmailBackend:
    """The email backend chosen by EMAIL_BACKEND, built once per process."""
    app = app or current_app
    backend = app.extensions.get("lapins.email_backend")
    if backend is None:
        name = app.config["EMAIL_BACKEND"]
        if name == "smtp":
            backend = SmtpEmailBackend.from_config(app.config)
        elif name == "console":
            backend = ConsoleEmailBackend()
        else:
            raise RuntimeError(f"EMAIL_BACKEND inconnu : {name!r} (choix : console, smtp).")
        app.extensions["lapins.email_backend"] = backend
    return backend


def _has_own_credentials(account: ProviderAccount) -> bool:
    if account.operator == "twilio":
        return bool(account.account_sid_encrypted and account.auth_token_encrypted)
    return bool(account.api_key_encrypted)


def _deployment_backend(app: Flask, operator: str) -> SmsBackend:
    """The environment's account of an operator other than SMS_BACKEND's, for territories that chose it without
    credentials of their own; built once per process."""
    cache: dict[str, SmsBackend] = app.extensions.setdefault("lapins.operator_sms_backends", {})
    backend = cache.get(operator)
    if backend is None:
        if operator not in _FROM_CONFIG:
            raise TransientError(f"Opérateur SMS inconnu : {operator!r}.", code="credentials")
        try:
            backend = _FROM_CONFIG[operator](app.config)
        except RuntimeError:
            raise TransientError(f"Le département a choisi {OPERATORS[operator]} sans identifiants propres, et "
                                 "l'installation n'en a pas : un administrateur doit les saisir dans les paramètres "
                                 "du département.", code="credentials") from None
        cache[operator] = backend
    return backend


def _own_backend(app: Flask, account: ProviderAccount) -> SmsBackend:
    """The backend of a territory's own account, cached on its stored (encrypted) credentials and the deployment's
    settings of that operator: the same credentials reuse one client and its kept-alive connection; new ones (saved
    again, another operator, or deleted and the environment's used) replace the territory's old client."""
    if account.operator == "twilio":
        key = (account.territory_id, "twilio", account.account_sid_encrypted, account.auth_token_encrypted,
               app.config.get("TWILIO_BASE_URL") or "", app.config.get("TWILIO_TIMEOUT_SECONDS"))
    else:
        key = (account.territory_id, account.operator, account.api_key_encrypted,
               app.config.get("BREVO_BASE_URL") or "", app.config.get("BREVO_TIMEOUT_SECONDS"))
    cache: dict[tuple, SmsBackend] = app.extensions.setdefault("lapins.territory_sms_backends", {})
    backend = cache.get(key)
    if backend is None:
        name = OPERATORS.get(account.operator, account.operator)
        try:
            if account.operator == "twilio":
                backend = TwilioSmsBackend.for_account(crypto.decrypt(account.account_sid_encrypted),
                                                       crypto.decrypt(account.auth_token_encrypted), app.config)
            else:
                backend = BrevoSmsBackend.for_key(crypto.decrypt(account.api_key_encrypted), app.config)
        except crypto.InvalidToken:
            raise TransientError(f"Identifiants {name} du département illisibles (la clé LAPINS_ENCRYPTION_KEY a "
                                 "changé ?) : un administrateur doit les saisir de nouveau.", code="credentials") from None
        for stale in [known for known in cache if known[0] == account.territory_id]:
            del cache[stale]
        cache[key] = backend
    return backend
