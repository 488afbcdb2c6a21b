"""The territory settings page: its forms (settings, SMS operator, Twilio account, wording of the SMS...) and the SMS
preview."""
from __future__ import annotations

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from lapins import policies
from lapins.auth import identities, oidc
from lapins.infra.extensions import db
from lapins.models import Territory
from lapins.notifications import sms_text, timing
from lapins.territory_settings import services
from lapins.infra.forms import Form as RemoveForm
from lapins.territory_settings.blueprint import bp
from lapins.territory_settings.forms import (
    BaselineForm, CostForm, CredentialsForm, ExperimentForm, OperatorForm, SettingsForm, SignInForm, WordingForm,
)

TIMEZONE_MOVED = ("Fuseau horaire changé : les rendez-vous déjà pris gardent leur instant et s'affichent désormais à "
                  "l'heure locale du nouveau fuseau ; les plages d'ouverture et les heures sans SMS gardent leurs "
                  "heures locales. Vérifiez les agendas.")


def _territory(territory_id: int) -> Territory:
    territory = db.session.get(Territory, territory_id)
    policies.authorize(current_user, "administer", territory)
    return territory


def _settings_form(territory: Territory) -> SettingsForm:
    return SettingsForm(territory=territory, data={
        "timezone": territory.timezone, "sms_sender": territory.sms_sender or "",
        "takes_replies": territory.sms_takes_replies,
        "messaging_service_sid": territory.twilio_messaging_service_sid or "",
        "reminder_offsets": territory.reminder_offsets, "quiet_hours_start": territory.quiet_hours_start,
        "quiet_hours_end": territory.quiet_hours_end, "moves_any_agent": territory.family_moves_any_agent,
        "confirm_everyone": territory.sms_confirm_everyone})


def _wording_form(territory: Territory) -> WordingForm:
    data = {"sms_label": territory.sms_label or ""}
    data.update({f"note_{kind}": territory.sms_note(kind) or "" for kind in sms_text.KINDS})
    return WordingForm(territory=territory, data=data)


def _page(territory: Territory, *, settings_form=None, credentials_form=None, wording_form=None, cost_form=None,
          baseline_form=None, experiment_form=None, sign_in_form=None, operator_form=None):
    settings_form = settings_form or _settings_form(territory)
    operator_form = operator_form or OperatorForm(territory=territory, data={"operator": territory.sms_operator or ""})
    credentials_form = credentials_form or CredentialsForm(territory=territory, formdata=None)
    wording_form = wording_form or _wording_form(territory)
    cost_form = cost_form or CostForm(territory=territory, data={"cost_note": territory.sms_cost_note or ""})
    baseline_form = baseline_form or BaselineForm(data={
        "rate": "" if territory.noshow_baseline_bp is None else f"{territory.noshow_baseline_bp / 100:g}".replace(".", ","),
        "label": territory.noshow_baseline_label or ""})
    experiment_form = experiment_form or ExperimentForm(territory=territory, data={
        "running": territory.experiment_started_at is not None and territory.experiment_ended_at is None,
        "note_b": territory.experiment_note_b or ""})
    sign_in_form = sign_in_form or SignInForm(territory=territory, data={"required": territory.oidc_required})
    refused = any(form.errors for form in (settings_form, credentials_form, wording_form, cost_form, baseline_form,
                                           experiment_form, sign_in_form, operator_form))
    # A refused cost sentence is previewed as typed when it is at least sendable (its error says why it is refused).
    cost = cost_form.cost_note.data if cost_form.errors else territory.sms_cost_note
    # A refused wording is previewed as typed (its errors are shown); otherwise as stored.
    kind = "reminder"
    label = wording_form.sms_label.data if not wording_form.sms_label.errors else territory.sms_label
    note_field = getattr(wording_form, f"note_{kind}")
    note = note_field.data if not note_field.errors else territory.sms_note(kind)
    return render_template(
        "territory_settings/page.html", territory=territory, settings_form=settings_form,
        credentials_form=credentials_form, wording_form=wording_form, secrets=services.stored_secrets(territory),
        operator_form=operator_form, operator=services.chosen_operator(territory),
        kinds=services.KIND_LABELS, reminders_why=timing.REMINDERS_WHY, cost_form=cost_form, baseline_form=baseline_form,
        experiment_form=experiment_form, sign_in_form=sign_in_form, oidc_enabled=oidc.enabled(),
        provider_name=current_app.config["OIDC_PROVIDER_NAME"], jit_rules=identities.jit_rules(territory),
        cost=_cost_context(territory, cost), preview=_preview_context(territory, kind, label, note, error=None),
    ), 422 if refused else 200


