"""« À confirmer »: tomorrow's rdvs of a lieu, who confirmed, who did not, whose reminder failed; an agent calls the
family (tel: link) and, after the call, may free an unconfirmed slot for the waiting list. Nothing is freed without
an agent (lapins.notifications.confirmation)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from wtforms import BooleanField
from wtforms.validators import InputRequired

from lapins import policies
from lapins.agenda.blueprint import bp
from lapins.booking import BookingError, cancel_rdv
from lapins.infra.extensions import db
from lapins.infra.forms import Form
from lapins.locale.localtime import to_local, to_utc
from lapins.models import Lieu, Organisation, Rdv, RdvStatus, Usager, utcnow
from lapins.models.rdvs import CancellationChannel
from lapins.notifications import confirmation

RELEASE_REASON = "Libéré la veille : non confirmé, après appel à la famille"


class ReleaseForm(Form):
    called = BooleanField("J'ai appelé la famille : elle ne viendra pas ou n'a pas pu être jointe",
                          validators=[InputRequired("Appelez la famille avant de libérer son créneau, puis cochez "
                                                    "la case.")])


@dataclass(frozen=True)
class Row:
    rdv: Rdv
    phones: list[tuple[str, str]]  # (who, E.164 number) to call
    risk: confirmation.Risk | None
    asked: bool  # its reminder asks the family to reply OUI
    delivery: confirmation.Delivery | None


def _tomorrow(territory) -> tuple[date, datetime, datetime]:
    day = to_local(utcnow(), territory.tz).date() + timedelta(days=1)
    return day, to_utc(day, datetime.min.time(), territory.tz), to_utc(day + timedelta(days=1), datetime.min.time(),
                                                                         territory.tz)


def _phones(rdv: Rdv) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    people: list[Usager] = []
    for usager in rdv.usagers:
        people.extend(person for person in (usager, *usager.guardians) if person not in people)
    for person in people:
        if person.phone and person.phone not in [phone for _, phone in found]:
            found.append((person.full_name, person.phone))
    return found


def rows_for(lieu: Lieu, start: datetime, end: datetime) -> list[Row]:
    territory = lieu.organisation.territory
    rdvs = confirmation.live_rdvs_between(lieu.id, start, end)
    deliveries = confirmation.reminder_deliveries(rdv.id for rdv in rdvs)
    rows = []
    for rdv in rdvs:
        found = confirmation.risks([usager.id for usager in rdv.usagers], before=rdv.starts_at, exclude_rdv_id=rdv.id)
        risk = next(iter(found.values()), None)
        asked = territory.sms_takes_replies and (territory.sms_confirm_everyone or risk is not None)
        rows.append(Row(rdv=rdv, phones=_phones(rdv), risk=risk, asked=asked, delivery=deliveries.get(rdv.id)))
    return rows


@bp.route("/a-confirmer")
def confirmations_index():
    lieux = db.session.scalars(policies.lieu_scope(current_user).where(Lieu.active.is_(True))
                               .options(joinedload(Lieu.organisation).joinedload(Organisation.territory))).all()
    counts = {}
    for lieu in lieux:
        _day, start, end = _tomorrow(lieu.organisation.territory)
        rdvs = confirmation.live_rdvs_between(lieu.id, start, end)
        counts[lieu.id] = (len(rdvs), sum(rdv.confirmed_at is None for rdv in rdvs))
    return render_template("agenda/confirmations/index.html", lieux=lieux, counts=counts)


@bp.route("/a-confirmer/lieux/<int:lieu_id>")
def lieu_confirmations(lieu_id: int):
    lieu = db.session.get(Lieu, lieu_id)
    policies.authorize(current_user, "view", lieu)
    territory = lieu.organisation.territory
    day, start, end = _tomorrow(territory)
    rows = rows_for(lieu, start, end)
    return render_template("agenda/confirmations/lieu.html", lieu=lieu, day=day, rows=rows, tz=territory.tz,
                           territory=territory,
                           may_release={row.rdv.id: policies.can(current_user, "release", row.rdv) for row in rows})


@bp.post("/a-confirmer/rdvs/<int:rdv_id>/liberer")
def release(rdv_id: int):
    rdv = db.session.scalar(select(Rdv).where(Rdv.id == rdv_id))
    policies.authorize(current_user, "release", rdv)
    back = url_for("agenda.lieu_confirmations", lieu_id=rdv.lieu_id) if rdv.lieu_id else url_for(
        "agenda.confirmations_index")
    form = ReleaseForm()
    if not form.validate_on_submit():
        flash(next(iter(form.errors.values()))[0], "error")
        return redirect(back)
    if rdv.confirmed_at is not None:
        flash("La famille a confirmé ce rendez-vous : il n'est pas libéré.", "error")
        return redirect(back)
    if rdv.starts_at <= utcnow():
        flash("Ce rendez-vous a déjà commencé : il n'est plus temps de libérer son créneau.", "error")
        return redirect(back)
    try:
        cancel_rdv(actor=current_user, rdv=rdv, status=RdvStatus.REVOKED, reason=RELEASE_REASON,
                   via=CancellationChannel.AGENDA)
    except BookingError as error:
        flash(error.message, "error")
    else:
        flash("Créneau libéré : la famille est prévenue par SMS et le créneau est proposé à la file d'attente.",
              "success")
    return redirect(back)
