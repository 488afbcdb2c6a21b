"""The administration pages. Each one authorises through lapins.policies: "administer" a territory (its organisations
and its territory administrators), "configure" an organisation (its name, phone, lieux, motifs and agents)."""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from lapins import policies
from lapins.admin import catalogue, services
from lapins.admin.blueprint import bp
from lapins.admin.forms import (
    ConfirmForm, InvitationForm, LieuForm, MotifForm, OrganisationForm, RoleForm, TerritoryAdminForm,
)
from lapins.admin.services import AdminError
from lapins.auth import identities
from lapins.infra.extensions import db
from lapins.models import Agent, Lieu, Motif, Organisation, Role, Territory


def _territory(territory_id: int) -> Territory:
    territory = db.session.get(Territory, territory_id)
    policies.authorize(current_user, "administer", territory)
    return territory


def _organisation(organisation_id: int) -> Organisation:
    organisation = db.session.get(Organisation, organisation_id)
    policies.authorize(current_user, "configure", organisation)
    return organisation


def _refused(form, error: AdminError) -> None:
    """The service's refusal shown next to its field (or above the form), as a field error would be."""
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = [*field.errors, str(error)]
    else:
        form.form_errors.append(str(error))


def _page(template: str, form=None, **context):
    return render_template(template, form=form, **context), 422 if form is not None and form.errors else 200


def _saved_or_page(form, save, done, back: str, template: str, **context):
    """Save a valid form (the service may still refuse it: shown next to its field) and flash `done(saved)`, or show
    the form again with 422."""
    if form.validate_on_submit():
        try:
            saved = save()
        except AdminError as error:
            db.session.rollback()
            _refused(form, error)
        else:
            flash(done(saved), "success")
            return redirect(back)
    return _page(template, form, **context)


@bp.route("/")
def index():
    territories = services.administered_territories(current_user)
    organisations = services.configured_organisations(current_user)
    if not territories and not organisations:
        abort(403)
    return render_template("admin/index.html", territories=territories, organisations=organisations)


# --- A territory's organisations and administrators ---------------------------------------------------------------

def _territory_page(territory: Territory, form: OrganisationForm, admin_form: TerritoryAdminForm):
    status = 422 if form.errors or admin_form.errors else 200
    return render_template("admin/organisations.html", territory=territory, form=form, admin_form=admin_form,
                           admins=services.territory_admins(territory), confirm_form=ConfirmForm()), status


@bp.route("/territoires/<int:territory_id>/organisations", methods=["GET", "POST"])
def organisations(territory_id: int):
    territory = _territory(territory_id)
    form = OrganisationForm(territory_number=territory.number, prefix="organisation")
    if form.validate_on_submit():
        try:
            organisation = services.create_organisation(territory, name=form.name.data, phone=form.phone_e164,
                                                       creator=current_user)
        except AdminError as error:
            _refused(form, error)
        else:
            flash(f"Organisation « {organisation.name} » créée. Invitez maintenant ses agents.", "success")
            return redirect(url_for("admin.agents", organisation_id=organisation.id))
    return _territory_page(territory, form, TerritoryAdminForm(formdata=None, prefix="admin"))


@bp.route("/territoires/<int:territory_id>/administrateurs", methods=["POST"])
def add_territory_admin(territory_id: int):
    territory = _territory(territory_id)
    admin_form = TerritoryAdminForm(prefix="admin")
    if admin_form.validate_on_submit():
        try:
            agent = services.add_territory_admin(territory, admin_form.email.data)
        except AdminError as error:
            _refused(admin_form, error)
        else:
            flash(f"{agent.full_name} administre désormais le territoire.", "success")
            return redirect(url_for("admin.organisations", territory_id=territory.id))
    return _territory_page(territory, OrganisationForm(formdata=None, territory_number=territory.number,
                                                       prefix="organisation"), admin_form)


@bp.route("/territoires/<int:territory_id>/administrateurs/<int:agent_id>/retirer", methods=["POST"])
def remove_territory_admin(territory_id: int, agent_id: int):
    territory = _territory(territory_id)
    agent = db.session.get(Agent, agent_id)
    if agent is None or territory.id not in agent.administered_territory_ids:
        abort(404)
    if ConfirmForm().validate_on_submit():
        try:
            services.remove_territory_admin(territory, agent, current_user)
        except AdminError as error:
            flash(str(error), "error")
        else:
            flash(f"{agent.full_name} n'administre plus le territoire.", "success")
    return redirect(url_for("admin.organisations", territory_id=territory.id))


@bp.route("/organisations/<int:organisation_id>/modifier", methods=["GET", "POST"])
def edit_organisation(organisation_id: int):
    organisation = _organisation(organisation_id)
    form = OrganisationForm(obj=organisation, territory_number=organisation.territory.number)
    return _saved_or_page(
        form, lambda: services.update_organisation(organisation, name=form.name.data, phone=form.phone_e164),
        lambda _: "Organisation enregistrée.", url_for("admin.lieux", organisation_id=organisation.id),
        "admin/organisation_form.html", organisation=organisation)


# --- Lieux ---------------------------------------------------------------------------------------------------

