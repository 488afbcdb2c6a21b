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


@bp.app_context_processor
def navigation() -> dict:
    return {"nav_items": lambda: NAV_ITEMS}


from lapins.agenda import calendar, rdvs, schedule, usagers, views  # noqa: E402,F401
