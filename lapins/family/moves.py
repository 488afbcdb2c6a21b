"""« Changer de date »: from its rdv's page, a family picks a free time (lapins.slots.picker) and moves its rdv there.

Plain links and forms, no JavaScript needed: the picker's pages are links (each time links to its confirmation
page), the move is one POST. Every step needs the identity check of the rdv's page; the time posted is found again
among the times the picker offers (never taken as given) and booked under booking's locks. Rate-limited per rdv and
per client address (lapins.auth.limits).
"""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from flask import redirect, render_template, request, session, url_for
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import select
from wtforms import HiddenField

from lapins.booking import BookingError, RdvChanged, family_move_refusal
from lapins.family import services
from lapins.family.pages import bp, guardian_of, open_link, rdv_page_of
from lapins.infra.database import end_read_only_transaction
from lapins.infra.extensions import db
from lapins.infra.forms import Form
from lapins.locale.formatting import local_datetime
from lapins.models import Rdv, utcnow
from lapins.models.rdvs import RdvMove
from lapins.slots import picker

INSTANT = "%Y-%m-%dT%H:%MZ"  # a time in links and forms: UTC, to the minute
# A picker page's HTML is the same for every family shown the same times at the same lieu, but for the family's link
# and its rdv's time: it is rendered once with these marks (no escaping changes them) and kept per process.
TOKEN_MARK = "jeton-du-lien-de-la-famille"
CURRENT_MARK = "heure-du-rdv-de-la-famille"
KEPT_SHELLS = 4096  # then emptied, as lapins.slots.picker's pages
FLASHES = "_flashes"  # Flask's session key for flashed messages
_shells: dict[tuple, str] = {}


class MoveForm(Form):
    """The time chosen and the revision of the rdv the page showed; the CSRF token."""

    debut = HiddenField()
    agent = HiddenField()
    revision = HiddenField()


def instant(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text or "", INSTANT).replace(tzinfo=UTC) if len(text or "") <= 20 else None
    except ValueError:
        return None


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and len(text) <= 12 else None


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text and len(text) == 10 else None
    except ValueError:
        return None


def _movable(token: str):
    """The rdv this browser may move now, or the page that says why not."""
    rdv, refusal = open_link(token)
    if refusal:
        return None, refusal
    if not services.is_checked(session, rdv.id):
        return None, redirect(url_for("family.rdv_page", token=token, suite="changer") + "#verifier")
    reason = family_move_refusal(rdv, utcnow())
    if reason:
        return None, rdv_page_of(rdv, token, error=reason, code=409)
    return rdv, None


def _picker(rdv: Rdv, token: str, *, first: date | None = None, notice: str | None = None, code: int = 200):
    scope = services.picker_scope(rdv, utcnow())
    shown = picker.page(scope, first)
    lieu_name, phone = (rdv.lieu.name if rdv.lieu else None), rdv.phone_to_call
    if current_user.is_authenticated or FLASHES in session:
        # An agent's header or a message of this browser's: this page is rendered for this request alone.
        page = _render(scope, shown, lieu_name, phone, notice, token, local_datetime(rdv.starts_at, scope.territory.tz))
        return page, code
    shell = kept_or_rendered_shell(scope, first, shown, lieu_name, phone, notice, request.script_root)
    return filled(shell, token, rdv.starts_at, scope.territory.tz), code


def kept_or_rendered_shell(scope: picker.Scope, first: date | None, shown: picker.Page, lieu_name: str | None,
                           phone: str | None, notice: str | None, script_root: str) -> str:
    """The page's HTML with the marks in place of the family's link and time, rendered (in a request context) and
    kept if it is not kept yet."""
    key = shell_key(scope, first, lieu_name, phone, notice, script_root)
    if key not in _shells:
        if len(_shells) >= KEPT_SHELLS:
            _shells.clear()
        _shells[key] = _render(scope, shown, lieu_name, phone, notice, TOKEN_MARK, CURRENT_MARK)
    return _shells[key]


def shell_key(scope: picker.Scope, first: date | None, lieu_name: str | None, phone: str | None,
              notice: str | None, script_root: str) -> tuple:
    """What a picker page's HTML depends on, but the family's link and its rdv's time (see filled)."""
    return scope.key(first, None), lieu_name, phone, notice, script_root


