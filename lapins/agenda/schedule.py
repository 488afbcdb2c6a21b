"""Horaires: an agent's plages d'ouverture and absences, managed by the agent or the organisation's managers."""
from __future__ import annotations

from datetime import date

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from lapins.agenda.blueprint import bp
from lapins.agenda import plage_exceptions as exceptions
from lapins.agenda import schedule_services as services
from lapins.agenda.schedule_forms import AbsenceForm, PlageExceptionForm, PlageForm
from lapins.infra.extensions import db
from lapins.models import Absence, Agent, PlageOuverture
from lapins.policies import authorize

TEMPLATES = "agenda/schedule"


def _agent_or_404(agent_id: int) -> Agent:
    agent = db.session.get(Agent, agent_id)
    authorize(current_user, "manage_schedule", agent)
    return agent


def _target_or_404(model, target_id: int):
    target = db.session.get(model, target_id)
    authorize(current_user, "manage_schedule", target)
    return target


def _back_to(agent_id: int):
    return redirect(url_for("agenda.schedule", agent_id=agent_id))


def _render_form(template: str, form, status_on_error: int = 422, **context):
    status = status_on_error if request.method == "POST" and form.errors else 200
    return render_template(f"{TEMPLATES}/{template}", form=form, **context), status


@bp.route("/horaires")
def my_schedule():
    """The current agent's schedule, or the one picked in the agents selector (permission checked there)."""
    agent_id = request.args.get("agent_id", type=int) or current_user.id
    return _back_to(agent_id)


@bp.route("/agents/<int:agent_id>/horaires")
def schedule(agent_id: int):
    agent = _agent_or_404(agent_id)
    today = services.agent_today(agent)
    upcoming, past = services.absences_of(agent, today)
    return render_template(
        f"{TEMPLATES}/index.html",
        agent=agent,
        today=today,
        plages=services.plages_of(current_user, agent, today),
        upcoming_absences=upcoming,
        past_absences=past,
        agents=services.manageable_agents(current_user),
        **services.TEMPLATE_HELPERS,
    )


# --- Plages d'ouverture -------------------------------------------------------------------------------------------


def _plage_form(agent: Agent, plage: PlageOuverture | None = None) -> PlageForm:
    choices = {
        "lieux": services.lieux_for(current_user, agent, keep=plage.lieu if plage else None),
        "motifs": services.motifs_for(current_user, agent, keep=plage.motifs if plage else None),
    }
    if request.method == "POST":
        return PlageForm(**choices)
    if plage is not None:
        return PlageForm.for_plage(plage, **choices)
    return PlageForm(data={"first_day": services.agent_today(agent), "every_n_weeks": 1}, **choices)


def _save_plage(form: PlageForm, plage: PlageOuverture) -> bool:
    try:
        services.save_plage(current_user, plage, form.values())
    except services.ScheduleConflict as conflict:
        form.form_errors.append(conflict.message)
        return False
    return True


@bp.route("/agents/<int:agent_id>/plages/nouvelle", methods=["GET", "POST"])
def new_plage(agent_id: int):
    agent = _agent_or_404(agent_id)
    form = _plage_form(agent)
    if form.validate_on_submit() and _save_plage(form, PlageOuverture(agent_id=agent.id)):
        flash(f"La plage d'ouverture « {form.title.data} » est enregistrée.", "success")
        return _back_to(agent.id)
    return _render_form("plage_form.html", form, agent=agent, plage=None)


@bp.route("/plages/<int:plage_id>/modifier", methods=["GET", "POST"])
def edit_plage(plage_id: int):
    plage = _target_or_404(PlageOuverture, plage_id)
    agent = plage.agent
    form = _plage_form(agent, plage)
    if form.validate_on_submit() and _save_plage(form, plage):
        flash(f"La plage d'ouverture « {form.title.data} » est modifiée.", "success")
        return _back_to(agent.id)
    return _render_form("plage_form.html", form, agent=agent, plage=plage)


@bp.route("/plages/<int:plage_id>/supprimer", methods=["GET", "POST"])
def delete_plage(plage_id: int):
    plage = _target_or_404(PlageOuverture, plage_id)
    agent_id, title = plage.agent_id, plage.title
    if request.method == "POST":  # CSRFProtect has already refused a POST without a valid token
        services.delete(plage)
        flash(f"La plage d'ouverture « {title} » est supprimée.", "success")
        return _back_to(agent_id)
    return render_template(
        f"{TEMPLATES}/confirm_delete.html", agent=plage.agent, kind="la plage d'ouverture", target=plage,
        summary=f"{services.describe_recurrence(plage)}, {services.describe_period(plage.first_day, plage.last_day)}",
        action=url_for("agenda.delete_plage", plage_id=plage.id),
    )


# --- One date of a plage, or every date from one on ---------------------------------------------------------------


