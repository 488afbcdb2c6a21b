"""What a family is sent when a freed slot is offered to it: the SMS facts, the e-mail, and when not to send."""
from __future__ import annotations

from flask import current_app

from lapins.models import SlotOffer
from lapins.notifications import sms_text
from lapins.notifications.email import RenderedEmail, long_when
from lapins.notifications.offer_links import offer_url


def offer_sms(offer: SlotOffer) -> str:
    slot = offer.slot
    tz = slot.organisation.territory.tz
    usager = offer.entry.usager
    lieu = slot.lieu
    return sms_text.compose_offer(sms_text.OfferFacts(
        starts_at_local=slot.starts_at.astimezone(tz), held_until_local=offer.held_until.astimezone(tz),
        link=offer_url(offer.id), organisation=slot.organisation.label_in_sms, motif=slot.motif.public_name,
        person=usager.first_name if usager.responsible_id is not None else None,
        location_type=str(slot.motif.location_type), lieu_name=lieu.name if lieu else None,
        lieu_address=lieu.address if lieu else None))


def offer_email(offer: SlotOffer) -> RenderedEmail:
    slot = offer.slot
    tz = slot.organisation.territory.tz
    context = {"when": long_when(slot.starts_at, tz), "until": offer.held_until.astimezone(tz).strftime("%Hh%M"),
               "motif": slot.motif.public_name, "lieu": slot.lieu, "organisation": slot.organisation.name,
               "link": offer_url(offer.id)}
    subject = f"Un créneau s'est libéré : {context['when']}"
    template = current_app.jinja_env.get_template("family/offer_email.html")
    text = (f"{slot.organisation.name}\n\nUn créneau s'est libéré le {context['when']} ({slot.motif.public_name})"
            + (f", {slot.lieu.name}, {slot.lieu.address}" if slot.lieu else "")
            + f".\nIl est gardé pour vous jusqu'à {context['until']}.\n\nPour l'accepter ou le refuser : "
            f"{context['link']}\n")
    return RenderedEmail(subject=subject, text=text, html=template.render(subject=subject, **context), ics=None,
                         ics_method=None)

