"""Pages of duplicates: the territory's likely duplicates, two files side by side, and the merge (CSRF included)."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import HiddenField, RadioField, SelectChoice

from lapins import policies
from lapins.agenda import duplicates
from lapins.agenda.blueprint import bp
from lapins.infra.extensions import db
from lapins.infra.forms import Form
from lapins.models import Usager


class MergeForm(Form):
    revision = HiddenField()


# One radio group per field of duplicates.MERGE_FIELDS: a field added there is a choice here with no other change.
for _spec in duplicates.MERGE_FIELDS:
    setattr(MergeForm, _spec.name, RadioField(_spec.label, default="kept", choices=[
        SelectChoice("kept", "Dossier gardé"), SelectChoice("removed", "Dossier fusionné")]))


def _pair(kept_id: int, removed_id: int) -> tuple[Usager, Usager]:
    kept, removed = db.session.get(Usager, kept_id), db.session.get(Usager, removed_id)
    policies.authorize(current_user, "view", kept)
    policies.authorize(current_user, "view", removed)
    return kept, removed


@bp.route("/usagers/doublons")
def duplicate_pairs():
    return render_template("agenda/usagers/duplicates.html", pairs=duplicates.territory_pairs(current_user))


@bp.route("/usagers/<int:usager_id>/fusion/<int:other_id>", methods=["GET", "POST"])
def merge_usagers(usager_id: int, other_id: int):
    """Compare the file `usager_id` (kept) with `other_id` (merged into it), and merge."""
    kept_id, removed_id = usager_id, other_id
    kept, removed = _pair(kept_id, removed_id)
    for usager in (kept, removed):
        if usager.merged_into_id is not None:
            flash("Ce dossier a déjà été fusionné : voici le dossier conservé.", "info")
            return redirect(url_for("agenda.usager_detail", usager_id=usager.merged_into_id))
    if kept.id == removed.id:
        flash("Choisissez deux dossiers différents.", "error")
        return redirect(url_for("agenda.usager_detail", usager_id=kept.id))
    policies.authorize(current_user, "merge", kept)
    policies.authorize(current_user, "merge", removed)
    form = MergeForm()
    problem = None
    if form.validate_on_submit():
        choices = {spec.name: form[spec.name].data for spec in duplicates.MERGE_FIELDS}
        try:
            report = duplicates.merge(current_user, kept_id, removed_id, choices, form.revision.data or "")
        except duplicates.MergeRefused as refusal:
            db.session.rollback()
            problem = str(refusal)
        else:
            db.session.commit()
            flash(f"Les deux dossiers n'en font plus qu'un : {report.rdvs} rendez-vous, {report.relatives} "
                  f"proche(s), {report.waitlist} demande(s) de file d'attente et {report.messages} message(s) "
                  "rattachés à ce dossier.", "success")
            return redirect(url_for("agenda.usager_detail", usager_id=kept_id))
        kept, removed = _pair(kept_id, removed_id)
        if kept.merged_into_id is not None or removed.merged_into_id is not None:
            flash(problem, "error")
            return redirect(url_for("agenda.usager_detail",
                                    usager_id=kept.merged_into_id or removed.merged_into_id or kept.id))
    elif request.method == "GET":
        for name, choice in duplicates.default_choices(kept, removed).items():
            form[name].data = choice
    form.revision.data = duplicates.revision(kept, removed)
    rows = [(spec, spec.shown(kept), spec.shown(removed)) for spec in duplicates.MERGE_FIELDS]
    counts = {usager.id: len(duplicates.rdv_ids(usager.id)) for usager in (kept, removed)}
    status = 409 if problem else 422 if form.errors else 200
    return render_template("agenda/usagers/merge.html", kept=kept, removed=removed, form=form, rows=rows,
                           counts=counts, problem=problem), status
