"""Collective sessions (ateliers) in the agenda: create them (a weekly repeat in one form), move or retitle them,
add families, mark who came, change the places, cancel one place or the whole session. Every change goes through
lapins.booking.sessions (or booking.cancel_rdv for the whole session)."""
from __future__ import annotations

from datetime import timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from wtforms import SelectChoice

from lapins import policies
from lapins.agenda.blueprint import bp
from lapins.agenda.session_forms import (
    AttendanceForm, CancelSessionForm, CapacityForm, ParticipantForm, ParticipationForm, SessionEditForm, SessionForm,
    WaitForm,
)
from lapins.agenda.usagers import search_usagers
from lapins.booking import BookingError, cancel_rdv
from lapins.booking import sessions as booking_sessions
from lapins.infra.extensions import db
from lapins.locale.localtime import NonexistentLocalTime, to_local, to_utc
from lapins.models import Agent, Lieu, Motif, Participation, Rdv, RdvStatus, Usager, utcnow
from lapins.models.rdvs import CancellationChannel
from lapins.waitlist import entries as waitlist_entries

LIST_LIMIT = 200


def _get_session(rdv_id: int, action: str = "view") -> Rdv:
    rdv = db.session.get(Rdv, rdv_id)
    policies.authorize(current_user, action, rdv)
    return rdv


def _first_error(form) -> str:
    return next(iter(form.errors.values()))[0]


@bp.route("/seances")
def sessions_index():
    now = utcnow()
    sessions = db.session.scalars(
        policies.rdv_scope(current_user)
        .where(Rdv.max_participants.is_not(None), Rdv.ends_at > now - timedelta(days=1))
        .options(selectinload(Rdv.motif), selectinload(Rdv.lieu))
        .order_by(Rdv.starts_at).limit(LIST_LIMIT)).all()
    return render_template("agenda/sessions/index.html", sessions=sessions, now=now)


def _fill_choices(form: SessionForm | SessionEditForm) -> None:
    if isinstance(form, SessionForm):
        motifs = db.session.scalars(policies.motif_scope(current_user)
                                    .where(Motif.active.is_(True), Motif.collective.is_(True))).all()
        form.motif_id.choices = [SelectChoice(0, "— Choisir un motif collectif —")] + [
            SelectChoice(motif.id, f"{motif.name} ({motif.duration_minutes} min)") for motif in motifs]
    form.lieu_id.choices = [SelectChoice(0, "— Sans lieu —")] + [
        SelectChoice(lieu.id, lieu.name)
        for lieu in db.session.scalars(policies.lieu_scope(current_user).where(Lieu.active.is_(True)))]
    form.agent_ids.choices = [SelectChoice(agent.id, agent.full_name)
                              for agent in db.session.scalars(policies.agent_scope(current_user))]


def _in_scope(model, ids: list[int], action: str) -> list | None:
    rows = [db.session.get(model, i) for i in ids if 0 < i < 2**31]
    if len(rows) != len(ids) or any(row is None or not policies.can(current_user, action, row) for row in rows):
        return None
    return rows


@bp.route("/seances/nouvelle", methods=["GET", "POST"])
def new_session():
    form = SessionForm()
    _fill_choices(form)
    if request.method == "GET" and not form.duration.data:
        form.weeks.data = 1
    elif request.method == "POST" and form.validate_on_submit():
        motif = _in_scope(Motif, [form.motif_id.data], "book")
        lieu = _in_scope(Lieu, [form.lieu_id.data], "view") if form.lieu_id.data else [None]
        agents = _in_scope(Agent, list(dict.fromkeys(form.agent_ids.data)), "view")
        if not motif or not motif[0].collective:
            form.motif_id.errors.append("Choisissez un motif collectif de vos organisations.")
        elif lieu is None:
            form.lieu_id.errors.append("Choisissez un lieu de vos organisations.")
        elif not agents:
            form.agent_ids.errors.append("Choisissez des agents de vos organisations.")
        else:
            motif = motif[0]
            tz = motif.organisation.territory.tz
            try:
                # Each week at the same wall-clock time: 10:00 stays 10:00 across a change of daylight saving time.
                starts = [to_utc(form.day.data + timedelta(weeks=week), form.start_time.data, tz)
                          for week in range(form.weeks.data)]
                sessions = booking_sessions.create_sessions(
                    actor=current_user, motif=motif, agents=agents, lieu=lieu[0], starts=starts,
                    duration=timedelta(minutes=form.duration.data), capacity=form.capacity.data,
                    title=form.title.data, notes=form.notes.data)
            except NonexistentLocalTime as error:
                form.start_time.errors.append(str(error))
            except BookingError as error:
                form.form_errors.append(error.message)
            else:
                flash(f"{len(sessions)} séance(s) créée(s)." if len(sessions) > 1 else "La séance a été créée.",
                      "success")
                return redirect(url_for("agenda.session_detail", rdv_id=sessions[0].id))
    return render_template("agenda/sessions/form.html", form=form), 422 if request.method == "POST" else 200


