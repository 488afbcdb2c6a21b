"""What families were sent: an rdv's history and a reminder by hand, a territory's SMS figures, the dev inbox."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import and_, case, func, or_, select

from lapins import policies
from lapins.agenda.blueprint import bp
from lapins.agenda.rdvs import _get_rdv
from lapins.infra.extensions import db
from lapins.agenda.rdv_forms import ReminderForm
from lapins.models import (
    Channel, Message, MessageKind, MessageStatus, Organisation, Rdv, Role, SlotOffer, Territory, Usager, WaitlistSlot, utcnow,
)
from lapins.notifications import outbox
from lapins.notifications.outbox import kick
from lapins.slots.engine import local_midnight

STATS_WEEKS = 12


@bp.route("/rdvs/<int:rdv_id>/rappel", methods=["POST"])
def send_reminder(rdv_id: int):
    rdv = _get_rdv(rdv_id, "book")
    form = ReminderForm()
    if not form.validate_on_submit():
        flash("La demande a expiré : réessayez.", "error")
    elif not rdv.is_live or rdv.starts_at <= utcnow():
        flash("Ce rendez-vous est annulé ou passé : aucun rappel n'est envoyé.", "error")
    elif not rdv.motif.notify:
        flash("Ce motif est sans notification : aucun SMS ni courriel n'est envoyé pour ses rendez-vous.", "error")
    else:
        planned = outbox.plan_manual_reminder(rdv, current_user)
        db.session.commit()
        if not planned:
            flash("Aucun rappel possible : personne n'a de mobile ou d'e-mail avec son accord.", "warning")
        else:
            now = utcnow()
            held = [message for message in planned if message.due_at > now]
            if any(message.due_at <= now for message in planned):
                kick()
            text = "Rappel envoyé." if not held else (
                "Rappel programmé : pas de SMS la nuit, il partira à "
                f"{held[0].due_at.astimezone(rdv.organisation.territory.tz):%Hh%M}.")
            flash(text, "success")
    return redirect(url_for("agenda.rdv_detail", rdv_id=rdv.id) + "#notifications")


@dataclass(frozen=True)
class WeekFigures:
    monday: date
    sms_sent: int
    segments: int
    failed: int
    undeliverable: int
    emails_sent: int


@bp.route("/sms")
def my_territory_messages():
    """The SMS figures of the territory where the agent is an administrator."""
    organisation = next((role.organisation for role in current_user.roles if role.role == Role.ADMIN), None)
    if organisation is None:
        abort(403)
    return redirect(url_for("agenda.territory_messages", territory_id=organisation.territory_id))


@bp.route("/territoires/<int:territory_id>/sms")
def territory_messages(territory_id: int):
    territory = db.session.get(Territory, territory_id)
    policies.authorize(current_user, "oversee", territory)
    tz = territory.tz
    today = utcnow().astimezone(tz).date()
    first_monday = today - timedelta(days=today.weekday(), weeks=STATS_WEEKS - 1)
    weeks = [first_monday + timedelta(weeks=index) for index in range(STATS_WEEKS)]
    bounds = [local_midnight(monday, tz) for monday in weeks] + [local_midnight(weeks[-1] + timedelta(weeks=1), tz)]
    figures = [_week_figures(territory.id, monday, start, end)
               for monday, start, end in zip(weeks, bounds, bounds[1:], strict=False)]
    undeliverable = db.session.execute(
        select(Usager.id, Usager.first_name, Usager.last_name, Usager.phone_undeliverable_at, Usager.phone_error)
        .where(Usager.territory_id == territory.id, Usager.phone_undeliverable_at.is_not(None))
        .where(Usager.id.in_(select(policies.usager_scope(current_user).subquery().c.id)))
        .order_by(Usager.phone_undeliverable_at.desc()).limit(50)).all()
    return render_template("agenda/messages/territory.html", territory=territory, figures=figures[::-1], tz=tz,
                           undeliverable=undeliverable, totals=_totals(figures))


def _week_figures(territory_id: int, monday: date, start: datetime, end: datetime) -> WeekFigures:
    sms, email = Message.channel == Channel.SMS, Message.channel == Channel.EMAIL
    delivered = Message.status.in_([MessageStatus.SENT, MessageStatus.DELIVERED])
    row = db.session.execute(
        select(func.count().filter(sms & delivered),
               func.coalesce(func.sum(case((sms & delivered, Message.segments), else_=0)), 0),
               func.count().filter(sms & (Message.status == MessageStatus.FAILED)),
               func.count().filter(sms & (Message.status == MessageStatus.UNDELIVERABLE)),
               func.count().filter(email & delivered))
        .where(Message.territory_id == territory_id, Message.due_at >= start, Message.due_at < end)).one()
    return WeekFigures(monday, *[int(value or 0) for value in row])


def _totals(figures: list[WeekFigures]) -> dict[str, int]:
    return {name: sum(getattr(week, name) for week in figures)
            for name in ("sms_sent", "segments", "failed", "undeliverable", "emails_sent")}


@bp.route("/dev/messages")
def dev_inbox():
    """The embedded default keeps SMS and e-mails here instead of sending them (never in production)."""
    if current_app.config["ENV_NAME"] == "production":
        abort(404)
    organisations = select(Organisation.id).where(Organisation.id.in_(policies.organisations_of(current_user)))
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    # A message is about an rdv, about a freed slot offered to a waiting family (no rdv yet), or a number's code.
    query = (select(Message)
             .outerjoin(Rdv, Message.rdv_id == Rdv.id)
             .outerjoin(SlotOffer, Message.offer_id == SlotOffer.id)
             .outerjoin(WaitlistSlot, WaitlistSlot.id == SlotOffer.slot_id)
             .where(or_(func.coalesce(Rdv.organisation_id, WaitlistSlot.organisation_id).in_(organisations),
                        # a number checked for online booking: no rdv yet, the territory's
                        and_(Message.kind == MessageKind.PHONE_CODE, Message.territory_id.in_(
                            select(Organisation.territory_id).where(Organisation.id.in_(organisations))))))
             .where(Message.body.is_not(None)).order_by(Message.id.desc()))
    messages = db.session.scalars(query.limit(50).offset((page - 1) * 50)).all()
    return render_template("agenda/messages/dev_inbox.html", outbox_messages=messages, page=page,
                           sms_backend=current_app.config["SMS_BACKEND"],
                           email_backend=current_app.config["EMAIL_BACKEND"])
