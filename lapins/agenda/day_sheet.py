"""The printable day: an agent's rdvs of one day, or a lieu's, as a list to take on home visits (A4 portrait, no
menus: the print style sheet hides everything but the sheet)."""
from __future__ import annotations

from datetime import date

from flask import render_template
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from lapins import policies
from lapins.agenda.blueprint import bp
from lapins.agenda.calendar import DayRefused, Period, load_agent, shown_day, territory_of
from lapins.infra.extensions import db
from lapins.models import Lieu, LocationType, Organisation, Rdv, RdvAgent, Usager
from lapins.models.rdvs import CANCELLED_STATUSES


def _day_rdvs(condition, day: date, tz) -> list[Rdv]:
    start_at, end_at = Period(day, 1).bounds(tz)
    visible = policies.organisations_of(current_user)
    return list(db.session.scalars(
        select(Rdv).where(condition, Rdv.starts_at >= start_at, Rdv.starts_at < end_at,
                          Rdv.organisation_id.in_(visible), Rdv.status.notin_(CANCELLED_STATUSES))
        .order_by(Rdv.starts_at, Rdv.id)
        .options(selectinload(Rdv.usagers).joinedload(Usager.responsible), joinedload(Rdv.motif),
                 joinedload(Rdv.lieu), selectinload(Rdv.agent_links).joinedload(RdvAgent.agent))))


@bp.route("/agenda/agents/<int:agent_id>/jour/imprimer")
def agent_day_sheet(agent_id: int):
    agent = load_agent(agent_id)
    tz = territory_of(agent).tz
    try:
        day = shown_day(tz)
    except DayRefused as refused:
        return refused.response
    rdvs = _day_rdvs(Rdv.id.in_(select(RdvAgent.rdv_id).where(RdvAgent.agent_id == agent.id)), day, tz)
    return render_template("agenda/day_sheet.html", home=LocationType.HOME, title=agent.full_name, day=day, tz=tz, rdvs=rdvs,
                           back=("agenda.agent_calendar", {"agent_id": agent.id, "date": day.isoformat(),
                                                           "vue": "jour"}))


@bp.route("/agenda/lieux/<int:lieu_id>/jour/imprimer")
def lieu_day_sheet(lieu_id: int):
    lieu = db.session.scalar(select(Lieu).where(Lieu.id == lieu_id)
                             .options(joinedload(Lieu.organisation).joinedload(Organisation.territory)))
    policies.authorize(current_user, "view", lieu)
    tz = lieu.organisation.territory.tz
    try:
        day = shown_day(tz)
    except DayRefused as refused:
        return refused.response
    rdvs = _day_rdvs(Rdv.lieu_id == lieu.id, day, tz)
    return render_template("agenda/day_sheet.html", home=LocationType.HOME, title=lieu.name, day=day, tz=tz, rdvs=rdvs, show_agents=True,
                           back=("agenda.lieu_calendar", {"lieu_id": lieu.id, "date": day.isoformat()}))
