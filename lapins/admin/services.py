"""What the administration pages change. Each function checks what the database must hold (no duplicate lieu name in
an organisation, no duplicate e-mail, an admin keeps their last admin role) and raises AdminError, in French, before
anything is stored."""
from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from lapins import policies
from lapins.infra.extensions import db
from lapins.models import (
    Agent, AgentRole, Lieu, LocationType, Motif, Organisation, Rdv, Role, Territory, utcnow,
)
from lapins.models.agenda_stamps import draw_new_stamps
from lapins.models.rdvs import CANCELLED_STATUSES
from lapins.models.territory_admins import TerritoryAdmin
from lapins.auth import accounts, identities

logger = logging.getLogger(__name__)


class AdminError(Exception):
    """Why the change is refused, in French (shown next to the field `field` when one is named)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --- Organisations -------------------------------------------------------------------------------------------

def _name_taken(model, scope, scope_id: int, name: str, but: int | None) -> bool:
    """Whether another row of `model` in the same organisation (or territory) has this name, whatever its case."""
    query = select(model.id).where(scope == scope_id, func.lower(model.name) == name.lower())
    if but is not None:
        query = query.where(model.id != but)
    return db.session.scalar(query.limit(1)) is not None


def create_organisation(territory: Territory, *, name: str, phone: str | None, creator: Agent) -> Organisation:
    """A new organisation; a creator who could not configure it (an organisation admin standing in for a territory
    that has no territory administrator yet) becomes its administrator, so that someone can."""
    if _name_taken(Organisation, Organisation.territory_id, territory.id, name, None):
        raise AdminError("Une organisation porte déjà ce nom dans ce territoire.", "name")
    organisation = Organisation(territory=territory, name=name, phone=phone)
    db.session.add(organisation)
    db.session.flush()
    if not policies.can(creator, "configure", organisation):
        creator.roles.append(AgentRole(organisation=organisation, role=Role.ADMIN))
    db.session.commit()
    logger.info("Organisation %s created in territory %s", organisation.id, territory.id)
    return organisation


def update_organisation(organisation: Organisation, *, name: str, phone: str | None) -> None:
    if _name_taken(Organisation, Organisation.territory_id, organisation.territory_id, name, organisation.id):
        raise AdminError("Une organisation porte déjà ce nom dans ce territoire.", "name")
    organisation.name, organisation.phone = name, phone
    db.session.commit()


# --- Territory administrators ----------------------------------------------------------------------------------

def territory_admins(territory: Territory) -> list[Agent]:
    return list(db.session.scalars(
        select(Agent).join(TerritoryAdmin, TerritoryAdmin.agent_id == Agent.id)
        .where(TerritoryAdmin.territory_id == territory.id).order_by(Agent.last_name, Agent.first_name)))


def add_territory_admin(territory: Territory, email: str) -> Agent:
    """An active agent already working in one of the territory's organisations becomes one of its administrators."""
    agent = db.session.scalar(
        select(Agent).join(AgentRole, AgentRole.agent_id == Agent.id).join(Organisation)
        .where(func.lower(Agent.email) == email.lower(), Organisation.territory_id == territory.id).limit(1))
    if agent is None or not agent.active:
        raise AdminError("Aucun agent actif de ce territoire n'a cette adresse : invitez-le d'abord dans une de ses "
                         "organisations.", "email")
    if territory.id in agent.administered_territory_ids:
        raise AdminError("Cet agent administre déjà le territoire.", "email")
    agent.territory_admin_of.append(TerritoryAdmin(territory_id=territory.id))
    db.session.commit()
    logger.info("Agent %s made administrator of territory %s", agent.id, territory.id)
    return agent


def remove_territory_admin(territory: Territory, agent: Agent, actor: Agent) -> None:
    if agent.id == actor.id:
        raise AdminError("Vous ne pouvez pas vous retirer vous-même l'administration du territoire.")
    row = db.session.get(TerritoryAdmin, (agent.id, territory.id))
    if row is not None:
        db.session.delete(row)
        db.session.commit()
        logger.info("Agent %s no longer administrator of territory %s", agent.id, territory.id)


# --- Lieux ---------------------------------------------------------------------------------------------------

def save_lieu(lieu: Lieu, *, name: str, address: str, phone: str | None, active: bool = True) -> Lieu:
    if _name_taken(Lieu, Lieu.organisation_id, lieu.organisation_id, name, lieu.id):
        raise AdminError("Un lieu porte déjà ce nom dans cette organisation.", "name")
    lieu.name, lieu.address, lieu.phone, lieu.active = name, address, phone, active
    db.session.add(lieu)
    db.session.commit()
    return lieu


