"""The link of an offered slot, `/o/<token>`: the family accepts or declines it; and, from its rdv's page, a family
asks to be told of an earlier slot."""
from __future__ import annotations

from flask import redirect, render_template, session, url_for
from sqlalchemy import select

from lapins.infra.extensions import db
from lapins.family import services
from lapins.family.pages import bp
from lapins.infra.forms import Form
from lapins.models import OfferStatus, Participation, Rdv, SlotOffer, utcnow
from lapins.models.rdvs import participation_usagers
from lapins.models.territories import phone_to_call
from lapins.notifications import links
from lapins.waitlist import entries, offers
from lapins.notifications.offer_links import offer_id_from_token


class OfferAnswerForm(Form):
    """No field: the CSRF token alone (the buttons say which answer)."""


def _unavailable(title: str, message: str, code: int):
    return render_template("family/unavailable.html", title=title, message=message), code


def _offer_from(token: str) -> SlotOffer | None:
    offer_id = offer_id_from_token(token)
    return db.session.get(SlotOffer, offer_id) if offer_id is not None else None


def _forged():
    return _unavailable("Lien invalide", "Ce lien ne correspond à aucune proposition de créneau. Vérifiez qu'il est "
                        "complet, ou appelez votre centre de PMI.", 404)


def _page(offer: SlotOffer, token: str, *, refusal: offers.OfferRefused | None = None, code: int = 200):
    slot = offer.slot
    now = utcnow()
    expired = offer.status == OfferStatus.EXPIRED or (offer.status == OfferStatus.HELD and offer.held_until <= now)
    rdv_link = None
    if offer.status == OfferStatus.ACCEPTED and slot.session_id is not None:
        # A place in a collective session: the family's own place link, not the session's.
        place_id = db.session.scalar(
            select(Participation.id)
            .join(participation_usagers, participation_usagers.c.participation_id == Participation.id)
            .where(Participation.rdv_id == slot.session_id, participation_usagers.c.usager_id == offer.usager_id)
            .order_by(Participation.id.desc()).limit(1))
        rdv_link = url_for("family.place_page", token=links.place_token(place_id)) if place_id else None
    elif offer.status == OfferStatus.ACCEPTED and offer.rdv_id:
        rdv_link = url_for("family.rdv_page", token=links.rdv_token(offer.rdv_id))
    # A cancelled session is what the family must read, whatever its answer met first (a session cancelled while
    # the place was being booked for it is refused as a taken place).
    refusal = offers.session_cancelled(offer) or refusal
    return render_template(
        "family/offer.html", offer=offer, slot=slot, token=token, tz=slot.organisation.territory.tz,
        open=offer.status == OfferStatus.HELD and not expired and refusal is None, expired=expired, refusal=refusal,
        rdv_link=rdv_link, form=OfferAnswerForm(), moving=offer.entry.rdv_id is not None,
        phone=phone_to_call(slot.lieu, slot.organisation),
    ), code


@bp.route("/o/<token>")
def offer_page(token: str):
    offer = _offer_from(token)
    return _forged() if offer is None else _page(offer, token)


@bp.route("/o/<token>/accepter", methods=["POST"])
def accept_offer(token: str):
    return _answer(token, offers.accept)


@bp.route("/o/<token>/refuser", methods=["POST"])
def decline_offer(token: str):
    return _answer(token, offers.decline)


def _answer(token: str, act):
    """The family's answer to its offer (offers.accept or offers.decline), then the offer's page again."""
    offer = _offer_from(token)
    if offer is None:
        return _forged()
    if not OfferAnswerForm().validate_on_submit():
        return _page(offer, token, code=400)
    try:
        act(offer, utcnow())
    except offers.OfferRefused as refusal:
        return _page(db.session.get(SlotOffer, offer.id), token, refusal=refusal, code=refusal.code)
    return redirect(url_for("family.offer_page", token=token))


# --- "Tell me of an earlier slot", from the rdv's page ---------------------------------------------------------------

@bp.app_context_processor
def earlier_slot_helpers() -> dict:
    return {"earlier_slot_requested": entries.earlier_slot_requested,
            "earlier_slot_possible": lambda rdv: entries.can_ask_earlier(rdv, utcnow())}


@bp.route("/r/<token>/plus-tot", methods=["POST"])
def ask_earlier_slot(token: str):
    rdv_id = links.rdv_id_from_token(token)
    rdv = db.session.get(Rdv, rdv_id) if rdv_id is not None else None
    if rdv is None:
        return _unavailable("Lien invalide", "Ce lien ne correspond à aucun rendez-vous.", 404)
    if not services.is_checked(session, rdv.id) or not OfferAnswerForm().validate_on_submit():
        return redirect(url_for("family.rdv_page", token=token))
    if not entries.can_ask_earlier(rdv, utcnow()):
        return _unavailable("Demande impossible", "Ce rendez-vous ne peut plus être avancé en ligne.", 409)
    entries.ask_earlier(rdv, utcnow())
    return redirect(url_for("family.rdv_page", token=token) + "#plus-tot")
