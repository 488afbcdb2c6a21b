"""The family's page, reached from the link in every SMS and e-mail: no account, the signed link is the key.

It shows the rdv in plain French, in the territory's time zone, offers it as an ICS file, and lets the family
move it (lapins.family.moves) and cancel it until the motif's limits. A forwarded link reveals a time and a place,
nothing more: names are shown, and moving or cancelling allowed, only once this browser has given the first letters
of the family's last name (a light check,
remembered in the signed session cookie, with a limit of wrong tries per rdv kept in the database, and limits on
the check's requests per rdv and per address in lapins.auth.limits).
"""
from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from flask_limiter import RateLimitExceeded
from sqlalchemy.orm import joinedload

from lapins.auth.limits import MESSAGES, TOO_MANY_CHECKS, retry_after_seconds
from lapins.booking import BookingError, family_move_refusal, move_deadline
from lapins.infra.extensions import db
from lapins.family import services
from lapins.family.forms import FamilyCancelForm, IdentityForm
from lapins.models import Organisation, Rdv, Usager, utcnow
from lapins.models.rdvs import Canceller
from lapins.notifications import links
from lapins.notifications.email import rdv_ics

bp = Blueprint("family", __name__)


def _rdv_from(token: str) -> Rdv | None:
    """The link's rdv with what its pages show, in one query; None too for a guardian's own link once that adult
    is no longer responsible for the rdv's child."""
    link = links.link_of(token)
    if link is None:
        return None
    rdv = db.session.get(Rdv, link[0], options=[
        joinedload(Rdv.motif), joinedload(Rdv.lieu), joinedload(Rdv.agent_links),
        joinedload(Rdv.organisation).joinedload(Organisation.territory)])
    if rdv is not None and link[1] is not None and link[1] not in {guardian.id for guardian in rdv.guardians}:
        return None
    return rdv


def guardian_of(token: str) -> int | None:
    """The responsible adult a link was sent to, when it is one guardian's own link (lapins.notifications.links)."""
    link = links.link_of(token)
    return link[1] if link is not None else None


def _unavailable(title: str, message: str, code: int):
    return render_template("family/unavailable.html", title=title, message=message), code


def open_link(token: str):
    """The rdv of a valid, unexpired link, or the page that says why there is none."""
    rdv = _rdv_from(token)
    if rdv is None:
        return None, _unavailable("Lien invalide", "Ce lien ne correspond à aucun rendez-vous. Vérifiez qu'il est "
                                  "complet, ou appelez votre centre de PMI.", 404)
    if rdv.ends_at < utcnow():
        return None, _unavailable("Rendez-vous passé", "Ce rendez-vous est passé : ce lien n'est plus utilisable.", 410)
    return rdv, None


def rdv_page_of(rdv: Rdv, token: str, *, identity_form: IdentityForm | None = None,
          cancel_form: FamilyCancelForm | None = None, error: str | None = None, code: int = 200):
    now = utcnow()
    checked = services.is_checked(session, rdv.id)
    can_cancel = services.can_cancel_online(rdv, now)
    move_refusal = family_move_refusal(rdv, now) if rdv.is_live else None
    may_act = can_cancel or move_refusal is None
    return render_template(
        "family/rdv.html", rdv=rdv, token=token, tz=rdv.organisation.territory.tz, checked=checked,
        can_cancel=can_cancel, deadline=services.cancellation_deadline(rdv), error=error,
        move_refusal=move_refusal, move_deadline=move_deadline(rdv), may_act=may_act,
        then=request.values.get("suite") == "changer",
        locked_until=services.locked_until(rdv.id, now) if may_act and not checked else None,
        identity_form=identity_form or IdentityForm(), cancel_form=cancel_form or FamilyCancelForm(),
        phone=rdv.phone_to_call, link_guardian=db.session.get(Usager, guardian_of(token) or 0),
    ), code


@bp.route("/r/<token>")
def rdv_page(token: str):
    rdv, refusal = open_link(token)
    return refusal or rdv_page_of(rdv, token)


