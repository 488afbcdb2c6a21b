"""What a family is sent when a freed slot is offered to it: the SMS facts, the e-mail, and when not to send."""
from __future__ import annotations

from datetime import datetime

from flask import current_app

from lapins.models import Channel, Message, OfferStatus, SlotOffer
from lapins.notifications import outbox, sms_text
from lapins.notifications.email import RenderedEmail, long_when
from lapins.waitlist.tokens import offer_url


def offer_sms(offer: SlotOffer) -> str:
    slot = offer.slot
    tz = slot.organisation.territory.tz
    return sms_text.compose_offer(sms_text.OfferFacts(
        starts_at_local=slot.starts_at.astimezone(tz), held_until_local=offer.held_until.astimezone(tz),
        link=offer_url(offer.id), organisation=slot.organisation.label_in_sms, motif=slot.motif.name))


def offer_email(offer: SlotOffer) -> RenderedEmail:
    slot = offer.slot
    tz = slot.organisation.territory.tz
    context = {"when": long_when(slot.starts_at, tz), "until": offer.held_until.astimezone(tz).strftime("%Hh%M"),
               "motif": slot.motif.name, "lieu": slot.lieu, "organisation": slot.organisation.name,
               "link": offer_url(offer.id)}
    subject = f"Un créneau s'est libéré : {context['when']}"
    template = current_app.jinja_env.get_template("family/offer_email.html")
    text = (f"{slot.organisation.name}\n\nUn créneau s'est libéré le {context['when']} ({slot.motif.name})"
            + (f", {slot.lieu.name}, {slot.lieu.address}" if slot.lieu else "")
            + f".\nIl est gardé pour vous jusqu'à {context['until']}.\n\nPour l'accepter ou le refuser : "
            f"{context['link']}\n")
    return RenderedEmail(subject=subject, text=text, html=template.render(subject=subject, **context), ics=None,
                         ics_method=None)


def why_not_offer(message: Message, now: datetime) -> str | None:
    """The outbox's check before sending an offer: still held, and the family still reachable."""
    offer, usager = message.offer, message.usager
    if offer is None or usager is None:
        return "Proposition ou destinataire supprimé"
    if offer.status != OfferStatus.HELD or offer.held_until <= now:
        return "Proposition close avant l'envoi"
    if message.channel == Channel.SMS and outbox.sms_address(usager) is None:
        return "Pas de consentement SMS ou numéro invalide" if usager.phone else "Pas de numéro de mobile"
    if message.channel == Channel.EMAIL and outbox.email_address(usager) is None:
        return "Pas de consentement e-mail" if usager.email else "Pas d'adresse e-mail"
    return None