def coming_rdv_count(lieu: Lieu) -> int:
    """The live rdvs still to come at a lieu: a closed lieu keeps them until they are moved or cancelled."""
    return db.session.scalar(select(func.count()).select_from(Rdv).where(
        Rdv.lieu_id == lieu.id, Rdv.starts_at > utcnow(), Rdv.status.not_in(CANCELLED_STATUSES)))


# --- Motifs --------------------------------------------------------------------------------------------------

def set_collective(motif: Motif, collective: bool, places_per_person: bool) -> None:
    """« Collectif » on or off: refused while the motif has live rdvs to come of the other kind (individual rdvs
    would carry a collective motif, or sessions an individual one: booking.CollectiveMotif)."""
    if motif.id is not None and motif.collective != collective and db.session.scalar(
            select(func.count()).select_from(Rdv).where(Rdv.motif_id == motif.id, Rdv.status.not_in(CANCELLED_STATUSES),
                                                       Rdv.ends_at > utcnow())):
        raise AdminError("Ce motif a des rendez-vous ou des séances à venir : il ne peut pas changer de nature. Créez "
                         "un autre motif (collectif ou individuel).", "collective")
    motif.collective, motif.places_per_person = collective, places_per_person


def save_motif(motif: Motif, *, name: str, duration_minutes: int, location_type: str, color: str, active: bool,
               notify: bool, cancellation_limit_hours: int, reminder_offsets: str | None, move_limit_hours: int,
               family_moves_max: int, booking_horizon_weeks: int, discreet: bool = False) -> Motif:
    if _name_taken(Motif, Motif.organisation_id, motif.organisation_id, name, motif.id):
        raise AdminError("Un motif porte déjà ce nom dans cette organisation.", "name")
    motif.name, motif.duration_minutes, motif.location_type = name, duration_minutes, LocationType(location_type)
    motif.color, motif.active, motif.notify = color.lower(), active, notify
    motif.cancellation_limit_hours, motif.reminder_offsets = cancellation_limit_hours, reminder_offsets or None
    motif.move_limit_hours, motif.family_moves_max = move_limit_hours, family_moves_max
    motif.booking_horizon_weeks = booking_horizon_weeks
    motif.discreet = discreet
    db.session.add(motif)
    db.session.commit()
    return motif


# --- Agents --------------------------------------------------------------------------------------------------

def members(organisation: Organisation) -> list[AgentRole]:
    """The roles held in the organisation, with their agents, active ones first."""
    return list(db.session.scalars(
        select(AgentRole).join(Agent).where(AgentRole.organisation_id == organisation.id)
        .options(selectinload(AgentRole.agent).selectinload(Agent.territory_admin_of))
        .order_by(Agent.active.desc(), Agent.last_name, Agent.first_name)))


def membership(organisation: Organisation, agent: Agent | None) -> AgentRole | None:
    if agent is None:
        return None
    return db.session.scalar(select(AgentRole).where(AgentRole.organisation_id == organisation.id,
                                                     AgentRole.agent_id == agent.id))


def joining_refusal(agent: Agent, territory_id: int) -> str | None:
    """Why an agent who has an account already cannot be given a role in an organisation of this territory, if not."""
    if agent.roles and all(role.organisation.territory_id != territory_id for role in agent.roles):
        return "Cette adresse est celle d'un agent d'un autre département : un compte ne sert qu'un département."
    if not agent.active:
        return "Le compte de cette adresse est désactivé : réactivez-le avant de l'ajouter à un service."
    return None


def invite_agent(organisation: Organisation, *, email: str, first_name: str, last_name: str, role: str) -> Agent:
    """A new account without a password, its role in the organisation, and the invitation e-mail
    (lapins.auth.accounts). An agent of the territory who has an account already gets the role in the organisation,
    and keeps their name and password; one still invited gets the invitation again."""
    email = email.strip().lower()
    agent = db.session.scalar(select(Agent).where(func.lower(Agent.email) == email))
    if agent is not None:
        current = agent.role_in(organisation.id)
        if current is not None:
            raise AdminError(f"{agent.full_name} fait déjà partie de ce service (rôle « {current.label} ») : changez "
                             "son rôle dans la liste des agents.", "email")
        refusal = joining_refusal(agent, organisation.territory_id)
        if refusal:
            raise AdminError(refusal, "email")
        agent.roles.append(AgentRole(organisation=organisation, role=Role(role)))
        db.session.commit()
        if agent.password_hash is None:
            accounts.send_account_email(agent, "invitation")
        logger.info("Agent %s added to organisation %s", agent.id, organisation.id)
        return agent
    agent = Agent(email=email, first_name=first_name, last_name=last_name)
    agent.roles.append(AgentRole(organisation=organisation, role=Role(role)))
    db.session.add(agent)
    db.session.commit()
    accounts.send_account_email(agent, "invitation")  # queued after the commit: the worker finds the agent
    logger.info("Agent %s invited to organisation %s", agent.id, organisation.id)
    return agent


