"""Right to erasure: an organisation's administrator erases a usager (and its relatives) from that organisation.

A person who belongs to no other organisation is deleted; one who does is only taken out of the organisations
erased from. Either way, in one transaction:
- their rdvs stay (the statistics count them) but no longer name them: the rdv_usagers rows go, agents' notes and
  the family's cancellation reason are cleared, identity-check counters are deleted;
- messages about those rdvs or sent to them keep their figures (kind, channel, status, segments, dates) but lose
  text, subject, address and recipient; those not sent yet are skipped;
- their waiting-list entries and the offers made to them are deleted (the offers' messages stay, blanked);
- open rounds of two-way SMS from their number are deleted.
What happened is logged as counts, never names (the audit trail records the deletion of the usager rows, which
holds no personal data either: lapins.models.audit).
"""
from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, func, or_, select, update

from lapins.infra.extensions import db
from lapins.models import (
    Agent, Message, MessageStatus, Rdv, Role, SlotOffer, SmsReplyRound, Usager, WaitlistEntry, utcnow,
)
from lapins.models.rdvs import CANCELLED_STATUSES, RdvLinkCheck, rdv_usagers
from lapins.models.usagers import usager_organisations
from lapins.privacy.retention import execute_bulk

logger = logging.getLogger(__name__)

ERASED = "Données effacées à la demande de la famille"


def erasing_organisations(actor: Agent, usager: Usager) -> set[int]:
    """The organisations of the usager where the actor is an administrator: those it is erased from."""
    return {organisation.id for organisation in usager.organisations if actor.role_in(organisation.id) == Role.ADMIN}


@dataclass
class ErasurePlan:
    """Who goes, who only leaves, and how many rows are touched: what the confirmation page says."""

    usager: Usager
    organisation_ids: set[int]
    deleted: list[Usager] = field(default_factory=list)  # belong to no other organisation: deleted
    detached: list[Usager] = field(default_factory=list)  # stay in another organisation: only taken out
    rdv_ids: set[int] = field(default_factory=set)
    upcoming_rdvs: int = 0

    @property
    def usager_deleted(self) -> bool:
        return self.usager in self.deleted

    @property
    def people(self) -> list[Usager]:
        return self.deleted + self.detached


@dataclass
class ErasureReport:
    people_deleted: int = 0
    people_detached: int = 0
    rdvs_detached: int = 0
    messages_blanked: int = 0
    messages_skipped: int = 0
    entries_deleted: int = 0
    offers_deleted: int = 0
    usager_deleted: bool = False  # False: it stays in another organisation


def plan(actor: Agent, usager: Usager) -> ErasurePlan:
    organisation_ids = erasing_organisations(actor, usager)
    result = ErasurePlan(usager, organisation_ids)
    people = [usager] + [relative for relative in usager.relatives
                         if {organisation.id for organisation in relative.organisations} & organisation_ids]
    for person in people:
        elsewhere = {organisation.id for organisation in person.organisations} - organisation_ids
        (result.detached if elsewhere else result.deleted).append(person)
    result.rdv_ids = set(db.session.scalars(select(rdv_usagers.c.rdv_id).where(_links_erased(result))))
    if result.rdv_ids:
        result.upcoming_rdvs = int(db.session.scalar(select(func.count(Rdv.id)).where(
            Rdv.id.in_(result.rdv_ids), Rdv.starts_at > utcnow(),
            Rdv.status.not_in(CANCELLED_STATUSES))) or 0)
    return result


def _links_erased(erasure: ErasurePlan):
    """The rdv_usagers rows that go: every rdv of a deleted person, the erasing organisations' of a detached one."""
    deleted_ids = [person.id for person in erasure.deleted]
    detached_ids = [person.id for person in erasure.detached]
    in_erasing = rdv_usagers.c.rdv_id.in_(select(Rdv.id).where(Rdv.organisation_id.in_(erasure.organisation_ids)))
    return or_(rdv_usagers.c.usager_id.in_(deleted_ids),
               and_(rdv_usagers.c.usager_id.in_(detached_ids), in_erasing))


def erase(actor: Agent, usager: Usager) -> ErasureReport:
    """Erase the usager from the actor's organisations, all or nothing (one transaction, committed here)."""
    erasure = plan(actor, usager)
    if not erasure.organisation_ids:
        raise PermissionError("no organisation of this usager is administered by this agent")
    try:
        report = _erase(erasure)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    logger.info("Erasure by agent %s in organisation(s) %s: %d person(s) deleted, %d taken out, %d rdv(s) detached, "
                "%d message(s) blanked, %d skipped, %d waiting-list entr(ies) and %d offer(s) deleted", actor.id,
                ",".join(str(organisation_id) for organisation_id in sorted(erasure.organisation_ids)),
                report.people_deleted, report.people_detached, report.rdvs_detached, report.messages_blanked,
                report.messages_skipped, report.entries_deleted, report.offers_deleted)
    return report


