"""The delivery health page of a territory (its administrators), and the banner every agent page of a territory
shows while one of its channels is down. Figures come from lapins.monitoring.delivery."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from wtforms import StringField
from wtforms.validators import Length, Optional

from lapins import policies
from lapins.infra.extensions import db
from lapins.infra.forms import Form, strip
from lapins.models import Channel, Territory, utcnow
from lapins.monitoring import delivery
from lapins.monitoring.health import bp


class ThresholdForm(Form):
    threshold = StringField("Seuil d'alerte du crédit SMS (vide : 10 jours de votre consommation moyenne)",
                            filters=[strip], validators=[Optional(), Length(max=20)])

    def parsed(self) -> Decimal | None:
        """The threshold typed (a French decimal comma is taken), None when left empty."""
        text = (self.threshold.data or "").replace(",", ".").replace(" ", "").replace("\u202f", "")
        if not text:
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value < 0 or value >= Decimal(10) ** 10:
            self.threshold.errors = [*self.threshold.errors, "Indiquez un nombre positif, par exemple 25 ou 12,50."]
            raise ValueError("bad threshold")
        return value.quantize(Decimal("0.01"))


@bp.app_template_filter("decimal_fr")
def decimal_fr(value) -> str:
    return delivery.decimal_fr(value)


@bp.app_context_processor
def delivery_banner() -> dict:
    """`delivery_outages()` for base.html: the channels down in the signed-in agent's territories, as sentences."""

    def outages() -> list[str]:
        if not getattr(current_user, "is_authenticated", False):
            return []
        territory_ids = {role.organisation.territory_id for role in current_user.roles}
        territory_ids |= set(current_user.administered_territory_ids)
        states = delivery.outages_for(territory_ids)
        zones = {territory.id: territory.tz for territory in db.session.scalars(
            db.select(Territory).where(Territory.id.in_({state.territory_id for state in states})))} if states else {}
        return [delivery.banner_text(state, zones[state.territory_id]) for state in states]

    return {"delivery_outages": outages}


@bp.route("/sante-des-envois")
@login_required
def health_index():
    """The first territory the agent watches (most administer one)."""
    territories = sorted({role.organisation.territory for role in current_user.roles}
                         | {db.session.get(Territory, tid) for tid in current_user.administered_territory_ids},
                         key=lambda territory: territory.id)
    for territory in territories:
        if territory is not None and policies.can(current_user, "watch_delivery", territory):
            return redirect(url_for("health.health_page", territory_id=territory.id))
    abort(403)


@bp.route("/sante-des-envois/<int:territory_id>", methods=["GET", "POST"])
@login_required
def health_page(territory_id: int):
    territory = db.session.get(Territory, territory_id)
    policies.authorize(current_user, "watch_delivery", territory)
    form = ThresholdForm()
    sms_state = db.session.scalar(db.select(delivery.ChannelState).where(
        delivery.ChannelState.territory_id == territory.id, delivery.ChannelState.channel == str(Channel.SMS)))
    status = 200
    if form.validate_on_submit():
        try:
            value = form.parsed()
        except ValueError:
            status = 422
        else:
            sms_state = sms_state or delivery.state_of(territory, str(Channel.SMS))
            sms_state.balance_threshold = value
            db.session.commit()
            flash("Seuil d'alerte du crédit SMS enregistré.", "success")
            return redirect(url_for("health.health_page", territory_id=territory.id))
    elif form.errors:
        status = 422
    if status == 200 and sms_state is not None and sms_state.balance_threshold is not None and not form.is_submitted():
        form.threshold.data = delivery.decimal_fr(sms_state.balance_threshold)
    now = utcnow()
    default_threshold = delivery.balance_threshold(territory, sms_state) if sms_state else None
    return render_template("monitoring/health.html", territory=territory, figures=delivery.territory_figures(territory, now),
                           now=now, tz=territory.tz, form=form, sms_state=sms_state, threshold=default_threshold,
                           causes=CAUSE_LABELS, banner=delivery.banner_text), status


# What the failures' codes mean, for the page (the rest are shown as the operator's code).
CAUSE_LABELS = {
    "credit": "crédit épuisé", "credentials": "identifiants refusés", "timeout": "pas de réponse (délai dépassé)",
    "network": "opérateur injoignable", "20429": "trop de demandes (429)", "invalid_address": "adresse invalide",
}