@bp.route("/r/<token>/verifier", methods=["POST"])
def check_identity(token: str):
    rdv, refusal = open_link(token)
    if refusal:
        return refusal
    now = utcnow()
    may_act = services.can_cancel_online(rdv, now) or family_move_refusal(rdv, now) is None
    if not may_act or services.is_checked(session, rdv.id):
        return redirect(url_for("family.rdv_page", token=token))
    form = IdentityForm()
    if services.locked_until(rdv.id, now):
        return rdv_page_of(rdv, token, identity_form=form, code=429)
    if not form.validate_on_submit():
        return rdv_page_of(rdv, token, identity_form=form, code=422)
    attempt = services.take_try(rdv.id, now)  # counted before it is checked: the lock read above may be stale
    if attempt is None:
        return rdv_page_of(rdv, token, identity_form=form, code=429)
    if services.identity_matches(rdv, form.letters.data):
        services.forget_failures(rdv.id)
        services.remember_check(session, rdv.id)
        if request.form.get("suite") == "changer" and family_move_refusal(rdv, now) is None:
            return redirect(url_for("family.move_picker", token=token))
        return redirect(url_for("family.rdv_page", token=token) + "#changer")
    if attempt.locked_until:
        return rdv_page_of(rdv, token, identity_form=form, code=429)
    form.letters.errors.append(
        "Ces lettres ne correspondent pas au nom de famille du rendez-vous. Vérifiez et réessayez "
        f"({attempt.tries_left} essai{'s' if attempt.tries_left > 1 else ''} restant{'s' if attempt.tries_left > 1 else ''}).")
    return rdv_page_of(rdv, token, identity_form=form, code=422)


@bp.errorhandler(RateLimitExceeded)
def too_many_checks(error: RateLimitExceeded):
    """The limits of the family's pages (lapins.auth.limits): the rdv's page with the message, 429; for an offered
    slot's link, the message alone."""
    message = MESSAGES.get(request.endpoint or "", TOO_MANY_CHECKS)
    retry = {"Retry-After": str(retry_after_seconds())}
    if (request.endpoint or "").endswith("_offer") or request.endpoint == "family.offer_page":
        page, _ = _unavailable("Trop de demandes", message, 429)
        return page, 429, retry
    token = (request.view_args or {}).get("token", "")
    rdv, refusal = open_link(token)
    if refusal:
        return refusal
    page, _ = rdv_page_of(rdv, token, identity_form=IdentityForm(formdata=None), error=message)
    return page, 429, retry


@bp.route("/r/<token>/annuler", methods=["POST"])
def cancel(token: str):
    rdv, refusal = open_link(token)
    if refusal:
        return refusal
    if not rdv.is_live:
        return rdv_page_of(rdv, token, code=409)
    if not services.is_checked(session, rdv.id):
        return rdv_page_of(rdv, token,
                           error="Pour annuler, saisissez d'abord les 3 premières lettres du nom de famille.",
                     code=403)
    form = FamilyCancelForm()
    if not form.validate_on_submit():
        return rdv_page_of(rdv, token, cancel_form=form, code=422)
    if request.form.get("confirme") != "oui" and services.can_cancel_online(rdv, utcnow()):
        # One tap must not cancel: a second step, a plain form, so it works without JavaScript too.
        return render_template("family/cancel_confirm.html", rdv=rdv, token=token, form=form,
                               tz=rdv.organisation.territory.tz)
    try:
        services.cancel_from_link(rdv, form.reason.data, utcnow(), guardian_id=guardian_of(token))
    except BookingError as error:
        return rdv_page_of(rdv, token, cancel_form=form, error=error.message, code=409)
    return redirect(url_for("family.cancelled", token=token))


@bp.route("/r/<token>/annule")
def cancelled(token: str):
    """The confirmation after the family cancelled; any other visit is the rdv's page."""
    rdv, refusal = open_link(token)
    if refusal:
        return refusal
    if rdv.is_live or rdv.cancelled_by_party != Canceller.FAMILY or not services.is_checked(session, rdv.id):
        return redirect(url_for("family.rdv_page", token=token))
    return render_template("family/cancelled.html", rdv=rdv, token=token, tz=rdv.organisation.territory.tz,
                           phone=rdv.phone_to_call)


@bp.route("/r/<token>/rendez-vous.ics")
def rdv_calendar(token: str):
    rdv = _rdv_from(token)
    if rdv is None or rdv.ends_at < utcnow():
        return _unavailable("Lien invalide", "Ce lien ne correspond à aucun rendez-vous à venir.", 404)
    method = "PUBLISH" if rdv.is_live else "CANCEL"
    return Response(rdv_ics(rdv, links.family_url(rdv.id), method), mimetype="text/calendar",
                    headers={"Content-Disposition": 'attachment; filename="rendez-vous.ics"'})