def _preview_context(territory: Territory, kind: str, label: str | None, note: str | None, *, error: str | None):
    return {"kind": kind, "kind_label": services.KIND_LABELS[kind], "error": error,
            "room": services.note_room(territory, kind, label=label),
            "texts": services.preview(territory, kind, label=label, note=note)}


@bp.route("/parametres")
def mine():
    """The menu's « Paramètres du territoire »: the settings of the territory the agent administers, or a choice."""
    territories = services.administered_territories(current_user)
    if not territories:
        abort(403)
    if len(territories) == 1:
        return redirect(url_for("territory_settings.page", territory_id=territories[0].id))
    return render_template("territory_settings/choose.html", territories=territories)


@bp.route("/territoires/<int:territory_id>/parametres", methods=["GET", "POST"])
def page(territory_id: int):
    territory = _territory(territory_id)
    form = SettingsForm(territory=territory)
    if request.method == "GET":
        return _page(territory)
    if not form.validate_on_submit():
        return _page(territory, settings_form=form)
    if services.save_settings(territory, form.settings()):
        flash(TIMEZONE_MOVED, "warning")
    flash("Paramètres enregistrés.", "success")
    return redirect(url_for("territory_settings.page", territory_id=territory.id))


@bp.post("/territoires/<int:territory_id>/parametres/twilio")
def credentials(territory_id: int):
    territory = _territory(territory_id)
    form = CredentialsForm(territory=territory)
    if not form.validate_on_submit():
        return _page(territory, credentials_form=form)
    services.save_credentials(territory, account_sid=form.account_sid.data or None,
                              auth_token=form.auth_token.data or None,
                              delete_account_sid=form.delete_account_sid.data,
                              delete_auth_token=form.delete_auth_token.data)
    flash("Compte Twilio enregistré." if territory.has_twilio_credentials
          else "Compte Twilio du département supprimé : les SMS partent du compte de l'installation.", "success")
    return redirect(url_for("territory_settings.page", territory_id=territory.id))


@bp.post("/territoires/<int:territory_id>/parametres/operateur")
def operator(territory_id: int):
    territory = _territory(territory_id)
    form = OperatorForm(territory=territory)
    if not form.validate_on_submit():
        return _page(territory, operator_form=form)
    services.save_operator(territory, operator=form.chosen(), brevo_api_key=form.brevo_api_key.data or None,
                           delete_brevo_api_key=form.delete_brevo_api_key.data)
    flash("Opérateur SMS enregistré.", "success")
    return redirect(url_for("territory_settings.page", territory_id=territory.id))


@bp.post("/territoires/<int:territory_id>/parametres/sms")
def wording(territory_id: int):
    territory = _territory(territory_id)
    form = WordingForm(territory=territory)
    if not form.validate_on_submit():
        return _page(territory, wording_form=form)
    services.save_wording(territory, label=form.sms_label.data, notes=form.notes())
    flash("Textes des SMS enregistrés.", "success")
    return redirect(url_for("territory_settings.page", territory_id=territory.id))


@bp.post("/territoires/<int:territory_id>/parametres/apercu")
def preview(territory_id: int):
    """The sample SMS of one kind with the wording being typed (JSON: {kind, label, note}), composed by the real
    sms_text.compose; nothing is stored. CSRF-protected like every POST (X-CSRFToken header)."""
    territory = _territory(territory_id)
    asked = request.get_json(silent=True)
    if not isinstance(asked, dict):
        abort(400)
    kind = asked.get("kind") if asked.get("kind") in sms_text.KINDS else "reminder"
    label_text, note_text = _text(asked.get("label")), _text(asked.get("note"))
    error, label, note = None, None, None
    try:
        label = sms_text.checked_label(label_text)
    except sms_text.WordingError as refused:
        error = f"Nom d'expéditeur : {refused}"
    try:
        note = sms_text.checked_note(note_text)
    except sms_text.WordingError as refused:
        error = error or f"Phrase : {refused}"
    if error is None and (too_long := services.note_too_long_for(territory, kind, label=label, note=note)):
        error = (f"Phrase trop longue pour tenir dans un seul SMS ({too_long}) : elle serait refusée "
                 f"({context_room(territory, kind, label)} caractères au plus).")
    context = _preview_context(territory, kind, label, note, error=error)
    typed = services.typed(note_text)
    return jsonify(
        html=render_template("territory_settings/_preview.html", preview=context, typed=typed),
        kind=kind, error=error, room=context["room"],
        typed=None if typed is None else {"encoding": typed.encoding, "sent_as": typed.sent_as},
        texts=[{"title": text.title, "text": text.text, "septets": text.septets, "segments": text.segments,
                "encoding": text.encoding, "note_kept": text.note_kept} for text in context["texts"]])


