"""Choosing a password from an invitation or a reset link, and asking for a reset link."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import func, select
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from lapins.auth import accounts
from lapins.auth.blueprint import bp
from lapins.infra.extensions import db
from lapins.infra.forms import Form
from lapins.models import Agent

RESET_SENT = ("Si un compte actif correspond à cette adresse, un courriel vient de lui être envoyé avec un lien "
              f"valable {accounts.RESET_MINUTES} minutes.")


class ResetRequestForm(Form):
    email = EmailField("Adresse électronique", validators=[
        DataRequired("Saisissez votre adresse électronique."),
        Email("Adresse électronique invalide (exemple : prenom.nom@departement.fr)."), Length(max=254)])


class NewPasswordForm(Form):
    password = PasswordField("Nouveau mot de passe", validators=[DataRequired("Choisissez un mot de passe."),
                                                                  Length(max=accounts.MAX_LENGTH)])
    confirm = PasswordField("Confirmez le mot de passe", validators=[
        DataRequired("Saisissez le mot de passe une seconde fois."),
        EqualTo("password", "Les deux mots de passe ne sont pas identiques.")])


@bp.route("/mot-de-passe-oublie", methods=["GET", "POST"])
def forgot_password():
    form = ResetRequestForm()
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        # The same answer, the same work and so the same time either way, or the page would tell who has an
        # account: the agent's id alone is read, and a task is queued even for no one (it then finds nothing).
        agent_id = db.session.scalar(select(Agent.id).where(func.lower(Agent.email) == email, Agent.active.is_(True)))
        accounts.queue_account_email(agent_id, "reset")
        flash(RESET_SENT, "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot_password.html", form=form), 422 if form.errors else 200


@bp.route(accounts.RESET_PATH + "<token>", methods=["GET", "POST"])
def reset_password(token: str):
    return _choose_password(token, "reset")


@bp.route(accounts.INVITATION_PATH + "<token>", methods=["GET", "POST"])
def accept_invitation(token: str):
    return _choose_password(token, "invitation")


def _choose_password(token: str, purpose: str):
    if current_user.is_authenticated:
        return redirect(url_for("agenda.home"))
    check = accounts.check_token(token, purpose)
    if check.agent is None:
        return render_template("auth/link_unusable.html", message=check.problem), 410
    form = NewPasswordForm()
    if form.validate_on_submit():
        problem = accounts.password_problem(form.password.data, check.agent)
        if problem:
            form.password.errors.append(problem)
        else:
            check.agent.set_password(form.password.data)
            db.session.commit()
            flash("Votre mot de passe est enregistré : connectez-vous.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/new_password.html", form=form, agent=check.agent, purpose=purpose,
                           min_length=accounts.MIN_LENGTH), 422 if form.errors else 200
