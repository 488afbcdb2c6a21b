"""Email to families: the French texts of an rdv (HTML, plain text, an iCalendar event) and sending them over SMTP.

The message is multipart: text and HTML as alternatives, and, for mail clients to offer "add to calendar", the
event both as a `text/calendar; method=...` alternative (Gmail, Outlook) and as an `invite.ics` attachment
(Thunderbird, Apple Mail, webmails that only show attachments). The Message-ID derives from the outbox id, so a
message sent again after an interrupted attempt is recognised by mail clients as the one they already have.

Nothing about the family (address, names, contents) goes into logs or error messages: a message's outbox id is
enough to find it.
"""
from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime as rfc2822_datetime
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import icalendar
from babel.dates import format_datetime
from flask import current_app

from lapins.locale.formatting import LOCALE, phone_display
from lapins.models import LocationType, MessageKind, Rdv, RdvStatus, utcnow
from lapins.notifications.backends import Delivery, OutgoingEmail, PermanentError, ProviderError, TransientError

logger = logging.getLogger(__name__)

SECURITY_MODES = ("none", "starttls", "tls")
# Replies that mean "the server wants us to log in (again)": the deployment's settings, never the family's address.
AUTH_REPLY_CODES = frozenset({530, 534, 535, 538})
# 5xx replies after DATA that are about the recipient (mailbox unknown, not allowed, syntax): never worth retrying.
RECIPIENT_REPLY_CODES = frozenset({550, 551, 553})


# --- Rendering -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    ics: bytes | None
    ics_method: str | None  # PUBLISH or CANCEL

    def outgoing(self, message_id: int, to: str) -> OutgoingEmail:
        return OutgoingEmail(message_id=message_id, to=to, subject=self.subject, text=self.text, html=self.html,
                             ics=self.ics, ics_method=self.ics_method)


SUBJECTS = {
    MessageKind.CREATED: "Rendez-vous confirmé : {when}",
    MessageKind.CHANGED: "Rendez-vous modifié : {when}",
    MessageKind.CANCELLED: "Rendez-vous annulé : {when}",
    MessageKind.REMINDER: "Rappel : rendez-vous {when}",
}


def long_when(instant: datetime, tz: ZoneInfo) -> str:
    """« mardi 24 novembre 2026 à 9 h 30 », as French typography writes hours in running text."""
    return format_datetime(instant, "EEEE d MMMM y 'à' H' h 'mm", tzinfo=tz, locale=LOCALE)


def short_when(instant: datetime, tz: ZoneInfo) -> str:
    """« mardi 24 novembre à 9 h 30 », for a subject line."""
    return format_datetime(instant, "EEEE d MMMM 'à' H' h 'mm", tzinfo=tz, locale=LOCALE)


def render_rdv_email(kind: MessageKind, rdv: Rdv, link: str) -> RenderedEmail:
    """The email a family gets about `rdv` (confirmation, change, cancellation, reminder), in French."""
    tz = rdv.organisation.territory.tz
    context = _email_context(kind, rdv, link, tz)
    subject = SUBJECTS[kind].format(when=short_when(rdv.starts_at, tz))
    text = _tidy_text(_render("emails/rdv.txt", subject=subject, **context))
    html = _render("emails/rdv.html", subject=subject, **context)
    method = "CANCEL" if kind == MessageKind.CANCELLED else "PUBLISH"
    return RenderedEmail(subject=subject, text=text, html=html, ics=rdv_ics(rdv, link, method), ics_method=method)


def _render(template: str, **context: Any) -> str:
    """Renders without Flask's context processors: they serve pages (navigation, logged-in agent) and need a
    request, while emails are rendered by the worker. Autoescaping still follows the file name (.html)."""
    return current_app.jinja_env.get_template(template).render(**context)


def _email_context(kind: MessageKind, rdv: Rdv, link: str, tz: ZoneInfo) -> dict[str, Any]:
    lieu = rdv.lieu
    contact_phone = rdv.phone_to_call
    return {
        "kind": kind.value,
        "when": long_when(rdv.starts_at, tz),
        "motif": rdv.motif.public_name,
        "location_type": rdv.motif.location_type.value,
        "lieu_name": lieu.name if lieu else None,
        "lieu_address": lieu.address if lieu else None,
        "phone": phone_display(contact_phone),
        "phone_e164": contact_phone,
        "children": _children_names(rdv),
        "organisation": rdv.organisation.name,
        "cancelled_by_family": rdv.status == RdvStatus.EXCUSED,
        "link": link,
    }