def kept_shell(key: tuple) -> str | None:
    return _shells.get(key)


def filled(shell: str, token: str, starts_at: datetime, tz: ZoneInfo) -> str:
    """A kept page made the family's: its link in every URL, its rdv's time in the text (escaped as Jinja would)."""
    return shell.replace(TOKEN_MARK, token).replace(CURRENT_MARK, _time_text(starts_at, tz))


@lru_cache(maxsize=4096)
def _time_text(starts_at: datetime, tz: ZoneInfo) -> str:
    return str(escape(local_datetime(starts_at, tz)))


def _render(scope: picker.Scope, shown: picker.Page, lieu_name: str | None, phone: str | None, notice: str | None,
            token: str, current: str) -> str:
    tz = scope.territory.tz
    days_html = render_template("family/_slot_days.html", days=shown.days, tz=tz, instant=INSTANT,
                                confirm_url=url_for("family.confirm_move", token=token))
    return render_template(
        "family/move.html", token=token, current=current, lieu_name=lieu_name, days=shown.days, first=shown.first,
        notice=notice, days_html=Markup(days_html), following=shown.following, last_day=scope.last_day, phone=phone)


@bp.route("/r/<token>/changer")
def move_picker(token: str):
    rdv, refusal = _movable(token)
    page = refusal or _picker(rdv, token, first=_day(request.args.get("du")))
    end_read_only_transaction()  # rendered: nothing more to read
    return page


@bp.route("/r/<token>/changer/confirmer")
def confirm_move(token: str):
    rdv, refusal = _movable(token)
    if refusal:
        return refusal
    starts_at = instant(request.args.get("debut"))
    scope = services.picker_scope(rdv, utcnow())
    choice = picker.choice_at(scope, starts_at, _number(request.args.get("agent"))) if starts_at else None
    if choice is None:
        unavailable = services.SlotUnavailable(taken=starts_at is not None and scope.start <= starts_at < scope.end)
        return _picker(rdv, token, notice=unavailable.message, code=409 if unavailable.taken else 422)
    form = MoveForm(formdata=None, data={"debut": starts_at.strftime(INSTANT), "agent": choice.agent_ids[0],
                                         "revision": rdv.revision})
    return render_template("family/move_confirm.html", rdv=rdv, token=token, tz=scope.territory.tz, choice=choice,
                           form=form)


@bp.route("/r/<token>/changer", methods=["POST"])
def move(token: str):
    rdv, refusal = open_link(token)
    if refusal:
        return refusal
    if not services.is_checked(session, rdv.id):
        return rdv_page_of(rdv, token, code=403,
                           error="Pour changer la date, saisissez d'abord les 3 premières lettres du nom de famille.")
    form = MoveForm()
    starts_at, revision = instant(form.debut.data), _number(form.revision.data)
    if not form.validate_on_submit() or starts_at is None or revision is None:
        return rdv_page_of(rdv, token, error="Ce formulaire n'est plus valable : choisissez de nouveau un créneau.",
                     code=400)
    try:
        services.move_from_link(rdv, starts_at, _number(form.agent.data), revision, utcnow(),
                                guardian_id=guardian_of(token))
    except RdvChanged as changed:
        return rdv_page_of(db.session.get(Rdv, rdv.id), token, error=changed.message, code=409)
    except services.SlotUnavailable as unavailable:
        return _picker(db.session.get(Rdv, rdv.id), token, notice=unavailable.message,
                       code=409 if unavailable.taken else 422)
    except BookingError as error:
        return rdv_page_of(db.session.get(Rdv, rdv.id), token, error=error.message, code=409)
    return redirect(url_for("family.moved", token=token))


@bp.route("/r/<token>/deplace")
def moved(token: str):
    """The confirmation after the family moved its rdv; any other visit is the rdv's page."""
    rdv, refusal = open_link(token)
    if refusal:
        return refusal
    move = db.session.scalar(select(RdvMove).where(RdvMove.rdv_id == rdv.id).order_by(RdvMove.id.desc()).limit(1))
    if move is None or not rdv.is_live or not services.is_checked(session, rdv.id):
        return redirect(url_for("family.rdv_page", token=token))
    return render_template("family/moved.html", rdv=rdv, token=token, tz=rdv.organisation.territory.tz, move=move,
                           phone=rdv.phone_to_call)
