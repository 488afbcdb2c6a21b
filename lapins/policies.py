"""Who may see and do what: the one place permissions are decided.

Views never test roles themselves: they call `authorize(action, target)`, which answers 404 when the target lies
outside the agent's organisations (its existence is not revealed) and 403 when it is visible but the action is not
allowed. Queries of lists go through the `*_scope` functions, which only ever return what the agent may see.

Roles: in each organisation an agent is an administrator, an agent or a secretary (AgentRole); beside that, a
territory administrator (TerritoryAdmin) administers a whole territory: its settings ("administer" a Territory), its
organisations and their lieux, motifs and agents ("configure"). That role shows no rdv and no usager: those
follow the agent's role in each organisation. A territory that has no territory administrator yet (one upgraded from
a release without them) is administered, as before, by the administrators of its organisations, who can name one.
"""
from __future__ import annotations

from flask import abort
from sqlalchemy import Select, exists, select

from lapins.infra.extensions import db
from lapins.models.light_agent import LightAgent
from lapins.models import (
    Absence, Agent, AgentRole, ApiToken, Lieu, Motif, MotifCatalogueEntry, Organisation, Participation,
    PlageOuverture, Rdv, Role, Sector, Territory, Usager, Webhook,
)
from lapins.models.territory_admins import TerritoryAdmin
from lapins.models.usagers import usager_organisations

MANAGERS = {Role.ADMIN, Role.SECRETARY}

# MERGING two usagers' files. Who spots a duplicate is whoever books: the secretary at the desk, the puéricultrice
# in her agenda; making them wait for an administrator leaves the split file in use for days, which is what breaks a
# child's follow-up. So every role of the organisation may merge — but only two files it can see both of (each is
# authorised apart, 404 otherwise), of the same territory, and every merge is in the audit trail with its agent,
# from which an administrator reads it (« Historique »). A territory administrator alone sees no usager, so merges
# none. The kept file goes on being seen by the organisations of both (their memberships are joined); their rdvs
# stay scoped by the rdv's own organisation, so nobody sees more rdvs than before.
MERGERS = {Role.ADMIN, Role.AGENT, Role.SECRETARY}

# CATALOGUE (issue 23.6): a territory's motif catalogue is written by whoever administers the territory
# ("manage_catalogue" on it, "configure" on an entry); its entries are read by everyone working in one of its
# organisations; an organisation's motif is adopted from an entry, adjusted or linked to one by whoever configures
# the organisation ("configure" on it), and only to an entry of its own territory (`authorize_adoption`).


def organisations_of(actor: Agent) -> set[int]:
    return actor.organisation_ids


def _organisation_ids(target) -> set[int]:
    """The organisations a target belongs to; an agent or usager can belong to several."""
    if isinstance(target, Organisation):
        return {target.id}
    if isinstance(target, (Agent, LightAgent)):
        return target.organisation_ids
    if isinstance(target, Usager):
        return {organisation.id for organisation in target.organisations}
    if isinstance(target, (Rdv, Motif, Lieu, PlageOuverture, Webhook)):
        return {target.organisation_id}
    if isinstance(target, Absence):
        return target.agent.organisation_ids
    if isinstance(target, Participation):  # a family's place in a collective session: seen like its session
        return {target.rdv.organisation_id}
    if isinstance(target, Territory):  # a territory's figures: for those working in one of its organisations
        return {organisation.id for organisation in target.organisations}
    if isinstance(target, (Sector, MotifCatalogueEntry)):  # seen like its territory
        return {organisation.id for organisation in target.territory.organisations}
    raise TypeError(f"no policy for {type(target).__name__}")


# What a territory administrator may do to what it reaches through the territory, whatever their organisations: its
# organisations and their lieux, motifs and agents — never their rdvs, usagers, plages or webhooks.
TERRITORY_ACTIONS = {"configure", "unlink_identity"}


def _territory_ids(target) -> set[int]:
    """The territories through which a territory administrator reaches a target (none for rdvs, usagers...)."""
    if isinstance(target, (Territory, Sector, MotifCatalogueEntry)):
        return {target.id} if isinstance(target, Territory) else {target.territory_id}
    if isinstance(target, Organisation):
        return {target.territory_id}
    if isinstance(target, (Lieu, Motif)):
        return {target.organisation.territory_id}
    if isinstance(target, (Agent, LightAgent)):
        return {role.organisation.territory_id for role in target.roles}
    return set()


def has_territory_admin(territory_id: int) -> bool:
    """Whether an active agent administers this territory (one deactivated hands the territory back, see above)."""
    return bool(db.session.scalar(select(exists().where(
        TerritoryAdmin.territory_id == territory_id, TerritoryAdmin.agent_id == Agent.id, Agent.active.is_(True)))))


