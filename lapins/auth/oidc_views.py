"""The pages of signing in with the OpenID Connect provider: the start (a redirect to it), the callback (the checks
of lapins.auth.oidc, then lapins.auth.identities), and the page the provider sends back to after its logout.
Every failure is a French page saying what to do; the password form stays where it is allowed."""
from __future__ import annotations

import logging

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from lapins.auth import identities, oidc
from lapins.auth.blueprint import bp
from lapins.auth.views import OIDC, OIDC_LOGOUT, SIGNED_OUT, ask_second_factor, safe_next, sign_in

logger = logging.getLogger(__name__)

OIDC_NEXT = "oidc_next"  # where to go once signed in, kept across the trip to the provider
SIGNING_OUT = "oidc_signing_out"  # « Se déconnecter » went on to the provider's logout

REFUSALS = {
    identities.UNKNOWN: ("Votre compte n'existe pas encore dans Lapins",
                         "Votre compte n'existe pas encore dans Lapins, demandez à votre administrateur de vous "
                         "inviter avec l'adresse électronique que connaît {provider}."),
    identities.INACTIVE: ("Compte désactivé",
                          "Votre compte Lapins est désactivé : demandez à votre administrateur de le réactiver."),
    identities.UNVERIFIED: ("Adresse électronique non vérifiée",
                            "{provider} n'a pas confirmé votre adresse électronique : Lapins ne peut pas retrouver "
                            "votre compte. Demandez à votre administrateur."),
    identities.LINKED_ELSEWHERE: ("Compte déjà lié",
                                  "Votre compte Lapins est déjà lié à un autre compte {provider}. Connectez-vous "
                                  "avec celui-ci, ou demandez à votre administrateur de délier votre compte."),
}


@bp.context_processor
def oidc_button() -> dict:
    """The sign-in page's button, when a provider is configured."""
    return {"oidc_button": current_app.config["OIDC_BUTTON_LABEL"] if oidc.enabled() else None}


def _problem(title: str, message: str, status: int, logout: str | None = None):
    return render_template("auth/oidc_problem.html", title=title, message=message, provider_logout=logout,
                           provider=current_app.config["OIDC_PROVIDER_NAME"]), status


def _unavailable():
    provider = current_app.config["OIDC_PROVIDER_NAME"]
    return _problem(f"{provider} ne répond pas", f"{provider} ne répond pas pour le moment. Réessayez dans quelques "
                    "minutes, ou connectez-vous avec votre adresse électronique et votre mot de passe Lapins si votre "
                    "département le permet.", 503)


@bp.route("/connexion/oidc")
def oidc_start():
    if not oidc.enabled():
        abort(404)
    if current_user.is_authenticated:
        return redirect(url_for("agenda.home"))
    session[OIDC_NEXT] = safe_next(request.args.get("next"))
    try:
        return oidc.authorization_redirect(oidc.public_url("auth.oidc_callback"))
    except oidc.ProviderUnavailable as error:
        logger.warning("OIDC provider unavailable at sign-in start: %s", error)
        return _unavailable()


@bp.route("/connexion/oidc/retour")
def oidc_callback():
    if not oidc.enabled():
        abort(404)
    next_page = safe_next(session.pop(OIDC_NEXT, None))
    provider = current_app.config["OIDC_PROVIDER_NAME"]
    try:
        identity = oidc.identity_from_callback(request.args.get("iss"))
    except oidc.AnswerRefused as error:
        logger.warning("OIDC answer refused: %s", error)
        return _problem("La connexion n'a pas abouti",
                        f"La connexion avec {provider} n'a pas abouti (elle a expiré, a déjà servi ou n'a pas pu "
                        "être vérifiée). Recommencez depuis la page de connexion.", 400)
    except oidc.ProviderUnavailable as error:
        logger.warning("OIDC provider unavailable at callback: %s", error)
        return _unavailable()
    outcome = identities.agent_for(identity)
    if outcome.agent is None:
        title, message = REFUSALS[outcome.refusal]
        logger.info("OIDC sign-in refused: %s", outcome.refusal)
        # Signed in at the provider all the same: offer to sign out there (another account may be the right one).
        return _problem(title, message.format(provider=provider), 403,
                        oidc.logout_url(identity.id_token, oidc.public_url("auth.oidc_signed_out")))
    agent = outcome.agent
    if agent.second_factor_enabled and not oidc.did_mfa(identity):
        return ask_second_factor(agent, next_page, OIDC, identity.id_token)
    return sign_in(agent, next_page, OIDC, identity.id_token)


@bp.route("/connexion/oidc/sortie")
def oidc_leaving():
    """After « Se déconnecter » of a session opened with the provider: on to its logout, by the page's refresh (and a
    link), a navigation the Content-Security-Policy's form-action does not govern."""
    if not oidc.enabled():
        abort(404)
    target = session.pop(OIDC_LOGOUT, None)
    if not target:
        return redirect(url_for("auth.login"))
    session[SIGNING_OUT] = True  # the page the provider sends back to tells the whole of it
    return render_template("auth/oidc_leaving.html", target=target,
                           provider=current_app.config["OIDC_PROVIDER_NAME"])


@bp.route("/connexion/oidc/deconnecte")
def oidc_signed_out():
    """Where the provider sends the browser back after its logout (post_logout_redirect_uri)."""
    if not oidc.enabled():
        abort(404)
    provider = current_app.config["OIDC_PROVIDER_NAME"]
    flash(f"{SIGNED_OUT}, et de {provider}." if session.pop(SIGNING_OUT, False) else
          f"Vous êtes déconnecté de {provider}.", "info")
    return redirect(url_for("auth.login"))
