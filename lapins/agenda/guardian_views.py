"""A child's responsible adults on the usager pages: a second one created or chosen among existing files, one
removed (the rules are lapins.agenda.guardians'); an rdv's « ne prévenir que … » on its page."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import SelectChoice

from lapins import policies
from lapins.agenda import guardians
from lapins.agenda.blueprint import bp
from lapins.agenda.rdv_forms import NotifyOnlyForm
from lapins.agenda.usager_forms import ExistingGuardianForm, GuardianRemovalForm, UsagerForm
from lapins.agenda.usagers import _fill, _get_usager, detail_page
from lapins.infra.extensions import db
from lapins.models import Rdv, Usager
from lapins.notifications import outbox


def _detail(child: Usager):
    return redirect(url_for("agenda.usager_detail", usager_id=child.id) + "#responsables")


@bp.route("/usagers/<int:usager_id>/responsables/nouveau", methods=["GET", "POST"])
def new_guardian(usager_id: int):
    """A new adult's file, made the child's responsible in the same transaction (nothing stored on a refusal)."""
    child = _get_usager(usager_id, "edit")
    if len(child.guardians) >= guardians.MAX_GUARDIANS:
        flash(f"{child.full_name} a déjà deux responsables : retirez-en un avant d'en ajouter un autre.", "error")
        return _detail(child)
    form = UsagerForm(territory_number=child.territory.number)
    del form.organisation_id
    if form.validate_on_submit():
        guardian = Usager(territory_id=child.territory_id, organisations=list(child.organisations))
        _fill(guardian, form)
        try:
            guardians.add_guardian(child, guardian)
        except guardians.GuardianRefused as refusal:
            db.session.rollback()
            flash(refusal.message, "error")
            return _detail(child)
        db.session.add(guardian)
        db.session.commit()
        flash(f"{guardian.full_name} est maintenant responsable de {child.full_name}.", "success")
        return _detail(child)
    return render_template("agenda/usagers/form.html", form=form, responsible=None, usager=None, guardian_of=child), \
        422 if form.errors else 200


@bp.route("/usagers/<int:usager_id>/responsables", methods=["POST"])
def add_existing_guardian(usager_id: int):
    child = _get_usager(usager_id, "edit")
    form = ExistingGuardianForm()
    if form.validate_on_submit():
        guardian = db.session.get(Usager, form.number) if form.number else None
        if guardian is None or not policies.can(current_user, "view", guardian):
            form.usager_id.errors.append("Aucun dossier de ce numéro dans vos organisations : vérifiez le numéro.")
        else:
            try:
                guardians.add_guardian(child, guardian)
            except guardians.GuardianRefused as refusal:
                db.session.rollback()
                form.usager_id.errors.append(refusal.message)
            else:
                db.session.commit()
                flash(f"{guardian.full_name} est maintenant responsable de {child.full_name}.", "success")
                return _detail(child)
    return detail_page(child, guardian_form=form, code=422)


@bp.route("/usagers/<int:usager_id>/responsables/<int:guardian_id>/retirer", methods=["POST"])
def remove_guardian(usager_id: int, guardian_id: int):
    child = _get_usager(usager_id, "edit")
    guardian = db.session.get(Usager, guardian_id)
    policies.authorize(current_user, "view", guardian)
    if not GuardianRemovalForm().validate_on_submit():
        flash("Le formulaire a expiré : recommencez.", "error")
        return _detail(child)
    try:
        guardians.remove_guardian(child, guardian)
    except guardians.GuardianRefused as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
        return _detail(child)
    db.session.commit()
    flash(f"{guardian.full_name} n'est plus responsable de {child.full_name}.", "success")
    return _detail(child)


def notify_only_form(rdv: Rdv) -> NotifyOnlyForm | None:
    """The rdv page's « Qui prévenir ? », when a child of the rdv has two guardians."""
    choices = guardians.notify_only_choices(rdv.usagers)
    if not choices or not rdv.is_live:
        return None
    form = NotifyOnlyForm(formdata=None, notify_only_id=rdv.notify_only_id or 0)
    form.notify_only_id.choices = [SelectChoice(*choice) for choice in choices]
    return form


@bp.route("/rdvs/<int:rdv_id>/prevenir", methods=["POST"])
def set_notify_only(rdv_id: int):
    """Which guardian the rdv's messages go to from now on. Messages planned for the one left out are not sent
    (lapins.notifications.outbox checks before sending); the reminders of one told again are planned now."""
    rdv = db.session.get(Rdv, rdv_id)
    policies.authorize(current_user, "edit", rdv)
    back = redirect(url_for("agenda.rdv_detail", rdv_id=rdv.id) + "#qui-prevenir")
    form = NotifyOnlyForm()
    form.notify_only_id.choices = [SelectChoice(*choice) for choice in guardians.notify_only_choices(rdv.usagers)]
    if not rdv.is_live:
        flash("Ce rendez-vous est annulé : ses messages ne partent plus.", "error")
        return back
    if not form.validate_on_submit():
        flash(next(iter(form.errors.values()))[0], "error")
        return back
    try:
        only = guardians.chosen_guardian(form.notify_only_id.data, rdv.usagers)
    except guardians.GuardianRefused as refusal:
        flash(refusal.message, "error")
        return back
    rdv.notify_only = only
    db.session.flush()
    outbox.plan_missing_reminders(rdv)
    db.session.commit()
    flash(f"Seul(e) {only.full_name} sera prévenu(e) de ce rendez-vous." if only
          else "Les deux responsables seront prévenus de ce rendez-vous.", "success")
    return back
