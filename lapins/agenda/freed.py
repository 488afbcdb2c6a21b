"""Créneaux libérés: the slots that cancellations freed in the coming days and nobody has taken since, per
organisation, each one click away from a new booking."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from flask import render_template, request
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from lapins import policies
from lapins.agenda.blueprint import bp
from lapins.slots import availability
from lapins.infra.extensions import db
from lapins.models import (
    Agent, Lieu, Motif, OfferStatus, Organisation, Rdv, RdvAgent, SlotOffer, WaitlistSlot, utcnow,
)
from lapins.models.rdvs import CANCELLED_STATUSES

HORIZONS = (7, 14, 28)  # days ahead the board can look
LIMIT = 300


@dataclass(frozen=True)
class FreedSlot:
    starts_at: datetime
    ends_at: datetime
    agent: Agent
    motif: Motif
    lieu: Lieu | None
    organisation: Organisation
    cancelled_rdv: Rdv  # the latest cancellation that freed this time
    held_until: datetime | None = None  # offered to a waiting family, held for it until then (lapins.waitlist)

    @property
    def minutes(self) -> int:
        return int((self.ends_at - self.starts_at).total_seconds() // 60)


def freed_slots(actor: Agent, now: datetime, days: int, organisation_id: int | None = None) -> list[FreedSlot]:
    """Cancelled rdvs the actor may see (of one organisation if given) starting in the next `days` days whose time
    is still free for their agent.

    An rdv cancelled twice at the same time (booked again, cancelled again) frees one slot; a time that a live rdv of
    the agent overlaps since has been re-booked and is left out.
    """
    until = now + timedelta(days=days)
    scope = policies.rdv_scope(actor)
    if organisation_id is not None:
        scope = scope.where(Rdv.organisation_id == organisation_id)
    cancelled = db.session.scalars(
        scope.where(Rdv.status.in_(CANCELLED_STATUSES), Rdv.starts_at > now, Rdv.starts_at < until)
        .options(selectinload(Rdv.agent_links).selectinload(RdvAgent.agent), selectinload(Rdv.motif),
                 selectinload(Rdv.lieu), selectinload(Rdv.organisation))
        .order_by(Rdv.starts_at, Rdv.cancelled_at.desc(), Rdv.id)
        .limit(LIMIT)
    ).all()
    busy = availability.busy_intervals({link.agent_id for rdv in cancelled for link in rdv.agent_links}, now, until)
    slots: dict[tuple[int, datetime, datetime], FreedSlot] = {}
    for rdv in cancelled:
        for link in rdv.agent_links:
            key = (link.agent_id, rdv.starts_at, rdv.ends_at)
            taken = any(start < rdv.ends_at and rdv.starts_at < end for start, end in busy.get(link.agent_id, ()))
            if key not in slots and not taken and link.agent.active:
                slots[key] = FreedSlot(rdv.starts_at, rdv.ends_at, link.agent, rdv.motif, rdv.lieu, rdv.organisation,
                                       rdv)
    holds = _holds(now, until, {agent_id for agent_id, _, _ in slots})
    return sorted((replace(slot, held_until=holds.get((slot.agent.id, slot.starts_at))) for slot in slots.values()),
                  key=lambda slot: (slot.starts_at, slot.agent.last_name, slot.agent.id))


def _holds(now: datetime, until: datetime, agent_ids: set[int]) -> dict[tuple[int, datetime], datetime]:
    """(agent, start) → end of the hold, for the times offered to a waiting family right now; a joint slot holds
    the time of each of its agents."""
    if not agent_ids:
        return {}
    held = db.session.execute(
        select(WaitlistSlot, SlotOffer.held_until).join(SlotOffer, SlotOffer.slot_id == WaitlistSlot.id)
        .where(WaitlistSlot.starts_at > now, WaitlistSlot.starts_at < until,
               SlotOffer.status == OfferStatus.HELD, SlotOffer.held_until > now)
        .options(selectinload(WaitlistSlot.agents))).all()
    return {(agent_id, slot.starts_at): held_until for slot, held_until in held for agent_id in slot.agent_ids
            if agent_id in agent_ids}


@bp.route("/creneaux-liberes")
def freed_slots_board():
    organisations = sorted((role.organisation for role in current_user.roles), key=lambda org: org.name)
    chosen = request.args.get("organisation_id", type=int)
    if chosen not in {organisation.id for organisation in organisations}:
        chosen = None
    days = request.args.get("jours", type=int)
    days = days if days in HORIZONS else HORIZONS[0]
    slots = freed_slots(current_user, utcnow(), days, chosen)
    tz = organisations[0].territory.tz if organisations else None
    return render_template("agenda/rdvs/freed.html", slots=slots, organisations=organisations, chosen=chosen,
                           days=days, horizons=HORIZONS, tz=tz, limit=LIMIT)