@bp.route("/organisations/<int:organisation_id>/lieux")
def lieux(organisation_id: int):
    organisation = _organisation(organisation_id)
    return render_template("admin/lieux.html", organisation=organisation, lieux=organisation.lieux)


def lieu_saved_message(lieu: Lieu) -> str:
    if lieu.active:
        return f"Lieu « {lieu.name} » enregistré."
    coming = services.coming_rdv_count(lieu)
    if not coming:
        return f"Lieu « {lieu.name} » enregistré, fermé : il n'est plus proposé à la prise de rendez-vous."
    return (f"Lieu « {lieu.name} » enregistré, fermé : il n'est plus proposé à la prise de rendez-vous. "
            f"{coming} rendez-vous à venir y restent prévus : déplacez-les vers un autre lieu ou annulez-les.")


def _lieu_form_page(organisation: Organisation, lieu: Lieu):
    form = LieuForm(obj=lieu if lieu.id else None, territory_number=organisation.territory.number)

    def save() -> Lieu:
        form.position_into(lieu)
        return services.save_lieu(lieu, name=form.name.data, address=form.address.data, phone=form.phone_e164,
                                  active=form.active.data)

    return _saved_or_page(
        form, save,
        lieu_saved_message, url_for("admin.lieux", organisation_id=organisation.id),
        "admin/lieu_form.html", organisation=organisation, lieu=lieu)


@bp.route("/organisations/<int:organisation_id>/lieux/nouveau", methods=["GET", "POST"])
def new_lieu(organisation_id: int):
    organisation = _organisation(organisation_id)
    return _lieu_form_page(organisation, Lieu(organisation_id=organisation.id))


@bp.route("/lieux/<int:lieu_id>/modifier", methods=["GET", "POST"])
def edit_lieu(lieu_id: int):
    lieu = db.session.get(Lieu, lieu_id)
    policies.authorize(current_user, "configure", lieu)
    return _lieu_form_page(lieu.organisation, lieu)


# --- Motifs --------------------------------------------------------------------------------------------------

@bp.route("/organisations/<int:organisation_id>/motifs")
def motifs(organisation_id: int):
    organisation = _organisation(organisation_id)
    rows = db.session.scalars(db.select(Motif).where(Motif.organisation_id == organisation.id)
                              .order_by(Motif.active.desc(), Motif.name))
    return render_template("admin/motifs.html", organisation=organisation, motifs=list(rows))


def _motif_form_page(organisation: Organisation, motif: Motif):
    form = MotifForm(obj=motif if motif.id else None)
    if motif.id and not form.is_submitted():
        form.location_type.data = motif.location_type.value

    entry = motif.catalogue_entry
    locked = [name for name in catalogue.CATALOGUE_FIELDS if not entry.is_adjustable(name)] if entry else []

    def save() -> Motif:
        # Adopted from the territory's catalogue: only what the entry lets the organisation adjust may differ.
        catalogue.forbidden_adjustment(motif, form.catalogue_values())
        # « Collectif » (issue 16), set apart from save_motif's other fields.
        services.set_collective(motif, form.collective.data, form.places_per_person.data)
        form.online_booking_into(motif)
        return services.save_motif(motif, name=form.name.data, duration_minutes=form.duration_minutes.data,
                                   location_type=form.location_type.data, color=form.color.data,
                                   active=form.active.data, notify=form.notify.data,
                                   cancellation_limit_hours=form.cancellation_limit_hours.data,
                                   reminder_offsets=form.reminder_offsets.data,
                                   move_limit_hours=form.move_limit_hours.data,
                                   family_moves_max=form.family_moves_max.data,
                                   booking_horizon_weeks=form.booking_horizon_weeks.data,
                                   discreet=form.discreet.data)

    return _saved_or_page(form, save, lambda saved: f"Motif « {saved.name} » enregistré.",
                          url_for("admin.motifs", organisation_id=organisation.id), "admin/motif_form.html",
                          organisation=organisation, motif=motif, entry=entry, locked=locked,
                          fixed={name: catalogue.shown(name, getattr(entry, name)) for name in locked},
                          hidden={name: catalogue.posted(getattr(entry, name)) for name in locked},
                          unlink_form=ConfirmForm())


@bp.route("/organisations/<int:organisation_id>/motifs/nouveau", methods=["GET", "POST"])
def new_motif(organisation_id: int):
    organisation = _organisation(organisation_id)
    return _motif_form_page(organisation, Motif(organisation_id=organisation.id))


@bp.route("/motifs/<int:motif_id>/modifier", methods=["GET", "POST"])
def edit_motif(motif_id: int):
    motif = db.session.get(Motif, motif_id)
    policies.authorize(current_user, "configure", motif)
    return _motif_form_page(motif.organisation, motif)


# --- Agents --------------------------------------------------------------------------------------------------

def _member(organisation: Organisation, agent_id: int):
    """An agent of this organisation (404 for any other: the URL names both)."""
    agent = db.session.get(Agent, agent_id)
    role = services.membership(organisation, agent)
    if role is None:
        abort(404)
    policies.authorize(current_user, "configure", agent)
    return agent, role