def administers_territory(actor: Agent, territory: Territory) -> bool:
    """A territory administrator of it; while it has none, an administrator of one of its organisations."""
    if territory.id in actor.administered_territory_ids:
        return True
    admin_here = any(role.role == Role.ADMIN and role.organisation.territory_id == territory.id for role in actor.roles)
    return admin_here and not has_territory_admin(territory.id)


def territory_administrators(territory: Territory) -> list[Agent]:
    """Who is told when the territory's messages stop leaving (lapins.monitoring.delivery): its active territory
    administrators; while it has none, the administrators of its organisations (those who administer it then)."""
    admins = list(db.session.scalars(
        select(Agent).join(TerritoryAdmin, TerritoryAdmin.agent_id == Agent.id)
        .where(TerritoryAdmin.territory_id == territory.id, Agent.active.is_(True)).order_by(Agent.id)))
    if admins:
        return admins
    return list(db.session.scalars(
        select(Agent).join(AgentRole, AgentRole.agent_id == Agent.id)
        .join(Organisation, Organisation.id == AgentRole.organisation_id)
        .where(Organisation.territory_id == territory.id, AgentRole.role == Role.ADMIN, Agent.active.is_(True))
        .distinct().order_by(Agent.id)))


def _visible(actor: Agent, target) -> bool:
    return bool(_organisation_ids(target) & organisations_of(actor)) or _through_territory(actor, target)


def can(actor: Agent, action: str, target) -> bool:
    if isinstance(target, Territory):
        return _visible(actor, target) and _can_on_territory(actor, action, target)
    if isinstance(target, Sector):  # a territory's sectors (lapins.admin.sectors): for those who administer it
        if action not in {"view", "configure"}:
            raise ValueError(f"unknown action {action!r} on a sector")
        return _visible(actor, target) and administers_territory(actor, target.territory)
    if isinstance(target, MotifCatalogueEntry):  # see CATALOGUE at the top
        if action == "view":
            return _visible(actor, target)
        if action == "configure":
            return _visible(actor, target) and administers_territory(actor, target.territory)
        raise ValueError(f"unknown action {action!r} on a catalogue entry")
    if action == "configure" and isinstance(target, Agent) and target.administered_territory_ids - \
            actor.administered_territory_ids:  # a territory administrator's account: for that territory's admins
        return False
    shared = _organisation_ids(target) & organisations_of(actor)
    if not shared:
        return action in TERRITORY_ACTIONS and _through_territory(actor, target)
    roles = {actor.role_in(organisation_id) for organisation_id in shared}
    if action == "view":
        return True
    if isinstance(target, Usager) and target.merged_into_id is not None:
        return False  # a merged file's tombstone is only seen, to be sent on to the kept file
    if action == "merge":  # two files of one person (lapins.agenda.duplicates): see MERGING below
        return bool(roles & MERGERS)
    if action in {"book", "edit"}:  # rdvs and usagers: everyone working in the organisation
        return True
    if action == "release":  # free an unconfirmed slot the day before, after a call (« À confirmer »): any agent
        return bool(roles)  # of the organisation, by hand; never automatic, never a territory administrator alone
    if action == "manage_schedule":  # plages d'ouverture and absences of an agent
        agent = target if isinstance(target, Agent) else getattr(target, "agent", None)
        return bool(roles & MANAGERS) or (agent is not None and agent.id == actor.id)
    if action == "administer":  # webhooks and the like: the organisation's own administrators
        return Role.ADMIN in roles
    if action == "configure":  # an organisation's name, phone, lieux, motifs and agents (lapins.admin)
        return Role.ADMIN in roles or _through_territory(actor, target)
    if action == "unlink_identity":  # an agent's account at the OpenID Connect provider (lapins.auth.identities)
        return Role.ADMIN in roles or _through_territory(actor, target)
    if action == "erase":  # a usager's data, on the family's request (lapins.privacy): administrators only
        return Role.ADMIN in roles
    if action == "audit":  # the history of changes to rdvs and usagers (lapins.audit)
        return Role.ADMIN in roles
    raise ValueError(f"unknown action {action!r}")


def _through_territory(actor: Agent, target) -> bool:
    return bool(_territory_ids(target) & actor.administered_territory_ids)


def _can_on_territory(actor: Agent, action: str, territory: Territory) -> bool:
    if action == "view":
        return True
    if action == "administer":  # its settings, its organisations, its territory administrators
        return administers_territory(actor, territory)
    if action == "watch_delivery":  # its delivery health page and balance threshold: whoever administers it
        return administers_territory(actor, territory)
    if action == "manage_catalogue":  # its motif catalogue: see CATALOGUE at the top
        return administers_territory(actor, territory)
    if action == "oversee":  # the figures of all its organisations
        return territory.id in actor.administered_territory_ids or any(
            role.role == Role.ADMIN and role.organisation.territory_id == territory.id for role in actor.roles)
    raise ValueError(f"unknown action {action!r} on a territory")


