"""E-mails to agents: "a family cancelled one of your rdvs" and "a family moved one of your rdvs", for the agents who
asked for it (Mes préférences).

Why a Celery task enqueued after the commit rather than a row of the `messages` outbox: an outbox row is addressed
to an usager (`messages.usager_id`, whose consent and address are checked again at sending time, and whose rows fill
the rdv's notification history, the dev inbox and the territory's figures); an agent is not one, and making the
table take either kind of recipient would touch every part of the outbox for a notice that needs none of its
guarantees (quiet hours, revisions, reconciliation with the provider). At most once is right for it: the task is
acknowledged before it runs, so a worker dying mid-send loses one notice (the rdv page shows the change anyway)
rather than sending it twice. No family's name, phone, e-mail or reason goes into the notice or the logs.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import shared_task
from flask import current_app
from markupsafe import escape
from sqlalchemy import select

from lapins.infra.celery_app import task_named
from lapins.infra.extensions import db
from lapins.models import Agent, Rdv, RdvAgent
from lapins.models.rdvs import Canceller, MoveChannel, RdvMove
from lapins.notifications import backends, providers
from lapins.notifications.backends import OutgoingEmail, TransientError
from lapins.notifications.email import long_when, short_when

logger = logging.getLogger(__name__)


def tell_agents_of_family_cancellation(rdv_id: int) -> int:
    """Enqueue one notice per agent of the rdv who asked for it; call after the cancellation commits."""
    return _enqueue(send_family_cancellation_email.name, rdv_id, ())


def tell_agents_of_family_move(rdv_id: int, former_agent_ids: Iterable[int]) -> int:
    """Enqueue one notice per agent of the rdv, before or after the move, who asked for it; after the commit."""
    return _enqueue(send_family_move_email.name, rdv_id, former_agent_ids)


def _enqueue(task: str, rdv_id: int, former_agent_ids: Iterable[int]) -> int:
    rdv_agents = select(RdvAgent.agent_id).where(RdvAgent.rdv_id == rdv_id)
    agent_ids = list(db.session.scalars(
        select(Agent.id).where(Agent.id.in_(rdv_agents) | Agent.id.in_(list(former_agent_ids)),
                               Agent.notify_on_family_cancellation.is_(True), Agent.active.is_(True))
        .order_by(Agent.id)))
    for agent_id in agent_ids:
        try:
            task_named(task).delay(rdv_id, agent_id)
        except Exception:  # the broker being down must not fail the family's change, which is committed
            logger.warning("Agent notice for rdv %s not queued (broker unreachable)", rdv_id, exc_info=True)
    return len(agent_ids)


@shared_task(name="lapins.notifications.family_cancellation_email", ignore_result=True, bind=True,
             max_retries=3, default_retry_delay=60)
def send_family_cancellation_email(self, rdv_id: int, agent_id: int) -> bool:
    rdv = db.session.get(Rdv, rdv_id)
    if rdv is None or rdv.cancelled_by_party != Canceller.FAMILY or rdv.is_live:
        return False  # restored or deleted meanwhile: nothing to say
    return _send(self, rdv, agent_id, family_cancellation_email)


@shared_task(name="lapins.notifications.family_move_email", ignore_result=True, bind=True,
             max_retries=3, default_retry_delay=60)
def send_family_move_email(self, rdv_id: int, agent_id: int) -> bool:
    rdv = db.session.get(Rdv, rdv_id)
    move = db.session.scalar(select(RdvMove).where(RdvMove.rdv_id == rdv_id).order_by(RdvMove.id.desc()).limit(1))
    if rdv is None or move is None or not rdv.is_live:
        return False
    return _send(self, rdv, agent_id, lambda rdv, agent: family_move_email(rdv, agent, move))


def _send(task, rdv: Rdv, agent_id: int, build) -> bool:
    agent = db.session.get(Agent, agent_id)
    if agent is None or not (agent.active and agent.notify_on_family_cancellation):
        return False
    try:
        providers.email_backend().send(build(rdv, agent))
    except TransientError as error:
        logger.warning("Agent notice for rdv %s to agent %s not sent yet (code %s)", rdv.id, agent_id, error.code)
        raise task.retry(exc=error) from None
    except backends.PermanentError as error:
        logger.warning("Agent notice for rdv %s to agent %s refused (code %s)", rdv.id, agent_id, error.code)
        return False
    logger.info("Agent notice for rdv %s sent to agent %s", rdv.id, agent_id)
    return True


def family_cancellation_email(rdv: Rdv, agent: Agent) -> OutgoingEmail:
    tz = rdv.organisation.territory.tz
    place = f" ({rdv.lieu.name})" if rdv.lieu else ""
    hours = rdv.cancelled_hours_before
    channel = f", {rdv.cancelled_via.label}" if rdv.cancelled_via else ""
    told = (f"La famille a annulé le rendez-vous « {rdv.motif.public_name} » du {long_when(rdv.starts_at, tz)}{place}"
            f"{channel}{_notice(hours)}. Le créneau est de nouveau libre dans votre agenda.")
    return _email(rdv, agent, told, f"Rendez-vous annulé par la famille : {short_when(rdv.starts_at, tz)}",
                  f"agent-{agent.id}-cancelled-{rdv.id}-{rdv.revision}")


def family_move_email(rdv: Rdv, agent: Agent, move: RdvMove) -> OutgoingEmail:
    tz = rdv.organisation.territory.tz
    place = f" ({rdv.lieu.name})" if rdv.lieu else ""
    with_you = "" if agent in rdv.agents else " avec un autre agent"
    channel = f", {move.via.label}" if move.via != MoveChannel.AGENDA else ""
    told = (f"La famille a déplacé le rendez-vous « {rdv.motif.public_name} »{place} du {long_when(move.from_starts_at, tz)} "
            f"au {long_when(move.to_starts_at, tz)}{with_you}{channel}{_notice(move.notice_hours)}. L'ancien créneau "
            "est de nouveau libre dans votre agenda.")
    return _email(rdv, agent, told, f"Rendez-vous déplacé par la famille : {short_when(move.to_starts_at, tz)}",
                  f"agent-{agent.id}-moved-{rdv.id}-{move.id}")


def _notice(hours: int | None) -> str:
    if hours is None:
        return ""
    return f", {hours} h avant" if hours >= 1 else ", moins d'une heure avant"


def _email(rdv: Rdv, agent: Agent, told: str, subject: str, message_id: str) -> OutgoingEmail:
    public_url = current_app.config["PUBLIC_URL"].rstrip("/")
    rdv_url, preferences_url = f"{public_url}/rdvs/{rdv.id}", f"{public_url}/preferences"
    lines = [
        f"Bonjour {agent.first_name},",
        told,
        f"Voir le rendez-vous : {rdv_url}",
        f"Vous recevez ce message parce que vous l'avez demandé dans « Mes préférences » : {preferences_url}",
    ]
    html = "".join(f"<p>{escape(line)}</p>" for line in lines[:2])
    html += f'<p><a href="{escape(rdv_url)}">Voir le rendez-vous</a></p>'
    html += (f'<p><small>Vous recevez ce message parce que vous l\'avez demandé dans '
             f'<a href="{escape(preferences_url)}">Mes préférences</a>.</small></p>')
    return OutgoingEmail(message_id=message_id, to=agent.email, subject=subject, text="\n\n".join(lines) + "\n",
                         html=f"<!doctype html><html lang=\"fr\"><body>{html}</body></html>")