@bp.route("/seances/<int:rdv_id>/modifier", methods=["GET", "POST"])
def edit_session(rdv_id: int):
    session = _get_session(rdv_id, "edit")
    if not session.is_session:
        return redirect(url_for("agenda.edit_rdv", rdv_id=session.id))
    if request.method == "GET" and not session.is_live:
        flash("Cette séance est annulée : elle ne peut plus être modifiée.", "error")
        return redirect(url_for("agenda.session_detail", rdv_id=session.id))
    tz = session.organisation.territory.tz
    form = SessionEditForm()
    _fill_choices(form)
    if request.method == "GET":
        local = to_local(session.starts_at, tz)
        form.day.data, form.start_time.data = local.date(), local.time().replace(tzinfo=None)
        form.duration.data = int((session.ends_at - session.starts_at).total_seconds() // 60)
        form.lieu_id.data = session.lieu_id or 0
        form.agent_ids.data = [agent.id for agent in session.agents]
        form.title.data, form.notes.data, form.revision.data = session.title, session.notes, session.revision
    elif form.validate_on_submit():
        lieu = _in_scope(Lieu, [form.lieu_id.data], "view") if form.lieu_id.data else [None]
        agents = _in_scope(Agent, list(dict.fromkeys(form.agent_ids.data)), "view")
        if lieu is None:
            form.lieu_id.errors.append("Choisissez un lieu de vos organisations.")
        elif not agents:
            form.agent_ids.errors.append("Choisissez des agents de vos organisations.")
        else:
            try:
                starts_at = to_utc(form.day.data, form.start_time.data, tz)
                was = session.starts_at, session.lieu_id
                booking_sessions.move_session(
                    actor=current_user, session=session, starts_at=starts_at,
                    duration=timedelta(minutes=form.duration.data), lieu=lieu[0], agents=agents,
                    title=form.title.data or "", notes=form.notes.data or "", revision=form.revision.data)
            except NonexistentLocalTime as error:
                form.start_time.errors.append(str(error))
            except BookingError as error:
                form.form_errors.append(error.message)
            else:
                told = len(session.live_participations) if (session.starts_at, session.lieu_id) != was else 0
                flash("La séance a été modifiée." + (f" {told} famille(s) prévenue(s) de la nouvelle date ou du "
                                                     "nouveau lieu." if told else ""), "success")
                return redirect(url_for("agenda.session_detail", rdv_id=session.id))
    return render_template("agenda/sessions/edit.html", form=form, session=session), \
        422 if request.method == "POST" else 200


@bp.route("/seances/<int:rdv_id>")
def session_detail(rdv_id: int):
    session = _get_session(rdv_id)
    if not session.is_session:
        return redirect(url_for("agenda.rdv_detail", rdv_id=session.id))
    search = request.args.get("q", "")[:100]
    results = search_usagers(current_user, search) if search else []
    families = _families(results)
    now = utcnow()
    return render_template(
        "agenda/sessions/detail.html", session=session, tz=session.organisation.territory.tz, now=now,
        search=search, families=families, free=booking_sessions.free_places(session, now),
        waiting=waitlist_entries.session_entries(session), participant_form=ParticipantForm(),
        attendance_form=AttendanceForm(), capacity_form=CapacityForm(capacity=session.max_participants),
        cancel_form=CancelSessionForm(), place_form=ParticipationForm(), wait_form=WaitForm())


def _families(usagers: list[Usager]) -> list[tuple[Usager, list[Usager]]]:
    """Search results grouped by family: the responsible adult and their relatives, to add together."""
    families: dict[int, tuple[Usager, list[Usager]]] = {}
    for usager in usagers:
        root = usager.responsible or usager
        if policies.can(current_user, "view", root):
            families.setdefault(root.id, (root, [r for r in root.relatives if policies.can(current_user, "view", r)]))
    return list(families.values())


@bp.route("/seances/<int:rdv_id>/inscrire", methods=["POST"])
def add_participant(rdv_id: int):
    session = _get_session(rdv_id, "book")
    form = ParticipantForm()
    if not session.is_session:
        abort(404)
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
    elif (usagers := _in_scope(Usager, list(dict.fromkeys(form.usager_ids.data)), "edit")) is None:
        flash("Une des personnes choisies n'est pas suivie par vos organisations.", "error")
    else:
        try:
            participation = booking_sessions.add_participant(actor=current_user, session=session, usagers=usagers)
        except booking_sessions.SessionFull as error:
            flash(error.message, "error")
            return redirect(url_for("agenda.session_detail", rdv_id=session.id, q=request.form.get("q", ""),
                                    _anchor="inscrire"))
        except BookingError as error:
            flash(error.message, "error")
        else:
            flash(f"Inscription enregistrée : {', '.join(u.full_name for u in participation.usagers)}.", "success")
    return redirect(url_for("agenda.session_detail", rdv_id=session.id))


@bp.route("/seances/<int:rdv_id>/file-attente", methods=["POST"])
def add_to_session_waitlist(rdv_id: int):
    session = _get_session(rdv_id, "book")
    form = WaitForm()
    if not session.is_session:
        abort(404)
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
    elif (usager := _in_scope(Usager, [form.usager_id.data], "edit")) is None:
        flash("Cet usager n'est pas suivi par vos organisations.", "error")
    else:
        try:
            waitlist_entries.add_for_session(current_user, usager[0], session)
        except waitlist_entries.EntryError as error:
            flash(error.message, "error")
        else:
            flash(f"{usager[0].full_name} est sur la file d'attente de la séance : une place libérée lui sera "
                  "proposée par SMS.", "success")
    return redirect(url_for("agenda.session_detail", rdv_id=session.id))


@bp.route("/seances/<int:rdv_id>/desinscrire", methods=["POST"])
def cancel_participant(rdv_id: int):
    session = _get_session(rdv_id, "edit")
    form = ParticipationForm()
    if not session.is_session:
        abort(404)
    participation = (db.session.get(Participation, form.participation_id.data)
                     if form.validate_on_submit() and 0 < form.participation_id.data < 2**31 else None)
    if participation is None or participation.rdv_id != session.id:
        flash(_first_error(form) if form.errors else "Inscription inconnue.", "error")
    else:
        try:
            booking_sessions.cancel_participation(actor=current_user, participation=participation)
        except BookingError as error:
            flash(error.message, "error")
        else:
            flash("La place est annulée : elle est de nouveau libre. La séance a lieu pour les autres.", "success")
    return redirect(url_for("agenda.session_detail", rdv_id=session.id))


@bp.route("/seances/<int:rdv_id>/presences", methods=["POST"])
def session_attendance(rdv_id: int):
    session = _get_session(rdv_id, "edit")
    form = AttendanceForm()
    if not session.is_session:
        abort(404)
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
    else:
        try:
            booking_sessions.set_attendance(actor=current_user, session=session, present=set(form.present.data or []))
        except BookingError as error:
            flash(error.message, "error")
        else:
            came = sum(p.places for p in session.participations if p.status.value == "present")
            flash(f"Présences enregistrées : {came} place(s) présente(s).", "success")
    return redirect(url_for("agenda.session_detail", rdv_id=session.id))


@bp.route("/seances/<int:rdv_id>/places", methods=["POST"])
def session_capacity(rdv_id: int):
    session = _get_session(rdv_id, "edit")
    form = CapacityForm()
    if not session.is_session:
        abort(404)
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
    else:
        try:
            booking_sessions.set_capacity(actor=current_user, session=session, capacity=form.capacity.data)
        except BookingError as error:
            flash(error.message, "error")
        else:
            flash(f"La séance compte désormais {session.max_participants} places.", "success")
    return redirect(url_for("agenda.session_detail", rdv_id=session.id))


@bp.route("/seances/<int:rdv_id>/annuler", methods=["POST"])
def cancel_session(rdv_id: int):
    session = _get_session(rdv_id, "edit")
    form = CancelSessionForm()
    if not session.is_session:
        abort(404)
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
    else:
        try:
            cancel_rdv(actor=current_user, rdv=session, status=RdvStatus.REVOKED, reason=form.reason.data,
                       via=CancellationChannel.AGENDA)
        except BookingError as error:
            flash(error.message, "error")
        else:
            flash(f"La séance est annulée : {len(session.live_participations)} famille(s) prévenue(s), avec la "
                  "raison.", "success")
    return redirect(url_for("agenda.session_detail", rdv_id=session.id))

