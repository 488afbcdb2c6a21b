"""A usager's data on request: its export (page and JSON file) and its erasure, from the usager's page."""
from __future__ import annotations

import json

from flask import Response, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import BooleanField, StringField
from wtforms.validators import DataRequired, Length

from lapins import policies
from lapins.infra.extensions import db
from lapins.infra.forms import Form, strip
from lapins.models import Usager, utcnow
from lapins.privacy import erasure, export
from lapins.privacy.blueprint import bp


class ErasureForm(Form):
    last_name = StringField("Nom de famille de l'usager", filters=[strip], validators=[
        DataRequired(message="Saisissez le nom de famille de l'usager pour confirmer."), Length(max=80)])
    confirm = BooleanField("Je confirme l'effacement : il est définitif et ne peut pas être annulé.",
                           validators=[DataRequired(message="Cochez la case pour confirmer l'effacement.")])


def _usager(usager_id: int, action: str) -> Usager:
    usager = db.session.get(Usager, usager_id)
    policies.authorize(current_user, action, usager)
    return usager


def _private(response: Response) -> Response:
    """Personal data: never kept by a browser's or a proxy's cache."""
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global()
def may_erase_usager(usager: Usager) -> bool:
    return policies.can(current_user, "erase", usager)


@bp.get("/usagers/<int:usager_id>/donnees")
def usager_data(usager_id: int):
    usager = _usager(usager_id, "view")
    data = export.usager_data(current_user, usager)
    return _private(Response(render_template("privacy/export.html", usager=usager, data=data)))


@bp.get("/usagers/<int:usager_id>/donnees.json")
def usager_data_file(usager_id: int):
    usager = _usager(usager_id, "view")
    data = export.usager_data(current_user, usager)
    filename = f"donnees-usager-{usager.id}-{utcnow().astimezone(usager.territory.tz):%Y-%m-%d}.json"
    return _private(Response(json.dumps(data, ensure_ascii=False, indent=2), mimetype="application/json",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'}))


@bp.route("/usagers/<int:usager_id>/effacer", methods=["GET", "POST"])
def erase_usager(usager_id: int):
    usager = _usager(usager_id, "erase")
    form = ErasureForm()
    if form.validate_on_submit():
        if erasure.normalized_name(form.last_name.data) != erasure.normalized_name(usager.last_name):
            form.last_name.errors.append("Ce nom ne correspond pas au nom de famille de l'usager : rien n'a été effacé.")
        else:
            report = erasure.erase(current_user, usager)
            flash("Les données de l'usager ont été effacées." if report.usager_deleted else
                  "L'usager a été retiré de votre organisation et ses données y ont été effacées ; "
                  "il reste suivi par une autre organisation.", "success")
            return redirect(url_for("agenda.usagers"))
    plan = erasure.plan(current_user, usager)
    status = 422 if form.errors else 200
    return _private(Response(render_template("privacy/erase.html", usager=usager, form=form, plan=plan), status))
