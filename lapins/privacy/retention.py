"""Retention of personal data: old rdvs go with everything hanging off them, old messages lose their contents.

Two rules, both in config.py and off when set to 0:
- RETENTION_RDV_DAYS (2 years): an rdv that *ended* that long ago is deleted with its agents and usagers links, its
  messages, its identity-check counter, the waiting-list slots it freed and the offers made of them or booked into
  it. Slots that ended that long ago, waiting-list entries closed that long ago (with their offers) and messages
  sent that long ago go too.
- RETENTION_MESSAGE_CONTENT_DAYS (6 months): a message sent that long ago keeps what the statistics count (kind,
  channel, status, segments, dates) but its text, subject and address are set to NULL. Rounds of two-way SMS
  (a phone number and the rdvs listed to it) are deleted once expired: nothing reads them afterwards.

Rows are handled RETENTION_BATCH_SIZE at a time, each batch in its own transaction, so that a département with
millions of rows never holds one long lock; a run interrupted half-way is finished by the next one (every step
selects what is still there). Deletions go child first, whatever ON DELETE the database applies, so the same code
runs on SQLite and PostgreSQL. Only counts are logged.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update

from lapins.infra.extensions import db
from lapins.models import (
    EntryStatus, Message, MessageStatus, Rdv, RdvAgent, SlotOffer, SmsReplyRound, WaitlistEntry, WaitlistSlot, utcnow,
)
from lapins.models.audit import AuditEvent
from lapins.models.rdvs import RdvLinkCheck, RdvMove, rdv_usagers
from lapins.models.waitlist import waitlist_slot_agents

logger = logging.getLogger(__name__)

UNSENT = (MessageStatus.PENDING, MessageStatus.QUEUED)


@dataclass
class RetentionReport:
    """What a run deleted or anonymised (or would have, in a dry run): counts only."""

    rdvs_deleted: int = 0
    messages_deleted: int = 0
    slots_deleted: int = 0
    offers_deleted: int = 0
    entries_deleted: int = 0
    messages_anonymised: int = 0
    reply_rounds_deleted: int = 0
    audit_events_deleted: int = 0

    def add(self, other: RetentionReport) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def lines(self) -> list[tuple[str, int]]:
        """French labels for the CLI."""
        return [("Rendez-vous supprimés", self.rdvs_deleted), ("Messages supprimés", self.messages_deleted),
                ("Créneaux libérés supprimés", self.slots_deleted),
                ("Propositions de créneaux supprimées", self.offers_deleted),
                ("Inscriptions en file d'attente supprimées", self.entries_deleted),
                ("Messages anonymisés (texte et adresse effacés)", self.messages_anonymised),
                ("Échanges de SMS (réponses) supprimés", self.reply_rounds_deleted),
                ("Lignes de l'historique des modifications supprimées", self.audit_events_deleted)]


@dataclass(frozen=True)
class Cutoffs:
    rdvs: datetime | None  # rdvs, slots, entries and messages older than this are deleted
    contents: datetime | None  # messages sent before this lose their contents

    @classmethod
    def from_config(cls, now: datetime, config) -> Cutoffs:
        rdv_days, content_days = int(config["RETENTION_RDV_DAYS"] or 0), int(config["RETENTION_MESSAGE_CONTENT_DAYS"] or 0)
        return cls(now - timedelta(days=rdv_days) if rdv_days > 0 else None,
                   now - timedelta(days=content_days) if content_days > 0 else None)


# --- What each rule matches ---------------------------------------------------------------------------------------

def message_time() -> ColumnElement:
    """When a message counts as sent: the same instant the statistics put it in a month by."""
    return func.coalesce(Message.sent_at, Message.due_at)


def old_rdv(cutoff: datetime) -> ColumnElement[bool]:
    return and_(Rdv.starts_at < cutoff, Rdv.ends_at < cutoff)  # starts_at is indexed, and an rdv starts first


def old_slot(cutoff: datetime) -> ColumnElement[bool]:
    return WaitlistSlot.ends_at < cutoff


def old_entry(cutoff: datetime) -> ColumnElement[bool]:
    return and_(WaitlistEntry.status != EntryStatus.ACTIVE,
                func.coalesce(WaitlistEntry.closed_at, WaitlistEntry.created_at) < cutoff)


def old_message(cutoff: datetime) -> ColumnElement[bool]:
    return message_time() < cutoff


def content_kept(cutoff: datetime) -> ColumnElement[bool]:
    """Messages sent before `cutoff` that still hold a text, a subject or an address."""
    return and_(message_time() < cutoff, Message.status.not_in(UNSENT),
                or_(Message.body.is_not(None), Message.subject.is_not(None), Message.to_address.is_not(None)))


# --- Running ------------------------------------------------------------------------------------------------------

def run(now: datetime | None = None, *, dry_run: bool = False, batch_size: int | None = None) -> RetentionReport:
    """Apply both rules; with `dry_run`, only count what they would touch."""
    now = now or utcnow()
    cutoffs = Cutoffs.from_config(now, current_app.config)
    if dry_run:
        report = count(cutoffs, now)
        db.session.rollback()
        return report
    batch = max(1, int(batch_size or current_app.config["RETENTION_BATCH_SIZE"]))
    report = RetentionReport()
    if cutoffs.rdvs is not None:
        _in_batches(lambda: _ids(Rdv.id, old_rdv(cutoffs.rdvs), batch), _delete_rdvs, report)
        _in_batches(lambda: _ids(WaitlistSlot.id, old_slot(cutoffs.rdvs), batch), _delete_slots, report)
        _in_batches(lambda: _ids(WaitlistEntry.id, old_entry(cutoffs.rdvs), batch), _delete_entries, report)
        _in_batches(lambda: _ids(Message.id, old_message(cutoffs.rdvs), batch), _delete_messages, report)
        # The history of changes is kept as long as the rdvs it tells of (it names nobody, but points at them).
        _in_batches(lambda: _ids(AuditEvent.id, AuditEvent.occurred_at < cutoffs.rdvs, batch), _delete_audit_events,
                    report)
    if cutoffs.contents is not None:
        _in_batches(lambda: _ids(Message.id, content_kept(cutoffs.contents), batch), _anonymise_messages, report)
        _in_batches(lambda: _ids(SmsReplyRound.id, SmsReplyRound.expires_at < now, batch), _delete_rounds, report)
    logger.info("Retention: %s", ", ".join(f"{name}={value}" for name, value in asdict(report).items()))
    return report


def _ids(column, condition, limit: int) -> list[int]:
    return list(db.session.scalars(select(column).where(condition).order_by(column).limit(limit)))


def _in_batches(next_ids: Callable[[], list[int]], handle: Callable[[list[int]], RetentionReport],
                report: RetentionReport) -> None:
    """One transaction per batch, until nothing matches any more."""
    while True:
        ids = next_ids()
        if not ids:
            db.session.commit()
            return
        try:
            report.add(handle(ids))
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise


def execute_bulk(statement) -> int:
    """Run a bulk UPDATE/DELETE without syncing the session; the number of rows it touched."""
    return db.session.execute(statement.execution_options(synchronize_session=False)).rowcount or 0


def _delete_offers_and_their_messages(offer_ids: list[int], report: RetentionReport) -> None:
    if not offer_ids:
        return
    report.messages_deleted += execute_bulk(delete(Message).where(Message.offer_id.in_(offer_ids)))
    report.offers_deleted += execute_bulk(delete(SlotOffer).where(SlotOffer.id.in_(offer_ids)))


def _delete_slot_rows(slot_ids: list[int], report: RetentionReport) -> None:
    if not slot_ids:
        return
    db.session.execute(delete(waitlist_slot_agents).where(waitlist_slot_agents.c.slot_id.in_(slot_ids)))
    report.slots_deleted += execute_bulk(delete(WaitlistSlot).where(WaitlistSlot.id.in_(slot_ids)))


def _delete_rdvs(rdv_ids: list[int]) -> RetentionReport:
    report = RetentionReport()
    slot_ids = list(db.session.scalars(select(WaitlistSlot.id).where(WaitlistSlot.source_rdv_id.in_(rdv_ids))))
    offer_ids = list(db.session.scalars(select(SlotOffer.id).where(
        or_(SlotOffer.rdv_id.in_(rdv_ids), SlotOffer.slot_id.in_(slot_ids)))))
    report.messages_deleted += execute_bulk(delete(Message).where(Message.rdv_id.in_(rdv_ids)))
    _delete_offers_and_their_messages(offer_ids, report)
    _delete_slot_rows(slot_ids, report)
    # An entry that wanted a slot earlier than one of these rdvs lives on its own terms (old_entry).
    execute_bulk(update(WaitlistEntry).where(WaitlistEntry.rdv_id.in_(rdv_ids)).values(rdv_id=None))
    execute_bulk(delete(RdvLinkCheck).where(RdvLinkCheck.rdv_id.in_(rdv_ids)))
    execute_bulk(delete(RdvMove).where(RdvMove.rdv_id.in_(rdv_ids)))
    db.session.execute(delete(rdv_usagers).where(rdv_usagers.c.rdv_id.in_(rdv_ids)))
    execute_bulk(delete(RdvAgent).where(RdvAgent.rdv_id.in_(rdv_ids)))
    report.rdvs_deleted += execute_bulk(delete(Rdv).where(Rdv.id.in_(rdv_ids)))
    return report


def _delete_audit_events(event_ids: list[int]) -> RetentionReport:
    return RetentionReport(audit_events_deleted=execute_bulk(delete(AuditEvent).where(AuditEvent.id.in_(event_ids))))


def _delete_slots(slot_ids: list[int]) -> RetentionReport:
    report = RetentionReport()
    offer_ids = list(db.session.scalars(select(SlotOffer.id).where(SlotOffer.slot_id.in_(slot_ids))))
    _delete_offers_and_their_messages(offer_ids, report)
    _delete_slot_rows(slot_ids, report)
    return report


def _delete_entries(entry_ids: list[int]) -> RetentionReport:
    report = RetentionReport()
    offer_ids = list(db.session.scalars(select(SlotOffer.id).where(SlotOffer.entry_id.in_(entry_ids))))
    _delete_offers_and_their_messages(offer_ids, report)
    report.entries_deleted += execute_bulk(delete(WaitlistEntry).where(WaitlistEntry.id.in_(entry_ids)))
    return report


def _delete_messages(message_ids: list[int]) -> RetentionReport:
    return RetentionReport(messages_deleted=execute_bulk(delete(Message).where(Message.id.in_(message_ids))))


def _anonymise_messages(message_ids: list[int]) -> RetentionReport:
    return RetentionReport(messages_anonymised=execute_bulk(
        update(Message).where(Message.id.in_(message_ids)).values(body=None, subject=None, to_address=None)))


def _delete_rounds(round_ids: list[int]) -> RetentionReport:
    return RetentionReport(reply_rounds_deleted=execute_bulk(delete(SmsReplyRound).where(SmsReplyRound.id.in_(round_ids))))


# --- Counting (dry run) -------------------------------------------------------------------------------------------

def count(cutoffs: Cutoffs, now: datetime) -> RetentionReport:
    """What `run` would delete and anonymise now, counted without changing anything."""
    report = RetentionReport()

    def number(statement) -> int:
        return int(db.session.scalar(select(func.count()).select_from(statement.subquery())) or 0)

    doomed_messages = rdvs = offers = None
    if cutoffs.rdvs is not None:
        rdvs = select(Rdv.id).where(old_rdv(cutoffs.rdvs))
        slots = select(WaitlistSlot.id).where(or_(old_slot(cutoffs.rdvs), WaitlistSlot.source_rdv_id.in_(rdvs)))
        entries = select(WaitlistEntry.id).where(old_entry(cutoffs.rdvs))
        offers = select(SlotOffer.id).where(or_(SlotOffer.rdv_id.in_(rdvs), SlotOffer.slot_id.in_(slots),
                                                SlotOffer.entry_id.in_(entries)))
        doomed_messages = or_(Message.rdv_id.in_(rdvs), Message.offer_id.in_(offers), old_message(cutoffs.rdvs))
        report.rdvs_deleted = number(rdvs)
        report.slots_deleted = number(slots)
        report.entries_deleted = number(entries)
        report.offers_deleted = number(offers)
        report.messages_deleted = number(select(Message.id).where(doomed_messages))
        report.audit_events_deleted = number(select(AuditEvent.id).where(AuditEvent.occurred_at < cutoffs.rdvs))
    if cutoffs.contents is not None:
        anonymised = select(Message.id).where(content_kept(cutoffs.contents))
        if doomed_messages is not None:  # NULL-safe "not doomed": most offer messages have no rdv, and the reverse
            anonymised = anonymised.where(
                ~old_message(cutoffs.rdvs),
                or_(Message.rdv_id.is_(None), Message.rdv_id.not_in(rdvs)),
                or_(Message.offer_id.is_(None), Message.offer_id.not_in(offers)))
        report.messages_anonymised = number(anonymised)
        report.reply_rounds_deleted = number(select(SmsReplyRound.id).where(SmsReplyRound.expires_at < now))
    return report
