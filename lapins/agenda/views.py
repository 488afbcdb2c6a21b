from flask import redirect, url_for
from flask_login import current_user

from lapins.agenda.blueprint import bp


@bp.route("/")
def home():
    return redirect(url_for("agenda.agent_calendar", agent_id=current_user.id))
