"""A new département joins: its territory, its first PMI service and the administrator who will invite the others."""
from __future__ import annotations

import re
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select

from lapins.infra.extensions import db
from lapins.models import Agent, AgentRole, Organisation, Role, Territory
from lapins.models.territory_admins import TerritoryAdmin
from lapins.notifications import timing
from lapins.locale.phones import InvalidPhone, normalize_mobile

# Metropolitan départements (Corsica as 2A / 2B) and the overseas ones with a PMI service of their own.
NUMBER = re.compile(r"0[1-9]|[1-8][0-9]|9[0-5]|2A|2B|97[1-6]")


class OnboardingError(Exception):
    """What is wrong with the request, in French; nothing was stored."""


def create_territory(*, number: str, name: str, timezone: str, admin_email: str, organisation_name: str | None = None,
                     admin_first_name: str | None = None, admin_last_name: str | None = None) -> Agent:
    """The territory, its first organisation and its administrator (without a password: send them an invitation)."""
    number, name = number.strip().upper(), " ".join(name.split())
    if not NUMBER.fullmatch(number):
        raise OnboardingError(f"« {number} » n'est pas un numéro de département (exemples : 01, 2A, 59, 974).")
    if not name or len(name) > 120:
        raise OnboardingError("Le nom du département est obligatoire (120 caractères au plus).")
    if timezone not in available_timezones():
        raise OnboardingError(f"« {timezone} » n'est pas un fuseau horaire IANA (exemples : Europe/Paris, "
                              "Indian/Reunion, America/Guadeloupe, America/Cayenne, Indian/Mayotte).")
    try:
        email = validate_email(admin_email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise OnboardingError(f"« {admin_email} » n'est pas une adresse électronique valide.") from None
    if db.session.scalar(select(Territory.id).where(Territory.number == number)) is not None:
        raise OnboardingError(f"Le département {number} existe déjà.")
    if db.session.scalar(select(Agent.id).where(func.lower(Agent.email) == email)) is not None:
        raise OnboardingError(f"Un agent a déjà l'adresse {email}.")
    first, last = _names_from(email, admin_first_name, admin_last_name)
    territory = Territory(number=number, name=name, timezone=timezone)
    organisation = Organisation(territory=territory, name=(organisation_name or f"PMI {name}").strip()[:160])
    admin = Agent(email=email, first_name=first, last_name=last)
    admin.roles.append(AgentRole(organisation=organisation, role=Role.ADMIN))
    admin.territory_admin_of.append(TerritoryAdmin(territory=territory))  # and of the whole territory
    db.session.add_all([territory, organisation, admin])
    db.session.commit()
    return admin


def _names_from(email: str, first: str | None, last: str | None) -> tuple[str, str]:
    """« prenom.nom@… » gives Prenom and Nom when they are not given; the administrator can correct them later."""
    local = email.split("@")[0].replace("_", ".").replace("-", " ")
    pieces = [piece for piece in local.split(".") if piece]
    guessed_first = pieces[0].title() if pieces else "Administrateur"
    guessed_last = " ".join(pieces[1:]).title() if len(pieces) > 1 else "Lapins"
    return (first or guessed_first).strip()[:80], (last or guessed_last).strip()[:80]


ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
QUIET_HOURS = re.compile(r"(\d{1,2})[h:](\d{2})?\s*-\s*(\d{1,2})[h:](\d{2})?")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-f]{32}")
# The time zones of France, metropolitan and overseas départements (and Saint-Pierre-et-Miquelon), with their names.
FRENCH_TIMEZONES = {
    "Europe/Paris": "France métropolitaine et Corse (Europe/Paris)",
    "America/Guadeloupe": "Guadeloupe (America/Guadeloupe)",
    "America/Martinique": "Martinique (America/Martinique)",
    "America/Cayenne": "Guyane (America/Cayenne)",
    "Indian/Reunion": "La Réunion (Indian/Reunion)",
    "Indian/Mayotte": "Mayotte (Indian/Mayotte)",
    "America/Miquelon": "Saint-Pierre-et-Miquelon (America/Miquelon)",
}
REPLIES_REFUSED = ("Un expéditeur alphanumérique ne peut pas recevoir de réponses : donnez un numéro ou un "
                   "Messaging Service")


def configure_territory(number: str, *, reminder_offsets: str | None = None, sms_sender: str | None = None,
                        messaging_service_sid: str | None = None, takes_replies: bool | None = None,
                        quiet_hours: str | None = None) -> Territory:
    """Change the SMS settings of a territory; every value is checked before anything is stored."""
    try:
        return _configure(number, reminder_offsets, sms_sender, messaging_service_sid, takes_replies, quiet_hours)
    except OnboardingError:
        db.session.rollback()  # nothing half-changed stays in the session
        raise


