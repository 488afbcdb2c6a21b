"""A territory's online booking page (its switch, its sectors, their CSV import, an address tried) and each sector's
page (its communes and streets, the lieux and agents serving it). Authorised by lapins.policies: "administer" the
territory, "configure" a sector."""
from __future__ import annotations

import base64
import binascii
import zlib

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from lapins import policies
from lapins.admin.blueprint import bp
from lapins.admin.forms import ConfirmForm
from lapins.admin.sector_forms import (
    AddressCheckForm, RemoveZoneForm, SectorImportForm, SectorMembersForm, ZoneForm,
)
from lapins.infra.extensions import db
from lapins.models import Sector, Territory
from lapins.sectors import editing, imports
from lapins.sectors.communes import communes
from lapins.sectors.serving import address_sectors

SHOWN_UNSECTORED = 30
KEPT_CHECKED_BYTES = 1024 * 1024  # a checked file up to this size is sent back with the page, to be applied as is


def _territory(territory_id: int) -> Territory:
    territory = db.session.get(Territory, territory_id)
    policies.authorize(current_user, "administer", territory)
    return territory


def _sector(sector_id: int) -> Sector:
    sector = db.session.get(Sector, sector_id)
    policies.authorize(current_user, "configure", sector)
    return sector


def _online_page(territory: Territory, *, import_form: SectorImportForm | None = None,
                 report: imports.SectorReport | None = None, import_error: str | None = None,
                 checked: str | None = None, status: int = 200):
    check_form = AddressCheckForm(request.args)
    tried = None
    if request.args.get("commune") or request.args.get("commune_code"):
        try:
            commune = editing.resolve_commune(communes(), territory.number, code=check_form.commune_code.data,
                                              typed=check_form.commune.data)
        except editing.SectorError as error:
            check_form.commune.errors = [str(error)]
        else:
            found = address_sectors(territory.id, commune.code, check_form.street.data or None, commune.city_code)
            tried = (commune, [sector for sector in db.session.scalars(
                db.select(Sector).where(Sector.id.in_(found)).order_by(Sector.name))])
    return render_template(
        "admin/online_booking.html", territory=territory, summaries=editing.summaries(territory),
        configured=policies.configured_organisation_ids(current_user, territory),
        import_form=import_form or SectorImportForm(formdata=None), report=report, import_error=import_error,
        checked=checked, shown_unsectored=SHOWN_UNSECTORED, check_form=check_form, tried=tried,
        confirm_form=ConfirmForm(), max_megabytes=imports.MAX_BYTES // 1024 // 1024), status


@bp.route("/territoires/<int:territory_id>/en-ligne")
def online_booking(territory_id: int):
    return _online_page(_territory(territory_id))


@bp.route("/territoires/<int:territory_id>/en-ligne/interrupteur", methods=["POST"])
def toggle_online_booking(territory_id: int):
    territory = _territory(territory_id)
    if ConfirmForm().validate_on_submit():
        territory.online_booking = not territory.online_booking
        db.session.commit()
        flash("Prise de rendez-vous en ligne ouverte dans le département." if territory.online_booking else
              "Prise de rendez-vous en ligne fermée dans tout le département : les familles doivent appeler.",
              "success")
    return redirect(url_for("admin.online_booking", territory_id=territory.id))


def _uploaded(form: SectorImportForm) -> bytes | None:
    """The file sent, or the one checked before and sent back with the page; None when there is neither."""
    upload = form.file.data
    if upload is not None and getattr(upload, "filename", ""):
        return upload.stream.read(imports.MAX_BYTES + 1)
    if form.checked.data:
        try:
            # Bounded: a forged field cannot make the server inflate more than a file may hold.
            return zlib.decompressobj().decompress(base64.b64decode(form.checked.data, validate=True),
                                                   imports.MAX_BYTES + 1)
        except (binascii.Error, zlib.error, ValueError):
            return None
    return None


@bp.route("/territoires/<int:territory_id>/secteurs/import", methods=["POST"])
def import_sectors(territory_id: int):
    territory = _territory(territory_id)
    if request.content_length is not None and request.content_length > 2 * imports.MAX_BYTES:
        return _online_page(territory, import_error=f"Fichier trop volumineux : {imports.MAX_BYTES // 1024 // 1024} Mo "
                                                    "au plus. Rien n'a été enregistré.", status=413)
    form = SectorImportForm()
    if not form.validate_on_submit():
        return _online_page(territory, import_form=form, import_error="Le formulaire a expiré : envoyez le fichier à "
                                                                      "nouveau.", status=400)
    data = _uploaded(form)
    if data is None:
        return _online_page(territory, import_form=form, import_error="Choisissez le fichier CSV des secteurs.",
                            status=422)
    apply = request.form.get("action") == "apply"
    try:
        report = (imports.apply if apply else imports.check)(territory, data, communes())
    except imports.SectorFileError as error:
        report = None
        if apply:
            try:
                report = imports.check(territory, data, communes())
            except imports.SectorFileError:
                pass
        message = str(error)
        if "Rien n'a été" not in message:
            message += " Rien n'a été enregistré."
        return _online_page(territory, import_form=form, report=report, import_error=message, status=422)
    if report.applied:
        flash(f"Secteurs enregistrés : {len(report.sectors)} secteur(s), {report.zone_count} commune(s) ou rue(s).",
              "success")
        return redirect(url_for("admin.online_booking", territory_id=territory.id))
    checked = base64.b64encode(zlib.compress(data)).decode() if report.ok and len(data) <= KEPT_CHECKED_BYTES \
        else None
    return _online_page(territory, import_form=form, report=report, checked=checked,
                        status=200 if report.ok else 422)


def _sector_page(sector: Sector, *, members_form: SectorMembersForm | None = None, zone_form: ZoneForm | None = None,
                 status: int = 200):
    scope = policies.configured_organisation_ids(current_user, sector.territory)
    lieux, agents = editing.territory_lieux(sector.territory, scope), editing.territory_agents(sector.territory, scope)
    shown_lieux, shown_agents = {lieu.id for lieu in lieux}, {agent.id for agent in agents}
    if members_form is None:
        members_form = SectorMembersForm(formdata=None, lieux=[lieu.id for lieu in sector.lieux],
                                         agents=[agent.id for agent in sector.agents])
    gazetteer = communes()
    zones = [(zone, gazetteer.get(zone.commune_code)) for zone in sector.zones]
    others = (sum(lieu.id not in shown_lieux for lieu in sector.lieux),
              sum(agent.id not in shown_agents for agent in sector.agents))
    return render_template("admin/sector.html", sector=sector, territory=sector.territory, lieux=lieux, agents=agents,
                           others=others, members_form=members_form, zone_form=zone_form or ZoneForm(formdata=None), zones=zones,
                           remove_form=RemoveZoneForm(formdata=None)), status


@bp.route("/secteurs/<int:sector_id>", methods=["GET", "POST"])
def sector(sector_id: int):
    sector = _sector(sector_id)
    if request.method == "GET":
        return _sector_page(sector)
    form = SectorMembersForm()
    if form.validate_on_submit():
        try:
            editing.set_members(sector, form.lieux.data or [], form.agents.data or [],
                                policies.configured_organisation_ids(current_user, sector.territory))
        except editing.SectorError as error:
            db.session.rollback()
            form.form_errors.append(str(error))
        else:
            flash(f"Secteur « {sector.name} » : {len(sector.lieux)} lieu(x) et {len(sector.agents)} agent(s) le "
                  "servent.", "success")
            return redirect(url_for("admin.sector", sector_id=sector.id))
    return _sector_page(sector, members_form=form, status=422)


@bp.route("/secteurs/<int:sector_id>/zones", methods=["POST"])
def add_sector_zone(sector_id: int):
    sector = _sector(sector_id)
    form = ZoneForm()
    if form.validate_on_submit():
        try:
            commune = editing.resolve_commune(communes(), sector.territory.number, code=form.commune_code.data,
                                              typed=form.commune.data)
            editing.add_zone(sector, commune, form.street.data or None)
        except editing.SectorError as error:
            db.session.rollback()
            form.commune.errors = [*form.commune.errors, str(error)]
        else:
            what = f"La rue {form.street.data} de {commune.name}" if form.street.data else commune.name
            flash(f"{what} fait désormais partie du secteur « {sector.name} ».", "success")
            return redirect(url_for("admin.sector", sector_id=sector.id))
    return _sector_page(sector, zone_form=form, status=422)


@bp.route("/secteurs/<int:sector_id>/zones/retirer", methods=["POST"])
def remove_sector_zone(sector_id: int):
    sector = _sector(sector_id)
    form = RemoveZoneForm()
    if form.validate_on_submit():
        try:
            zone_id = int(form.zone.data) if (form.zone.data or "").isdigit() and len(form.zone.data) < 10 else None
            zone = editing.remove_zone(sector, zone_id)
        except editing.SectorError as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            commune = communes().get(zone.commune_code)
            name = commune.name if commune else zone.commune_code
            flash(f"{'La rue ' + zone.street_code + ' de ' if zone.street_code else ''}{name} ne fait plus partie du "
                  f"secteur « {sector.name} ».", "success")
    return redirect(url_for("admin.sector", sector_id=sector.id))
