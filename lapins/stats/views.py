"""Pages and files of the statistics: parse the period and filters, check the scope, call lapins.stats, render."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import RadioField, SelectChoice

from lapins import policies
from lapins.infra.errors import render_error
from lapins.infra.celery_app import task_named
from lapins.infra.extensions import db
from lapins.infra.forms import Form
from lapins.models import Export, ExportStatus, Organisation, Territory, utcnow
from lapins.stats import experiment, exports, headline
from lapins.stats.blueprint import bp
from lapins.stats.figures import (
    CHANNEL_COLUMNS, Filters, Scope, catalogue_figures, chart_series, filter_choices, format_hours, format_percent,
    history_bounds, month_label, monthly_figures, session_figures, totals,
)
from lapins.stats.filters import parse_filters


class ExportForm(Form):
    file_format = RadioField("Format du fichier", choices=[SelectChoice("csv", "CSV"), SelectChoice("xlsx", "XLSX (tableur)")], default="csv")


@dataclass(frozen=True)
class Target:
    """What a statistics page is about: an organisation, or a whole territory."""

    kind: str  # "organisation" or "territoire"
    id: int
    title: str
    territory: Territory
    scope: Scope

    @property
    def endpoint_args(self) -> dict:
        return {"kind": self.kind, "target_id": self.id}


def _target(kind: str, target_id: int) -> Target:
    if kind == "organisation":
        organisation = db.session.get(Organisation, target_id)
        policies.authorize_statistics(current_user, organisation)
        territory = organisation.territory
        return Target(kind, organisation.id, organisation.name, territory,
                      Scope(territory.id, territory.timezone, (organisation.id,)))
    if kind == "territoire":
        territory = db.session.get(Territory, target_id)
        policies.authorize_statistics(current_user, territory)
        return Target(kind, territory.id, f"{territory.number} {territory.name}", territory,
                      Scope(territory.id, territory.timezone, tuple(org.id for org in territory.organisations), True))
    abort(404)


def _filters(target: Target, args) -> tuple[Filters, list[str], dict]:
    choices = filter_choices(target.scope.organisation_ids)
    today = utcnow().astimezone(target.scope.tz).date()
    filters, errors = parse_filters(args, today, choices, history_bounds(target.scope, today))
    return filters, errors, choices


@bp.route("/")
def home():
    """The statistics of the agent's first organisation."""
    organisation_ids = sorted(policies.organisations_of(current_user))
    if not organisation_ids:
        abort(403)
    return redirect(url_for("stats.page", kind="organisation", target_id=organisation_ids[0]))


@bp.route("/taux-de-lapins")
def headline_home():
    """The « taux de lapins » of the agent's first organisation."""
    organisation_ids = sorted(policies.organisations_of(current_user))
    if not organisation_ids:
        abort(403)
    return redirect(url_for("stats.headline_page", kind="organisation", target_id=organisation_ids[0]))


@bp.route("/<any(organisation, territoire):kind>/<int:target_id>/accueil")
def headline_page(kind: str, target_id: int):
    """The home page of an organisation or a territory: its « taux de lapins » first."""
    target = _target(kind, target_id)
    result = headline.headline(target.scope, target.territory, utcnow())
    territory_link = (target.kind == "organisation" and policies.can(current_user, "oversee", target.territory))
    return render_template("stats/headline.html", target=target, headline=result, chart=headline.chart(result),
                           percent=format_percent, points=headline.format_points, month_label=month_label,
                           territory_link=territory_link, may_set_baseline=policies.can(current_user, "administer", target.territory))


