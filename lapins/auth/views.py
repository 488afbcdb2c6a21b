"""Signing in and out: the password, then, for an agent who enrolled, the code of their second factor."""
import secrets
import time
from functools import cache
from urllib.parse import urlsplit

from flask import current_app, flash, has_request_context, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import joinedload
from werkzeug.security import check_password_hash, generate_password_hash

from lapins.auth.blueprint import bp
from lapins.auth import identities, oidc
from lapins.auth import second_factor as second_factor_codes
from lapins.auth.forms import LoginForm, SecondFactorForm
from lapins.auth.limits import PENDING_SECOND_FACTOR
from lapins.infra.extensions import db, login_manager
from lapins.models import Agent, AgentRole, Organisation, utcnow
from lapins.models.agents import parse_session_user_id
from lapins.models.light_agent import LightAgent, light_agent

login_manager.login_view = "auth.login"
login_manager.login_message = "Connectez-vous pour accéder à cette page."
login_manager.login_message_category = "info"
# Flask-Login's "basic" session protection only marks a session "not fresh" when the client's address or browser
# changes; Lapins asks for a fresh login nowhere, so it protected nothing, and it would make the events feed's fast
# path (lapins.agenda.fast_feed) compute the client's fingerprint and hand the request to Flask to re-sign the cookie.
login_manager.session_protection = None

PENDING_SECOND_FACTOR_SECONDS = 5 * 60  # between the password and the code
OIDC_ID_TOKEN = "oidc_id_token"  # the ID token of a session opened with the provider: its logout's id_token_hint
OIDC_LOGOUT = "oidc_logout"  # the provider's end-session URL, from « Se déconnecter » to the page that goes there
SIGNED_OUT = "Vous êtes déconnecté, sur cet appareil comme sur tous ceux où votre session était ouverte"
PASSWORD, OIDC = "password", "oidc"  # Agent.last_sign_in_method


# Built once: every request of a signed-in agent runs it.
AGENT_WITH_ORGANISATIONS = (
    select(Agent).where(Agent.id == bindparam("agent_id"))
    .options(joinedload(Agent.roles).joinedload(AgentRole.organisation).joinedload(Organisation.territory))
)


def agent_with_organisations(agent_id: int) -> Agent | None:
    """The agent with their roles, organisations and territories, in one query."""
    return db.session.execute(AGENT_WITH_ORGANISATIONS, {"agent_id": agent_id}).unique().scalar_one_or_none()


LIGHT_AGENT_VIEW = "light_agent_view"


def light_agent_view(view):
    """Mark a read-only view whose signed-in agent (and the agents it looks at) may be LightAgents."""
    setattr(view, LIGHT_AGENT_VIEW, True)
    return view


def wants_light_agent() -> bool:
    """Whether the current request's view was marked with light_agent_view."""
    if not has_request_context() or request.endpoint is None:
        return False
    return getattr(current_app.view_functions.get(request.endpoint), LIGHT_AGENT_VIEW, False)


@login_manager.user_loader
def load_agent(user_id: str) -> Agent | LightAgent | None:
    """The signed-in agent, once per request; the policies read their roles and the pages their territory.

    The session holds "id:generation" (Agent.get_id): a session of an older generation has been ended
    (Agent.end_sessions), and one from before generations holds a plain id; either way nobody is signed in, and
    Flask-Login asks for the login page. A deactivated agent is not authenticated (Agent.is_active). The views marked
    light_agent_view (the calendar's events feed) get the agent without the ORM (lapins.models.light_agent).
    """
    parsed = parse_session_user_id(user_id)
    if parsed is None:
        return None
    agent_id, generation = parsed
    agent = light_agent(agent_id) if wants_light_agent() else agent_with_organisations(agent_id)
    if agent is None or agent.session_generation != generation:
        return None
    return agent


def safe_next(target: str | None) -> str | None:
    """Only follow a `next` that stays on this site."""
    if not target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc and target.startswith("/") else None


@bp.route("/connexion", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("agenda.home"))
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        agent = db.session.scalar(select(Agent).where(func.lower(Agent.email) == email))
        if agent is None:
            check_password_hash(unknown_account_hash(), form.password.data)  # as slow as for a real account
        if agent is None or not agent.check_password(form.password.data) or not agent.active:
            form.password.errors.append("Adresse électronique ou mot de passe incorrect.")
        elif oidc.enabled() and identities.oidc_required_for(agent):
            # Told only once the password is right: the refusal says which département the account belongs to.
            provider = current_app.config["OIDC_PROVIDER_NAME"]
            form.form_errors.append(f"Votre département demande de se connecter avec {provider} : utilisez le bouton "
                                    f"« {current_app.config['OIDC_BUTTON_LABEL']} ».")
        elif agent.second_factor_enabled:
            return ask_second_factor(agent, safe_next(request.args.get("next")), PASSWORD)
        else:
            return sign_in(agent, safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), 200 if not form.errors else 422


