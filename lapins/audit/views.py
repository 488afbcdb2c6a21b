"""« Historique des modifications »: of one rdv, of one usager, and of every organisation an admin administers."""
from __future__ import annotations

from datetime import date, time, timedelta

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import Select, and_, or_, select

from lapins import policies
from lapins.audit import display
from lapins.infra.extensions import db
from lapins.locale.formatting import local_datetime
from lapins.locale.localtime import to_utc
from lapins.models import Organisation, Rdv, Usager
from lapins.models.audit import AuditEvent, AuditObject
from lapins.models.usagers import usager_organisations

bp = Blueprint("audit", __name__)

PAGE_SIZE = 50


@bp.before_request
@login_required
def require_login() -> None:
    """For signed-in agents; only organisation admins see a history (lapins.policies, action "audit")."""


@bp.app_context_processor
def audit_helpers() -> dict:
    def can_audit(target) -> bool:
        return getattr(current_user, "is_authenticated", False) and policies.can(current_user, "audit", target)

    return {"can_audit": can_audit}


def _page_number() -> int:
    value = request.args.get("page", "1")
    return min(int(value), 10_000) if value.isdigit() and int(value) >= 1 else 1


def _paginate(statement: Select) -> tuple[list[AuditEvent], int, bool]:
    """One page, newest first, without counting the whole history: one row more tells whether a next page exists."""
    page = _page_number()
    events = list(db.session.scalars(statement.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
                                     .limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)))
    return events[:PAGE_SIZE], page, len(events) > PAGE_SIZE


def _history_of(object_type: AuditObject, object_id: int) -> Select:
    return select(AuditEvent).where(AuditEvent.object_type == object_type, AuditEvent.object_id == object_id)


@bp.route("/rdvs/<int:rdv_id>/historique")
def rdv_history(rdv_id: int):
    rdv = db.session.get(Rdv, rdv_id)
    policies.authorize(current_user, "audit", rdv)
    events, page, has_next = _paginate(_history_of(AuditObject.RDV, rdv.id))
    tz = rdv.organisation.territory.tz
    return render_template("audit/object.html", title=f"Rendez-vous du {local_datetime(rdv.starts_at, tz)}",
                           back=("agenda.rdv_detail", {"rdv_id": rdv.id}, "Retour au rendez-vous"),
                           rows=display.rows(events), page=page, has_next=has_next, show_object=False)


@bp.route("/usagers/<int:usager_id>/historique")
def usager_history(usager_id: int):
    usager = db.session.get(Usager, usager_id)
    if usager is not None and usager.merged_into_id is not None:  # a merged file's history is the kept one's
        policies.authorize(current_user, "view", usager)
        return redirect(url_for("audit.usager_history", usager_id=usager.merged_into_id))
    policies.authorize(current_user, "audit", usager)
    # The files merged into this one bring their history with them (their events keep their own ids).
    merged = list(db.session.scalars(select(Usager.id).where(Usager.merged_into_id == usager.id)))
    statement = select(AuditEvent).where(AuditEvent.object_type == AuditObject.USAGER,
                                         AuditEvent.object_id.in_([usager.id, *merged]))
    events, page, has_next = _paginate(statement)
    return render_template("audit/object.html", title=usager.full_name,
                           back=("agenda.usager_detail", {"usager_id": usager.id}, "Retour à la fiche"),
                           rows=display.rows(events), page=page, has_next=has_next, show_object=bool(merged))


def administered_organisations(actor) -> list[Organisation]:
    return sorted((role.organisation for role in actor.roles if policies.can(actor, "audit", role.organisation)),
                  key=lambda organisation: organisation.name)


@bp.route("/historique")
def index():
    organisations = administered_organisations(current_user)
    if not organisations:
        if not current_user.roles:
            abort(404)
        policies.authorize(current_user, "audit", current_user.roles[0].organisation)  # 403: not an admin
    chosen = request.args.get("organisation", "")
    if chosen:
        organisation = db.session.get(Organisation, int(chosen)) if chosen.isdigit() else None
        policies.authorize(current_user, "audit", organisation)
        organisations = [organisation]
    filters, errors = _filters(organisations[0].territory.tz)
    statement = _scope(organisations)
    if filters["start"] is not None:
        statement = statement.where(AuditEvent.occurred_at >= filters["start"])
    if filters["end"] is not None:
        statement = statement.where(AuditEvent.occurred_at < filters["end"])
    if filters["agent_id"] is not None:
        statement = statement.where(AuditEvent.agent_id == filters["agent_id"])
    if filters["object_type"] is not None:
        statement = statement.where(AuditEvent.object_type == filters["object_type"])
    events, page, has_next = _paginate(statement)
    agents = db.session.scalars(policies.agent_scope(current_user)).all()
    return render_template("audit/index.html", rows=display.rows(events), page=page, has_next=has_next,
                           organisations=administered_organisations(current_user), chosen=chosen, args=request.args,
                           agents=agents, filters=filters, errors=errors, show_object=True)


def _scope(organisations: list[Organisation]) -> Select:
    """Events of the rdvs of these organisations, and of the usagers who belong to one of them."""
    ids = [organisation.id for organisation in organisations]
    members = select(usager_organisations.c.usager_id).where(usager_organisations.c.organisation_id.in_(ids))
    return select(AuditEvent).where(
        AuditEvent.territory_id.in_({organisation.territory_id for organisation in organisations}),
        or_(and_(AuditEvent.object_type == AuditObject.RDV, AuditEvent.organisation_id.in_(ids)),
            and_(AuditEvent.object_type == AuditObject.USAGER, AuditEvent.object_id.in_(members))),
    )


def _filters(tz) -> tuple[dict, list[str]]:
    errors: list[str] = []
    filters: dict = {"start": None, "end": None, "agent_id": None, "object_type": None, "du": "", "au": ""}
    for name, label in (("du", "début"), ("au", "fin")):
        text = request.args.get(name, "").strip()[:20]
        if not text:
            continue
        try:
            day = date.fromisoformat(text)
            if name == "du":
                filters["start"] = to_utc(day, time(0), tz)
            else:  # the whole day, included
                filters["end"] = to_utc(day + timedelta(days=1), time(0), tz)
        except (ValueError, OverflowError):
            errors.append(f"La date de {label} doit être une date (AAAA-MM-JJ).")
            continue
        filters[name] = day.isoformat()
    agent = request.args.get("agent", "")
    if agent.isdigit():
        filters["agent_id"] = int(agent)
    elif agent:
        errors.append("Agent inconnu : choisissez dans la liste.")
    kind = request.args.get("objet", "")
    if kind in {item.value for item in AuditObject}:
        filters["object_type"] = AuditObject(kind)
    elif kind:
        errors.append("Type d'objet inconnu : choisissez dans la liste.")
    return filters, errors

