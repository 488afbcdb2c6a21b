"""Usagers: find a family by name or phone, create it, add relatives, see its rdvs."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload
from wtforms import SelectChoice

from lapins import policies
from lapins.agenda.blueprint import bp
from lapins.agenda import duplicates
from lapins.agenda.usager_forms import (
    ExistingGuardianForm, GuardianRemovalForm, UsagerForm, UsagerWithChildForm,
)
from lapins.auth.views import safe_next
from lapins.infra.extensions import db
from lapins.models import Organisation, Participation, Rdv, RdvStatus, Usager
from lapins.models.rdvs import participation_usagers, rdv_usagers
from lapins.locale.phones import e164_or_none
from lapins.waitlist import entries as waitlist_entries
from lapins.agenda.waitlist import usager_form

SEARCH_LIMIT = 50


def search_usagers(actor, query: str, limit: int = SEARCH_LIMIT) -> list[Usager]:
    """Usagers the agent may see whose name starts with the words typed, or whose phone is the number typed."""
    query = query.strip()[:100]
    if not query:
        return []
    statement = policies.usager_scope(actor)
    organisations = _actor_organisations(actor)
    phone = e164_or_none(query, organisations[0].territory.number) if organisations else None
    if phone:
        # A child rarely has a phone of its own: the number finds the family, parent and children.
        parents = select(Usager.id).where(Usager.phone == phone)
        statement = statement.where(or_(Usager.phone == phone, Usager.responsible_id.in_(parents),
                                        Usager.second_responsible_id.in_(parents)))
    else:
        words = [word for word in (w.lower().strip("%_\\") for w in query.split()[:4]) if word]
        if not words:
            return []
        for word in words:
            pattern = word.replace("%", "").replace("_", "") + "%"
            statement = statement.where(or_(func.lower(Usager.last_name).like(pattern),
                                            func.lower(Usager.first_name).like(pattern)))
    statement = statement.options(selectinload(Usager.responsible))
    return list(db.session.scalars(statement.order_by(Usager.last_name, Usager.first_name).limit(limit)))


def _actor_organisations(actor) -> list[Organisation]:
    return [role.organisation for role in sorted(actor.roles, key=lambda role: role.organisation.name)]


def _get_usager(usager_id: int, action: str = "view") -> Usager:
    usager = db.session.get(Usager, usager_id)
    if usager is not None and usager.merged_into_id is not None:
        # A merged file's tombstone: its pages are the kept file's (a bookmark, an old link, a search result).
        policies.authorize(current_user, "view", usager)
        flash("Ce dossier a été fusionné avec un autre : voici le dossier conservé.", "info")
        abort(redirect(url_for(request.endpoint, **(request.view_args | {"usager_id": usager.merged_into_id}))
                       if request.method == "GET" else url_for("agenda.usager_detail", usager_id=usager.merged_into_id)))
    policies.authorize(current_user, action, usager)
    return usager


@bp.route("/usagers")
def usagers():
    query = request.args.get("q", "")
    return render_template("agenda/usagers/index.html", query=query, results=search_usagers(current_user, query),
                           next_url=safe_next(request.args.get("next")))


@bp.route("/usagers/nouveau", methods=["GET", "POST"])
def new_usager():
    responsible = None
    if request.args.get("responsable", "").isdigit():
        responsible = _get_usager(int(request.args["responsable"]), "edit")
    organisations = _actor_organisations(current_user)
    next_url = safe_next(request.args.get("next"))
    # From the booking form, a new family comes with its child: the booking goes on, at the same slot, for the child.
    with_child = next_url is not None and responsible is None
    form_class = UsagerWithChildForm if with_child else UsagerForm
    form = form_class(territory_number=organisations[0].territory.number)
    if len(organisations) > 1:
        form.organisation_id.choices = [SelectChoice(organisation.id, organisation.name) for organisation in organisations]
    else:
        del form.organisation_id
    if request.method == "GET" and responsible is not None:
        form.last_name.data = responsible.last_name
    if form.validate_on_submit():
        chosen = form.organisation_id.data if "organisation_id" in form else organisations[0].id
        organisation = next(o for o in organisations if o.id == chosen)
        usager = Usager(territory_id=organisation.territory_id, responsible=responsible, organisations=[organisation])
        _fill(usager, form)
        db.session.add(usager)
        booked_for = usager
        if with_child and form.has_child:
            booked_for = Usager(territory_id=organisation.territory_id, responsible=usager,
                                organisations=[organisation],
                                first_name=form.child_first_name.data.strip(),
                                last_name=(form.child_last_name.data or "").strip() or usager.last_name,
                                birth_date=form.child_birth_date.data)
            db.session.add(booked_for)
        db.session.commit()
        if booked_for is usager:
            flash(f"{usager.full_name} a été ajouté(e).", "success")
        else:
            flash(f"{usager.full_name} et {booked_for.full_name} ont été ajoutés : le rendez-vous est pour "
                  f"{booked_for.first_name}.", "success")
        if next_url:
            separator = "&" if "?" in next_url else "?"
            return redirect(f"{next_url}{separator}usager_id={booked_for.id}")
        return redirect(url_for("agenda.usager_detail", usager_id=usager.id))
    return render_template("agenda/usagers/form.html", form=form, responsible=responsible, usager=None,
                           with_child=with_child), 422 if form.errors else 200


@bp.route("/usagers/<int:usager_id>")
def usager_detail(usager_id: int):
    return detail_page(_get_usager(usager_id))


def detail_page(usager: Usager, *, guardian_form: ExistingGuardianForm | None = None, code: int = 200):
    """The usager's page; `guardian_form` with its errors when choosing an existing responsible was refused."""
    family = [usager.id] + [child.id for child in usager.children]
    rdvs = db.session.scalars(
        policies.rdv_scope(current_user)
        .where(Rdv.id.in_(select(rdv_usagers.c.rdv_id).where(rdv_usagers.c.usager_id.in_(family))))
        .order_by(Rdv.starts_at.desc())
        .limit(200)
    ).all()
    # Collective sessions: the family's places (their own status), in the sessions the agent may see.
    places = db.session.scalars(
        select(Participation).join(Rdv, Rdv.id == Participation.rdv_id)
        .where(Rdv.id.in_(policies.rdv_scope(current_user).with_only_columns(Rdv.id)),
               Participation.id.in_(select(participation_usagers.c.participation_id)
                                    .where(participation_usagers.c.usager_id.in_(family))))
        .order_by(Rdv.starts_at.desc()).limit(200)).all()
    return render_template("agenda/usagers/detail.html", usager=usager, rdvs=rdvs, tz=usager.territory.tz,
                           places=places,
                           history=attendance_history(rdvs), waitlist_form=usager_form(usager),
                           duplicates=duplicates.find_candidates(usager, current_user),
                           waitlist_entries=waitlist_entries.usager_entries(current_user, usager),
                           guardian_form=guardian_form or ExistingGuardianForm(formdata=None),
                           removal_form=GuardianRemovalForm()), code


