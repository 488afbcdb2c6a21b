"""An agent's own preferences ("Mes préférences"): being e-mailed when a family cancels one of their rdvs, and, for
administrators, the second factor (enrolling with a QR code, confirming with a code, disabling with a code).

Only the signed-in agent's own row is read and written; who may enrol is decided by
lapins.policies.may_use_second_factor.
"""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from wtforms import BooleanField

from lapins import policies
from lapins.auth.blueprint import bp
from lapins.auth import second_factor as codes
from lapins.auth.forms import ConfirmForm, EnrolmentForm, SecondFactorForm
from lapins.auth.views import keep_this_session
from lapins.infra.extensions import db
from lapins.infra.forms import Form


class PreferencesForm(Form):
    notify_on_family_cancellation = BooleanField(
        "M'envoyer un e-mail quand une famille annule ou déplace un de mes rendez-vous")


def save_preferences(agent, *, notify_on_family_cancellation: bool) -> None:
    agent.notify_on_family_cancellation = notify_on_family_cancellation
    db.session.commit()


def _preferences_page(form: PreferencesForm, disable_form: SecondFactorForm | None = None, status: int = 200):
    return render_template("auth/preferences.html", form=form, start_form=ConfirmForm(prefix="start"),
                           disable_form=disable_form or SecondFactorForm(prefix="disable"),
                           may_use_second_factor=policies.may_use_second_factor(current_user),
                           may_issue_api_tokens=policies.may_issue_api_tokens(current_user)), status


@bp.route("/preferences", methods=["GET", "POST"])
@login_required
def preferences():
    form = PreferencesForm(obj=current_user)
    if form.validate_on_submit():
        save_preferences(current_user, notify_on_family_cancellation=form.notify_on_family_cancellation.data)
        flash("Vos préférences sont enregistrées.", "success")
        return redirect(url_for("auth.preferences"))
    return _preferences_page(form, status=422 if request.method == "POST" else 200)


def _authorize_second_factor() -> None:
    if not policies.may_use_second_factor(current_user):
        abort(403)


@bp.route("/preferences/double-authentification/activer", methods=["POST"])
@login_required
def second_factor_start():
    _authorize_second_factor()
    if current_user.second_factor_enabled:
        return redirect(url_for("auth.preferences"))
    codes.start_enrolment(current_user)  # CSRFProtect has checked the form's token
    return redirect(url_for("auth.second_factor_enrol"))


@bp.route("/preferences/double-authentification", methods=["GET", "POST"])
@login_required
def second_factor_enrol():
    _authorize_second_factor()
    if current_user.second_factor_enabled:
        flash("La double authentification est déjà activée sur votre compte.", "info")
        return redirect(url_for("auth.preferences"))
    secret = codes.pending_secret(current_user)
    if secret is None:
        return redirect(url_for("auth.preferences"))
    form = EnrolmentForm()
    if form.validate_on_submit():
        recovery_codes = codes.confirm_enrolment(current_user, form.code.data)
        if recovery_codes is not None:
            keep_this_session(current_user._get_current_object())  # the agent's other sessions are ended
            # Shown once, in this answer alone: they are kept hashed and never go into the session cookie.
            return render_template("auth/recovery_codes.html", recovery_codes=recovery_codes)
        form.code.errors.append("Ce code ne correspond pas. Vérifiez que l'application affiche le compte Lapins "
                                "que vous venez d'ajouter, et saisissez le code en cours.")
    uri = codes.provisioning_uri(current_user, secret)
    return render_template("auth/second_factor_enrol.html", form=form, qr_code=codes.qr_code_svg(uri),
                           secret=codes.grouped(secret)), 422 if form.errors else 200


@bp.route("/preferences/double-authentification/desactiver", methods=["POST"])
@login_required
def second_factor_disable():
    _authorize_second_factor()
    if not current_user.second_factor_enabled:
        return redirect(url_for("auth.preferences"))
    disable_form = SecondFactorForm(prefix="disable")
    if disable_form.validate_on_submit():
        check = codes.check_code(current_user, disable_form.code.data)
        if check.ok:
            codes.disable(current_user)
            keep_this_session(current_user._get_current_object())  # the agent's other sessions are ended
            flash("La double authentification est désactivée : seul votre mot de passe est demandé à la connexion. "
                  "Vos autres sessions ouvertes sont fermées.", "success")
            return redirect(url_for("auth.preferences"))
        disable_form.code.errors.append(check.problem)
    return _preferences_page(PreferencesForm(obj=current_user, formdata=None), disable_form, status=422)