@bp.post("/territoires/<int:territory_id>/parametres/cout")
def cost_note(territory_id: int):
    territory = _territory(territory_id)
    form = CostForm(territory=territory)
    if not form.validate_on_submit():
        return _page(territory, cost_form=form)
    services.save_cost_note(territory, form.cost_note.data)
    flash("Phrase sur le coût d'un rendez-vous manqué enregistrée." if form.cost_note.data
          else "Phrase sur le coût d'un rendez-vous manqué retirée.", "success")
    return redirect(url_for("territory_settings.page", territory_id=territory.id))


@bp.post("/territoires/<int:territory_id>/parametres/reference")
def baseline(territory_id: int):
    territory = _territory(territory_id)
    form = BaselineForm()
    if not form.validate_on_submit():
        return _page(territory, baseline_form=form)
    services.save_baseline(territory, form.rate.data, form.label.data)
    flash("Taux de référence enregistré." if form.rate.data is not None else "Taux de référence retiré.", "success")
    return redirect(url_for("territory_settings.page", territory_id=territory.id))


@bp.post("/territoires/<int:territory_id>/parametres/experience")
def experiment(territory_id: int):
    territory = _territory(territory_id)
    form = ExperimentForm(territory=territory)
    if not form.validate_on_submit():
        return _page(territory, experiment_form=form)
    outcome = services.save_experiment(territory, running=form.running.data, note_b=form.note_b.data)
    flash({"started": "Expérience lancée : chaque famille est tirée au sort (A ou B) à son prochain rappel.",
           "stopped": "Expérience arrêtée : tous les rappels reprennent la phrase habituelle ; ses chiffres restent "
                      "dans les statistiques.",
           "kept": "Expérience enregistrée."}[outcome], "success")
    return redirect(url_for("territory_settings.page", territory_id=territory.id))


@bp.post("/territoires/<int:territory_id>/parametres/apercu-cout")
def cost_preview(territory_id: int):
    """The territory's longest reminder with the cost sentence being typed (JSON: {cost}); nothing is stored."""
    territory = _territory(territory_id)
    asked = request.get_json(silent=True)
    if not isinstance(asked, dict):
        abort(400)
    context = _cost_context(territory, _text(asked.get("cost")))
    return jsonify(html=render_template("territory_settings/_cost_preview.html", cost=context),
                   septets=context["preview"].septets, segments=context["preview"].segments,
                   kept=context["preview"].kept, error=context["error"])


def _cost_context(territory: Territory, typed: str | None) -> dict:
    error, cost = None, None
    try:
        cost = sms_text.checked_note(typed)
    except sms_text.WordingError as refused:
        error = str(refused)
    if error is None and services.cost_never_fits(territory, cost):
        error = (f"Cette phrase ne tiendrait dans aucun rappel, même le plus court : {services.cost_room(territory)} "
                 "caractères SMS au plus.")
    preview = services.cost_preview(territory, cost, policies.configured_organisation_ids(current_user, territory))
    return {"preview": preview, "error": error, "asked": bool(cost)}


def context_room(territory: Territory, kind: str, label: str | None) -> int:
    return services.note_room(territory, kind, label=label)


def _text(value) -> str | None:
    return value[:500] if isinstance(value, str) else None


@bp.post("/territoires/<int:territory_id>/parametres/connexion")
def sign_in(territory_id: int):
    """Sign-in with the provider: required or not, and a domain whose agents are created at their first sign-in."""
    territory = _territory(territory_id)
    if not oidc.enabled():
        abort(404)
    form = SignInForm(territory=territory)
    if not form.validate_on_submit():
        return _page(territory, sign_in_form=form)
    if form.jit_domain.data:
        try:
            identities.save_jit_rule(territory, form.jit_domain.data, form.jit_organisation.data, form.jit_role.data)
        except identities.RuleRefused as refused:
            form.jit_domain.errors.append(str(refused))
            return _page(territory, sign_in_form=form)
    territory.oidc_required = form.required.data
    db.session.commit()
    flash("Connexion des agents enregistrée.", "success")
    return redirect(url_for("territory_settings.page", territory_id=territory.id) + "#connexion")


@bp.post("/territoires/<int:territory_id>/parametres/connexion/supprimer")
def remove_jit_rule(territory_id: int):
    """The territory stops creating the agents of one of its domains (the domain posted; another's is a 404)."""
    territory = _territory(territory_id)
    domain = request.form.get("domain", "")
    rule = next((rule for rule in identities.jit_rules(territory) if rule.email_domain == domain), None)
    if rule is None or not oidc.enabled() or not RemoveForm().validate_on_submit():
        abort(404)
    identities.remove_jit_rule(territory, rule.email_domain)
    flash(f"Les agents @{rule.email_domain} ne sont plus créés à leur première connexion.", "success")
    return redirect(url_for("territory_settings.page", territory_id=territory.id) + "#connexion")
