"""The administrators' optional second factor: TOTP codes (RFC 6238, 6 digits, 30 s) and single-use recovery codes.

The secret is encrypted at rest (lapins.infra.crypto). A code is accepted for the current time step and the one on either
side (a phone's clock drifts), and only once: the step accepted is recorded by a conditional UPDATE, so a code seen
over a shoulder, or sent twice, opens nothing even with two workers racing. Recovery codes are stored as SHA-256
digests and used up by a conditional DELETE.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
from sqlalchemy import delete, func, or_, select, update

from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.models import Agent
from lapins.models.agents import AgentRecoveryCode
from lapins.models.types import utcnow

logger = logging.getLogger(__name__)

ISSUER = "Lapins"
VALID_WINDOW = 1  # steps accepted on either side of the current one
RECOVERY_CODE_COUNT = 8
# No 0/o, 1/i/l: read from paper, typed by hand. 12 characters of 31 give 59 bits.
RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
RECOVERY_CODE_LENGTH = 12


# --- Enrolment -----------------------------------------------------------------------------------------------

def start_enrolment(agent: Agent) -> None:
    """A new secret, not in force until a code made from it is confirmed."""
    agent.totp_secret = crypto.encrypt(pyotp.random_base32())
    agent.totp_enabled_at = None
    agent.totp_last_step = None
    db.session.commit()


def pending_secret(agent: Agent) -> str | None:
    """The secret shown while enrolling (None when there is no enrolment going on)."""
    if agent.second_factor_enabled or not agent.totp_secret:
        return None
    return _secret(agent)


def provisioning_uri(agent: Agent, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=agent.email, issuer_name=ISSUER)


def qr_code_svg(uri: str) -> str:
    """The otpauth:// URI as an inline SVG QR code, drawn here (nothing leaves the server)."""
    return segno.make(uri, error="m").svg_inline(scale=5, border=2, omitsize=False)


def grouped(secret: str) -> str:
    """The secret in blocks of four, for typing it into an application by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def confirm_enrolment(agent: Agent, code: str, *, now: datetime | None = None) -> list[str] | None:
    """Puts the second factor in force when the code matches the pending secret; the new recovery codes, or None."""
    secret = pending_secret(agent)
    step = _matching_step(secret, code, now) if secret else None
    if step is None:
        return None
    agent.totp_enabled_at = utcnow()
    agent.totp_last_step = step  # the code typed to enrol does not open a session afterwards
    codes = _replace_recovery_codes(agent)
    agent.end_sessions()  # those opened with the password alone
    db.session.commit()
    logger.info("Second factor enabled for agent %s", agent.id)
    return codes


def disable(agent: Agent) -> None:
    agent.totp_secret = None
    agent.totp_enabled_at = None
    agent.totp_last_step = None
    db.session.execute(delete(AgentRecoveryCode).where(AgentRecoveryCode.agent_id == agent.id))
    agent.end_sessions()
    db.session.commit()
    logger.info("Second factor disabled for agent %s", agent.id)


# --- Checking a code -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    ok: bool
    problem: str | None = None  # French, for the form
    recovery_codes_left: int | None = None  # set when a recovery code was used


WRONG_CODE = ("Code incorrect ou expiré. Saisissez le code à 6 chiffres affiché maintenant par votre application, "
              "ou un de vos codes de secours.")
REUSED_CODE = "Ce code a déjà servi. Attendez le code suivant de votre application (il change toutes les 30 secondes)."
UNREADABLE_SECRET = ("Votre second facteur ne peut pas être vérifié (la clé de chiffrement du serveur a changé). "
                     "Utilisez un code de secours ou demandez à l'équipe technique de le désactiver.")


def check_code(agent: Agent, code: str, *, now: datetime | None = None) -> Check:
    """A TOTP code of the agent's application, or one of their recovery codes; each serves once."""
    if not agent.second_factor_enabled:
        return Check(False, WRONG_CODE)
    typed = "".join(code.split())
    if typed.isdigit():
        return _check_totp(agent, typed, now)
    return _use_recovery_code(agent, typed)


def _check_totp(agent: Agent, code: str, now: datetime | None) -> Check:
    try:
        secret = _secret(agent)
    except crypto.InvalidToken:
        logger.warning("TOTP secret of agent %s cannot be decrypted (encryption key changed?)", agent.id)
        return Check(False, UNREADABLE_SECRET)
    step = _matching_step(secret, code, now)
    if step is None:
        return Check(False, WRONG_CODE)
    claimed = db.session.execute(
        update(Agent).where(Agent.id == agent.id, or_(Agent.totp_last_step.is_(None), Agent.totp_last_step < step))
        .values(totp_last_step=step).execution_options(synchronize_session=False))
    db.session.commit()
    if claimed.rowcount != 1:
        return Check(False, REUSED_CODE)
    return Check(True)


def _use_recovery_code(agent: Agent, typed: str) -> Check:
    digest = recovery_code_digest(typed)
    used = db.session.execute(delete(AgentRecoveryCode).where(
        AgentRecoveryCode.agent_id == agent.id, AgentRecoveryCode.code_hash == digest))
    db.session.commit()
    if used.rowcount != 1:
        return Check(False, WRONG_CODE)
    logger.info("Recovery code used by agent %s", agent.id)
    return Check(True, recovery_codes_left=recovery_codes_left(agent))


def recovery_codes_left(agent: Agent) -> int:
    return db.session.scalar(select(func.count(AgentRecoveryCode.id)).where(AgentRecoveryCode.agent_id == agent.id))


def recovery_code_digest(code: str) -> str:
    normalised = "".join(character for character in code.lower() if character.isalnum())
    return hashlib.sha256(normalised.encode()).hexdigest()


def _replace_recovery_codes(agent: Agent) -> list[str]:
    db.session.execute(delete(AgentRecoveryCode).where(AgentRecoveryCode.agent_id == agent.id))
    codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
             for _ in range(RECOVERY_CODE_COUNT)]
    db.session.add_all(AgentRecoveryCode(agent_id=agent.id, code_hash=recovery_code_digest(code)) for code in codes)
    return [f"{code[:4]}-{code[4:8]}-{code[8:]}" for code in codes]


def _secret(agent: Agent) -> str:
    return crypto.decrypt(agent.totp_secret)


def _matching_step(secret: str, code: str, now: datetime | None) -> int | None:
    """The time step whose code this is, within the window around now; None when it matches none."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now or utcnow())
    for step in (current - VALID_WINDOW + offset for offset in range(2 * VALID_WINDOW + 1)):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None
