"""A child's responsible adults (issue 23.3): two at most, each with their own phone, e-mail and consents.

The rules live here, for the usager pages and any other caller: an adult only (never the child itself, nor a child
of a family, nor someone's own child), two at most, and never the last one removed while the child has rdvs to come
(its messages would go nowhere). Each change takes the child's row lock first, so two agents adding at once cannot
make a third. The caller commits.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select, update

from lapins.infra.extensions import db
from lapins.models import Rdv, Usager, utcnow
from lapins.models.rdvs import CANCELLED_STATUSES, rdv_usagers

MAX_GUARDIANS = 2


class GuardianRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _lock(child: Usager) -> None:
    """The child's row lock (PostgreSQL; SQLite's write lock is taken by the first write), then its values afresh."""
    if child.id is not None:
        db.session.execute(select(Usager.id).where(Usager.id == child.id).with_for_update())
        db.session.refresh(child)


def refusal_to_add(child: Usager, guardian: Usager) -> str | None:
    """Why `guardian` cannot become a responsible adult of `child`, in French; None when it can."""
    if guardian.id is not None and guardian.id == child.id:
        return "Une personne ne peut pas être son propre responsable : choisissez un autre dossier."
    if guardian.merged_into_id is not None or child.merged_into_id is not None:
        return "Ce dossier a été fusionné avec un autre : choisissez le dossier conservé."
    if guardian.territory_id != child.territory_id:
        return "Ce dossier appartient à un autre territoire : il ne peut pas être responsable de cet enfant."
    if guardian.responsible_id is not None or guardian.second_responsible_id is not None:
        return (f"{guardian.full_name} est un enfant rattaché à une famille : un responsable doit être un adulte "
                "sans responsable.")
    if child.id is not None and (child.relatives or child.second_relatives):
        return (f"{child.full_name} est responsable d'enfants : on ne lui ajoute pas de responsable.")
    if guardian in child.guardians:
        return f"{guardian.full_name} est déjà responsable de {child.full_name}."
    if len(child.guardians) >= MAX_GUARDIANS:
        return (f"{child.full_name} a déjà deux responsables : retirez-en un avant d'en ajouter un autre "
                "(un enfant a deux responsables au plus).")
    return None


def add_guardian(child: Usager, guardian: Usager) -> None:
    """Make `guardian` the child's first responsible, or its second when it has one. Raises GuardianRefused."""
    _lock(child)
    refusal = refusal_to_add(child, guardian)
    if refusal:
        raise GuardianRefused(refusal)
    if child.responsible is None:
        child.responsible = guardian
    else:
        child.second_responsible = guardian


def has_rdvs_to_come(child: Usager, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return bool(db.session.scalar(select(exists().where(
        rdv_usagers.c.usager_id == child.id, rdv_usagers.c.rdv_id == Rdv.id,
        Rdv.status.not_in(CANCELLED_STATUSES), Rdv.starts_at > now))))


def remove_guardian(child: Usager, guardian: Usager, *, now: datetime | None = None) -> None:
    """The child no longer has `guardian` as a responsible adult; the second one, if any, becomes the first. Raises
    GuardianRefused for the last one of a child with rdvs to come. The rdvs that told only `guardian` tell everyone
    again (« ne prévenir que » a person who is no longer responsible would tell no one)."""
    _lock(child)
    if guardian not in child.guardians:
        raise GuardianRefused(f"{guardian.full_name} n'est pas responsable de {child.full_name}.")
    if len(child.guardians) == 1 and has_rdvs_to_come(child, now):
        raise GuardianRefused(
            f"{guardian.full_name} est le seul responsable de {child.full_name}, qui a des rendez-vous à venir : "
            "leurs confirmations et rappels ne partiraient plus à personne. Ajoutez d'abord un autre responsable, "
            "ou annulez ces rendez-vous.")
    if child.responsible is guardian:
        child.responsible, child.second_responsible = child.second_responsible, None
    else:
        child.second_responsible = None
    db.session.flush()
    db.session.execute(
        update(Rdv).where(Rdv.notify_only_id == guardian.id,
                          Rdv.id.in_(select(rdv_usagers.c.rdv_id).where(rdv_usagers.c.usager_id == child.id)))
        .values(notify_only_id=None), execution_options={"synchronize_session": False})


# --- « Ne prévenir que … » ------------------------------------------------------------------------------------------

def two_guardians(usagers: list[Usager]) -> list[Usager]:
    """The guardians an agent may choose between for an rdv of these usagers: those of a child that has two."""
    found: list[Usager] = []
    for usager in usagers:
        if len(usager.guardians) > 1:
            found += [guardian for guardian in usager.guardians if guardian not in found]
    return found


def notify_only_choices(usagers: list[Usager]) -> list[tuple[int, str]]:
    """The « Qui prévenir ? » options, empty when no child of the rdv has two guardians."""
    guardians = two_guardians(usagers)
    if not guardians:
        return []
    return [(0, "Les deux responsables")] + [(guardian.id, f"Ne prévenir que {guardian.full_name}")
                                             for guardian in guardians]


def chosen_guardian(guardian_id: int | None, usagers: list[Usager]) -> Usager | None:
    """The guardian picked in « Qui prévenir ? » (None: both). Raises GuardianRefused for anyone else."""
    if not guardian_id:
        return None
    guardian = next((guardian for guardian in two_guardians(usagers) if guardian.id == guardian_id), None)
    if guardian is None:
        raise GuardianRefused("Choisissez l'un des deux responsables de l'enfant, ou « Les deux responsables ».")
    return guardian