def _erase(erasure: ErasurePlan) -> ErasureReport:
    report = ErasureReport(people_deleted=len(erasure.deleted), people_detached=len(erasure.detached),
                           rdvs_detached=len(erasure.rdv_ids), usager_deleted=erasure.usager_deleted)
    organisation_ids = erasure.organisation_ids
    people_ids = [person.id for person in erasure.people]
    deleted_ids = [person.id for person in erasure.deleted]
    detached_ids = [person.id for person in erasure.detached]
    rdv_ids = sorted(erasure.rdv_ids)
    territory_id = erasure.usager.territory_id
    phones = sorted({person.phone for person in erasure.people if person.phone})

    entry_ids = list(db.session.scalars(select(WaitlistEntry.id).where(or_(
        WaitlistEntry.usager_id.in_(deleted_ids),
        and_(WaitlistEntry.usager_id.in_(detached_ids), WaitlistEntry.organisation_id.in_(organisation_ids))))))
    offer_ids = list(db.session.scalars(select(SlotOffer.id).where(or_(
        SlotOffer.usager_id.in_(deleted_ids), SlotOffer.entry_id.in_(entry_ids)))))
    in_erasing = or_(Message.rdv_id.in_(select(Rdv.id).where(Rdv.organisation_id.in_(organisation_ids))),
                     Message.offer_id.in_(offer_ids))
    concerned = or_(Message.rdv_id.in_(rdv_ids), Message.offer_id.in_(offer_ids),
                    Message.usager_id.in_(deleted_ids), and_(Message.usager_id.in_(detached_ids), in_erasing))

    # The rdvs that no longer name anyone once their links go: nobody is left to remind of them.
    db.session.execute(delete(rdv_usagers).where(_links_erased(erasure)))
    orphaned = list(db.session.scalars(select(Rdv.id).where(
        Rdv.id.in_(rdv_ids), ~Rdv.id.in_(select(rdv_usagers.c.rdv_id).where(rdv_usagers.c.rdv_id.in_(rdv_ids))))))
    not_sent = or_(Message.status == MessageStatus.PENDING,
                   and_(Message.status == MessageStatus.QUEUED, Message.claimed_at.is_(None)))
    report.messages_skipped = execute_bulk(
        update(Message)
        .where(concerned, not_sent, or_(Message.usager_id.in_(people_ids), Message.rdv_id.in_(orphaned),
                                        Message.offer_id.in_(offer_ids)))
        .values(status=MessageStatus.SKIPPED, error=ERASED, updated_at=utcnow()))
    report.messages_blanked = execute_bulk(
        update(Message).where(concerned, Message.status != MessageStatus.PENDING)
        .values(body=None, subject=None, to_address=None))
    # Offers are about to be deleted: their messages are kept (they are counted), without the link.
    execute_bulk(update(Message).where(Message.offer_id.in_(offer_ids)).values(offer_id=None))
    execute_bulk(update(Message).where(concerned, Message.usager_id.in_(people_ids)).values(usager_id=None))

    report.offers_deleted = execute_bulk(delete(SlotOffer).where(SlotOffer.id.in_(offer_ids)))
    report.entries_deleted = execute_bulk(delete(WaitlistEntry).where(WaitlistEntry.id.in_(entry_ids)))
    execute_bulk(delete(RdvLinkCheck).where(RdvLinkCheck.rdv_id.in_(rdv_ids)))
    execute_bulk(update(Rdv).where(Rdv.id.in_(rdv_ids), or_(Rdv.notes.is_not(None), Rdv.cancel_reason.is_not(None)))
             .values(notes=None, cancel_reason=None))
    if phones:
        execute_bulk(delete(SmsReplyRound).where(SmsReplyRound.territory_id == territory_id,
                                             SmsReplyRound.phone.in_(phones)))

    db.session.execute(delete(usager_organisations).where(
        usager_organisations.c.usager_id.in_(detached_ids),
        usager_organisations.c.organisation_id.in_(organisation_ids)))
    if deleted_ids:
        # Relatives who stay (in another organisation) lose their link to a responsible person who goes; a child's
        # second guardian who stays becomes its first.
        execute_bulk(update(Usager).where(Usager.second_responsible_id.in_(deleted_ids))
                     .values(second_responsible_id=None))
        execute_bulk(update(Usager).where(Usager.responsible_id.in_(deleted_ids), Usager.id.not_in(deleted_ids))
                     .values(responsible_id=Usager.second_responsible_id, second_responsible_id=None))
        execute_bulk(update(Usager).where(Usager.id.in_(deleted_ids)).values(responsible_id=None))
        db.session.execute(delete(usager_organisations).where(usager_organisations.c.usager_id.in_(deleted_ids)))
        execute_bulk(delete(Usager).where(Usager.id.in_(deleted_ids)))
    for person in erasure.people:  # the session must not write back what it still holds of them
        if person in db.session:
            db.session.expunge(person)
    return report


def normalized_name(text: str) -> str:
    """What the agent types to confirm, compared without case, accents or surrounding spaces."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return " ".join("".join(char for char in decomposed if not unicodedata.combining(char)).casefold().split())
