from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import joinedload

from lapins.auth import bp
from lapins.auth.forms import LoginForm
from lapins.extensions import db, login_manager
from lapins.models import Agent, AgentRole, Organisation

login_manager.login_view = "auth.login"
login_manager.login_message = "Connectez-vous pour accéder à cette page."
login_manager.login_message_category = "info"


# Built once: every request of a signed-in agent runs it.
AGENT_WITH_ORGANISATIONS = (
    select(Agent).where(Agent.id == bindparam("agent_id"))
    .options(joinedload(Agent.roles).joinedload(AgentRole.organisation).joinedload(Organisation.territory))
)


def agent_with_organisations(agent_id: int) -> Agent | None:
    """The agent with their roles, organisations and territories, in one query."""
    return db.session.execute(AGENT_WITH_ORGANISATIONS, {"agent_id": agent_id}).unique().scalar_one_or_none()


@login_manager.user_loader
def load_agent(agent_id: str) -> Agent | None:
    """The signed-in agent, once per request; the policies read their roles and the pages their territory."""
    return agent_with_organisations(int(agent_id)) if agent_id.isdigit() else None


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
        if agent is None or not agent.check_password(form.password.data) or not agent.active:
            form.password.errors.append("Adresse électronique ou mot de passe incorrect.")
        else:
            session.clear()
            session.permanent = True  # expires after PERMANENT_SESSION_LIFETIME without activity
            login_user(agent)
            return redirect(safe_next(request.args.get("next")) or url_for("agenda.home"))
    return render_template("auth/login.html", form=form), 200 if not form.errors else 422


@bp.route("/deconnexion", methods=["POST"])
@login_required
def logout():
    logout_user()
    session.clear()
    flash("Vous êtes déconnecté.", "info")
    return redirect(url_for("auth.login"))
