"""Organisation administrators' pages: the webhooks of an organisation and their delivery log."""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import StringField, URLField
from wtforms.validators import URL, DataRequired, Length, Optional, ValidationError

from lapins import policies
from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.infra.forms import Form, strip
from lapins.integrations import delivery
from lapins.integrations.blueprint import bp
from lapins.models import Organisation
from lapins.models.webhooks import DeliveryStatus, Webhook, WebhookDelivery

LOG_LENGTH = 100


class WebhookForm(Form):
    url = URLField("Adresse (URL) qui recevra les événements", filters=[strip], validators=[
        DataRequired("Indiquez l'adresse du webhook."), Length(max=500, message="Adresse trop longue (500 caractères au plus)."),
        URL(require_tld=False, message="Adresse invalide : elle doit commencer par https://.")])
    description = StringField("Description (facultative)", filters=[strip],
                              validators=[Optional(), Length(max=200, message="200 caractères au plus.")])

    def validate_url(self, field) -> None:
        scheme = urlsplit(field.data or "").scheme
        allowed = {"https", "http"} if current_app.config["WEBHOOKS_ALLOW_HTTP"] else {"https"}
        if scheme not in allowed:
            raise ValidationError("L'adresse doit commencer par https:// (les événements nomment des familles).")


class ConfirmForm(Form):
    """A bare POST form: its CSRF token is the whole point."""


def _organisation(organisation_id: int) -> Organisation:
    organisation = db.session.get(Organisation, organisation_id)
    policies.authorize(current_user, "administer", organisation)
    return organisation


def _webhook(webhook_id: int) -> Webhook:
    webhook = db.session.get(Webhook, webhook_id)
    policies.authorize(current_user, "administer", webhook)
    return webhook


@bp.route("/organisations/<int:organisation_id>/webhooks", methods=["GET", "POST"])
def webhooks(organisation_id: int):
    organisation = _organisation(organisation_id)
    form = WebhookForm()
    secret = None
    if form.validate_on_submit():
        secret = secrets.token_urlsafe(32)
        db.session.add(Webhook(organisation_id=organisation.id, url=form.url.data, description=form.description.data,
                               secret_encrypted=crypto.encrypt(secret), created_by_id=current_user.id))
        db.session.commit()
        form = WebhookForm(formdata=None)
    hooks = delivery.webhooks_of(organisation.id)
    status = 422 if form.errors else 200
    return render_template("integrations/webhooks.html", organisation=organisation, form=form, webhooks=hooks,
                           secret=secret, confirm_form=ConfirmForm(), tz=organisation.territory.tz,
                           deliveries=delivery.recent_deliveries([hook.id for hook in hooks], LOG_LENGTH)), status


@bp.route("/webhooks/<int:webhook_id>/desactiver", methods=["POST"])
def deactivate_webhook(webhook_id: int):
    webhook = _webhook(webhook_id)
    if ConfirmForm().validate_on_submit():
        webhook.active = not webhook.active
        db.session.commit()
        flash("Webhook réactivé." if webhook.active else "Webhook désactivé : plus aucun événement ne lui est envoyé.",
              "success")
    return redirect(url_for("integrations.webhooks", organisation_id=webhook.organisation_id))


@bp.route("/webhooks/<int:webhook_id>/reprendre", methods=["POST"])
def resume_webhook(webhook_id: int):
    webhook = _webhook(webhook_id)
    if ConfirmForm().validate_on_submit():
        if webhook.paused_at is None:
            flash("Ce webhook n'est pas en pause.", "error")
        else:
            count = delivery.resume(webhook)
            flash(f"Webhook repris : {count} événement{'s' if count > 1 else ''} de nouveau envoyé"
                  f"{'s' if count > 1 else ''} dans la minute.", "success")
    return redirect(url_for("integrations.webhooks", organisation_id=webhook.organisation_id))


@bp.route("/livraisons/<int:delivery_id>/relancer", methods=["POST"])
def retry_delivery(delivery_id: int):
    sent = db.session.get(WebhookDelivery, delivery_id)
    webhook = _webhook(sent.webhook_id if sent else 0)
    if ConfirmForm().validate_on_submit():
        if sent.status != DeliveryStatus.FAILED:
            flash("Seul un envoi en échec peut être relancé.", "error")
        else:
            delivery.retry(sent)
            flash("L'envoi sera de nouveau tenté dans la minute.", "success")
    return redirect(url_for("integrations.webhooks", organisation_id=webhook.organisation_id))


@bp.route("/")
def index():
    """The organisations the agent administers, each with its webhooks."""
    administered = [role.organisation for role in current_user.roles if policies.can(current_user, "administer",
                                                                                      role.organisation)]
    if len(administered) == 1:
        return redirect(url_for("integrations.webhooks", organisation_id=administered[0].id))
    return render_template("integrations/index.html", organisations=sorted(administered, key=lambda o: o.name))
