"""Rdvs: book (from a time or a slot search), see, edit, cancel, record what happened."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import SelectChoice

from lapins import policies
from lapins.agenda.blueprint import bp
from lapins.slots import availability
from lapins.booking import COLLECTIVE_REFUSAL, BookingError, book_rdv, cancel_rdv, move_rdv, set_outcome
from lapins.agenda import guardians
from lapins.agenda.guardian_views import notify_only_form
from lapins.agenda.rdv_forms import CancelForm, OutcomeForm, RdvForm, ReminderForm, SlotSearchForm, SmsPreviewForm
from lapins.agenda.usagers import search_usagers
from lapins.infra.extensions import db
from lapins.locale.localtime import NonexistentLocalTime, to_local, to_utc
from lapins.models import Agent, Lieu, MessageKind, Motif, Rdv, RdvAgent, RdvStatus, Usager, utcnow
from lapins.locale.formatting import local_datetime
from lapins.models.audit import AuditAction, AuditEvent, AuditObject
from lapins.models.rdvs import CANCELLED_STATUSES, CancellationChannel, rdv_usagers
from lapins.notifications import outbox
from lapins.waitlist import entries as waitlist_entries

TO_FILL_LIMIT = 200


def _get_rdv(rdv_id: int, action: str = "view") -> Rdv:
    rdv = db.session.get(Rdv, rdv_id)
    policies.authorize(current_user, action, rdv)
    return rdv


def _parse_instant(text: str | None) -> datetime | None:
    try:
        instant = datetime.fromisoformat((text or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return instant if instant.tzinfo else None


def _ids(name: str) -> list[int]:
    # An id beyond the database's integers is no id: dropped here rather than overflowing in a query.
    return [int(value) for value in request.args.getlist(name) if value.isdigit() and len(value) <= 9][:10]


def _fill_choices(form: RdvForm, usagers: list[Usager]) -> None:
    motifs = db.session.scalars(policies.motif_scope(current_user).where(Motif.active.is_(True),
                                                                         Motif.collective.is_(False))).all()
    form.motif_id.choices = [SelectChoice(0, "— Choisir un motif —")] + [
        SelectChoice(motif.id, f"{motif.name} ({motif.duration_minutes} min, {motif.location_type.label.lower()})") for motif in motifs
    ]
    form.lieu_id.choices = [SelectChoice(0, "— Sans lieu (téléphone, domicile) —")] + [
        SelectChoice(lieu.id, lieu.name)
        for lieu in db.session.scalars(policies.lieu_scope(current_user).where(Lieu.active.is_(True)))
    ]
    form.agent_ids.choices = [SelectChoice(agent.id, agent.full_name) for agent in db.session.scalars(policies.agent_scope(current_user))]
    form.usager_ids.choices = [SelectChoice(usager.id, usager.full_name) for usager in usagers]


def _in_scope(model, ids: list[int], action: str = "view") -> list | None:
    """The objects for these ids if the agent may act on every one of them, else None."""
    objects = [db.session.get(model, object_id) for object_id in ids]
    if any(obj is None or not policies.can(current_user, action, obj) for obj in objects):
        return None
    return objects


def _resolve(form: RdvForm):
    """Turn the posted ids and local times into objects and UTC instants, with French messages on the fields."""
    motif = db.session.get(Motif, form.motif_id.data) if form.motif_id.data else None
    if motif is None or not policies.can(current_user, "book", motif):
        form.motif_id.errors.append("Motif inconnu : choisissez un motif de la liste.")
        return None
    if motif.collective:  # a hand-made post (the list offers none), refused before anything else is read
        form.motif_id.errors.append(COLLECTIVE_REFUSAL)
        return None
    lieu = None
    if form.lieu_id.data:
        lieu = db.session.get(Lieu, form.lieu_id.data)
        if lieu is None or not policies.can(current_user, "view", lieu):
            form.lieu_id.errors.append("Lieu inconnu : choisissez un lieu de la liste.")
            return None
    agents = _in_scope(Agent, form.agent_ids.data)
    if not agents:
        form.agent_ids.errors.append("Agent inconnu : choisissez dans la liste.")
        return None
    usagers = _in_scope(Usager, form.usager_ids.data, "edit")
    if not usagers:
        form.usager_ids.errors.append("Usager inconnu : recherchez-le de nouveau.")
        return None
    tz = motif.organisation.territory.tz
    try:
        starts_at = to_utc(form.day.data, form.start_time.data, tz)
    except NonexistentLocalTime as error:
        form.start_time.errors.append(str(error))
        return None
    minutes = form.duration.data or motif.duration_minutes
    return motif, lieu, agents, usagers, starts_at, starts_at + timedelta(minutes=minutes)


def _booking_failed(form: RdvForm, error: BookingError) -> None:
    form.form_errors.append(error.message)
    form.can_force = error.can_force


@bp.route("/rdvs/nouveau", methods=["GET", "POST"])
def new_rdv():
    form = RdvForm()
    form.can_force = form.can_confirm = False
    usager_ids = _ids("usager_id") + [i for i in (form.usager_ids.data or []) if i]
    usagers = _in_scope(Usager, list(dict.fromkeys(usager_ids)), "edit") or []
    _fill_choices(form, usagers)
    form.notify_only_id.choices = [SelectChoice(*choice) for choice in guardians.notify_only_choices(usagers)]
    if request.method == "GET":
        _prefill(form, usagers)
    elif form.validate_on_submit() and (resolved := _resolve(form)) and not _needs_confirmation(form, resolved):
        motif, lieu, agents, usagers, starts_at, ends_at = resolved
        try:
            only = guardians.chosen_guardian(form.notify_only_id.data, usagers)
            rdv = book_rdv(actor=current_user, motif=motif, agents=agents, usagers=usagers, starts_at=starts_at,
                           ends_at=ends_at, lieu=lieu, notes=form.notes.data, force=form.force.data,
                           notify_only=only)
        except guardians.GuardianRefused as refusal:
            form.notify_only_id.errors.append(refusal.message)
        except BookingError as error:
            _booking_failed(form, error)
        else:
            flash("Le rendez-vous a été créé.", "success")
            return redirect(url_for("agenda.rdv_detail", rdv_id=rdv.id))
    search = request.args.get("usager_q", "")
    preview = _booking_preview(form.motif_id.data, form.lieu_id.data, form.day.data, form.start_time.data, usagers)
    return render_template("agenda/rdvs/form.html", form=form, rdv=None, usagers=usagers, sms_preview=preview,
                           chosen_motif=_chosen_motif(form.motif_id.data),
                           search=search, search_results=search_usagers(current_user, search) if search else []), \
        422 if request.method == "POST" else 200


def _chosen_motif(motif_id) -> Motif | None:
    """The motif picked on the booking form, when the agent may book it: the form warns of a motif « sans
    notification » (issue 23.2) as soon as it is chosen."""
    motif = db.session.get(Motif, motif_id) if isinstance(motif_id, int) and 0 < motif_id < 2**31 else None
    return motif if motif is not None and policies.can(current_user, "book", motif) else None


def _booking_preview(motif_id, lieu_id, day, start_time, usagers: list[Usager]) -> outbox.SmsPreview | None:
    """The confirmation SMS of the rdv being booked, once its motif, day and time are known (None before)."""
    motif = _chosen_motif(motif_id)
    if motif is None or not motif.notify or not day or not start_time:
        return None
    lieu = db.session.get(Lieu, lieu_id) if lieu_id and 0 < lieu_id < 2**31 else None
    if lieu is not None and not policies.can(current_user, "view", lieu):
        lieu = None
    try:
        starts_at = to_utc(day, start_time, motif.organisation.territory.tz)
    except NonexistentLocalTime:
        return None
    # Never added to the session: only composed.
    draft = Rdv(organisation=motif.organisation, motif=motif, lieu=lieu, starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=motif.duration_minutes), status=RdvStatus.UNKNOWN)
    draft.usagers = list(usagers)
    try:
        return outbox.preview_sms(draft, MessageKind.CREATED)
    finally:
        if draft in db.session:
            db.session.expunge(draft)


@bp.route("/rdvs/apercu-sms")
def booking_sms_preview():
    """The booking form's SMS preview, redrawn as the agent changes the motif, lieu, day or time
    (static/sms_preview.js)."""
    form = SmsPreviewForm(request.args)
    usagers = _in_scope(Usager, _ids("usager_ids"), "edit") or []
    valid = form.validate()
    preview = _booking_preview(form.motif_id.data, form.lieu_id.data, form.day.data, form.start_time.data, usagers) \
        if valid else None
    return render_template("agenda/rdvs/_sms_preview.html", sms_preview=preview, kind_label="de confirmation",
                           chosen_motif=_chosen_motif(form.motif_id.data) if valid else None)


def _needs_confirmation(form: RdvForm, resolved) -> bool:
    """An rdv in the past, or a second upcoming one for the same usager and motif, is most often a slip: it is booked
    only once the agent ticks the confirmation shown with the warning."""
    motif, _, _, usagers, starts_at, _ = resolved
    if form.confirm_unusual.data:
        return False
    tz, now = motif.organisation.territory.tz, utcnow()
    warnings = []
    if starts_at < now:
        warnings.append(f"Ce rendez-vous commence dans le passé ({local_datetime(starts_at, tz)}). S'il s'agit bien "
                        "d'un rendez-vous passé à enregistrer, confirmez-le ci-dessous.")
    booked = db.session.execute(
        select(Usager.first_name, Usager.last_name, Rdv.starts_at)
        .join(rdv_usagers, rdv_usagers.c.usager_id == Usager.id).join(Rdv, Rdv.id == rdv_usagers.c.rdv_id)
        .where(Usager.id.in_([usager.id for usager in usagers]), Rdv.motif_id == motif.id,
               Rdv.status.not_in(CANCELLED_STATUSES), Rdv.ends_at > now)
        .order_by(Rdv.starts_at)).all()
    for first_name, last_name, other_start in booked:
        warnings.append(f"{first_name} {last_name} a déjà un rendez-vous « {motif.name} » à venir, le "
                        f"{local_datetime(other_start, tz)}. Pour en prendre un second, confirmez-le ci-dessous.")
    form.form_errors.extend(warnings)
    form.can_confirm = bool(warnings)
    return bool(warnings)


def _prefill(form: RdvForm, usagers: list[Usager]) -> None:
    """Values from the calendar selection or the slot search: agent, instant, lieu, motif, usagers."""
    form.usager_ids.data = [usager.id for usager in usagers]
    if agent_ids := _ids("agent_id"):
        form.agent_ids.data = agent_ids
    else:
        form.agent_ids.data = [current_user.id]
    form.lieu_id.data = (_ids("lieu_id") or [0])[0]
    form.motif_id.data = (_ids("motif_id") or [0])[0]
    starts_at = _parse_instant(request.args.get("starts_at"))
    motif = db.session.get(Motif, form.motif_id.data) if form.motif_id.data else None
    tz = (motif.organisation.territory if motif else current_user.roles[0].organisation.territory).tz
    if starts_at:
        local = to_local(starts_at, tz)
        form.day.data, form.start_time.data = local.date(), local.time().replace(second=0, microsecond=0)
    if motif:
        form.duration.data = motif.duration_minutes


@bp.route("/rdvs/<int:rdv_id>")
def rdv_detail(rdv_id: int):
    rdv = _get_rdv(rdv_id)
    if rdv.is_session:  # a collective session (the agenda's link): its own page, with its participants
        return redirect(url_for("agenda.session_detail", rdv_id=rdv.id))
    return render_template("agenda/rdvs/detail.html", rdv=rdv, tz=rdv.organisation.territory.tz,
                           sms_preview=outbox.preview_sms(rdv, MessageKind.REMINDER) if rdv.is_live else None,
                           cancel_form=CancelForm(), outcome_form=OutcomeForm(), now=utcnow(),
                           notify_form=notify_only_form(rdv),
                           messages=outbox.history(rdv), reminder_form=ReminderForm(),
                           moved_by_offers=waitlist_entries.offers_that_moved(rdv))


@bp.route("/rdvs/<int:rdv_id>/modifier", methods=["GET", "POST"])
def edit_rdv(rdv_id: int):
    rdv = _get_rdv(rdv_id, "edit")
    if rdv.is_session:  # a session has no families of its own to edit here: its own form moves it
        return redirect(url_for("agenda.edit_session", rdv_id=rdv.id))
    form = RdvForm(obj=rdv)
    del form.notify_only_id  # changed on the rdv page's own form (agenda.set_notify_only)
    form.can_force = form.can_confirm = False
    _fill_choices(form, rdv.usagers)
    tz = rdv.organisation.territory.tz
    if request.method == "GET":
        local = to_local(rdv.starts_at, tz)
        form.day.data, form.start_time.data = local.date(), local.time()
        form.duration.data = int((rdv.ends_at - rdv.starts_at).total_seconds() // 60)
        form.agent_ids.data = [agent.id for agent in rdv.agents]
        form.usager_ids.data = [usager.id for usager in rdv.usagers]
        form.lieu_id.data = rdv.lieu_id or 0
    elif form.validate_on_submit() and (resolved := _resolve(form)):
        motif, lieu, agents, usagers, starts_at, ends_at = resolved
        try:
            rdv.usagers = usagers
            move_rdv(actor=current_user, rdv=rdv, starts_at=starts_at, ends_at=ends_at, agents=agents, lieu=lieu,
                     motif=motif, notes=form.notes.data, force=form.force.data)
        except BookingError as error:
            _booking_failed(form, error)
        else:
            flash("Le rendez-vous a été modifié.", "success")
            return redirect(url_for("agenda.rdv_detail", rdv_id=rdv.id))
    return render_template("agenda/rdvs/form.html", form=form, rdv=rdv, usagers=rdv.usagers, search="",
                           search_results=[]), 422 if request.method == "POST" else 200


@bp.route("/rdvs/<int:rdv_id>/annuler", methods=["POST"])
def cancel(rdv_id: int):
    rdv = _get_rdv(rdv_id, "edit")
    form = CancelForm()
    if form.validate_on_submit():
        try:
            cancel_rdv(actor=current_user, rdv=rdv, status=RdvStatus(form.status.data), reason=form.reason.data,
                       via=CancellationChannel.AGENDA)
        except BookingError as error:
            flash(error.message, "error")
        else:
            flash("Le rendez-vous a été annulé : le créneau est de nouveau libre.", "success")
    else:
        flash(next(iter(form.errors.values()))[0], "error")
    return redirect(url_for("agenda.rdv_detail", rdv_id=rdv.id))


@bp.route("/rdvs/<int:rdv_id>/statut", methods=["POST"])
def set_status(rdv_id: int):
    rdv = _get_rdv(rdv_id, "edit")
    form = OutcomeForm()
    back = request.form.get("back")
    if form.validate_on_submit():
        try:
            set_outcome(actor=current_user, rdv=rdv, status=RdvStatus(form.status.data))
        except BookingError as error:
            flash(error.message, "error")
        else:
            undo = " Vous pouvez revenir sur ce choix aujourd'hui, sous « Renseignés aujourd'hui »." \
                if back == "a-renseigner" and rdv.status != RdvStatus.UNKNOWN else ""
            flash(f"Statut enregistré : {rdv.status_label}.{undo}", "success")
    else:
        flash(next(iter(form.errors.values()))[0], "error")
    return redirect(url_for("agenda.rdvs_to_fill") if back == "a-renseigner" else url_for("agenda.rdv_detail", rdv_id=rdv.id))


@bp.route("/rdvs/a-renseigner")
def rdvs_to_fill():
    rdvs = db.session.scalars(
        policies.rdv_scope(current_user)
        .where(Rdv.status == RdvStatus.UNKNOWN, Rdv.ends_at < utcnow())
        .options(selectinload(Rdv.usagers), selectinload(Rdv.motif),
                 selectinload(Rdv.agent_links).selectinload(RdvAgent.agent))
        .order_by(Rdv.starts_at.desc())
        .limit(TO_FILL_LIMIT)
    ).all()
    tz = current_user.roles[0].organisation.territory.tz if current_user.roles else timezone.utc
    return render_template("agenda/rdvs/to_fill.html", rdvs=rdvs, tz=tz, form=OutcomeForm(), limit=TO_FILL_LIMIT,
                           filled_today=_filled_today(tz))


def _filled_today(tz) -> list[Rdv]:
    """The rdvs this agent marked seen or absent today (local day), still so: each may be put back « à renseigner »
    from the list. Read from the audit trail, which records every status change with its agent."""
    start = to_utc(to_local(utcnow(), tz).date(), datetime.min.time(), tz)
    marked = select(AuditEvent.object_id).where(
        AuditEvent.object_type == AuditObject.RDV, AuditEvent.action == AuditAction.STATUS_CHANGED,
        AuditEvent.agent_id == current_user.id, AuditEvent.occurred_at >= start)
    return list(db.session.scalars(
        policies.rdv_scope(current_user)
        .where(Rdv.id.in_(marked), Rdv.status.in_((RdvStatus.SEEN, RdvStatus.NOSHOW)))
        .options(selectinload(Rdv.usagers), selectinload(Rdv.motif))
        .order_by(Rdv.starts_at.desc()).limit(TO_FILL_LIMIT)))


@bp.route("/creneaux")
def slot_search():
    form = SlotSearchForm(request.args)
    motifs = db.session.scalars(policies.motif_scope(current_user).where(Motif.active.is_(True),
                                                                         Motif.collective.is_(False))).all()
    form.motif_id.choices = [SelectChoice(0, "— Choisir un motif —")] + [SelectChoice(motif.id, motif.name) for motif in motifs]
    form.lieu_id.choices = [SelectChoice(0, "Tous les lieux")] + [
        SelectChoice(lieu.id, lieu.name)
        for lieu in db.session.scalars(policies.lieu_scope(current_user).where(Lieu.active.is_(True)))]
    form.agent_id.choices = [SelectChoice(0, "Tous les agents")] + [
        SelectChoice(agent.id, agent.full_name) for agent in db.session.scalars(policies.agent_scope(current_user))]
    slots, motif = None, None
    if request.args and form.validate():
        motif = next((m for m in motifs if m.id == form.motif_id.data), None)
        if motif is None:
            form.motif_id.errors.append("Motif inconnu : choisissez un motif de la liste.")
        else:
            territory = motif.organisation.territory
            start = utcnow()
            if form.from_day.data:
                start = max(start, to_utc(form.from_day.data, datetime.min.time(), territory.tz))
            slots = availability.first_available(territory=territory, motif=motif, lieu_id=form.lieu_id.data or None,
                                                 agent_id=form.agent_id.data or None, start=start, limit=20)
    names = _names_for(slots or [])
    return render_template("agenda/rdvs/slot_search.html", form=form, slots=slots, motif=motif, names=names,
                           tz=motif.organisation.territory.tz if motif else None)


def _names_for(slots) -> dict:
    agent_ids = {slot.agent_id for slot in slots}
    lieu_ids = {slot.lieu_id for slot in slots if slot.lieu_id}
    agents = {a.id: a.full_name for a in db.session.scalars(select(Agent).where(Agent.id.in_(agent_ids)))} if agent_ids else {}
    lieux = {lieu.id: lieu for lieu in db.session.scalars(select(Lieu).where(Lieu.id.in_(lieu_ids)))} if lieu_ids else {}
    return {"agents": agents, "lieux": lieux}
