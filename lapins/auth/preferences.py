"""An agent's own preferences ("Mes préférences"): for now, being e-mailed when a family cancels one of their rdvs.

Only the signed-in agent's own row is read and written, so there is nothing for lapins.policies to decide.
"""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from wtforms import BooleanField

from lapins.auth import bp
from lapins.extensions import db
from lapins.forms import Form


class PreferencesForm(Form):
    notify_on_family_cancellation = BooleanField(
        "M'envoyer un e-mail quand une famille annule un de mes rendez-vous")


def save_preferences(agent, *, notify_on_family_cancellation: bool) -> None:
    agent.notify_on_family_cancellation = notify_on_family_cancellation
    db.session.commit()


@bp.route("/preferences", methods=["GET", "POST"])
@login_required
def preferences():
    form = PreferencesForm(obj=current_user)
    if form.validate_on_submit():
        save_preferences(current_user, notify_on_family_cancellation=form.notify_on_family_cancellation.data)
        flash("Vos préférences sont enregistrées.", "success")
        return redirect(url_for("auth.preferences"))
    return render_template("auth/preferences.html", form=form), 422 if request.method == "POST" else 200
