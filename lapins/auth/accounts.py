"""Agents' accounts: invitations and password resets by e-mail, and the password rules.

A link is a signed token (itsdangerous, keyed with SECRET_KEY, one salt per purpose) carrying the agent's id and a
fingerprint of the password hash it was made for: as soon as a password is set the fingerprint changes, so a link
serves once. Invitations last INVITATION_DAYS, resets RESET_MINUTES.

A password has at least MIN_LENGTH characters and is not easy to guess: zxcvbn (the estimator that knows the common
passwords, keyboard walks, dates and repeats) must rate it at least MIN_SCORE out of 4, knowing the agent's name and
e-mail and the service's words.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from celery import shared_task
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from markupsafe import escape
from zxcvbn import zxcvbn

from lapins.infra.celery_app import task_named
from lapins.infra.extensions import db
from lapins.models import Agent
from lapins.notifications import backends, providers
from lapins.notifications.backends import OutgoingEmail, TransientError

logger = logging.getLogger(__name__)

MIN_LENGTH = 12
MAX_LENGTH = 200
MIN_SCORE = 3
SERVICE_WORDS = ["lapins", "pmi", "rdv", "rendez-vous", "departement", "puericultrice", "sage-femme", "motdepasse"]
INVITATION_DAYS = 7
RESET_MINUTES = 60
PURPOSES = {"invitation": timedelta(days=INVITATION_DAYS), "reset": timedelta(minutes=RESET_MINUTES)}


# --- Passwords -------------------------------------------------------------------------------------------------

def password_problem(password: str, agent: Agent) -> str | None:
    """Why this password is refused, in French, or None when it is fine."""
    if len(password) < MIN_LENGTH:
        return f"Le mot de passe doit compter au moins {MIN_LENGTH} caractères."
    if len(password) > MAX_LENGTH:
        return f"Le mot de passe doit compter au plus {MAX_LENGTH} caractères."
    known = [agent.email, agent.email.split("@")[0], agent.first_name, agent.last_name, *SERVICE_WORDS]
    if zxcvbn(password, user_inputs=[word for word in known if word])["score"] < MIN_SCORE:
        return ("Ce mot de passe est trop facile à deviner (mot de passe courant, suite de touches, nom ou date). "
                "Choisissez par exemple quatre mots sans rapport entre eux.")
    return None


# --- Links ---------------------------------------------------------------------------------------------------------

def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"lapins-account-{purpose}")


def _fingerprint(agent: Agent) -> str:
    return hashlib.sha256((agent.password_hash or "no-password").encode()).hexdigest()[:16]


def make_token(agent: Agent, purpose: str) -> str:
    return _serializer(purpose).dumps({"agent": agent.id, "pw": _fingerprint(agent)})


@dataclass(frozen=True)
class TokenCheck:
    agent: Agent | None
    problem: str | None  # French, for the page, when the link cannot be used


def check_token(token: str, purpose: str) -> TokenCheck:
    try:
        data = _serializer(purpose).loads(token, max_age=int(PURPOSES[purpose].total_seconds()))
    except SignatureExpired:
        return TokenCheck(None, "Ce lien a expiré. Demandez-en un nouveau.")
    except BadSignature:
        return TokenCheck(None, "Ce lien n'est pas valide. Vérifiez qu'il est complet, ou demandez-en un nouveau.")
    agent = db.session.get(Agent, data.get("agent")) if isinstance(data, dict) and isinstance(data.get("agent"), int) \
        else None
    if agent is None or not agent.active:
        return TokenCheck(None, "Ce compte n'existe pas ou a été désactivé.")
    if data.get("pw") != _fingerprint(agent):
        return TokenCheck(None, "Ce lien a déjà servi : le mot de passe a été choisi depuis.")
    return TokenCheck(agent, None)


INVITATION_PATH = "/invitation/"  # lapins.auth.views: accept_invitation
RESET_PATH = "/mot-de-passe/"  # lapins.auth.views: reset_password


def link_for(agent: Agent, purpose: str) -> str:
    """The link to send, on PUBLIC_URL: the worker that sends it has no request to build it from."""
    path = INVITATION_PATH if purpose == "invitation" else RESET_PATH
    return current_app.config["PUBLIC_URL"].rstrip("/") + path + make_token(agent, purpose)


# --- E-mails ---------------------------------------------------------------------------------------------------

def account_email(agent: Agent, purpose: str) -> OutgoingEmail:
    link = link_for(agent, purpose)
    if purpose == "invitation":
        subject = "Votre compte Lapins : choisissez votre mot de passe"
        lines = [f"Bonjour {agent.first_name},",
                 "Un compte Lapins vous a été ouvert pour tenir votre agenda de rendez-vous. Pour l'activer, "
                 f"choisissez votre mot de passe (ce lien est valable {INVITATION_DAYS} jours et ne sert qu'une fois) :",
                 link]
    else:
        subject = "Lapins : changer votre mot de passe"
        lines = [f"Bonjour {agent.first_name},",
                 "Vous avez demandé à changer votre mot de passe Lapins. Ce lien est valable "
                 f"{RESET_MINUTES} minutes et ne sert qu'une fois :", link,
                 "Si vous n'avez rien demandé, ignorez ce message : votre mot de passe ne change pas."]
    html = "".join(f"<p>{escape(line)}</p>" if line != link else f'<p><a href="{escape(link)}">{escape(link)}</a></p>'
                   for line in lines)
    return OutgoingEmail(message_id=f"agent-{agent.id}-{purpose}-{make_token(agent, purpose)[-12:]}", to=agent.email,
                         subject=subject, text="\n\n".join(lines) + "\n",
                         html=f'<!doctype html><html lang="fr"><body>{html}</body></html>')


def send_account_email(agent: Agent, purpose: str) -> None:
    queue_account_email(agent.id, purpose)


def queue_account_email(agent_id: int | None, purpose: str) -> None:
    """Queue the e-mail; the broker being down is logged, never shown (a reset must not tell who has an account).

    None (an address without an account) queues a task all the same, which finds no one: the request does the same
    work, and takes the same time, whether the account exists or not."""
    try:
        task_named(send_account_email_task.name).delay(agent_id, purpose)
    except Exception:
        logger.warning("Account e-mail (%s) for agent %s not queued (broker unreachable)", purpose, agent_id,
                       exc_info=True)


@shared_task(name="lapins.auth.account_email", ignore_result=True, bind=True, max_retries=3, default_retry_delay=60)
def send_account_email_task(self, agent_id: int | None, purpose: str) -> bool:
    agent = db.session.get(Agent, agent_id) if agent_id is not None else None
    if agent is None or not agent.active or purpose not in PURPOSES:
        return False
    try:
        providers.email_backend().send(account_email(agent, purpose))
    except TransientError as error:
        logger.warning("Account e-mail (%s) for agent %s not sent yet (code %s)", purpose, agent_id, error.code)
        raise self.retry(exc=error) from None
    except backends.PermanentError as error:
        logger.warning("Account e-mail (%s) for agent %s refused (code %s)", purpose, agent_id, error.code)
        return False
    logger.info("Account e-mail (%s) sent to agent %s", purpose, agent_id)
    return True