def resend_invitation(agent: Agent) -> None:
    if agent.password_hash is not None:
        raise AdminError("Cet agent a déjà choisi son mot de passe : il peut le réinitialiser lui-même.")
    if not agent.active:
        raise AdminError("Ce compte est désactivé : réactivez-le avant de renvoyer l'invitation.")
    accounts.send_account_email(agent, "invitation")


def _administers_something_else(agent: Agent, role: AgentRole) -> bool:
    return bool(agent.administered_territory_ids) or any(
        other.role == Role.ADMIN for other in agent.roles if other is not role)


def change_role(role: AgentRole, new_role: str, actor: Agent) -> None:
    new = Role(new_role)
    if role.agent_id == actor.id and role.role == Role.ADMIN and new != Role.ADMIN \
            and not _administers_something_else(actor, role):
        raise AdminError("Vous ne pouvez pas retirer votre dernier rôle d'administrateur : demandez-le à un autre "
                         "administrateur.", "role")
    role.role = new
    db.session.commit()
    logger.info("Agent %s now %s in organisation %s", role.agent_id, new.value, role.organisation_id)


def set_active(agent: Agent, active: bool, actor: Agent) -> None:
    """A deactivated agent can no longer sign in (Agent.is_active) nor be booked; their rdvs and history stay."""
    if agent.id == actor.id and not active:
        raise AdminError("Vous ne pouvez pas désactiver votre propre compte.")
    agent.active = active
    # The free times families are shown are kept on their territory's agenda stamp (lapins.slots.picker).
    draw_new_stamps(db.session, Territory.id.in_(
        select(Organisation.territory_id).join(AgentRole, AgentRole.organisation_id == Organisation.id)
        .where(AgentRole.agent_id == agent.id)))
    if not active:
        agent.end_sessions()  # a reactivation does not bring them back
    db.session.commit()
    logger.info("Agent %s %s", agent.id, "reactivated" if active else "deactivated")


def end_sessions(agent: Agent, actor: Agent) -> None:
    """« Fermer toutes ses sessions »: every session the agent has open, on any device, ends at its next request
    (Agent.end_sessions); they sign in again with their password (and code)."""
    if agent.id == actor.id:
        raise AdminError("Pour fermer vos propres sessions, utilisez « Se déconnecter » : il les ferme toutes.")
    agent.end_sessions()
    db.session.commit()
    logger.info("Sessions of agent %s ended by agent %s", agent.id, actor.id)


def unlink_identity(agent: Agent, actor: Agent) -> None:
    """The agent's account at the OpenID Connect provider is no longer theirs in Lapins: who unlinked and when stay
    on its row (AgentIdentity), and the agent's sessions end; their next sign-in there links by e-mail again."""
    if not identities.unlink(agent, actor):
        raise AdminError("Ce compte n'est lié à aucun compte du fournisseur d'identité.")
    db.session.commit()
    logger.info("OIDC identity of agent %s unlinked by agent %s", agent.id, actor.id)


def administered_territories(actor: Agent) -> list[Territory]:
    """The territories whose organisations page the actor may open."""
    candidates = set(actor.administered_territory_ids) | {
        role.organisation.territory_id for role in actor.roles if role.role == Role.ADMIN}
    territories = db.session.scalars(select(Territory).where(Territory.id.in_(candidates)).order_by(Territory.number))
    return [territory for territory in territories if policies.can(actor, "administer", territory)]


def configured_organisations(actor: Agent) -> list[Organisation]:
    """The organisations whose lieux, motifs and agents the actor may manage."""
    query = select(Organisation).where(
        Organisation.id.in_({role.organisation_id for role in actor.roles if role.role == Role.ADMIN})
        | Organisation.territory_id.in_(actor.administered_territory_ids)).order_by(Organisation.name)
    return [organisation for organisation in db.session.scalars(query)
            if policies.can(actor, "configure", organisation)]
