"""The agent's calendar settings (« Mes agendas »), an administrator's revocation, and the public ICS feed."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import delete, select
from wtforms import BooleanField, PasswordField, StringField, URLField
from wtforms.validators import DataRequired, Length, ValidationError

from lapins import policies
from lapins.calendars import feeds, ics, push
from lapins.calendars.blueprint import bp
from lapins.calendars.caldav_client import Calendar, CalendarError
from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.infra.forms import Form, strip
from lapins.models import Agent
from lapins.models.calendars import BusyBlock, CaldavAccount, CaldavPush

FEED_ENDPOINT = "calendars.ics_feed"


class ConfirmForm(Form):
    """A bare POST form: its CSRF token is the whole point."""


class FeedOptionsForm(Form):
    with_family_names = BooleanField("Afficher le nom de la famille et l'adresse des visites à domicile dans mon "
                                     "agenda")


class CaldavForm(Form):
    url = URLField("Adresse (URL) de l'agenda CalDAV", filters=[strip], validators=[
        DataRequired("Indiquez l'adresse de votre agenda."),
        Length(max=500, message="Adresse trop longue (500 caractères au plus).")])
    username = StringField("Identifiant", filters=[strip], validators=[
        DataRequired("Indiquez votre identifiant."), Length(max=200, message="200 caractères au plus.")])
    password = PasswordField("Mot de passe d'application", validators=[
        DataRequired("Indiquez un mot de passe d'application."), Length(max=500, message="500 caractères au plus.")])
    with_personal_data = BooleanField("Écrire aussi le nom de la famille et l'adresse des visites à domicile")

    def validate_url(self, field) -> None:
        parts = urlsplit(field.data or "")
        allowed = {"https", "http"} if current_app.config["CALDAV_ALLOW_HTTP"] else {"https"}
        if parts.scheme not in allowed or not parts.hostname:
            raise ValidationError("Adresse invalide : elle doit commencer par https://.")


def _page(*, token: str | None = None, caldav_form: CaldavForm | None = None, status: int = 200):
    feed = feeds.live_feed(current_user.id)
    account = db.session.scalar(select(CaldavAccount).where(CaldavAccount.agent_id == current_user.id))
    territory = ics.agent_territory(current_user)
    return render_template(
        "calendars/settings.html", feed=feed, tz=territory.tz if territory else ics.DEFAULT_TZ, token=token,
        feed_url=url_for(FEED_ENDPOINT, token=token, _external=True) if token else None,
        options_form=FeedOptionsForm(formdata=None, with_family_names=feed.with_family_names if feed else False),
        confirm_form=ConfirmForm(), caldav_form=caldav_form or CaldavForm(formdata=None), account=account,
        pending=push.pending_count(account.id) if account else 0), status


@bp.route("/preferences/agendas")
@login_required
def settings():
    return _page()


@bp.route("/preferences/agendas/lien", methods=["POST"])
@login_required
def issue_feed():
    if not ConfirmForm().validate_on_submit():
        abort(400)
    token = feeds.issue(current_user)
    # Shown in this answer alone: only its hash is kept, and it never goes into a cookie.
    return _page(token=token)


@bp.route("/preferences/agendas/lien/revoquer", methods=["POST"])
@login_required
def revoke_feed():
    if ConfirmForm().validate_on_submit():
        if feeds.revoke(current_user.id):
            flash("Le lien de votre agenda est révoqué : les applications qui l'utilisaient ne reçoivent plus rien.",
                  "success")
        else:
            flash("Vous n'avez pas de lien d'agenda actif.", "info")
    return redirect(url_for("calendars.settings"))


@bp.route("/preferences/agendas/lien/options", methods=["POST"])
@login_required
def feed_options():
    form = FeedOptionsForm()
    if form.validate_on_submit():
        if feeds.set_family_names(current_user.id, bool(form.with_family_names.data)):
            flash("Option enregistrée : votre application d'agenda la verra à sa prochaine mise à jour.", "success")
        else:
            flash("Créez d'abord un lien d'agenda.", "error")
    return redirect(url_for("calendars.settings"))


@bp.route("/preferences/agendas/caldav", methods=["POST"])
@login_required
def connect_caldav():
    form = CaldavForm()
    if not form.validate_on_submit():
        return _page(caldav_form=form, status=422)
    try:
        Calendar(form.url.data, form.username.data, form.password.data).check()
    except CalendarError as error:
        form.url.errors = [*form.url.errors, error.message]
        return _page(caldav_form=form, status=422)
    account = db.session.scalar(select(CaldavAccount).where(CaldavAccount.agent_id == current_user.id))
    if account is None:
        account = CaldavAccount(agent_id=current_user.id)
        db.session.add(account)
    account.url, account.username = form.url.data, form.username.data
    account.password_encrypted = crypto.encrypt(form.password.data)
    account.with_personal_data = bool(form.with_personal_data.data)
    account.last_error = account.last_error_at = account.sync_token = account.busy_read_at = None
    db.session.flush()
    push.retry_now(account.id)
    push.plan_all(account)
    db.session.commit()
    push.kick()
    flash("Agenda connecté : vos rendez-vous y sont écrits, et ses événements bloquent vos créneaux.", "success")
    return redirect(url_for("calendars.settings"))


@bp.route("/preferences/agendas/caldav/deconnecter", methods=["POST"])
@login_required
def disconnect_caldav():
    if ConfirmForm().validate_on_submit():
        account = db.session.scalar(select(CaldavAccount).where(CaldavAccount.agent_id == current_user.id))
        if account is not None:
            db.session.execute(delete(CaldavPush).where(CaldavPush.account_id == account.id))
            db.session.execute(delete(BusyBlock).where(BusyBlock.account_id == account.id))
            db.session.delete(account)
            db.session.commit()
            flash("Agenda déconnecté : Lapins n'y écrit plus et n'en lit plus rien.", "success")
    return redirect(url_for("calendars.settings"))


@bp.route("/admin/organisations/<int:organisation_id>/agents/<int:agent_id>/agenda/revoquer", methods=["POST"])
@login_required
def admin_revoke_feed(organisation_id: int, agent_id: int):
    agent = db.session.get(Agent, agent_id)
    if agent is None or organisation_id not in agent.organisation_ids:
        abort(404)
    policies.authorize(current_user, "configure", agent)
    if ConfirmForm().validate_on_submit():
        if feeds.revoke(agent.id):
            flash(f"Le lien d'agenda de {agent.full_name} est révoqué.", "success")
        else:
            flash(f"{agent.full_name} n'a pas de lien d'agenda actif.", "info")
    return redirect(url_for("admin.agents", organisation_id=organisation_id))


@bp.route("/calendrier/<token>.ics")
def ics_feed(token: str):
    """Public: the token is the key. Any malformed, unknown or revoked token is the same 404."""
    feed = feeds.feed_for(token)
    if feed is None:
        abort(404)
    etag = ics.feed_etag(feed)
    if request.if_none_match.contains(etag):
        db.session.commit()
        response = Response(status=304)
    else:
        body = ics.feed_body(feed, etag)
        db.session.commit()  # a read: end the transaction before the answer is written
        response = Response(body, mimetype="text/calendar")
        response.headers["Content-Type"] = "text/calendar; charset=utf-8"
        response.headers["Content-Disposition"] = 'inline; filename="lapins.ics"'
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, max-age=300"
    return response
