"""Personal data: the retention job, and a usager's data exported or erased on the family's request."""
from flask import Blueprint
from flask_login import login_required

bp = Blueprint("privacy", __name__)


@bp.before_request
@login_required
def require_login() -> None:
    """Exports and erasures are for signed-in agents; lapins.policies decides which."""