LATE_CANCELLATION_HOURS = 48


def attendance_history(rdvs: list[Rdv]) -> dict[str, int]:
    """What agents look at before booking a family again: past no-shows and cancellations, late ones apart."""
    excused = [rdv for rdv in rdvs if rdv.status == RdvStatus.EXCUSED]
    return {
        "seen": sum(rdv.status == RdvStatus.SEEN for rdv in rdvs),
        "noshow": sum(rdv.status == RdvStatus.NOSHOW for rdv in rdvs),
        "excused": len(excused),
        "excused_late": sum(rdv.cancelled_hours_before is not None
                            and rdv.cancelled_hours_before < LATE_CANCELLATION_HOURS for rdv in excused),
        "revoked": sum(rdv.status == RdvStatus.REVOKED for rdv in rdvs),
    }


@bp.route("/usagers/<int:usager_id>/modifier", methods=["GET", "POST"])
def edit_usager(usager_id: int):
    usager = _get_usager(usager_id, "edit")
    form = UsagerForm(obj=usager, territory_number=usager.territory.number)
    del form.organisation_id
    if form.validate_on_submit():
        _fill(usager, form)
        db.session.commit()
        flash("Les informations ont été enregistrées.", "success")
        return redirect(url_for("agenda.usager_detail", usager_id=usager.id))
    return render_template("agenda/usagers/form.html", form=form, responsible=usager.responsible, usager=usager), \
        422 if form.errors else 200


def _fill(usager: Usager, form: UsagerForm) -> None:
    usager.first_name = form.first_name.data.strip()
    usager.last_name = form.last_name.data.strip()
    usager.birth_date = form.birth_date.data
    if usager.phone != form.phone_e164:  # a new number gets a fresh chance with the SMS provider
        usager.phone_undeliverable_at = usager.phone_error = None
    usager.phone = form.phone_e164
    usager.email = (form.email.data or "").strip().lower() or None
    usager.sms_consent = bool(form.sms_consent.data and usager.phone)
    usager.email_consent = bool(form.email_consent.data and usager.email)
    address = form.address
    usager.address_street, usager.address_postcode = address.street, address.postcode
    usager.address_commune, usager.address_access = address.commune, address.access
    usager.commune_insee = address.commune_insee.upper() if address.commune_insee else None
