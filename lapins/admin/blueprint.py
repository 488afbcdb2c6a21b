"""Administration: the organisations of a territory, and the lieux, motifs and agents of each organisation.

- forms.py: the forms, every field checked with a French message;
- services.py: what the pages change (duplicates refused, invitations sent, the last admin role kept);
- views.py: the pages, each authorised by lapins.policies ("administer" a territory, "configure" an organisation).
"""
from flask import Blueprint
from flask_login import login_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def require_login() -> None:
    """For signed-in agents; lapins.policies decides who administers what."""