@bp.route("/organisations/<int:organisation_id>/agents")
def agents(organisation_id: int):
    organisation = _organisation(organisation_id)
    roles = services.members(organisation)
    schedules = {role.agent_id for role in roles if policies.can(current_user, "manage_schedule", role.agent)}
    links = identities.live_identities(role.agent_id for role in roles)
    unlinkable = {role.agent_id for role in roles
                  if role.agent_id in links and policies.can(current_user, "unlink_identity", role.agent)}
    return render_template("admin/agents.html", organisation=organisation, roles=roles, schedules=schedules,
                           links=links, unlinkable=unlinkable, provider=current_app.config["OIDC_PROVIDER_NAME"],
                           role_forms={role.agent_id: RoleForm(formdata=None, role=role.role.value,
                                                               prefix=f"agent-{role.agent_id}") for role in roles},
                           confirm_form=ConfirmForm())


@bp.route("/organisations/<int:organisation_id>/agents/inviter", methods=["GET", "POST"])
def invite_agent(organisation_id: int):
    organisation = _organisation(organisation_id)
    form = InvitationForm()
    return _saved_or_page(
        form, lambda: services.invite_agent(organisation, email=form.email.data, first_name=form.first_name.data,
                                            last_name=form.last_name.data, role=form.role.data),
        lambda agent: (f"Invitation envoyée à {agent.full_name} : le lien pour choisir son mot de passe vaut 7 jours."
                       if agent.password_hash is None else
                       f"{agent.full_name} fait maintenant partie de ce service : son compte et son mot de passe ne "
                       "changent pas."),
        url_for("admin.agents", organisation_id=organisation.id), "admin/invite.html", organisation=organisation)


@bp.route("/organisations/<int:organisation_id>/agents/<int:agent_id>/role", methods=["POST"])
def change_role(organisation_id: int, agent_id: int):
    organisation = _organisation(organisation_id)
    agent, role = _member(organisation, agent_id)
    form = RoleForm(prefix=f"agent-{agent.id}")
    if form.validate_on_submit():
        try:
            services.change_role(role, form.role.data, current_user)
        except AdminError as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            flash(f"{agent.full_name} : rôle « {Role(form.role.data).label} » enregistré.", "success")
    elif form.errors:
        flash(next(iter(form.errors.values()))[0], "error")
    return redirect(url_for("admin.agents", organisation_id=organisation.id))


@bp.route("/organisations/<int:organisation_id>/agents/<int:agent_id>/activation", methods=["POST"])
def toggle_agent(organisation_id: int, agent_id: int):
    organisation = _organisation(organisation_id)
    agent, _ = _member(organisation, agent_id)
    if ConfirmForm().validate_on_submit():
        try:
            services.set_active(agent, not agent.active, current_user)
        except AdminError as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            flash(f"Compte de {agent.full_name} réactivé." if agent.active else
                  f"Compte de {agent.full_name} désactivé : il ne peut plus se connecter ; ses rendez-vous passés "
                  "restent dans l'historique.", "success")
    return redirect(url_for("admin.agents", organisation_id=organisation.id))


@bp.route("/organisations/<int:organisation_id>/agents/<int:agent_id>/sessions", methods=["POST"])
def end_sessions(organisation_id: int, agent_id: int):
    organisation = _organisation(organisation_id)
    agent, _ = _member(organisation, agent_id)
    if ConfirmForm().validate_on_submit():
        try:
            services.end_sessions(agent, current_user)
        except AdminError as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            flash(f"Toutes les sessions de {agent.full_name} sont fermées : sur chacun de ses appareils, il lui faudra "
                  "se reconnecter.", "success")
    return redirect(url_for("admin.agents", organisation_id=organisation.id))


@bp.route("/organisations/<int:organisation_id>/agents/<int:agent_id>/identite/delier", methods=["POST"])
def unlink_identity(organisation_id: int, agent_id: int):
    organisation = _organisation(organisation_id)
    agent, _ = _member(organisation, agent_id)
    policies.authorize(current_user, "unlink_identity", agent)
    if ConfirmForm().validate_on_submit():
        try:
            services.unlink_identity(agent, current_user)
        except AdminError as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            provider = current_app.config["OIDC_PROVIDER_NAME"]
            flash(f"Le compte {provider} de {agent.full_name} est délié et ses sessions sont fermées : à sa prochaine "
                  f"connexion avec {provider}, son compte sera retrouvé par son adresse électronique.", "success")
    return redirect(url_for("admin.agents", organisation_id=organisation.id))


@bp.route("/organisations/<int:organisation_id>/agents/<int:agent_id>/invitation", methods=["POST"])
def resend_invitation(organisation_id: int, agent_id: int):
    organisation = _organisation(organisation_id)
    agent, _ = _member(organisation, agent_id)
    if ConfirmForm().validate_on_submit():
        try:
            services.resend_invitation(agent)
        except AdminError as error:
            flash(str(error), "error")
        else:
            flash(f"Invitation renvoyée à {agent.full_name}.", "success")
    return redirect(url_for("admin.agents", organisation_id=organisation.id))
