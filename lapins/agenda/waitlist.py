"""The waiting list (file d'attente) for agents: put a family on it from its page, see and withdraw entries."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from lapins import policies
from lapins.agenda.blueprint import bp
from lapins.agenda.waitlist_forms import entry_form
from lapins.infra.extensions import db
from lapins.infra.forms import Form
from lapins.models import Lieu, Motif, Usager, WaitlistEntry
from lapins.waitlist import entries


def usager_form(usager: Usager):
    """The add-to-waiting-list form of a usager's page, with the motifs and lieux the agent may use."""
    # A collective motif's families wait for one session, from that session's page (its « file d'attente »).
    motifs = db.session.scalars(policies.motif_scope(current_user).where(Motif.active.is_(True),
                                                                         Motif.collective.is_(False))).all()
    lieux = db.session.scalars(policies.lieu_scope(current_user).where(Lieu.active.is_(True))).all()
    return entry_form(motifs, lieux)


def _organisations():
    return sorted((role.organisation for role in current_user.roles), key=lambda organisation: organisation.name)


@bp.route("/file-d-attente")
def waitlist():
    organisations = _organisations()
    chosen = request.args.get("organisation_id", type=int)
    if chosen not in {organisation.id for organisation in organisations}:
        chosen = organisations[0].id if organisations else None
    listed = entries.organisation_entries(current_user, chosen) if chosen else []
    tz = organisations[0].territory.tz if organisations else None
    return render_template("agenda/waitlist.html", organisations=organisations, chosen=chosen, entries=listed,
                           held=entries.held_offers([entry.id for entry in listed]), tz=tz, form=Form())


@bp.route("/usagers/<int:usager_id>/file-d-attente", methods=["POST"])
def add_to_waitlist(usager_id: int):
    usager = db.session.get(Usager, usager_id)
    policies.authorize(current_user, "edit", usager)
    form = usager_form(usager)
    if not form.validate_on_submit():
        flash(" ".join(error for errors in form.errors.values() for error in errors) or "Formulaire invalide.", "error")
        return redirect(url_for("agenda.usager_detail", usager_id=usager.id) + "#file-d-attente")
    motif = db.session.get(Motif, form.motif_id.data)
    lieu = db.session.get(Lieu, form.lieu_id.data) if form.lieu_id.data else None
    if lieu is not None:
        policies.authorize(current_user, "view", lieu)
    try:
        entries.add_by_agent(current_user, usager, motif, lieu, form.priority.data or 0)
    except entries.EntryError as error:
        flash(error.message, "error")
    else:
        flash(f"{usager.full_name} est sur la file d'attente ({motif.name}).", "success")
    return redirect(url_for("agenda.usager_detail", usager_id=usager.id) + "#file-d-attente")


@bp.route("/file-d-attente/<int:entry_id>/retirer", methods=["POST"])
def withdraw_from_waitlist(entry_id: int):
    entry = db.session.get(WaitlistEntry, entry_id)
    if entry is None:
        abort(404)
    policies.authorize(current_user, "book", entry.organisation)
    if not Form().validate_on_submit():
        abort(400)
    try:
        entries.withdraw(current_user, entry)
    except entries.EntryError as error:
        flash(error.message, "error")
    else:
        flash("La demande a été retirée de la file d'attente.", "success")
    return redirect(url_for("agenda.waitlist", organisation_id=entry.organisation_id))