def ask_second_factor(agent: Agent, next_page: str | None, method: str, id_token: str | None = None):
    """The first step passed (password, or the provider without MFA): the code is asked next."""
    session.clear()
    session[PENDING_SECOND_FACTOR] = {"agent": agent.id, "at": int(time.time()), "next": next_page,
                                      "method": method, "id_token": id_token}
    return redirect(url_for("auth.second_factor"))


def sign_in(agent: Agent, next_page: str | None, method: str = PASSWORD, id_token: str | None = None):
    agent.last_signed_in_at = utcnow()
    agent.last_sign_in_method = method
    db.session.commit()
    session.clear()
    session.permanent = True  # expires after PERMANENT_SESSION_LIFETIME without activity
    login_user(agent)
    if id_token:
        session[OIDC_ID_TOKEN] = id_token
    return redirect(next_page or url_for("agenda.home"))


@cache
def unknown_account_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


def agent_pending_second_factor() -> tuple[Agent | None, dict]:
    """The agent who gave their password and has not yet typed their code (for PENDING_SECOND_FACTOR_SECONDS)."""
    pending = session.get(PENDING_SECOND_FACTOR)
    if not isinstance(pending, dict) or not isinstance(pending.get("agent"), int) \
            or time.time() - pending.get("at", 0) > PENDING_SECOND_FACTOR_SECONDS:
        return None, {}
    agent = db.session.get(Agent, pending["agent"])
    if agent is None or not agent.active or not agent.second_factor_enabled:
        return None, {}
    return agent, pending


@bp.route("/connexion/code", methods=["GET", "POST"])
def second_factor():
    if current_user.is_authenticated:
        return redirect(url_for("agenda.home"))
    agent, pending = agent_pending_second_factor()
    if agent is None:
        session.pop(PENDING_SECOND_FACTOR, None)
        flash("Votre connexion n'a pas abouti à temps : saisissez à nouveau votre mot de passe.", "info")
        return redirect(url_for("auth.login"))
    form = SecondFactorForm()
    if form.validate_on_submit():
        check = second_factor_codes.check_code(agent, form.code.data)
        if check.ok:
            method = OIDC if pending.get("method") == OIDC else PASSWORD
            response = sign_in(agent, safe_next(pending.get("next")), method, pending.get("id_token") or None)
            if check.recovery_codes_left is not None:
                flash(f"Code de secours accepté (il ne servira plus). Il vous en reste {check.recovery_codes_left} ; "
                      "pour en obtenir de nouveaux, désactivez puis réactivez la double authentification dans "
                      "« Mes préférences ».", "warning")
            return response
        form.code.errors.append(check.problem)
    return render_template("auth/second_factor.html", form=form), 200 if not form.errors else 422


@bp.route("/deconnexion", methods=["POST"])
@login_required
def logout():
    """« Se déconnecter » ends every open session of the agent, on this browser and on any other (a shared office PC
    left signed in, a lost phone), as the button's hint says."""
    current_user.end_sessions()
    db.session.commit()
    id_token = session.get(OIDC_ID_TOKEN)
    logout_user()
    session.clear()
    # A session opened with the provider is ended there too (RP-initiated logout), which comes back to the login page.
    provider_logout = oidc.logout_url(id_token, oidc.public_url("auth.oidc_signed_out")) \
        if id_token and oidc.enabled() else None
    if provider_logout is None:
        flash(SIGNED_OUT + ".", "info")
        return redirect(url_for("auth.login"))
    # Not a redirect to the provider: the Content-Security-Policy's form-action 'self' stops a form's redirects to
    # another site. A page of Lapins sends the browser there instead (lapins.auth.oidc_views.oidc_leaving).
    session[OIDC_LOGOUT] = provider_logout
    return redirect(url_for("auth.oidc_leaving"))


def keep_this_session(agent: Agent) -> None:
    """After agent.end_sessions() was committed by this agent's own request: this browser's session goes on, under
    the new generation; the agent's other sessions stay ended."""
    login_user(agent)
