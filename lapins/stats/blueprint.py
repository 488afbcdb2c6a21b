"""Statistics of an organisation and of a territory: monthly figures, charts, CSV/XLSX files, background exports."""
from flask import Blueprint
from flask_login import login_required

bp = Blueprint("stats", __name__, url_prefix="/statistiques")


@bp.before_request
@login_required
def require_login() -> None:
    """Every page here is for signed-in agents; what each may see is decided in lapins.policies."""
