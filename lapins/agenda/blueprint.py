"""Agents' agendas: calendars, rdvs, usagers, opening slots and absences."""
from flask import Blueprint
from flask_login import login_required
from lapins import policies
from lapins.models import Role

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
    # A menu: (its label, its links). The header keeps one line on an office screen.
    ("Suivi des rendez-vous", [
        ("agenda.confirmations_index", "À confirmer"),
        ("agenda.rdvs_to_fill", "RDV à renseigner"),
        ("agenda.freed_slots_board", "Créneaux libérés"),
        ("agenda.waitlist", "File d'attente"),
        ("agenda.sessions_index", "Séances collectives"),
        ("stats.headline_home", "Taux de lapins"),
        ("stats.home", "Statistiques"),
    ]),
    ("agenda.my_schedule", "Mes horaires"),
]


# Pages reached from a menu item keep that item marked as the current one.
NAV_SECTIONS = {
    "stats.page": "stats.home", "stats.export_status": "stats.home", "stats.headline_page": "stats.headline_home",
    "agenda.agent_calendar": "agenda.home",
    "agenda.lieu_calendar": "agenda.lieux_index",
    "agenda.lieu_confirmations": "agenda.confirmations_index",
    "agenda.usager_detail": "agenda.usagers", "agenda.new_usager": "agenda.usagers", "agenda.edit_usager": "agenda.usagers",
    "agenda.schedule": "agenda.my_schedule", "agenda.new_plage": "agenda.my_schedule",
    "agenda.edit_plage": "agenda.my_schedule", "agenda.delete_plage": "agenda.my_schedule",
    "agenda.new_absence": "agenda.my_schedule", "agenda.edit_absence": "agenda.my_schedule",
    "agenda.delete_absence": "agenda.my_schedule",
    "agenda.new_session": "agenda.sessions_index", "agenda.session_detail": "agenda.sessions_index",
    "agenda.territory_messages": "agenda.my_territory_messages",
    "territory_settings.page": "territory_settings.mine",
    "health.health_page": "health.health_index",
    "integrations.webhooks": "integrations.index",
    "audit.rdv_history": "audit.index", "audit.usager_history": "audit.index",
    **{f"admin.{page}": "admin.index" for page in (
        "organisations", "add_territory_admin", "edit_organisation", "lieux", "new_lieu", "edit_lieu", "motifs",
        "new_motif", "edit_motif", "agents", "invite_agent")},
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
    return {"nav_items": lambda: NAV_ITEMS + extra_nav_items(current_user), "nav_current": current}


def extra_nav_items(agent) -> list:
    """Items some agents only get, in one « Administration » menu so the header keeps one line at 1366 px: the
    territory's settings for those who administer it, the SMS figures for administrators; the dev inbox outside
    production."""
    from flask import current_app

    items: list = []
    if getattr(agent, "is_authenticated", False):
        admin = any(role.role == Role.ADMIN for role in agent.roles)
        menu = []
        if admin or agent.administered_territory_ids:
            menu.append(("admin.index", "Organisations, lieux et agents"))
        if agent.administered_territory_ids or (admin and any(
                policies.administers_territory(agent, role.organisation.territory) for role in agent.roles)):
            menu.append(("territory_settings.mine", "Paramètres du territoire"))
            menu.append(("health.health_index", "Santé des envois"))
        if admin:
            menu += [("agenda.my_territory_messages", "SMS envoyés"), ("audit.index", "Historique"),
                     ("integrations.index", "Intégrations")]
        if menu:
            items.append(("Administration", menu))
    if current_app.config["ENV_NAME"] != "production":
        items.append(("agenda.dev_inbox", "Boîte de dév."))
    return items
