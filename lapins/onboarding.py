"""A new département joins: its territory, its first PMI service and the administrator who will invite the others."""
from __future__ import annotations

import re
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select

from lapins.extensions import db
from lapins.models import Agent, AgentRole, Organisation, Role, Territory

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