def _configure(number, reminder_offsets, sms_sender, messaging_service_sid, takes_replies, quiet_hours) -> Territory:
    territory = db.session.scalar(select(Territory).where(Territory.number == number.strip().upper()))
    if territory is None:
        raise OnboardingError(f"Aucun département {number} dans cette installation.")
    if reminder_offsets is not None:
        territory.reminder_offsets = checked_reminder_offsets(reminder_offsets)
    if sms_sender is not None:
        territory.sms_sender = checked_sms_sender(sms_sender, territory.number)
    if messaging_service_sid is not None:
        territory.twilio_messaging_service_sid = checked_messaging_service_sid(messaging_service_sid)
    if takes_replies is not None:
        territory.sms_takes_replies = takes_replies
    check_takes_replies(territory.sms_takes_replies, territory.sms_sender, territory.twilio_messaging_service_sid,
                        way_out="ou --no-replies")
    if quiet_hours is not None:
        territory.quiet_hours_start, territory.quiet_hours_end = _quiet_hours(quiet_hours)
    db.session.commit()
    return territory


REMINDERS_WHY = timing.REMINDERS_WHY

# The checks of each SMS setting, shared by `flask territory configure` and the territory settings page
# (lapins.territory_settings): each returns the value to store or raises OnboardingError in French.

def checked_timezone(name: str) -> str:
    """One of France's time zones (FRENCH_TIMEZONES)."""
    name = (name or "").strip()
    if name not in FRENCH_TIMEZONES or name not in available_timezones():
        raise OnboardingError(f"« {name} » n'est pas un fuseau horaire de la France (exemples : Europe/Paris, "
                              "Indian/Reunion, America/Guadeloupe, America/Cayenne, Indian/Mayotte).")
    return name


def checked_reminder_offsets(text: str) -> str:
    """ "24, 72" → "72,24" (hours before the rdv, see lapins.notifications.timing); nothing → the default, J-3 and
    J-1 ("72,24")."""
    try:
        hours = timing.parse_offsets(text)
    except timing.InvalidOffsets as error:
        raise OnboardingError(str(error)) from None
    return ",".join(str(hour) for hour in hours) or timing.DEFAULT_REMINDER_OFFSETS


def checked_sms_sender(text: str, territory_number: str) -> str:
    """A French mobile number in E.164 (it sends SMS, so it is a mobile one) or an alphanumeric sender."""
    sender = text.strip()
    if sender.startswith("+") or sender[:1].isdigit():
        try:
            return normalize_mobile(sender, territory_number)
        except InvalidPhone as error:
            raise OnboardingError(f"Numéro d'expéditeur refusé : {error}") from None
    if not ALPHANUMERIC_SENDER.fullmatch(sender):
        raise OnboardingError("Un nom d'expéditeur compte 1 à 11 lettres, chiffres ou espaces, dont une lettre "
                              "au moins (exemple : PMI59).")
    return sender


def checked_messaging_service_sid(text: str) -> str | None:
    """MG + 32 hexadecimal characters; blank for none."""
    sid = text.strip()
    if sid and not MESSAGING_SERVICE_SID.fullmatch(sid):
        raise OnboardingError("Un Messaging Service Twilio s'écrit MG suivi de 32 caractères hexadécimaux.")
    return sid or None


def check_takes_replies(takes_replies: bool, sender: str | None, messaging_service_sid: str | None, *,
                        way_out: str) -> None:
    """Replies reach a number or a Messaging Service, never an alphanumeric sender. `way_out` ends the message
    with how to say "no replies" where it is read (an option, a checkbox)."""
    if takes_replies and sender and not sender.startswith("+") and not messaging_service_sid:
        raise OnboardingError(f"{REPLIES_REFUSED}, {way_out}.")


def check_quiet_hours(start, end) -> None:
    if start is None or end is None or start == end:
        raise OnboardingError("Les heures sans SMS doivent commencer et finir à deux heures différentes.")


def _quiet_hours(text: str):
    from datetime import time

    match = QUIET_HOURS.fullmatch(text.strip())
    try:
        start, end = (time(int(match.group(1)), int(match.group(2) or 0)),
                      time(int(match.group(3)), int(match.group(4) or 0))) if match else (None, None)
    except ValueError:
        start = end = None
    if start is None or start == end:
        raise OnboardingError("Indiquez les heures sans SMS sous la forme « 20h-8h » ou « 20:00-08:00 ».")
    return start, end