def _query_day() -> date | None:
    try:
        return date.fromisoformat(request.args.get("date", ""))
    except ValueError:
        return None


def _exception_return_url(agent_id: int, day: date | None) -> str:
    """Back to the agenda's week of the date when the agent came from there, else to the schedule page."""
    if request.args.get("depuis") == "agenda":
        return url_for("agenda.agent_calendar", agent_id=agent_id, date=day.isoformat() if day else None)
    return url_for("agenda.schedule", agent_id=agent_id)


def _confirmed_ids(form: PlageExceptionForm) -> set[int]:
    return {int(part) for part in (form.confirmed.data or "").split(",") if part.isdigit()}


@bp.route("/plages/<int:plage_id>/dates", methods=["GET", "POST"])
def plage_exception(plage_id: int):
    """Remove or change one date of the plage, or every date from one on. The rdvs the new openings would leave out
    are listed for confirmation first (their ids travel in the form, so a list that changed meanwhile is shown
    again); none is moved or cancelled."""
    plage = _target_or_404(PlageOuverture, plage_id)
    agent = plage.agent
    lieux = exceptions.lieux_choices(services.lieux_for(current_user, agent, keep=plage.lieu), plage)
    if request.method == "POST":
        form = PlageExceptionForm(lieux=lieux)
    else:
        form = PlageExceptionForm.for_date(plage, _query_day(), lieux=lieux)
    context = {"agent": agent, "plage": plage, "tz": exceptions.plage_timezone(plage),
               "back_url": _exception_return_url(agent.id, _query_day()), **services.TEMPLATE_HELPERS}
    if form.validate_on_submit():
        values = form.values()
        problem = exceptions.date_problem(plage, values.day)
        if problem:
            form.day.errors.append(problem)
        elif problem := exceptions.values_problem(plage, values):
            form.form_errors.append(problem)
        else:
            try:
                summary, left_out = exceptions.apply(current_user, plage, values, _confirmed_ids(form))
            except exceptions.ConfirmationNeeded as needed:
                form.confirmed.data = ",".join(str(rdv.id) for rdv in needed.left_out)
                return render_template(f"{TEMPLATES}/plage_exception_confirm.html", form=form, values=values,
                                       left_out=needed.left_out, **context)
            except services.ScheduleConflict as conflict:
                form.form_errors.append(conflict.message)
            else:
                if len(left_out) == 1:
                    summary += (" Un rendez-vous reste à son horaire, hors des nouvelles ouvertures : déplacez-le ou"
                                " annulez-le si besoin.")
                elif left_out:
                    summary += (f" {len(left_out)} rendez-vous restent à leur horaire, hors des nouvelles ouvertures :"
                                " déplacez-les ou annulez-les si besoin.")
                flash(summary, "success")
                return redirect(_exception_return_url(agent.id, values.day))
    return _render_form("plage_exception_form.html", form, **context)


# --- Absences -----------------------------------------------------------------------------------------------------


def _absence_form(agent: Agent, absence: Absence | None = None) -> AbsenceForm:
    if request.method == "POST":
        return AbsenceForm()
    if absence is not None:
        return AbsenceForm.for_absence(absence)
    return AbsenceForm(data={"first_day": services.agent_today(agent), "every_n_weeks": 1})


@bp.route("/agents/<int:agent_id>/absences/nouvelle", methods=["GET", "POST"])
def new_absence(agent_id: int):
    agent = _agent_or_404(agent_id)
    form = _absence_form(agent)
    if form.validate_on_submit():
        services.save_absence(Absence(agent_id=agent.id), form.values())
        flash(f"L'absence « {form.title.data} » est enregistrée.", "success")
        return _back_to(agent.id)
    return _render_form("absence_form.html", form, agent=agent, absence=None)


@bp.route("/absences/<int:absence_id>/modifier", methods=["GET", "POST"])
def edit_absence(absence_id: int):
    absence = _target_or_404(Absence, absence_id)
    agent = absence.agent
    form = _absence_form(agent, absence)
    if form.validate_on_submit():
        services.save_absence(absence, form.values())
        flash(f"L'absence « {form.title.data} » est modifiée.", "success")
        return _back_to(agent.id)
    return _render_form("absence_form.html", form, agent=agent, absence=absence)


@bp.route("/absences/<int:absence_id>/supprimer", methods=["GET", "POST"])
def delete_absence(absence_id: int):
    absence = _target_or_404(Absence, absence_id)
    agent_id, title = absence.agent_id, absence.title
    if request.method == "POST":
        services.delete(absence)
        flash(f"L'absence « {title} » est supprimée.", "success")
        return _back_to(agent_id)
    return render_template(
        f"{TEMPLATES}/confirm_delete.html", agent=absence.agent, kind="l'absence", target=absence,
        summary=services.describe_absence(absence),
        action=url_for("agenda.delete_absence", absence_id=absence.id),
    )
