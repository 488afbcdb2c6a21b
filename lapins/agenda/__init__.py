"""Agents' agendas: calendars, rdvs, usagers, opening slots and absences."""
from flask import Blueprint
from flask_login import login_required

bp = Blueprint("agenda", __name__)


@bp.before_request
@login_required
def require_login() -> None:
    """Every page of the agenda is for signed-in agents; what each may see is decided in lapins.policies."""


NAV_ITEMS = [
    ("agenda.home", "Mon agenda"),
    ("agenda.lieux_index", "Agenda des lieux"),
    ("agenda.slot_search", "Trouver un créneau"),
    ("agenda.usagers", "Usagers"),
    ("agenda.rdvs_to_fill", "RDV à renseigner"),
    ("agenda.my_schedule", "Mes horaires"),
]


# Pages reached from a menu item keep that item marked as the current one.
NAV_SECTIONS = {
    "agenda.agent_calendar": "agenda.home",
    "agenda.lieu_calendar": "agenda.lieux_index",
    "agenda.usager_detail": "agenda.usagers", "agenda.new_usager": "agenda.usagers", "agenda.edit_usager": "agenda.usagers",
    "agenda.schedule": "agenda.my_schedule", "agenda.new_plage": "agenda.my_schedule",
    "agenda.edit_plage": "agenda.my_schedule", "agenda.delete_plage": "agenda.my_schedule",
    "agenda.new_absence": "agenda.my_schedule", "agenda.edit_absence": "agenda.my_schedule",
    "agenda.delete_absence": "agenda.my_schedule",
}


@bp.app_context_processor
def navigation() -> dict:
    from flask import has_request_context, request
    from flask_login import current_user

    if not has_request_context():  # e-mails rendered by the worker have no navigation
        return {}
    current = NAV_SECTIONS.get(request.endpoint, request.endpoint)
    if request.endpoint == "agenda.agent_calendar" and (request.view_args or {}).get("agent_id") != getattr(current_user, "id", None):
        current = None  # a colleague's agenda is not "Mon agenda"
    return {"nav_items": lambda: NAV_ITEMS, "nav_current": current}


from lapins.agenda import calendar, messages, rdvs, schedule, usagers, views  # noqa: E402,F401
