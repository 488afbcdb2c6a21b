"""The pages of a territory's motif catalogue (issue 23.6): its administrators write the entries, each change previewed
motif by motif before it is saved; an organisation's administrators adopt an entry, or link one of their motifs to
one after comparing them field by field. Authorised by lapins.policies ("manage_catalogue" a territory, "configure"
an entry or an organisation, `authorize_adoption`)."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from lapins import policies
from lapins.admin import catalogue
from lapins.admin.blueprint import bp
from lapins.admin.catalogue_forms import CatalogueEntryForm, CatalogueLinkForm
from lapins.admin.forms import ConfirmForm
from lapins.admin.services import AdminError
from lapins.admin.views import _refused
from lapins.infra.extensions import db
from lapins.models import Motif, MotifCatalogueEntry, Organisation, Territory
from lapins.models.motifs import DEFAULT_ADJUSTABLE


# The form's KeptNumberFields (lapins.admin.forms): left out of a POST, they keep the entry's value.
KEPT = {"move_limit_hours", "family_moves_max", "booking_horizon_weeks", "online_min_hours", "online_max_days"}


def _catalogue_territory(territory_id: int) -> Territory:
    territory = db.session.get(Territory, territory_id)
    policies.authorize(current_user, "manage_catalogue", territory)
    return territory


@bp.route("/territoires/<int:territory_id>/catalogue")
def catalogue_entries(territory_id: int):
    territory = _catalogue_territory(territory_id)
    return render_template("admin/catalogue.html", territory=territory, entries=catalogue.entries(territory),
                           fields=catalogue.CATALOGUE_FIELDS)


def _entry_form_page(territory: Territory, entry: MotifCatalogueEntry):
    form = CatalogueEntryForm(obj=entry if entry.id else None)
    if not form.is_submitted():
        form.adjustable.data = list(entry.adjustable if entry.id else DEFAULT_ADJUSTABLE)
        if entry.id:
            form.location_type.data = entry.location_type.value
    plans = None
    if form.validate_on_submit():
        values, adjustable = form.catalogue_values(), set(form.adjustable.data)
        for name, value in values.items():  # a number a hand-made form left out stays as it was
            if value is None and name in KEPT:
                values[name] = getattr(entry, name) if entry.id else form[name].default
        digest = catalogue.fingerprint(entry, values, adjustable)
        plans = catalogue.plan_entry_change(entry, values, adjustable) if entry.id else []
        # Saved at once when no adopted motif changes; otherwise only once this very plan was shown and confirmed
        # (a confirmation of another plan — a motif adjusted meanwhile — shows the new one).
        if form.confirmation.data == digest or (not form.confirmation.data
                                                and not any(plan.changes for plan in plans)):
            try:
                applied = catalogue.save_entry(entry, values, adjustable)
            except AdminError as error:
                db.session.rollback()
                _refused(form, error)
            else:
                changed = sum(bool(plan.changes) for plan in applied)
                flash(f"Motif du catalogue « {entry.name} » enregistré."
                      + (f" {changed} motif(s) adopté(s) par les organisations mis à jour." if changed else ""),
                      "success")
                return redirect(url_for("admin.catalogue_entries", territory_id=territory.id))
        else:
            # Shown before saving: what each adopted motif will take, and what it keeps as its organisation's own.
            form.confirmation.data = digest
    status = 422 if form.errors else 200
    return render_template("admin/catalogue_entry_form.html", territory=territory, entry=entry, form=form,
                           plans=plans), status


@bp.route("/territoires/<int:territory_id>/catalogue/nouveau", methods=["GET", "POST"])
def new_catalogue_entry(territory_id: int):
    territory = _catalogue_territory(territory_id)
    return _entry_form_page(territory, MotifCatalogueEntry(territory_id=territory.id))


@bp.route("/catalogue/<int:catalogue_id>/modifier", methods=["GET", "POST"])
def edit_catalogue_entry(catalogue_id: int):
    entry = db.session.get(MotifCatalogueEntry, catalogue_id)
    policies.authorize(current_user, "configure", entry)
    return _entry_form_page(entry.territory, entry)


# --- An organisation's side: adopt, link, unlink -----------------------------------------------------------------

@bp.route("/organisations/<int:organisation_id>/catalogue")
def organisation_catalogue(organisation_id: int):
    organisation = db.session.get(Organisation, organisation_id)
    policies.authorize(current_user, "configure", organisation)
    return render_template("admin/organisation_catalogue.html", organisation=organisation,
                           entries=catalogue.entries(organisation.territory),
                           adopted=catalogue.adopted_by(organisation), confirm_form=ConfirmForm(),
                           fields=catalogue.CATALOGUE_FIELDS, shown=catalogue.shown)


@bp.route("/organisations/<int:organisation_id>/catalogue/<int:catalogue_id>/adopter", methods=["POST"])
def adopt_catalogue_entry(organisation_id: int, catalogue_id: int):
    organisation = db.session.get(Organisation, organisation_id)
    entry = db.session.get(MotifCatalogueEntry, catalogue_id)
    policies.authorize_adoption(current_user, organisation, entry)
    if not ConfirmForm().validate_on_submit():
        flash("La demande a expiré : réessayez.", "error")
        return redirect(url_for("admin.organisation_catalogue", organisation_id=organisation.id))
    try:
        motif = catalogue.adopt(organisation, entry)
    except AdminError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("admin.organisation_catalogue", organisation_id=organisation.id))
    flash(f"Motif « {motif.name} » adopté : ajustez ici ce que le territoire permet.", "success")
    return redirect(url_for("admin.edit_motif", motif_id=motif.id))


def _linkable_motif(motif_id: int) -> Motif:
    motif = db.session.get(Motif, motif_id)
    policies.authorize(current_user, "configure", motif)
    return motif


@bp.route("/motifs/<int:motif_id>/catalogue", methods=["GET", "POST"])
def link_motif(motif_id: int):
    """Compare the motif with an entry (GET ?entry=), then link it (POST)."""
    motif = _linkable_motif(motif_id)
    entries = catalogue.entries(motif.organisation.territory)
    form = CatalogueLinkForm(formdata=request.form if request.method == "POST" else request.args or None)
    form.entry.choices = [("", "Choisissez un motif du catalogue")] + [(str(e.id), e.name) for e in entries]
    chosen = _chosen_entry(form.entry.data)
    if request.method == "POST" and form.validate_on_submit():
        try:
            catalogue.link(motif, chosen)
        except AdminError as error:
            db.session.rollback()
            _refused(form, error)
        else:
            flash(f"Motif « {motif.name} » relié au catalogue du territoire (« {chosen.name} »).", "success")
            return redirect(url_for("admin.edit_motif", motif_id=motif.id))
    comparison = (catalogue.compare(motif, chosen) if chosen is not None
                  and chosen.territory_id == motif.organisation.territory_id else None)
    return render_template("admin/motif_catalogue_link.html", motif=motif, organisation=motif.organisation,
                           form=form, entries=entries, chosen=chosen if comparison else None,
                           comparison=comparison), 422 if form.errors else 200


def _chosen_entry(raw) -> MotifCatalogueEntry | None:
    """The entry named in the form, whatever its territory (the service refuses another's with a message)."""
    if not raw or not str(raw).isdigit() or len(str(raw)) > 12:
        return None
    return db.session.get(MotifCatalogueEntry, int(raw))


@bp.route("/motifs/<int:motif_id>/catalogue/detacher", methods=["POST"])
def unlink_motif(motif_id: int):
    motif = _linkable_motif(motif_id)
    if motif.catalogue_id is None:
        abort(404)
    if ConfirmForm().validate_on_submit():
        catalogue.unlink(motif)
        flash(f"Motif « {motif.name} » détaché du catalogue : il garde ses valeurs, et les changements du catalogue "
              "ne l'atteignent plus.", "success")
    return redirect(url_for("admin.edit_motif", motif_id=motif.id))