def _children_names(rdv: Rdv) -> str | None:
    """« Léa », « Léa et Tom »: the children the rdv is for (a usager with a responsible adult is a child)."""
    names = [usager.first_name for usager in rdv.usagers if usager.responsible_id is not None]
    if not names:
        return None
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} et {names[-1]}"


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def _public_domain() -> str:
    return urlsplit(current_app.config["PUBLIC_URL"]).hostname or "lapins.invalid"


def rdv_ics(rdv: Rdv, link: str, method: str) -> bytes:
    """One VEVENT whose UID is stable per rdv and whose SEQUENCE is the rdv's revision, so calendars update it."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Lapins//PMI//FR")
    calendar.add("version", "2.0")
    calendar.add("method", method)

    event = icalendar.Event()
    event.add("uid", f"rdv-{rdv.id}@{_public_domain()}")
    event.add("sequence", rdv.revision)
    event.add("dtstamp", utcnow().replace(microsecond=0))
    # Instants are stored in UTC: written as UTC ("Z"), every calendar shows them right in its own zone.
    event.add("dtstart", rdv.starts_at)
    event.add("dtend", rdv.ends_at)
    event.add("summary", f"{rdv.motif.public_name} — {rdv.organisation.name}")
    location = _ics_location(rdv)
    if location:
        event.add("location", location)
    event.add("description", _ics_description(rdv, link))
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("url", link)
    # RFC 5546 asks for an ORGANIZER in PUBLISH and CANCEL; some clients ignore a CANCEL without one.
    sender = parseaddr(current_app.config["MAIL_FROM"])[1]
    if sender:
        event.add("organizer", f"mailto:{sender}", parameters={"CN": rdv.organisation.name})
    calendar.add_component(event)
    return calendar.to_ical()


def _ics_location(rdv: Rdv) -> str | None:
    location_type = rdv.motif.location_type
    if location_type == LocationType.PHONE:
        return "Rendez-vous téléphonique"
    if location_type == LocationType.HOME:
        return "Visite à domicile"
    return f"{rdv.lieu.name}, {rdv.lieu.address}" if rdv.lieu else None


def _ics_description(rdv: Rdv, link: str) -> str:
    lines = []
    if rdv.motif.location_type == LocationType.PHONE:
        lines.append("Rendez-vous téléphonique : nous vous appellerons.")
    phone = rdv.phone_to_call
    if phone:
        lines.append(f"Téléphone : {phone_display(phone)}")
    lines.append(f"Voir, ajouter à mon agenda ou annuler : {link}")
    return "\n".join(lines)


# --- Sending -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpEmailBackend:
    server: str
    port: int
    sender: str  # MAIL_FROM as written: « PMI <ne-pas-repondre@pmi.example.fr> »
    security: str = "none"
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 15

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SmtpEmailBackend:
        security = (config.get("MAIL_SECURITY") or "none").strip().lower()
        if security not in SECURITY_MODES:
            raise RuntimeError(f"MAIL_SECURITY inconnu : {security!r} (choix : {', '.join(SECURITY_MODES)}).")
        sender = config.get("MAIL_FROM") or ""
        if "@" not in parseaddr(sender)[1]:
            raise RuntimeError("MAIL_FROM doit contenir une adresse e-mail "
                               "(ex. « PMI <ne-pas-repondre@exemple.fr> »).")
        return cls(server=config["MAIL_SERVER"], port=int(config["MAIL_PORT"]), sender=sender, security=security,
                   username=config.get("MAIL_USERNAME") or "", password=config.get("MAIL_PASSWORD") or "",
                   timeout=float(config.get("MAIL_TIMEOUT_SECONDS") or 15))

    @property
    def envelope_from(self) -> str:
        return parseaddr(self.sender)[1]

    def message_id(self, outbox_id: int) -> str:
        return f"<lapins-message-{outbox_id}@{self.envelope_from.rpartition('@')[2]}>"

    def send(self, email: OutgoingEmail) -> Delivery:
        recipient = _recipient(email.to)
        message = self.build_message(email, recipient)
        try:
            self._deliver(message, recipient.addr_spec)
        except (smtplib.SMTPException, OSError) as error:
            failure = provider_error(error)
            logger.warning("Email %s not sent: %s (%s, code %s)", email.message_id, type(failure).__name__,
                           type(error).__name__, failure.code)
            raise failure from None
        logger.info("Email %s accepted by the SMTP server", email.message_id)
        provider_id = self.message_id(email.message_id).strip("<>")
        return Delivery(provider_id=provider_id if len(provider_id) <= 64 else f"lapins-message-{email.message_id}")

    def build_message(self, email: OutgoingEmail, recipient: Address | None = None) -> EmailMessage:
        message = EmailMessage()
        message["Message-ID"] = self.message_id(email.message_id)
        message["Date"] = rfc2822_datetime(utcnow())
        message["From"] = self.sender
        message["To"] = recipient or _recipient(email.to)
        message["Subject"] = email.subject  # the default policy encodes accents (RFC 2047)
        message["Auto-Submitted"] = "auto-generated"
        # Out-of-office replies to a no-reply address are noise; Exchange honours this header.
        message["X-Auto-Response-Suppress"] = "All"
        # Quoted-printable: no reliance on the server accepting 8-bit bodies.
        message.set_content(email.text, cte="quoted-printable")
        message.add_alternative(email.html, subtype="html", cte="quoted-printable")
        if email.ics:
            method = (email.ics_method or "PUBLISH").upper()
            message.add_alternative(email.ics, maintype="text", subtype="calendar",
                                    params={"method": method, "charset": "UTF-8"})
            message.add_attachment(email.ics, maintype="application", subtype="ics", filename="invite.ics",
                                   params={"name": "invite.ics"})
        return message

    def _deliver(self, message: EmailMessage, recipient: str) -> None:
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.server, self.port, timeout=self.timeout,
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(self.server, self.port, timeout=self.timeout)
        try:
            if self.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message, from_addr=self.envelope_from, to_addrs=[recipient])
        finally:
            _quit_quietly(smtp)


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    """Once the message is accepted, a failing QUIT must not turn the send into an error (and a duplicate)."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _recipient(to: str) -> Address:
    try:
        address = Address(addr_spec=to.strip())
    except (ValueError, IndexError, HeaderParseError):
        raise PermanentError("Adresse e-mail invalide.", code="invalid_address") from None
    if not address.username or not address.domain:
        raise PermanentError("Adresse e-mail invalide.", code="invalid_address")
    return address


