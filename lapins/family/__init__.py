"""The family's page, reached from the link in every SMS and e-mail: no account, the signed link is the key.

It shows the rdv in plain French, in the territory's time zone, and offers it as an ICS file. Until the identity
check of the cancellation issue exists it shows no names: a forwarded link reveals a time and a place, nothing more.
"""
from __future__ import annotations

from flask import Blueprint, Response, render_template

from lapins.extensions import db
from lapins.models import Rdv, utcnow
from lapins.notifications import links

bp = Blueprint("family", __name__)


def _rdv_from(token: str) -> Rdv | None:
    rdv_id = links.rdv_id_from_token(token)
    return db.session.get(Rdv, rdv_id) if rdv_id is not None else None


def _unavailable(title: str, message: str, code: int):
    return render_template("family/unavailable.html", title=title, message=message), code


@bp.route("/r/<token>")
def rdv_page(token: str):
    rdv = _rdv_from(token)
    if rdv is None:
        return _unavailable("Lien invalide", "Ce lien ne correspond à aucun rendez-vous. Vérifiez qu'il est complet, "
                            "ou appelez votre centre de PMI.", 404)
    if rdv.ends_at < utcnow():
        return _unavailable("Rendez-vous passé", "Ce rendez-vous est passé : ce lien n'est plus utilisable.", 410)
    return render_template("family/rdv.html", rdv=rdv, token=token, tz=rdv.organisation.territory.tz)


@bp.route("/r/<token>/rendez-vous.ics")
def rdv_calendar(token: str):
    from lapins.notifications.email import rdv_ics

    rdv = _rdv_from(token)
    if rdv is None or rdv.ends_at < utcnow():
        return _unavailable("Lien invalide", "Ce lien ne correspond à aucun rendez-vous à venir.", 404)
    method = "PUBLISH" if rdv.is_live else "CANCEL"
    return Response(rdv_ics(rdv, links.family_url(rdv.id), method), mimetype="text/calendar",
                    headers={"Content-Disposition": 'attachment; filename="rendez-vous.ics"'})
