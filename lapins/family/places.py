"""A family's page for its place in a collective session, `/r/p/<token>` (the link of its own SMS and e-mails):
the session in plain French and, until the motif's limit, cancelling this place only — the session goes on for the
others and the place goes to its waiting list. Cancelling asks the first letters of the family's name, as the
rdv's page does; the page and its POST are rate-limited like the rdv's (lapins.auth.limits)."""
from __future__ import annotations

from datetime import timedelta

from flask import redirect, render_template, url_for

from lapins.booking import BookingError
from lapins.booking import sessions as booking_sessions
from lapins.family import services
from lapins.family.forms import IdentityForm
from lapins.family.pages import bp
from lapins.infra.extensions import db
from lapins.models import Participation, utcnow
from lapins.models.rdvs import CancellationChannel, ParticipationStatus
from lapins.notifications import links


def _place(token: str):
    participation_id = links.place_id_from_token(token)
    participation = db.session.get(Participation, participation_id) if participation_id else None
    if participation is None:
        return None, (render_template("family/unavailable.html", title="Lien invalide", message=(
            "Ce lien ne correspond à aucune inscription. Vérifiez qu'il est complet, ou appelez votre centre de "
            "PMI.")), 404)
    if participation.rdv.ends_at < utcnow():
        return None, (render_template("family/unavailable.html", title="Séance passée",
                                      message="Cette séance est passée : ce lien n'est plus utilisable."), 410)
    return participation, None


def _deadline(participation: Participation):
    session = participation.rdv
    return session.starts_at - timedelta(hours=session.motif.cancellation_limit_hours)


def _page(participation: Participation, token: str, *, form: IdentityForm | None = None, error: str | None = None,
          code: int = 200):
    session = participation.rdv
    can_cancel = (session.is_live and participation.status == ParticipationStatus.REGISTERED
                  and utcnow() < _deadline(participation))
    return render_template("family/place.html", participation=participation, session=session, token=token,
                           tz=session.organisation.territory.tz, can_cancel=can_cancel,
                           deadline=_deadline(participation), form=form or IdentityForm(), error=error,
                           phone=session.phone_to_call), code


def _names_match(participation: Participation, typed: str) -> bool:
    return services.names_match([person.last_name for person in [participation.usager, *participation.usagers]], typed)


@bp.route("/r/p/<token>")
def place_page(token: str):
    participation, refusal = _place(token)
    return refusal or _page(participation, token)


@bp.route("/r/p/<token>/annuler", methods=["POST"])
def cancel_place(token: str):
    participation, refusal = _place(token)
    if refusal:
        return refusal
    form = IdentityForm()
    if not form.validate_on_submit():
        return _page(participation, token, form=form, code=422)
    if not _names_match(participation, form.letters.data):
        return _page(participation, token, form=form, code=403,
                     error="Ces lettres ne correspondent pas au nom de famille de l'inscription.")
    if not (participation.rdv.is_live and participation.status == ParticipationStatus.REGISTERED
            and utcnow() < _deadline(participation)):
        return _page(participation, token, code=409,
                     error="Cette place ne peut plus être annulée en ligne : appelez votre centre de PMI.")
    try:
        booking_sessions.cancel_participation(actor=None, participation=participation,
                                              via=CancellationChannel.LINK)
    except BookingError as error:
        return _page(participation, token, error=error.message, code=409)
    return redirect(url_for("family.place_page", token=token))