def configured_organisation_ids(actor: Agent, territory: Territory) -> set[int]:
    """The organisations of a territory whose lieux and motifs the actor may configure, so may read the names of: all of
    them for its territory administrators, otherwise those the actor administers."""
    if territory.id in actor.administered_territory_ids:
        return {organisation.id for organisation in territory.organisations}
    return {role.organisation_id for role in actor.roles
            if role.role == Role.ADMIN and role.organisation.territory_id == territory.id}


def authorize_adoption(actor: Agent, organisation: Organisation | None, entry: MotifCatalogueEntry | None) -> None:
    """An organisation adopts (or links a motif to) an entry of its own territory's catalogue: 404 for an entry of
    another territory, as for anything outside one's reach."""
    authorize(actor, "configure", organisation)
    if entry is None or entry.territory_id != organisation.territory_id:
        abort(404)


def authorize(actor: Agent, action: str, target) -> None:
    if target is None or not _visible(actor, target):
        abort(404)
    if not can(actor, action, target):
        abort(403)


def is_administrator(actor: Agent) -> bool:
    """An administrator of an organisation or of a territory."""
    return any(role.role == Role.ADMIN for role in actor.roles) or bool(actor.administered_territory_ids)


def may_use_second_factor(actor: Agent) -> bool:
    """A TOTP second factor is offered to administrators (one who has it keeps it)."""
    return actor.second_factor_enabled or is_administrator(actor)


def may_issue_api_tokens(actor: Agent) -> bool:
    """API tokens act as their agent: administrators, of an organisation or of a territory, issue them for their
    département's software on the preferences page (an operator can issue any with `flask api-token create`)."""
    return is_administrator(actor)


def api_token_scope(actor: Agent) -> Select:
    """An agent's own API tokens, and nobody else's."""
    return select(ApiToken).where(ApiToken.agent_id == actor.id)


def authorize_statistics(actor: Agent, target: Organisation | Territory | None) -> None:
    """An organisation's figures are for everyone working in it; a territory's, for its territory administrators and
    the administrators of one of its organisations."""
    authorize(actor, "oversee" if isinstance(target, Territory) else "view", target)


def authorize_export(actor: Agent, export) -> None:
    """An export is for the agent who asked for it and for the administrators of its scope (its organisation, or
    every organisation of its territory): 404 outside that scope, 403 inside it for anyone else."""
    if export is None:
        abort(404)
    scope = ({export.organisation_id} if export.organisation_id is not None
             else {organisation.id for organisation in export.territory.organisations})
    shared = scope & organisations_of(actor)
    if not shared:
        abort(404)
    if export.requested_by_id != actor.id and Role.ADMIN not in {actor.role_in(org_id) for org_id in shared}:
        abort(403)


def rdv_scope(actor: Agent) -> Select:
    return select(Rdv).where(Rdv.organisation_id.in_(organisations_of(actor)))


def session_scope(actor: Agent) -> Select:
    """Collective sessions (rdvs with a capacity) of the actor's organisations."""
    return rdv_scope(actor).where(Rdv.max_participants.is_not(None))


def agent_scope(actor: Agent) -> Select:
    colleagues = select(AgentRole.agent_id).where(AgentRole.organisation_id.in_(organisations_of(actor)))
    return select(Agent).where(Agent.id.in_(colleagues), Agent.active.is_(True)).order_by(Agent.last_name, Agent.first_name)


def motif_scope(actor: Agent) -> Select:
    return select(Motif).where(Motif.organisation_id.in_(organisations_of(actor))).order_by(Motif.name)


def lieu_scope(actor: Agent) -> Select:
    return select(Lieu).where(Lieu.organisation_id.in_(organisations_of(actor))).order_by(Lieu.name)


def usager_scope(actor: Agent) -> Select:
    members = select(usager_organisations.c.usager_id).where(
        usager_organisations.c.organisation_id.in_(organisations_of(actor))
    )
    return select(Usager).where(Usager.id.in_(members), Usager.merged_into_id.is_(None))


def plage_scope(actor: Agent) -> Select:
    return select(PlageOuverture).where(PlageOuverture.organisation_id.in_(organisations_of(actor)))


def absence_scope(actor: Agent) -> Select:
    """Absences of the agents working in the actor's organisations (an absence belongs to no organisation)."""
    colleagues = select(AgentRole.agent_id).where(AgentRole.organisation_id.in_(organisations_of(actor)))
    return select(Absence).where(Absence.agent_id.in_(colleagues))
