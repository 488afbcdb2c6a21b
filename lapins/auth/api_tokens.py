"""An administrator's own API tokens ("Mes préférences" → "Jetons d'accès à l'API"): issued, listed, revoked.

A token acts as its agent (lapins.auth.tokens): an administrator issues one for the software of their département
(SI PMI, online booking) instead of asking an operator for `flask api-token create`. The token is shown once, in the
answer that issued it, never in the session cookie nor a flash message; the page lists tokens by their prefix.
Who may have tokens is decided by lapins.policies.may_issue_api_tokens, whose tokens by api_token_scope.
"""
from __future__ import annotations

from datetime import timezone

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length

from lapins import policies
from lapins.auth import tokens
from lapins.auth.blueprint import bp
from lapins.infra.extensions import db
from lapins.infra.forms import Form, strip
from lapins.models import ApiToken, utcnow


class TokenForm(Form):
    label = StringField("Libellé (le logiciel qui s'en servira)", filters=[strip], validators=[
        DataRequired("Donnez un libellé au jeton, par exemple « SI PMI »."),
        Length(max=80, message="80 caractères au plus.")])


class RevokeForm(Form):
    prefix = HiddenField(filters=[strip], validators=[DataRequired(), Length(max=16)])


def _authorize() -> None:
    if not policies.may_issue_api_tokens(current_user):
        abort(403)


def _page(form: TokenForm, *, issued: str | None = None, status: int = 200):
    rows = db.session.scalars(policies.api_token_scope(current_user).order_by(ApiToken.created_at.desc())).all()
    return render_template("auth/api_tokens.html", form=form, revoke_form=RevokeForm(), tokens=rows, issued=issued,
                           tz=current_user.roles[0].organisation.territory.tz if current_user.roles else timezone.utc), status


@bp.route("/preferences/jetons", methods=["GET", "POST"])
@login_required
def api_tokens():
    _authorize()
    form = TokenForm()
    if form.validate_on_submit():
        try:
            _, issued = tokens.create(current_user, form.label.data)
        except tokens.TokenError as error:
            form.label.errors.append(str(error))
        else:
            return _page(TokenForm(formdata=None), issued=issued, status=201)
    return _page(form, status=422 if form.errors else 200)


@bp.route("/preferences/jetons/revoquer", methods=["POST"])
@login_required
def revoke_api_token():
    _authorize()
    form = RevokeForm()
    row = db.session.scalar(policies.api_token_scope(current_user).where(
        ApiToken.prefix == form.prefix.data, ApiToken.revoked_at.is_(None))) if form.validate_on_submit() else None
    if row is None:
        flash("Ce jeton n'existe pas, n'est pas à vous ou est déjà révoqué.", "error")
    else:
        row.revoked_at = utcnow()
        db.session.commit()
        flash(f"Jeton « {row.label} » ({row.prefix}…) révoqué : il ne donne plus accès à l'API.", "success")
    return redirect(url_for("auth.api_tokens"))