def provider_error(error: Exception) -> ProviderError:
    """What an SMTP failure means for the outbox. The server's own text is left out: it often quotes the address."""
    code = getattr(error, "smtp_code", None)
    if isinstance(error, smtplib.SMTPAuthenticationError) or code in AUTH_REPLY_CODES:
        return TransientError("Le serveur d'envoi d'e-mails refuse l'identification : vérifiez MAIL_USERNAME et "
                              "MAIL_PASSWORD (problème de configuration, pas l'adresse de la famille).",
                              code=str(code))
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return TransientError("Le serveur d'envoi d'e-mails ne propose pas l'identification ou STARTTLS : vérifiez "
                              "MAIL_SECURITY, MAIL_PORT et MAIL_USERNAME (problème de configuration).")
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code = min(reply[0] for reply in error.recipients.values())
        if 500 <= code < 600:
            return PermanentError(f"Adresse e-mail refusée par le serveur d'envoi (réponse {code}).", code=str(code))
        return TransientError(f"Le serveur d'envoi a reporté l'envoi (réponse {code}) : nouvel essai plus tard.",
                              code=str(code))
    if isinstance(error, smtplib.SMTPSenderRefused):
        return TransientError(f"Le serveur d'envoi refuse l'expéditeur MAIL_FROM (réponse {code}) : vérifiez la "
                              "configuration.", code=str(code))
    if isinstance(error, smtplib.SMTPDataError) and code in RECIPIENT_REPLY_CODES:
        return PermanentError(f"Message refusé pour ce destinataire (réponse {code}).", code=str(code))
    if isinstance(error, smtplib.SMTPResponseException):
        return TransientError(f"Le serveur d'envoi a répondu {code} : nouvel essai plus tard.", code=str(code))
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return TransientError("Le serveur d'envoi d'e-mails a coupé la connexion : nouvel essai plus tard.")
    return TransientError(f"Serveur d'envoi d'e-mails injoignable ({type(error).__name__}) : vérifiez MAIL_SERVER "
                          "et MAIL_PORT, nouvel essai plus tard.")