@bp.route("/<any(organisation, territoire):kind>/<int:target_id>")
def page(kind: str, target_id: int):
    target = _target(kind, target_id)
    filters, errors, choices = _filters(target, request.args)
    figures = [] if errors else monthly_figures(target.scope, filters)
    territory_link = (target.kind == "organisation" and policies.can(current_user, "oversee", target.territory))
    return render_template(
        "stats/page.html", target=target, filters=filters, errors=errors, choices=choices, figures=figures,
        total=totals(figures) if figures else None, percent=format_percent, hours=format_hours,
        channel_columns=CHANNEL_COLUMNS,
        export_form=ExportForm(), territory_link=territory_link, args=request.args, month_label=month_label,
        chart=chart_series(figures), history=history_bounds(target.scope, utcnow().astimezone(target.scope.tz).date()),
        arms=experiment.arms(target.scope, target.territory, utcnow()),
        sessions=[] if errors else session_figures(target.scope, filters),
        catalogue=[] if errors else catalogue_figures(target.scope, filters),
        catalogue_urls={file_format: url_for("stats.catalogue_file", file_format=file_format, **target.endpoint_args,
                                             **filters.as_params()) for file_format in exports.FORMATS},
        file_urls={file_format: url_for("stats.figures_file", file_format=file_format, **target.endpoint_args,
                                        **filters.as_params()) for file_format in exports.FORMATS},
    ), 400 if errors else 200


@bp.route("/<any(organisation, territoire):kind>/<int:target_id>/statistiques.<any(csv, xlsx):file_format>")
def figures_file(kind: str, target_id: int, file_format: str):
    target = _target(kind, target_id)
    filters, errors, _ = _filters(target, request.args)
    if errors:
        return render_error(400, " ".join(errors))
    content = exports.figures_file(monthly_figures(target.scope, filters), file_format)
    filename = exports.export_filename(f"statistiques-{kind}-{target.id}", filters, file_format)
    return _attachment(content, filename, file_format)


@bp.route("/<any(organisation, territoire):kind>/<int:target_id>/catalogue.<any(csv, xlsx):file_format>")
def catalogue_file(kind: str, target_id: int, file_format: str):
    """The catalogue motifs compared across organisations (issue 23.6), as a file."""
    target = _target(kind, target_id)
    filters, errors, _ = _filters(target, request.args)
    if errors:
        return render_error(400, " ".join(errors))
    content = exports.catalogue_file(catalogue_figures(target.scope, filters), file_format)
    filename = exports.export_filename(f"catalogue-{kind}-{target.id}", filters, file_format)
    return _attachment(content, filename, file_format)


@bp.route("/<any(organisation, territoire):kind>/<int:target_id>/exports", methods=["POST"])
def request_export(kind: str, target_id: int):
    target = _target(kind, target_id)
    form = ExportForm()
    filters, errors, _ = _filters(target, request.form)
    if not form.validate_on_submit() or errors:
        flash(" ".join(errors) or "La demande a expiré : réessayez.", "error")
        return redirect(url_for("stats.page", **target.endpoint_args))
    export = exports.request_export(current_user, target.territory.id,
                                    target.id if kind == "organisation" else None, filters, form.file_format.data)
    db.session.commit()
    # After the commit: the worker must find the row. Bound to this app's Celery, not the last one created.
    task_named(exports.BUILD_TASK).delay(export.id)
    return redirect(url_for("stats.export_status", export_id=export.id))


@bp.route("/exports/<int:export_id>")
def export_status(export_id: int):
    export = db.session.get(Export, export_id)
    policies.authorize_export(current_user, export)
    return render_template("stats/export.html", export=export, tz=export.territory.tz,
                           max_attempts=exports.MAX_ATTEMPTS)


@bp.route("/exports/<int:export_id>/fichier")
def export_file(export_id: int):
    export = db.session.get(Export, export_id)
    policies.authorize_export(current_user, export)
    if export.status != ExportStatus.DONE:
        abort(404)
    return _attachment(export.content, export.filename, export.file_format)


def _attachment(content: bytes, filename: str, file_format: str) -> Response:
    return Response(content, mimetype=exports.FORMATS[file_format],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "private, no-store"})
